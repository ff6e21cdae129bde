"""``ampgate simulate``: serve simulated EVC2 chargers and a meter until Ctrl-C or ``--duration``.

Chargers are unit ids 1..N and the meter unit id 100 (see :mod:`ampgate.sim.site`), so the
commissioning commands can be tried without hardware::

    ampgate simulate --chargers 2 --meter eastron-sdm630 --tcp-port 5020
    ampgate read tcp://127.0.0.1:5020/1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from ampgate.cli.commission.device_io import quiet_library_logs
from ampgate.codec import list_models, load_map
from ampgate.errors import ConfigError


def _meter_models() -> list[str]:
    return [m for m in list_models() if load_map(m).model.kind == "meter"]


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.chargers <= 99:
        raise ConfigError(f"--chargers {args.chargers} is not allowed; allowed: 0-99")
    if args.meter is not None and args.meter not in _meter_models():
        raise ConfigError(
            f"--meter {args.meter!r} is not a meter model; allowed: {', '.join(_meter_models())}"
        )
    if args.tcp_port is not None and not 0 <= args.tcp_port <= 65535:
        raise ConfigError(f"--tcp-port {args.tcp_port} is not allowed; allowed: 0-65535")
    if args.duration is not None and not args.duration > 0:
        raise ConfigError(f"--duration {args.duration} is not allowed; allowed: seconds > 0")
    if args.line_emulation and args.serial is None:
        raise ConfigError("--line-emulation applies to --serial only (RTU line timing)")


async def _simulate(args: argparse.Namespace) -> None:
    from ampgate.sim import Simulation, run_simulation

    def started(simulation: Simulation) -> None:
        print("simulating (Ctrl-C to stop):", flush=False)
        for line in simulation.describe():
            print(f"  {line}")
        if simulation.tcp is not None:
            print(f"try: ampgate read tcp://{simulation.tcp.host}:{simulation.tcp.port}/1")
        elif simulation.rtu is not None:
            print(
                f"try: ampgate read rtu://OTHER-END/1?baud={simulation.rtu.baudrate} "
                f"(OTHER-END: the serial port wired to {simulation.rtu.port_path})"
            )
        sys.stdout.flush()

    tcp_port = args.tcp_port if args.tcp_port is not None or args.serial else 5020
    run = run_simulation(
        args.chargers,
        args.meter,
        tcp_port,
        args.serial,
        baudrate=args.baud,
        line_emulation=args.line_emulation,
        on_started=started,
    )
    if args.duration is None:
        await run
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run, args.duration)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve the simulated site until interrupted (exit 0) or ``--duration`` has passed."""
    quiet_library_logs(getattr(args, "debug", False))
    _check(args)
    where = f"--serial {args.serial}" if args.serial else f"--tcp-port {args.tcp_port}"
    try:
        asyncio.run(_simulate(args))
    except OSError as exc:
        raise ConfigError(
            f"simulate: cannot serve on {where}: {exc.strerror or exc}; check that the serial "
            "path exists and is not in use"
        ) from None
    except RuntimeError as exc:
        if "listen" not in str(exc):  # pymodbus: "Could not start listen, please check address."
            raise
        raise ConfigError(
            f"simulate: cannot listen on 127.0.0.1 with {where}; check that no other program "
            "uses the port, or pick another with --tcp-port (0: any free port)"
        ) from None
    except KeyboardInterrupt:
        print("stopped")
    return 0


def register(subparsers: Any) -> None:
    """Add ``simulate`` to the command line."""
    p = subparsers.add_parser(
        "simulate",
        help="serve simulated EVC2 chargers and a meter",
        description="Serve simulated EVC2 chargers (unit ids 1..N) and a meter (unit id 100) "
        "over Modbus TCP and/or RTU until Ctrl-C.",
    )
    p.add_argument("--chargers", type=int, default=1, help="number of chargers (default 1)")
    p.add_argument(
        "--meter", default=None, help="meter model id, e.g. eastron-sdm630 (default: no meter)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--tcp-port", type=int, default=None, help="Modbus TCP port on 127.0.0.1 (default 5020)"
    )
    where.add_argument("--serial", default=None, help="serve Modbus RTU on this serial path/pty")
    p.add_argument("--baud", type=int, default=9600, help="RTU baud rate (default 9600)")
    p.add_argument(
        "--line-emulation",
        action="store_true",
        help="RTU: answer at wire speed and refuse requests inside the silent interval",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_simulate)
