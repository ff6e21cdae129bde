"""The installer's commissioning commands: ``maps``, ``read``, ``write``, ``scan``, ``simulate``.

``register(subparsers)`` adds them to the ``ampgate`` command line (see :mod:`ampgate.cli`).
Each command returns an exit code; failures raise :class:`~ampgate.errors.AmpgateError` with a
one-line message that ``cli.main`` prints.

* ``maps [MODEL] [--json]``: the shipped register maps, or one map as a table.
* ``read DEVICE [FIELD…] [--model M] [--json]``: read fields through the block planner.
* ``write DEVICE FIELD VALUE [--model M]``: encode (range-checked before anything is sent),
  write, read back, print old → new.
* ``scan BUS [--units 1-247] [--baud 9600,19200] [--timeout S]``: find chargers and meters.
* ``simulate [--chargers N] [--meter MODEL] [--tcp-port P | --serial PATH]``: serve simulators.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from ampgate.cli.commission.device_io import (
    DEFAULT_MODEL,
    check_identity,
    device_address,
    field_names,
    open_commission_bus,
    parse_value,
    quiet_library_logs,
    request_error,
    resolve_model,
)
from ampgate.cli.commission.format import (
    MAP_HEADERS,
    MODELS_HEADERS,
    READINGS_HEADERS,
    json_value,
    map_json,
    map_text,
    models_json,
    models_rows,
    readings_json,
    readings_rows,
    render_table,
    value_text,
)
from ampgate.codec import Reading, RegisterMap, list_models, load_map
from ampgate.codec.encode import encode_field
from ampgate.devices import DeviceRequestError, ModbusDevice

__all__ = ["MAP_HEADERS", "register"]

ADDRESS_HELP = (
    "device address: tcp://HOST[:PORT]/UNIT, rtu:///dev/ttyUSB0/UNIT?baud=9600&parity=N"
    "&stopbits=1 or rtu+tcp://HOST:PORT/UNIT (serial settings left out default to the model's)"
)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


# ------------------------------------------------------------------------------ maps


def cmd_maps(args: argparse.Namespace) -> int:
    """List the shipped models, or print one model's register map."""
    if args.model is None:
        maps = [load_map(m) for m in list_models()]
        if args.json:
            _print_json(models_json(maps))
        else:
            print(render_table(MODELS_HEADERS, models_rows(maps)))
        return 0
    rmap = resolve_model(args.model, option="model")
    if args.json:
        _print_json(map_json(rmap))
    else:
        print(map_text(rmap))
    return 0


# ------------------------------------------------------------------------------ read


@contextlib.asynccontextmanager
async def _one_device(
    args: argparse.Namespace, rmap: RegisterMap
) -> AsyncIterator[tuple[ModbusDevice, str]]:
    """The device ``args`` names (map ``rmap``), on its own bus, identified unless
    ``--no-identify``, and its address."""
    address = device_address(args.device, rmap)
    label = f"{rmap.id} at {address}"
    async with open_commission_bus(address.bus, args.timeout) as bus:
        device = ModbusDevice(bus, address.unit_id or 0, rmap, name=label)
        if not args.no_identify:
            await check_identity(device, label, explicit_model=args.model is not None)
        yield device, str(address)


async def _read(args: argparse.Namespace) -> tuple[RegisterMap, str, dict[str, Reading]]:
    rmap = resolve_model(args.model)
    names = field_names(rmap, args.fields) if args.fields else None  # refused before any I/O
    async with _one_device(args, rmap) as (device, address):
        try:
            readings = await device.read_fields(names)
        except DeviceRequestError as exc:
            raise request_error(device.name, "reading", exc) from None
    return rmap, address, readings


def cmd_read(args: argparse.Namespace) -> int:
    """Read fields of one device and print them as a table (or JSON)."""
    quiet_library_logs(getattr(args, "debug", False))
    rmap, address, readings = asyncio.run(_read(args))
    if args.json:
        _print_json({"device": address, "model": rmap.id, "fields": readings_json(readings)})
        return 0
    print(f"{rmap.id} at {address}")
    print(render_table(READINGS_HEADERS, readings_rows(rmap, readings)))
    return 0


# ------------------------------------------------------------------------------ write


async def _write(args: argparse.Namespace, value: object) -> tuple[str, Reading, Reading]:
    async with _one_device(args, resolve_model(args.model)) as (device, address):
        try:
            old = (await device.read_fields([args.field]))[args.field]
            outcome = await device.write_field(args.field, value, verify=True)
        except DeviceRequestError as exc:
            raise request_error(device.name, f"writing {args.field}", exc) from None
    assert outcome.read_back is not None  # verify=True always reads back
    return address, old, outcome.read_back


def cmd_write(args: argparse.Namespace) -> int:
    """Write one field: refuse out-of-range values before any I/O, then write and read back."""
    quiet_library_logs(getattr(args, "debug", False))
    rmap = resolve_model(args.model)
    value = parse_value(args.value)
    encode_field(rmap, args.field, value)  # EncodeError (allowed range) before the wire
    address, old, new = asyncio.run(_write(args, value))
    if args.json:
        _print_json(
            {
                "device": address,
                "model": rmap.id,
                "field": args.field,
                "old": json_value(old),
                "new": json_value(new),
            }
        )
    else:
        change = f"{value_text(old)} → {value_text(new)}"
        print(f"{rmap.id} at {address}: {args.field} {change} (read back)")
    return 0


# ------------------------------------------------------------------------------ registration


class _IntermixedParser(argparse.ArgumentParser):
    """Lets options and positionals mix (``read ADDR --model M field1 field2``).

    Plain argparse takes the device and the (empty) field list in one go and then refuses field
    names given after an option; intermixed parsing collects every positional first.
    """

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        """Parse with `parse_known_intermixed_args` (which calls back here for each pass)."""
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def _add_common_device_options(parser: argparse.ArgumentParser) -> None:
    parser.__class__ = _IntermixedParser
    parser.add_argument("device", help=ADDRESS_HELP)
    parser.add_argument(
        "--model",
        default=None,
        help=f"register map id (default {DEFAULT_MODEL}, checked by its identification "
        "registers); see `ampgate maps`",
    )
    parser.add_argument(
        "--timeout", type=float, default=1.0, help="seconds to wait for each answer (default 1)"
    )
    parser.add_argument(
        "--no-identify",
        action="store_true",
        help="skip the identification check of the model's map",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def register(subparsers: Any) -> None:
    """Add ``maps``, ``read``, ``write``, ``scan`` and ``simulate`` to the command line."""
    from ampgate.cli.commission import scan as commission_scan
    from ampgate.cli.commission import simulate as commission_sim

    p = subparsers.add_parser(
        "maps",
        help="list the register maps, or print one",
        description="List the shipped device models, or print one model's register map.",
    )
    p.add_argument("model", nargs="?", help="model id, e.g. teltocharge-evc2")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_maps)

    p = subparsers.add_parser(
        "read",
        help="read fields of one device",
        description="Read (all or some) fields of one device and print decoded values.",
    )
    _add_common_device_options(p)
    p.add_argument("fields", nargs="*", help="field names (default: every field of the map)")
    p.set_defaults(func=cmd_read)

    p = subparsers.add_parser(
        "write",
        help="write one field of one device and read it back",
        description="Write one field (range-checked before anything is sent), read it back "
        "and print old -> new.",
    )
    _add_common_device_options(p)
    p.add_argument("field", help="writable field, e.g. amps_to_use")
    p.add_argument("value", help="value in engineering units (or an enum label)")
    p.set_defaults(func=cmd_write)

    commission_scan.register(subparsers)
    commission_sim.register(subparsers)
