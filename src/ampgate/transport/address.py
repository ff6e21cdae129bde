"""Device addresses as written in the site config and on the command line.

Three forms, one per kind of bus::

    tcp://HOST[:PORT]/UNIT          Modbus TCP (MBAP framing); PORT defaults to 502.
                                    Every unit id behind HOST:PORT shares one connection.
    rtu:///dev/ttyUSB0/UNIT?baud=9600&parity=N&stopbits=1&bytesize=8
                                    Modbus RTU on a local serial port (RS485 adapter). The
                                    device path is everything up to the unit id. Defaults:
                                    9600 baud, parity N, 1 stop bit, 8 data bits.
    rtu+tcp://HOST:PORT/UNIT[?baud=9600]
                                    RTU frames tunnelled through a transparent serial-to-TCP
                                    gateway; PORT is required (gateways use 4001, 502, 8899 …);
                                    ``baud`` (the gateway's line speed) only sets the
                                    inter-request gap.

UNIT is the last path segment when it is an integer (1–247 on RTU, 0–255 on TCP). It is absent
for bus-level operations such as a scan: ``rtu:///dev/ttyUSB0?baud=19200``, ``tcp://10.0.0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict, TypeVar
from urllib.parse import parse_qsl, urlsplit

from ampgate.errors import ConfigError

Scheme = Literal["tcp", "rtu", "rtu+tcp"]
DEFAULT_TCP_PORT = 502
FORMS = (
    "tcp://HOST[:PORT]/UNIT, rtu:///dev/PORT/UNIT?baud=9600&parity=N&stopbits=1 "
    "or rtu+tcp://HOST:PORT/UNIT"
)
_SERIAL_KEYS = {"baud", "parity", "stopbits", "bytesize"}
Parity = Literal["N", "E", "O"]
StopBits = Literal[1, 2]
ByteSize = Literal[7, 8]
_PARITIES: tuple[Parity, ...] = ("N", "E", "O")
_STOPBITS: tuple[StopBits, ...] = (1, 2)
_BYTESIZES: tuple[ByteSize, ...] = (7, 8)
_Option = TypeVar("_Option", bound=int)


class AddressError(ConfigError, ValueError):
    """A device address is malformed; the message names the address and the allowed form."""


@dataclass(frozen=True, slots=True)
class BusAddress:
    """Where a bus is: a serial port with its line settings, or a TCP endpoint."""

    scheme: Scheme
    host: str = ""
    """TCP host (``tcp`` / ``rtu+tcp``); empty for a local serial port."""
    port: int = 0
    device: str = ""
    """Serial device path (``rtu``); empty for TCP."""
    baudrate: int = 9600
    parity: Parity = "N"
    stopbits: StopBits = 1
    bytesize: ByteSize = 8

    @property
    def is_serial(self) -> bool:
        """True for a local serial port."""
        return self.scheme == "rtu"

    @property
    def key(self) -> str:
        """Canonical text naming the bus (no unit id): devices with the same key share a bus."""
        if self.scheme == "rtu":
            return (
                f"rtu://{self.device}?baud={self.baudrate}&parity={self.parity}"
                f"&stopbits={self.stopbits}&bytesize={self.bytesize}"
            )
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme == "rtu+tcp":
            return f"rtu+tcp://{host}:{self.port}?baud={self.baudrate}"
        return f"tcp://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DeviceAddress:
    """A bus plus the unit id on it (``None`` for bus-level operations)."""

    bus: BusAddress
    unit_id: int | None

    def __str__(self) -> str:
        """Canonical text form (parses back to an equal value)."""
        key = self.bus.key
        if self.unit_id is None:
            return key
        base, _, query = key.partition("?")
        return f"{base}/{self.unit_id}" + (f"?{query}" if query else "")


def _fail(text: str, problem: str) -> AddressError:
    return AddressError(f"device address {text!r}: {problem}; allowed forms: {FORMS}")


def _int_param(text: str, key: str, raw: str, allowed: tuple[int, ...] | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _fail(text, f"{key}={raw!r} is not an integer") from None
    if allowed is not None and value not in allowed:
        raise _fail(text, f"{key}={value} is not one of {', '.join(map(str, allowed))}")
    if value <= 0:
        raise _fail(text, f"{key}={value} must be positive")
    return value


def _int_choice(text: str, key: str, raw: str, allowed: tuple[_Option, ...]) -> _Option:
    """The one of ``allowed`` that ``raw`` names (typed as ``allowed``'s items)."""
    value = _int_param(text, key, raw, allowed)
    return next(option for option in allowed if option == value)


class _LineOptions(TypedDict, total=False):
    """The line settings an address's query sets (the keys of :class:`BusAddress`)."""

    baudrate: int
    parity: Parity
    stopbits: StopBits
    bytesize: ByteSize


def _parse_query(text: str, query: str, keys: set[str]) -> _LineOptions:
    out: _LineOptions = {}
    for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in keys:
            raise _fail(text, f"unknown option {key!r} (allowed: {', '.join(sorted(keys))})")
        if key == "baud":
            out["baudrate"] = _int_param(text, key, raw)
        elif key == "stopbits":
            out["stopbits"] = _int_choice(text, key, raw, _STOPBITS)
        elif key == "bytesize":
            out["bytesize"] = _int_choice(text, key, raw, _BYTESIZES)
        elif key == "parity":
            parity = next((p for p in _PARITIES if p == raw.upper()), None)
            if parity is None:
                raise _fail(text, f"parity={raw!r} is not one of N, E, O")
            out["parity"] = parity
    return out


def _unit(text: str, segment: str, lo: int, hi: int) -> int:
    unit = int(segment)
    if not lo <= unit <= hi:
        raise _fail(text, f"unit id {unit} is outside {lo}–{hi}")
    return unit


def parse_address(text: str) -> DeviceAddress:
    """Parse a device or bus address; raise :class:`AddressError` naming what is wrong."""
    if not isinstance(text, str) or "://" not in text:
        raise _fail(str(text), "missing scheme")
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if parts.fragment:
        raise _fail(text, f"unexpected fragment #{parts.fragment}")
    if scheme == "rtu":
        if parts.netloc:
            raise _fail(text, "a serial address has no host: write rtu:///dev/ttyUSB0/1")
        segments = [s for s in parts.path.split("/") if s]
        unit = None
        if segments and segments[-1].isdigit():
            unit = _unit(text, segments.pop(), 1, 247)
        if not segments:
            raise _fail(text, "missing serial device path")
        options = _parse_query(text, parts.query, _SERIAL_KEYS)
        bus = BusAddress(scheme="rtu", device="/" + "/".join(segments), **options)
        return DeviceAddress(bus, unit)
    if scheme in ("tcp", "rtu+tcp"):
        host = parts.hostname or ""
        if not host:
            raise _fail(text, "missing host")
        try:
            port = parts.port
        except ValueError:
            raise _fail(text, f"port in {parts.netloc!r} is not a number 1–65535") from None
        if port is None:
            if scheme == "rtu+tcp":
                raise _fail(text, "rtu+tcp needs an explicit gateway port (HOST:PORT)")
            port = DEFAULT_TCP_PORT
        if port == 0:
            raise _fail(text, "port 0 is not allowed")
        segments = [s for s in parts.path.split("/") if s]
        unit = None
        if len(segments) > 1:
            raise _fail(text, f"path {parts.path!r} has more than one segment")
        if segments:
            if not segments[0].isdigit():
                raise _fail(text, f"unit id {segments[0]!r} is not an integer")
            unit = _unit(text, segments[0], 0, 255) if scheme == "tcp" else None
            if scheme == "rtu+tcp":
                unit = _unit(text, segments[0], 1, 247)
        keys = {"baud"} if scheme == "rtu+tcp" else set()
        options = _parse_query(text, parts.query, keys)
        tcp_scheme: Scheme = "tcp" if scheme == "tcp" else "rtu+tcp"
        bus = BusAddress(scheme=tcp_scheme, host=host, port=port, **options)
        return DeviceAddress(bus, unit)
    raise _fail(text, f"unknown scheme {parts.scheme!r}")
