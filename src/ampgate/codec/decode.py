"""Words → values: `decode_field` and `decode_request`, with per-request compiled decoders.

The first decode of a `ReadRequest` compiles it: one `struct.Struct` that unpacks every field of
the request in one call (pad bytes skip unused registers), plus one small reading-maker per field
(sentinel check, scale, enum or bit labels). The compiled decoder is cached on the `RegisterMap`,
so the daemon's hot path is: pack the words once, unpack once, build the readings.

Word order: ABCD is high word first; CDAB is low word first, and for 64-bit values the whole word
sequence is reversed (first register = least significant word, as the EVC2 map's regs 41–44).
Packing the 16-bit words little-endian makes a CDAB value one little-endian number, so both orders
are a single native `struct` unpack.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import call

from ampgate.codec.model import Reading, ReadRequest, RegisterMap, new_reading
from ampgate.codec.schema import TYPE_WORDS, FieldSpec
from ampgate.errors import DecodeError, MapError

STRUCT_CODE: dict[str, str] = {
    "u16": "H",
    "i16": "h",
    "u32": "I",
    "i32": "i",
    "u64": "Q",
    "i64": "q",
    "f32": "f",
    "f64": "d",
}
"""`struct` format character of each register type."""

_CACHE_LIMIT = 4096
_NO_BITS: frozenset[str] = frozenset()

ReadingMaker = Callable[[int | float], Reading]


def scale_divisor(scale: float) -> int | None:
    """The integer ``d`` with ``scale == 1/d`` (0.1 → 10, 0.01 → 100), or None.

    Dividing by ``d`` gives the exact decimal result (160 / 10 == 16.0), where multiplying by the
    binary approximation of 0.1 would not.
    """
    if scale == 0 or not math.isfinite(scale) or abs(scale) >= 1:
        return None
    inverse = 1 / scale
    if not math.isfinite(inverse):  # a subnormal scale: 1/scale overflows to infinity
        return None
    d = round(inverse)
    return d if d != 0 and 1 / d == scale else None


def apply_scale(raw: int | float, scale: float) -> int | float:
    """Engineering value of a raw number: exact for decimal scales, int kept for scale 1."""
    if scale == 1:
        return raw
    d = scale_divisor(scale)
    if d is not None:
        return raw / d
    if float(scale).is_integer() and isinstance(raw, int):
        return raw * int(scale)
    return raw * scale


def make_reading_maker(rmap: RegisterMap, f: FieldSpec) -> ReadingMaker:
    """Return a function raw → `Reading` for field ``f`` (sentinels, scale, enum/bit labels)."""
    name, unit = f.name, f.unit
    missing = frozenset(f.missing)
    enum = rmap.enum_of(f)
    bits = rmap.bits_of(f)
    if enum is not None:
        # keyed by number: a raw value is an int for the integer types enums are defined on
        labels: dict[float, str] = dict(enum.items())

        def enum_reading(raw: int | float) -> Reading:
            if raw in missing:
                return new_reading(name, raw, None, unit, True)
            label = labels.get(raw)
            if label is None:
                return new_reading(name, raw, f"unknown ({raw})", unit, False, True)
            return new_reading(name, raw, label, unit)

        return enum_reading
    if bits is not None:

        def bits_reading(raw: int | float) -> Reading:
            if raw in missing:
                return new_reading(name, raw, None, unit, True)
            if raw == 0:
                return new_reading(name, raw, _NO_BITS, unit)
            labels, unknown, rest = [], False, int(raw)
            if rest < 0:  # signed type: look at the two's-complement bit pattern
                rest &= (1 << (16 * TYPE_WORDS[f.type])) - 1
            while rest:
                low = rest & -rest
                bit = low.bit_length() - 1
                label = bits.get(bit)
                if label is None:
                    label, unknown = f"unknown bit {bit}", True
                labels.append(label)
                rest ^= low
            return new_reading(name, raw, frozenset(labels), unit, False, unknown)

        return bits_reading
    is_float = f.type.startswith("f")
    scale = f.scale
    divisor = scale_divisor(scale)
    if scale == 1:
        mode = 0
    elif divisor is not None:
        mode = 1
    elif float(scale).is_integer() and not is_float:
        mode, scale = 2, int(scale)
    else:
        mode = 3

    if not missing and not is_float:  # the common case gets a branch-free maker
        if mode == 0:
            return lambda raw: new_reading(name, raw, raw, unit)
        if divisor is not None:  # mode 1
            return lambda raw: new_reading(name, raw, raw / divisor, unit)
        return lambda raw: new_reading(name, raw, raw * scale, unit)

    def number_reading(raw: int | float) -> Reading:
        if raw in missing or (is_float and raw != raw):  # NaN != NaN
            return new_reading(name, raw, None, unit, True)
        if mode == 0:
            return new_reading(name, raw, raw, unit)
        if divisor is not None:  # mode 1
            return new_reading(name, raw, raw / divisor, unit)
        return new_reading(name, raw, raw * scale, unit)

    return number_reading


@dataclass(frozen=True, slots=True)
class ByteOrderPart:
    """The fields of a request decoded in one byte order: the words packed in that order, one
    unpacker for all of them, and their reading makers and names (in address order)."""

    pack: struct.Struct
    unpack: struct.Struct
    makers: tuple[ReadingMaker, ...]
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CompiledRequest:
    """A `ReadRequest` ready to decode: one part per byte order it uses, reading makers."""

    count: int
    first: ByteOrderPart
    """The big-endian fields, or the little-endian ones when every multi-word field is CDAB."""
    second: ByteOrderPart | None
    """The little-endian (CDAB) fields when the request mixes both word orders, else None."""
    order: tuple[str, ...] | None
    """Field names in address order when both byte orders are used (else already in order)."""


def _struct_for(fields: list[tuple[int, FieldSpec]], endian: str) -> struct.Struct:
    fmt, cursor = [endian], 0
    for offset, f in fields:
        if offset > cursor:
            fmt.append(f"{2 * (offset - cursor)}x")
        fmt.append(STRUCT_CODE[f.type])
        cursor = offset + TYPE_WORDS[f.type]
    return struct.Struct("".join(fmt))


def compile_request(rmap: RegisterMap, request: ReadRequest) -> CompiledRequest:
    """Check that every field of ``request`` lies inside it and build its decoder."""
    placed: list[tuple[int, FieldSpec]] = []
    end = request.address + request.count
    for name in dict.fromkeys(request.fields):
        f = rmap.field(name)
        function = rmap.function_of(f)
        last = f.address + f.words - 1
        if function != request.function or f.address < request.address or last >= end:
            raise MapError(
                f"{rmap.id}: field {name!r} (function {function}, registers {f.address}–{last})"
                f" is not inside the request (function {request.function}, registers "
                f"{request.address}–{end - 1})"
            )
        placed.append((f.address - request.address, f))
    placed.sort(key=lambda item: item[0])
    return _compile(rmap, request.count, placed)


def _compile(rmap: RegisterMap, count: int, placed: list[tuple[int, FieldSpec]]) -> CompiledRequest:
    multi_orders = {f.word_order for _, f in placed if f.words > 1}
    if multi_orders == {"CDAB"}:
        be, le = [], placed
    elif multi_orders == {"ABCD", "CDAB"}:
        be = [p for p in placed if p[1].words == 1 or p[1].word_order == "ABCD"]
        le = [p for p in placed if p[1].words > 1 and p[1].word_order == "CDAB"]
    else:
        be, le = placed, []
    big = _part(rmap, count, be, ">")
    little = _part(rmap, count, le, "<")
    return CompiledRequest(
        count=count,
        first=little if not be else big,
        second=little if be and le else None,
        order=tuple(f.name for _, f in placed) if be and le else None,
    )


def _part(
    rmap: RegisterMap, count: int, fields: list[tuple[int, FieldSpec]], endian: str
) -> ByteOrderPart:
    return ByteOrderPart(
        pack=struct.Struct(f"{endian}{count}H"),
        unpack=_struct_for(fields, endian),
        makers=tuple(make_reading_maker(rmap, f) for _, f in fields),
        names=tuple(f.name for _, f in fields),
    )


def _compiled(rmap: RegisterMap, request: ReadRequest) -> CompiledRequest:
    cache = rmap._cache
    compiled = cache.get(request)
    if compiled is None:
        compiled = compile_request(rmap, request)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[request] = compiled
    return compiled


def _bad_words(words: Sequence[int], count: int, what: str) -> DecodeError:
    if len(words) != count:
        return DecodeError(f"{what}: got {len(words)} words, expected {count}")
    for i, w in enumerate(words):
        if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= 0xFFFF:
            return DecodeError(f"{what}: word {i} is {w!r} (allowed: an integer 0–65535)")
    return DecodeError(f"{what}: words cannot be decoded")


def decode_request(
    rmap: RegisterMap, request: ReadRequest, words: Sequence[int]
) -> dict[str, Reading]:
    """Decode the words answered to ``request`` into one `Reading` per field, in address order.

    Float fields holding NaN, and any field holding one of its ``missing`` sentinels, decode as
    missing (``value`` None). DecodeError when the word count differs from ``request.count`` or a
    word is not an integer 0–65535.
    """
    c = _compiled(rmap, request)
    if len(words) != c.count:
        raise _bad_words(words, c.count, f"{rmap.id} request at {request.address}")
    try:
        # dict/zip/map/call all run in C: the only Python frames are the reading makers
        part = c.first
        raws = part.unpack.unpack_from(part.pack.pack(*words))
        out = dict(zip(part.names, map(call, part.makers, raws), strict=True))
        part2 = c.second
        if part2 is None:
            return out
        raws = part2.unpack.unpack_from(part2.pack.pack(*words))
        out.update(zip(part2.names, map(call, part2.makers, raws), strict=True))
    except struct.error:
        raise _bad_words(words, c.count, f"{rmap.id} request at {request.address}") from None
    if c.order is not None:
        return {name: out[name] for name in c.order}
    return out


def decode_field(
    rmap: RegisterMap, name_or_field: str | FieldSpec, words: Sequence[int]
) -> Reading:
    """Decode one field from exactly its own words (see `decode_request` for missing values)."""
    f = rmap.field(name_or_field) if isinstance(name_or_field, str) else name_or_field
    own = rmap._by_name.get(f.name) is f  # a field of this map: its decoder may be cached
    key = ("field", f.name)
    c = rmap._cache.get(key) if own else None
    if c is None:
        c = _compile(rmap, f.words, [(0, f)])
        if own:
            rmap._cache[key] = c
    if len(words) != c.count:
        raise _bad_words(words, c.count, f"{rmap.id}/{f.name}")
    try:
        part = c.first  # one field: one byte order
        raw = part.unpack.unpack(part.pack.pack(*words))[0]
        return part.makers[0](raw)
    except struct.error:
        raise _bad_words(words, c.count, f"{rmap.id}/{f.name}") from None
