"""A device-side register image built from a register map: what a real device would serve.

Every value is placed exactly as the map says (address, function code, type, word order, scale,
"no value" sentinel); nothing about a layout is written here. The codec's `encode_field` is the
*client's* encoder and refuses read-only fields by design, so the device side packs words itself
from the same map data; the tests decode every served word with `ampgate.codec.decode_field`.

Reads are checked the way a Modbus device checks them (Modbus application protocol 6.3/6.4):
function code first (exception 1), then quantity (exception 3 above the map's
``max_registers_per_request``), then addresses (exception 2 for a hole or outside the map).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from decimal import Decimal

from ampgate.codec import RegisterMap
from ampgate.codec.schema import TYPE_WORDS, FieldSpec, type_raw_range
from ampgate.errors import MapError
from ampgate.sim.device import ModbusExceptionCode, ReadAnswer

_STRUCT = {
    "u16": ">H",
    "i16": ">h",
    "u32": ">I",
    "i32": ">i",
    "u64": ">Q",
    "i64": ">q",
    "f32": ">f",
    "f64": ">d",
}
#: Functions a simulated device implements: read holding/input, write single/multiple holding.
READ_FUNCTIONS = (3, 4)


def raw_from_value(field: FieldSpec, value: float) -> int | float:
    """Engineering value → raw register value (÷ scale), clamped to what the type can hold.

    Decimal division keeps exact decimal scales exact (16.0 A / 0.1 → 160, not 159.99…).
    A value the type cannot hold is clamped, not wrapped: a simulator never serves garbage.
    """
    if field.type.startswith("f"):
        raw_f = value / field.scale
        lo, hi = type_raw_range(field.type)
        return min(max(raw_f, lo), hi)
    if not math.isfinite(value):
        raise ValueError(f"field {field.name!r}: value {value} is not a finite number")
    raw = int((Decimal(repr(float(value))) / Decimal(repr(field.scale))).to_integral_value())
    lo, hi = type_raw_range(field.type)
    return int(min(max(raw, lo), hi))


def words_from_raw(field: FieldSpec, raw: int | float) -> list[int]:
    """Raw value → register words in the field's word order (ABCD high word first, CDAB low)."""
    data = struct.pack(_STRUCT[field.type], raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words[::-1] if field.word_order == "CDAB" else words


def raw_from_words(field: FieldSpec, words: Sequence[int]) -> int | float:
    """Register words (in the field's word order) → raw value."""
    ordered = list(words)[::-1] if field.word_order == "CDAB" else list(words)
    data = b"".join(int(w).to_bytes(2, "big") for w in ordered)
    return struct.unpack(_STRUCT[field.type], data)[0]


def value_from_raw(field: FieldSpec, raw: int | float) -> float:
    """Raw value → engineering value (× scale, exact for decimal scales)."""
    if isinstance(raw, float):
        return raw * field.scale
    return float(Decimal(raw) * Decimal(repr(field.scale)))


def energy_in_unit(field: FieldSpec, wh: float) -> float:
    """Energy in Wh expressed in the unit the field declares (``Wh`` or ``kWh``)."""
    if field.unit == "Wh":
        return wh
    if field.unit == "kWh":
        return wh / 1000.0
    raise MapError(
        f"energy unit {field.unit!r} is not supported by the simulator (allowed: Wh, kWh)",
        field=field.name,
    )


class RegisterImage:
    """The registers of one device, per function code, addressed as on the wire."""

    def __init__(self, rmap: RegisterMap) -> None:
        """Build the image of ``rmap``: every field at its default, identity value or 0."""
        self.map = rmap
        self._words: dict[int, dict[int, int]] = {3: {}, 4: {}}
        self._owner: dict[int, dict[int, FieldSpec]] = {3: {}, 4: {}}
        for field in rmap.fields:
            function = rmap.function_of(field)
            for offset in range(TYPE_WORDS[field.type]):
                self._owner[function][field.address + offset] = field
        self._span = {fn: (min(owned), max(owned)) for fn, owned in self._owner.items() if owned}
        identity = {check.field: check.equals[0] for check in rmap.identification}
        for field in rmap.fields:
            if field.name in identity:
                self.set_raw(field.name, identity[field.name])
            elif field.default is not None:
                self.set(field.name, field.default)
            else:
                self.set_raw(field.name, 0)

    def field_at(self, function: int, address: int) -> FieldSpec | None:
        """The field owning register ``address`` of ``function``, or None."""
        return self._owner.get(function, {}).get(address)

    def set(self, name: str, value: float | None) -> None:
        """Serve ``value`` (engineering units) in field ``name``; None serves its sentinel."""
        field = self.map.field(name)
        if value is None:
            if not field.missing:
                raise MapError(
                    f"{self.map.id}: field has no 'missing' sentinel to serve for no value",
                    field=name,
                )
            self.set_raw(name, field.missing[0])
            return
        self.set_raw(name, raw_from_value(field, value))

    def set_raw(self, name: str, raw: int | float) -> None:
        """Serve the raw value ``raw`` in field ``name``."""
        field = self.map.field(name)
        function = self.map.function_of(field)
        for offset, word in enumerate(words_from_raw(field, raw)):
            self._words[function][field.address + offset] = word

    def words_of(self, name: str) -> list[int]:
        """The words field ``name`` currently serves."""
        field = self.map.field(name)
        store = self._words[self.map.function_of(field)]
        return [store[field.address + i] for i in range(TYPE_WORDS[field.type])]

    def raw(self, name: str) -> int | float:
        """The raw value field ``name`` currently serves."""
        return raw_from_words(self.map.field(name), self.words_of(name))

    def value(self, name: str) -> float:
        """The engineering value field ``name`` currently serves."""
        field = self.map.field(name)
        return value_from_raw(field, raw_from_words(field, self.words_of(name)))

    def check_read(self, function: int, address: int, count: int) -> ModbusExceptionCode | None:
        """The exception a device answers to this read, or None when it is valid.

        A function the map has no field for is "illegal function" (1); registers between the
        map's first and last field that no field names are served as 0 (they exist on the
        device, the map just does not use them), except in a hole (2); registers outside that
        span do not exist (2).
        """
        if function not in READ_FUNCTIONS or function not in self._span:
            return ModbusExceptionCode.ILLEGAL_FUNCTION
        if not 1 <= count <= self.map.max_registers_per_request:
            return ModbusExceptionCode.ILLEGAL_DATA_VALUE
        lo, hi = self._span[function]
        if address < lo or address + count - 1 > hi:
            return ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
        if any(hole.overlaps(function, address, count) for hole in self.map.holes):
            return ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
        return None

    def read(self, function: int, address: int, count: int) -> ReadAnswer:
        """The words a device answers to this read, or its exception code."""
        problem = self.check_read(function, address, count)
        if problem is not None:
            return problem
        store = self._words[function]
        return [store.get(address + i, 0) for i in range(count)]

    def fields_in(self, function: int, address: int, count: int) -> Iterable[FieldSpec]:
        """Distinct fields touched by registers ``address .. address+count-1``, in order."""
        seen: list[FieldSpec] = []
        for a in range(address, address + count):
            field = self.field_at(function, a)
            if field is not None and field not in seen:
                seen.append(field)
        return seen

    def store_words(self, function: int, address: int, words: Sequence[int]) -> None:
        """Overwrite registers from ``address`` with ``words`` (no checks; see `check_write`)."""
        for offset, word in enumerate(words):
            self._words[function][address + offset] = word

    def check_write(
        self, address: int, words: Sequence[int]
    ) -> ModbusExceptionCode | dict[str, float]:
        """Validate a holding-register write; the new engineering value per field, or the exception.

        Read-only and non-existent registers answer "illegal data address" (2): that is what
        Modbus devices return for a register the client may not write, and what the EVC2 map
        implies by marking them read-only. A value outside the field's ``allowed`` set (or not
        a whole number where the map says ``integer``) answers "illegal data value" (3). Either
        way nothing is written: a write is all or nothing.
        """
        if not words or any(not 0 <= w <= 0xFFFF for w in words):
            return ModbusExceptionCode.ILLEGAL_DATA_VALUE
        count = len(words)
        for a in range(address, address + count):
            field = self.field_at(3, a)
            if field is None or not field.writable:
                return ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
        changes: dict[str, float] = {}
        for field in self.fields_in(3, address, count):
            first = field.address - address
            last = first + TYPE_WORDS[field.type]
            if first < 0 or last > count:
                # Half of a multi-word value would leave a torn number behind.
                return ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
            value = value_from_raw(field, raw_from_words(field, words[first:last]))
            if not any(interval.contains(value) for interval in field.allowed):
                return ModbusExceptionCode.ILLEGAL_DATA_VALUE
            if field.integer and not float(value).is_integer():
                return ModbusExceptionCode.ILLEGAL_DATA_VALUE
            changes[field.name] = value
        return changes
