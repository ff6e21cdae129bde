"""Opening one device for a commissioning command: address, bus, map, identity, clear errors.

Shared by ``read``, ``write`` and ``scan``. Every failure becomes one AmpgateError line naming the
device, what failed and what to check.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from ampgate.codec import RegisterMap, list_models, load_map
from ampgate.devices import DeviceRequestError, ModbusDevice
from ampgate.errors import AmpgateError, ConfigError, DeviceError, MapError, TransportError
from ampgate.transport import BusAddress, DeviceAddress, ModbusBus, open_bus, parse_address
from ampgate.transport.result import RequestResult, ResultKind

DEFAULT_MODEL = "teltocharge-evc2"

#: What to check for each way a request can fail (installer-facing).
_HINTS: dict[ResultKind, str] = {
    ResultKind.CONNECTION: (
        "check the host and port (or serial device path), that the device is powered and "
        "reachable, and that no other program holds the port"
    ),
    ResultKind.TIMEOUT: (
        "check the unit id, the A/B wiring and termination, the baud rate / parity, and that "
        "the device is powered (on an EVC2: Load Management -> Secondary)"
    ),
    ResultKind.CRC: (
        "check the baud rate and parity, the bus termination, and that no two devices share "
        "the unit id"
    ),
}
_EXCEPTION_HINTS: dict[int, str] = {
    1: "the device does not support this function code: check --model",
    2: "the device does not have these registers: check --model (ampgate maps)",
    3: "the device refused the value",
    4: "the device (or a gateway for an absent unit) reported a failure: check the unit id",
    6: "the device is busy: try again",
    10: "the gateway has no path to this unit: check the unit id",
    11: "the gateway's target did not answer: check the unit id and the line behind the gateway",
}


def hint_for(result: RequestResult) -> str:
    """What an installer should check after a failed request."""
    if result.kind is ResultKind.EXCEPTION and result.exception_code is not None:
        return _EXCEPTION_HINTS.get(result.exception_code, "check --model and the unit id")
    return _HINTS.get(result.kind, "check the device address")


def request_error(device: str, action: str, exc: DeviceRequestError) -> TransportError:
    """One line: the device, what failed (with the transport's outcome) and what to check."""
    result = exc.result
    if result.kind is ResultKind.EXCEPTION:
        what = f"exception {result.exception_code} ({result.exception_name})"
    else:
        what = f"{result.detail or result.kind.value}, {result.attempts} attempt(s)"
    return TransportError(f"{device}: {action} failed: {what}; {hint_for(result)}")


def quiet_library_logs(debug: bool) -> None:
    """Keep pymodbus' per-retry log lines off the installer's terminal unless ``--debug``."""
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if debug else logging.CRITICAL)


def resolve_model(model_id: str | None, option: str = "--model") -> RegisterMap:
    """Load the map for ``--model`` (EVC2 when not given); MapError lists the known ids."""
    chosen = model_id or DEFAULT_MODEL
    if chosen not in list_models():
        raise MapError(
            f"{option} {chosen!r} is not a known model; allowed: {', '.join(list_models())} "
            "(see `ampgate maps`)"
        )
    return load_map(chosen)


def _with_serial_defaults(text: str, bus: BusAddress, rmap: RegisterMap) -> BusAddress:
    """Fill line settings the address leaves out from the map's factory defaults."""
    if bus.scheme == "tcp":
        return bus
    query = text.partition("?")[2]
    serial = rmap.spec.serial
    if "baud=" not in query:
        bus = dataclasses.replace(bus, baudrate=serial.baudrate)
    if bus.scheme != "rtu":
        return bus
    if "parity=" not in query:
        bus = dataclasses.replace(bus, parity=serial.parity)
    if "stopbits=" not in query:
        bus = dataclasses.replace(bus, stopbits=serial.stopbits)
    if "bytesize=" not in query:
        bus = dataclasses.replace(bus, bytesize=serial.bytesize)
    return bus


def device_address(text: str, rmap: RegisterMap | None = None) -> DeviceAddress:
    """Parse a device address that must name a unit; line settings default to the map's."""
    address = parse_address(text)
    if address.unit_id is None:
        raise ConfigError(
            f"device address {text!r} has no unit id; add it as the last path segment, "
            "e.g. tcp://192.168.1.20:502/1 or rtu:///dev/ttyUSB0/1?baud=9600"
        )
    if rmap is not None:
        address = DeviceAddress(_with_serial_defaults(text, address.bus, rmap), address.unit_id)
    return address


def bus_address(text: str) -> BusAddress:
    """Parse a bus address for a scan (a unit id in it is refused: the scan chooses them)."""
    address = parse_address(text)
    if address.unit_id is not None:
        raise ConfigError(
            f"bus address {text!r} names unit {address.unit_id}; a scan walks the units "
            "itself: drop the unit id and use --units (e.g. --units 1-10,100)"
        )
    return address.bus


def open_commission_bus(bus: BusAddress, timeout: float, retries: int = 1) -> ModbusBus:
    """A bus with commissioning settings: short timeouts, few retries, fast reconnects."""
    if not timeout > 0:
        raise ConfigError(f"--timeout {timeout} is not allowed; allowed: a number of seconds > 0")
    return open_bus(
        bus, timeout=timeout, retries=retries, reconnect_delay=0.0, reconnect_delay_max=0.0
    )


async def check_identity(device: ModbusDevice, label: str, explicit_model: bool) -> None:
    """Refuse to go on when the device is not the model its map describes.

    With the default model (no ``--model``) the message says how to choose one.
    """
    rmap = device.map
    if not rmap.identification:
        return
    choose = (
        f"choose the model with --model (one of {', '.join(list_models())}) "
        "or find it with `ampgate scan`"
    )
    try:
        identity = await device.identify()
    except DeviceRequestError as exc:
        if exc.result.kind is ResultKind.EXCEPTION and not explicit_model:
            raise DeviceError(
                f"{label}: does not answer the {rmap.id} identification register "
                f"({exc.result.exception_code} {exc.result.exception_name}), so it is not a "
                f"{rmap.id} (the default model); {choose}"
            ) from None
        raise request_error(label, f"reading the {rmap.id} identification", exc) from None
    if not identity.matches:
        found = "; ".join(
            f"{c.field} is {c.found}, expected {' or '.join(map(str, c.expected))}"
            for c in identity.checks
        )
        advice = choose if not explicit_model else "check --model, or pass --no-identify"
        raise DeviceError(f"{label}: is not a {rmap.id} ({found}); {advice}")


def parse_units(text: str) -> list[int]:
    """``1-10,100`` → [1..10, 100]; unit ids 1–247 (RTU) or 0–255 over TCP are checked later."""
    units: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ConfigError(
                f"--units {text!r}: {part!r} is not a unit id or range; allowed: e.g. 1-247 or "
                "1-10,100"
            ) from None
        if first > last or not (first >= 0 and last <= 255):
            raise ConfigError(
                f"--units {text!r}: {part!r} is not a range within 0-255; allowed: e.g. 1-247"
            )
        units.extend(u for u in range(first, last + 1) if u not in units)
    if not units:
        raise ConfigError(f"--units {text!r} names no unit id; allowed: e.g. 1-247")
    return units


def parse_bauds(text: str) -> list[int]:
    """``9600,19200`` → [9600, 19200]."""
    try:
        bauds = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(
            f"--baud {text!r} is not a list of baud rates; allowed: e.g. 9600,19200"
        ) from None
    if not bauds or any(b <= 0 for b in bauds):
        raise ConfigError(f"--baud {text!r}: allowed: positive baud rates, e.g. 9600,19200")
    return bauds


def parse_value(text: str) -> int | float | str:
    """A command-line value: an integer, a decimal number, or (for enum fields) a label."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def first_line(exc: AmpgateError) -> str:
    """The first line of an error message (messages are one line by design)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def field_names(rmap: RegisterMap, names: Sequence[str]) -> list[str]:
    """Check field names against the map before anything touches the wire."""
    return [rmap.field(n).name for n in names]
