"""The ``ampgate`` command line: one entry point, subcommands registered by their modules.

Commissioning commands (maps, read, write, scan, simulate) live in
``ampgate.cli.commission``; the daemon's commands (run, check-config, demo) in
``ampgate.cli.daemon_commands``. Every
:class:`~ampgate.errors.AmpgateError` becomes one clear line on stderr and exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ampgate import __version__
from ampgate.errors import AmpgateError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    from ampgate.cli import daemon_commands as commands
    from ampgate.cli.commission import commands as commission

    parser = argparse.ArgumentParser(
        prog="ampgate",
        description="Modbus gateway and dynamic load management for EV-charger sites.",
    )
    parser.add_argument("--version", action="version", version=f"ampgate {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logs on errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commission.register(sub)
    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except AmpgateError as exc:
        if args.debug:
            raise
        print(f"ampgate: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `ampgate maps | head`: the reader went away; not an error of ours.
        _silence_stdout()
        return 0
    return int(result or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
