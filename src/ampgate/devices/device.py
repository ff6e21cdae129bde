"""A Modbus device: a register map (codec) over a unit on a bus (transport).

Reads follow ``codec.plan_reads`` (plans cached per field set); writes go through
``codec.encode_field`` first, so nothing out of range ever reaches the wire, then FC 06 (one word)
or FC 16 (several), then are read back and compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ampgate.codec import (
    Reading,
    ReadRequest,
    RegisterMap,
    decode_request,
    encode_field,
    plan_reads,
)
from ampgate.errors import DeviceError, TransportError
from ampgate.transport.bus import ModbusBus
from ampgate.transport.result import RequestResult


class DeviceRequestError(TransportError):
    """A request to a named device failed; ``result`` holds the transport outcome."""

    def __init__(self, device: str, action: str, result: RequestResult):
        self.device = device
        self.result = result
        super().__init__(f"device {device!r}: {action} failed: {result.describe()}")


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """A successful write of one field (verified when ``read_back`` is set)."""

    field: str
    value: object
    words: tuple[int, ...]
    result: RequestResult
    read_back: Reading | None = None


@dataclass(frozen=True, slots=True)
class IdentityCheckResult:
    """One identification register: what the map expects and what the device holds."""

    field: str
    expected: tuple[int, ...]
    found: int | float | None


@dataclass(frozen=True, slots=True)
class IdentityResult:
    """Whether a device is the model its map describes."""

    device: str
    model: str
    matches: bool
    checks: tuple[IdentityCheckResult, ...]

    def describe(self) -> str:
        """One line naming the device, the model and expected vs found values."""
        if not self.checks:
            return f"device {self.device!r}: map {self.model} has no identification registers"
        parts = [
            f"{c.field} expected {' or '.join(map(str, c.expected))}, found {c.found}"
            for c in self.checks
        ]
        verdict = "is" if self.matches else "is NOT"
        return f"device {self.device!r} {verdict} a {self.model}: " + "; ".join(parts)


class ModbusDevice:
    """One unit on a bus, read and written through its register map."""

    def __init__(
        self, bus: ModbusBus, unit_id: int, register_map: RegisterMap, name: str | None = None
    ) -> None:
        """Talk to ``unit_id`` on ``bus`` using ``register_map``; ``name`` appears in errors."""
        self.bus = bus
        self.unit_id = unit_id
        self.map = register_map
        self.name = name or f"{register_map.id}@{bus.name}/{unit_id}"
        self._plans: dict[tuple[tuple[str, ...] | None, int], list[ReadRequest]] = {}

    def plan(self, names: Iterable[str] | None = None, gap: int = 0) -> list[ReadRequest]:
        """The (cached) read plan for ``names`` (all fields when None)."""
        key = (None if names is None else tuple(names), gap)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = plan_reads(self.map, key[0], gap=gap)
        return plan

    async def read_fields(
        self, names: Iterable[str] | None = None, *, gap: int = 0, priority: bool = False
    ) -> dict[str, Reading]:
        """Read and decode fields (all when None); DeviceRequestError if any request fails."""
        wanted = None if names is None else tuple(names)
        readings: dict[str, Reading] = {}
        for request in self.plan(wanted, gap):
            result = await self.bus.read_registers(
                self.unit_id, request.function, request.address, request.count, priority=priority
            )
            if not result.ok:
                raise DeviceRequestError(self.name, f"reading {', '.join(request.fields)}", result)
            readings.update(decode_request(self.map, request, result.words))
        if wanted is not None:
            return {n: readings[n] for n in wanted if n in readings}
        return readings

    async def write_field(
        self, name: str, value: object, *, verify: bool = True, priority: bool = False
    ) -> WriteOutcome:
        """Encode (EncodeError before anything is sent), write, and read back when ``verify``.

        DeviceRequestError when the write or read-back fails; DeviceError when the device holds
        something other than what was written.
        """
        field = self.map.field(name)
        words = tuple(encode_field(self.map, field, value))
        result = await self.bus.write_registers(
            self.unit_id, field.address, words, priority=priority
        )
        if not result.ok:
            raise DeviceRequestError(self.name, f"writing {name}={value!r}", result)
        if not verify:
            return WriteOutcome(name, value, words, result)
        back = await self.bus.read_registers(
            self.unit_id, self.map.function_of(field), field.address, field.words, priority=priority
        )
        if not back.ok:
            raise DeviceRequestError(self.name, f"reading back {name}", back)
        if back.words != words:
            raise DeviceError(
                f"device {self.name!r}: wrote {name}={value!r} (words {list(words)}) but it "
                f"reads back words {list(back.words)}"
            )
        request = ReadRequest(back.function, field.address, field.words, (name,))
        reading = decode_request(self.map, request, back.words)[name]
        return WriteOutcome(name, value, words, result, reading)

    async def identify(self) -> IdentityResult:
        """Read the map's identification registers and compare them with the expected values."""
        checks = self.map.identification
        if not checks:
            return IdentityResult(self.name, self.map.id, True, ())
        return self.identity_from(await self.read_fields([c.field for c in checks]))

    def identity_from(self, readings: Mapping[str, Reading]) -> IdentityResult:
        """Compare already-read identification registers with the map (no I/O).

        A check whose field is not among ``readings`` is not judged: it counts as matching.
        """
        found = tuple(
            IdentityCheckResult(c.field, tuple(c.equals), readings[c.field].raw)
            for c in self.map.identification
            if c.field in readings
        )
        matches = all(r.found in r.expected for r in found)
        return IdentityResult(self.name, self.map.id, matches, found)


ENERGY_UNITS_TO_KWH = {"kWh": 1.0, "Wh": 0.001}
"""The energy units a map may give a counter, and their factor to kWh (the one conversion)."""


def value(readings: Mapping[str, Reading], name: str) -> object:
    """The decoded value of ``name`` (None when absent or missing)."""
    reading = readings.get(name)
    return None if reading is None or reading.missing else reading.value


def kwh(readings: Mapping[str, Reading], name: str, device: str = "") -> float | None:
    """An energy reading in kWh by its unit (None when absent, missing or not a number).

    DeviceError for a unit other than Wh or kWh (a map error: an energy must never be
    published in the wrong unit).
    """
    amount = number(readings, name)
    if amount is None:
        return None
    unit = readings[name].unit or ""
    factor = ENERGY_UNITS_TO_KWH.get(unit)
    if factor is None:
        where = f"device {device!r}: " if device else ""
        allowed = ", ".join(ENERGY_UNITS_TO_KWH)
        raise DeviceError(f"{where}{name} has unit {unit!r}; allowed energy units: {allowed}")
    return amount * factor


def number(readings: Mapping[str, Reading], name: str) -> float | None:
    """The numeric value of ``name`` (None when absent, missing or not a number)."""
    reading = readings.get(name)
    value = None if reading is None else reading.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def per_phase(
    readings: Mapping[str, Reading], prefix: str
) -> tuple[float | None, float | None, float | None]:
    """:func:`number` of ``PREFIX_l1``, ``PREFIX_l2`` and ``PREFIX_l3``."""
    return (
        number(readings, f"{prefix}_l1"),
        number(readings, f"{prefix}_l2"),
        number(readings, f"{prefix}_l3"),
    )


def label(readings: Mapping[str, Reading], name: str) -> str | None:
    """The decoded enum label of ``name`` (None when absent, missing or not an enum)."""
    reading = readings.get(name)
    value = None if reading is None else reading.value
    return value if isinstance(value, str) else None


def raw_int(readings: Mapping[str, Reading], name: str) -> int | None:
    """The raw register value of ``name`` as an integer (None when absent or missing)."""
    reading = readings.get(name)
    raw = None if reading is None or reading.missing else reading.raw
    return int(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
