"""``python -m ampgate.daemon run|check-config|demo``: the daemon commands without the full CLI."""

from __future__ import annotations

import argparse
import sys

from ampgate.daemon import commands
from ampgate.errors import AmpgateError


def main(argv: list[str] | None = None) -> int:
    """Parse the daemon's subcommands and run one; AmpgateError becomes one line and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m ampgate.daemon")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AmpgateError as exc:
        print(f"ampgate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
