"""Values → words: `encode_field`, the only way ampgate builds words to write.

It refuses, with an `EncodeError` naming model, field, value and the allowed set: read-only
fields, non-numbers, NaN/infinity, fractions where the field is ``integer``, values outside
``allowed``, values the scale cannot represent exactly, and anything the register type cannot
hold. So a register is never written out of range.
"""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Callable

from ampgate.codec.decode import STRUCT_CODE, scale_divisor
from ampgate.codec.model import RegisterMap
from ampgate.codec.rules import format_number as _fmt
from ampgate.codec.schema import TYPE_WORDS, FieldSpec, type_raw_range
from ampgate.errors import EncodeError

_REL_TOLERANCE = 1e-9
Refuse = Callable[[str], EncodeError]


def describe_allowed(f: FieldSpec) -> str:
    """The allowed set as a person writes it: ``0 or 6–32 A``."""
    parts = [_fmt(i.lo) if i.lo == i.hi else f"{_fmt(i.lo)}–{_fmt(i.hi)}" for i in f.allowed]
    unit = f" {f.unit}" if f.unit and f.unit != "1" else ""
    return " or ".join(parts) + unit


def encode_field(rmap: RegisterMap, name_or_field: str | FieldSpec, value: object) -> list[int]:
    """Encode an engineering value (or an enum label) into the field's words, in wire order.

    EncodeError when the field is read-only, the value is not a finite number (or a known label of
    the field's enum), is fractional where the field is ``integer``, lies outside ``allowed``,
    or cannot be represented by the register type and scale.
    """
    f = rmap.field(name_or_field) if isinstance(name_or_field, str) else name_or_field

    def refuse(problem: str) -> EncodeError:
        return EncodeError(problem, model=rmap.id, field=f.name)

    if not f.writable:
        raise refuse("the field is read-only")
    number = _as_number(rmap, f, value, refuse)
    unit = f" {f.unit}" if f.unit and f.unit != "1" else ""
    shown = f"{_fmt(number)}{unit}"
    if not math.isfinite(number):
        raise refuse(f"{shown} is not allowed (allowed: a finite number: {describe_allowed(f)})")
    if f.integer and not float(number).is_integer():
        raise refuse(f"{shown} is not allowed (allowed: whole numbers {describe_allowed(f)})")
    if not any(i.contains(number) for i in f.allowed):
        raise refuse(f"{shown} is not allowed (allowed: {describe_allowed(f)})")
    raw = _to_raw(f, number, refuse, shown)
    return _pack(f, raw, refuse, shown)


def _as_number(rmap: RegisterMap, f: FieldSpec, value: object, refuse: Refuse) -> int | float:
    enum = rmap.enum_of(f)
    if isinstance(value, str) and enum is not None:
        for raw, label in enum.items():
            if label == value:
                return raw
        labels = ", ".join(repr(v) for v in enum.values())
        raise refuse(f"{value!r} is not a label of the field (allowed: {labels})")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise refuse(f"{value!r} is not a number (allowed: {describe_allowed(f)})")
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def _to_raw(f: FieldSpec, number: int | float, refuse: Refuse, shown: str) -> int | float:
    if f.type.startswith("f"):
        return number / f.scale if f.scale != 1 else float(number)
    divisor = scale_divisor(f.scale)
    if isinstance(number, int) and (f.scale == 1 or divisor is not None):
        return number * (divisor or 1)  # exact integer arithmetic, whatever the size
    if isinstance(number, int) and float(f.scale).is_integer():
        step = int(f.scale)
        if number % step == 0:
            return number // step
        raise refuse(
            f"{shown} is not a multiple of the field's resolution {_fmt(f.scale)}"
            f" (allowed: {describe_allowed(f)} in steps of {_fmt(f.scale)})"
        )
    exact = number * divisor if divisor is not None else number / f.scale
    raw = round(exact)
    if abs(raw - exact) > _REL_TOLERANCE * max(1.0, abs(exact)):
        raise refuse(
            f"{shown} is not a multiple of the field's resolution {_fmt(f.scale)}"
            f" (allowed: {describe_allowed(f)} in steps of {_fmt(f.scale)})"
        )
    return raw


def _pack(f: FieldSpec, raw: int | float, refuse: Refuse, shown: str) -> list[int]:
    lo, hi = type_raw_range(f.type)
    if not lo <= raw <= hi:
        raise refuse(
            f"{shown} does not fit {f.type} (raw {raw}, allowed raw {_fmt(lo)}–{_fmt(hi)})"
        )
    n = TYPE_WORDS[f.type]
    if f.word_order == "CDAB" and n > 1:
        data = struct.pack("<" + STRUCT_CODE[f.type], raw)
        return list(struct.unpack(f"<{n}H", data))
    try:
        data = struct.pack(">" + STRUCT_CODE[f.type], raw)
    except (struct.error, OverflowError):
        raise refuse(f"{shown} does not fit {f.type}") from None
    return list(struct.unpack(f">{n}H", data))
