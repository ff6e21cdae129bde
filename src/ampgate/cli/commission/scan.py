"""``ampgate scan``: walk unit ids on a bus and recognise chargers and meters.

For every unit id (and, on a serial line, every baud rate asked for) the scan tries, in order:

1. each shipped map that has identification registers (the EVC2 first: reg 9 == 21571; the
   Eastron SDM120 / SDM72D-M meter codes) — a match is reported as **identified**;
2. each map without identification, by a cheap read of its voltages and frequency — values that
   look like a live AC supply (voltages 80–300 V, frequency 45–65 Hz) are reported as
   **probable**, because another device could hold plausible numbers at the same registers;
3. a device that answers but matches nothing is reported as **unknown**.

A unit that does not answer the first probe at all (timeout) is taken as absent, so an empty
RS485 unit id costs one timeout. Limitation: a device that stays silent for registers it does not
have (instead of answering an exception) is missed when it is not an EVC2. A gateway answering
"server device failure" (4) or "gateway path unavailable / target failed" (10, 11) for every
probe is an absent unit.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from ampgate.cli.commission.device_io import (
    bus_address,
    open_commission_bus,
    parse_bauds,
    parse_units,
    quiet_library_logs,
)
from ampgate.cli.commission.format import render_table, value_text
from ampgate.codec import RegisterMap, list_models, load_map
from ampgate.devices import DeviceRequestError, ModbusDevice
from ampgate.errors import ConfigError
from ampgate.transport import BusAddress, ModbusBus
from ampgate.transport.result import ResultKind

Certainty = Literal["identified", "probable", "unknown"]
ABSENT_EXCEPTIONS = frozenset({4, 10, 11})
"""Exception codes a gateway (or pymodbus' server) answers for a unit id nobody has."""
PLAUSIBLE_VOLTS = (80.0, 300.0)
PLAUSIBLE_HERTZ = (45.0, 65.0)
DETAIL_FIELDS = ("serial_number", "firmware_version", "product_code", "amp_limit")


@dataclass(frozen=True, slots=True)
class Found:
    """One device a scan found."""

    bus: BusAddress
    unit_id: int
    model: str | None
    kind: str | None
    certainty: Certainty
    evidence: str
    """Why: ``evse_id == 21571``, ``voltage_l1 230 V, frequency 50 Hz``, ``exception 2``."""
    details: tuple[tuple[str, str], ...] = ()
    """Extra facts for the installer (serial number, firmware)."""


@dataclass(frozen=True, slots=True)
class _Probe:
    rmap: RegisterMap
    fields: tuple[str, ...]
    identified: bool


def probes(models: Sequence[str] | None = None) -> list[_Probe]:
    """The probes in the order they are tried: identified maps (chargers first), then others."""
    maps = [load_map(m) for m in (models or list_models())]
    with_id = [m for m in maps if m.identification]
    without = [m for m in maps if not m.identification]
    with_id.sort(key=lambda m: (m.model.kind != "charger", m.id))
    # three-phase candidates before single-phase ones: a 1-phase map matches a 3-phase meter too
    without.sort(key=lambda m: (m.model.kind != "charger", -m.model.phases, m.id))
    out = [_Probe(m, tuple(c.field for c in m.identification), True) for m in with_id]
    for m in without:
        names = [f"voltage_l{i}" for i in (1, 2, 3) if m.has_field(f"voltage_l{i}")]
        if m.has_field("frequency"):
            names.append("frequency")
        if names:
            out.append(_Probe(m, tuple(names), False))
    return out


def _unknown(address: BusAddress, unit: int, evidence: str) -> Found:
    """A unit that answers but is not recognised, and why."""
    return Found(address, unit, None, None, "unknown", evidence)


def _plausible(readings: dict[str, Any]) -> str | None:
    """Evidence text when readings look like a live AC supply, else None."""
    parts = []
    for name, reading in readings.items():
        value = reading.value
        if reading.missing or not isinstance(value, int | float):
            return None
        lo, hi = PLAUSIBLE_HERTZ if name == "frequency" else PLAUSIBLE_VOLTS
        if not lo <= value <= hi:
            return None
        parts.append(f"{name} {value_text(reading)}")
    return ", ".join(parts) if parts else None


async def _details(device: ModbusDevice) -> tuple[tuple[str, str], ...]:
    names = [n for n in DETAIL_FIELDS if device.map.has_field(n)]
    if not names:
        return ()
    try:
        readings = await device.read_fields(names, gap=8)
    except DeviceRequestError:
        return ()
    return tuple((n, value_text(r)) for n, r in readings.items())


async def probe_unit(
    bus: ModbusBus, address: BusAddress, unit: int, plan: list[_Probe]
) -> Found | None:
    """Recognise the device at ``unit`` (None when nothing answers)."""
    answered: list[str] = []
    for index, probe in enumerate(plan):
        device = ModbusDevice(bus, unit, probe.rmap, name=f"{address.key} unit {unit}")
        try:
            if probe.identified:
                identity = await device.identify()
                if identity.matches:
                    evidence = ", ".join(f"{c.field} == {c.found}" for c in identity.checks)
                    details = await _details(device)
                    return Found(
                        address,
                        unit,
                        probe.rmap.id,
                        probe.rmap.model.kind,
                        "identified",
                        evidence,
                        details,
                    )
                answered.append(
                    f"{probe.rmap.id}: "
                    + ", ".join(f"{c.field} {c.found}" for c in identity.checks)
                )
                continue
            readings = await device.read_fields(probe.fields, gap=64)
        except DeviceRequestError as exc:
            result = exc.result
            if result.kind is ResultKind.EXCEPTION:
                if result.exception_code not in ABSENT_EXCEPTIONS:
                    answered.append(f"{probe.rmap.id}: exception {result.exception_code}")
                continue
            if index == 0 and result.kind in (ResultKind.TIMEOUT, ResultKind.CONNECTION):
                return None  # nobody at this unit id (one timeout per empty unit)
            if index == 0 and result.kind is ResultKind.CRC:
                return _unknown(
                    address,
                    unit,
                    "garbled answer (bad CRC): a device at another baud rate or parity?",
                )
            continue
        plausible = _plausible(readings)
        if plausible is not None:
            return Found(
                address,
                unit,
                probe.rmap.id,
                probe.rmap.model.kind,
                "probable",
                plausible,
                await _details(device),
            )
        answered.append(f"{probe.rmap.id}: implausible values")
    if answered:
        return _unknown(
            address, unit, "answers but matches no map (" + "; ".join(answered[:3]) + ")"
        )
    return None


class Progress:
    """A one-line counter on a terminal; one line per pass otherwise (no spam in logs)."""

    def __init__(self, stream: TextIO) -> None:
        """Write to ``stream`` (stderr); counters only when it is a TTY."""
        self.stream = stream
        self.tty = stream.isatty()

    def start(self, what: str, total: int) -> None:
        """A scan pass begins."""
        if not self.tty:
            print(f"scanning {what}: {total} unit id(s)", file=self.stream, flush=True)

    def update(self, what: str, done: int, total: int, found: int) -> None:
        """Units done so far in this pass."""
        if self.tty:
            self.stream.write(f"\rscanning {what}: unit {done}/{total}, found {found}\x1b[K")
            self.stream.flush()

    def finish(self) -> None:
        """End the counter line."""
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


async def scan_bus(
    address: BusAddress,
    units: Sequence[int],
    bauds: Sequence[int] | None,
    timeout: float,
    progress: Progress,
    models: Sequence[str] | None = None,
) -> list[Found]:
    """Scan every unit of ``units`` on the bus (per baud rate on a serial line)."""
    plan = probes(models)
    passes = [address]
    if bauds and address.scheme != "tcp":
        passes = [dataclasses.replace(address, baudrate=b) for b in bauds]
    found: list[Found] = []
    for bus_addr in passes:
        what = bus_addr.key
        progress.start(what, len(units))
        async with open_commission_bus(bus_addr, timeout, retries=0) as bus:
            for done, unit in enumerate(units, 1):
                hit = await probe_unit(bus, bus_addr, unit, plan)
                if hit is not None:
                    found.append(hit)
                progress.update(what, done, len(units), len(found))
        progress.finish()
    return found


# ------------------------------------------------------------------------------ output


def found_rows(found: Sequence[Found]) -> list[list[str]]:
    """One row per device: bus, unit, model, certainty, evidence, details."""
    return [
        [
            f.bus.key,
            str(f.unit_id),
            f.model or "?",
            f.certainty,
            f.evidence,
            ", ".join(f"{k} {v}" for k, v in f.details),
        ]
        for f in found
    ]


FOUND_HEADERS = ("bus", "unit", "model", "match", "evidence", "details")


def _bus_toml(name: str, bus: BusAddress) -> list[str]:
    lines = [f"[buses.{name}]"]
    if bus.scheme == "rtu":
        lines += [
            'kind = "serial"',
            f"port = {json.dumps(bus.device)}",
            f"baudrate = {bus.baudrate}",
            f'parity = "{bus.parity}"',
            f"stopbits = {bus.stopbits}",
        ]
    else:
        lines += ['kind = "tcp"', f"host = {json.dumps(bus.host)}", f"port = {bus.port}"]
        if bus.scheme == "rtu+tcp":
            lines.append('framing = "rtu"         # raw RTU frames through a serial-to-TCP gateway')
    return lines


def config_snippet(found: Sequence[Found], command: str) -> str:
    """A site-file starting point in the daemon's format (``ampgate check-config``).

    The main fuse limit is left for the installer: the snippet does not pass check-config until
    ``[groups.main] limit`` is set, on purpose (a guessed fuse rating is dangerous).
    """
    usable = [f for f in found if f.model is not None]
    buses: dict[str, str] = {}  # bus key -> name in the snippet: rs485, rs485_2, lan, lan_2
    for f in usable:
        if f.bus.key not in buses:
            base = "rs485" if f.bus.scheme == "rtu" else "lan"
            taken = sum(1 for n in buses.values() if n.split("_")[0] == base)
            buses[f.bus.key] = base if taken == 0 else f"{base}_{taken + 1}"
    lines = [
        f"# Suggested by `{command}`. Check every value, then: ampgate check-config FILE",
    ]
    if len({f.bus.baudrate for f in usable if f.bus.scheme == "rtu"}) > 1:
        lines.append("# Devices answered at different baud rates: put them all on one rate.")
    by_key = {f.bus.key: f.bus for f in usable}
    for key, name in buses.items():
        lines += ["", *_bus_toml(name, by_key[key])]
    lines += [
        "",
        "[groups.main]",
        "# limit = [L1, L2, L3]     # REQUIRED: the main fuse rating per phase, in amperes",
    ]
    names: set[str] = set()
    for f in usable:
        table = "meters" if f.kind == "meter" else "chargers"
        name = f"{'meter' if f.kind == 'meter' else 'charger'}{f.unit_id}"
        if name in names:  # the same unit id on another bus or baud rate
            name = f"{name}_{buses[f.bus.key]}"
        names.add(name)
        lines += ["", f"[{table}.{name}]"]
        if f.certainty == "probable":
            lines.append(
                f"# probable model (no identification registers): confirm it, see "
                f"`ampgate maps {f.model}`"
            )
        lines += [
            f'model = "{f.model}"',
            f'bus = "{buses[f.bus.key]}"',
            f"unit_id = {f.unit_id}",
            'group = "main"',
        ]
        if f.kind == "meter":
            lines.append('location = "including"   # or "excluding": does it see the chargers?')
    return "\n".join(lines) + "\n"


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan a bus, print what was found and a suggested config snippet."""
    quiet_library_logs(getattr(args, "debug", False))
    address = bus_address(args.bus)
    units = parse_units(args.units)
    limit = 247
    if min(units) < 1 or max(units) > limit:
        raise ConfigError(
            f"--units {args.units!r}: allowed unit ids are 1-{limit} on {address.key}"
        )
    bauds = parse_bauds(args.baud) if args.baud else None
    if bauds and address.scheme == "tcp":
        raise ConfigError(f"--baud does not apply to the Modbus TCP address {args.bus!r}")
    found = asyncio.run(scan_bus(address, units, bauds, args.timeout, Progress(sys.stderr)))
    command = f"ampgate scan {args.bus} --units {args.units}"
    if bauds:
        command += f" --baud {args.baud}"
    if args.json:
        data = [
            {
                "bus": f.bus.key,
                "unit_id": f.unit_id,
                "model": f.model,
                "kind": f.kind,
                "match": f.certainty,
                "evidence": f.evidence,
                "details": dict(f.details),
            }
            for f in found
        ]
        json.dump({"found": data, "snippet": config_snippet(found, command)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if found else 1
    if not found:
        print(
            f"nothing found on {address.key} (units {args.units}); check the wiring, the "
            "baud rate / parity and the unit id range"
        )
        return 1
    print(render_table(FOUND_HEADERS, found_rows(found)))
    print()
    print(config_snippet(found, command), end="")
    return 0


def register(subparsers: Any) -> None:
    """Add ``scan`` to the command line."""
    p = subparsers.add_parser(
        "scan",
        help="find chargers and meters on a bus",
        description="Walk unit ids on a serial line (per baud rate) or a TCP host, recognise "
        "EVC2 chargers and meters, and suggest a config snippet.",
    )
    p.add_argument(
        "bus",
        help="bus address without a unit id: rtu:///dev/ttyUSB0?parity=N&stopbits=1, "
        "tcp://HOST[:PORT] or rtu+tcp://HOST:PORT",
    )
    p.add_argument("--units", default="1-247", help="unit ids, e.g. 1-247 or 1-10,100")
    p.add_argument(
        "--baud", default=None, help="serial baud rates to try, e.g. 9600,19200 (serial only)"
    )
    p.add_argument(
        "--timeout", type=float, default=0.2, help="seconds to wait per unit (default 0.2)"
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_scan)
