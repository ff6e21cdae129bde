"""Cross-field rules a register map must keep, checked after the pydantic schema.

Each rule returns problems as ``(field name or None, plain-words problem)``; `load` turns the
first into a `MapError` naming the file. The fields given here are already resolved (function
code and word order filled in from the model defaults).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping

from ampgate.codec.schema import TYPE_WORDS, FieldSpec, RegisterMapSpec, type_raw_range

Problem = tuple[str | None, str]


def check_map(spec: RegisterMapSpec) -> list[Problem]:
    """Return every cross-field problem of a resolved map, in a stable order (empty when valid)."""
    problems: list[Problem] = []
    problems += _duplicate_names(spec)
    for f in spec.fields:
        problems += _field_problems(spec, f)
    problems += _overlaps(spec)
    problems += _identification(spec)
    return problems


def format_number(x: float) -> str:
    """A number as a person writes it: 6 not 6.0."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return str(x)


_fmt = format_number


def engineering_range(field: FieldSpec) -> tuple[float, float]:
    """The (min, max) engineering value the field's type can represent after scale."""
    lo, hi = type_raw_range(field.type)
    a, b = lo * field.scale, hi * field.scale
    return (a, b) if a <= b else (b, a)


def _duplicate_names(spec: RegisterMapSpec) -> Iterator[Problem]:
    seen: set[str] = set()
    for f in spec.fields:
        if f.name in seen:
            yield f.name, "duplicate field name (allowed: each name once)"
        seen.add(f.name)


def _field_problems(spec: RegisterMapSpec, f: FieldSpec) -> Iterator[Problem]:
    words = TYPE_WORDS[f.type]
    is_float = f.type.startswith("f")
    last = f.address + words - 1
    if last > 0xFFFF:
        yield (
            f.name,
            (
                f"{f.type} at address {f.address} ends at register {last}, "
                f"past the last Modbus address 65535 (allowed: address at most {65536 - words})"
            ),
        )
    if not math.isfinite(f.scale) or f.scale == 0:
        yield f.name, f"scale {f.scale} is not allowed (allowed: a finite, non-zero number)"
    if f.enum is not None and f.bits is not None:
        yield f.name, f"has both enum {f.enum!r} and bits {f.bits!r} (allowed: one of them)"
    if f.enum is not None and f.enum not in spec.enums:
        yield f.name, f"unknown enum table {f.enum!r} (tables: {_names(spec.enums)})"
    if f.bits is not None and f.bits not in spec.bits:
        yield f.name, f"unknown bits table {f.bits!r} (tables: {_names(spec.bits)})"
    if (f.enum is not None or f.bits is not None) and is_float:
        integers = ", ".join(t for t in TYPE_WORDS if not t.startswith("f"))
        yield f.name, f"enum/bits need an integer type, not {f.type} (allowed: {integers})"
    if (f.enum is not None or f.bits is not None) and f.scale != 1:
        yield f.name, f"enum/bits fields take no scale (got {f.scale}, allowed: 1)"
    if f.bits is not None and f.bits in spec.bits:
        top = 16 * words - 1
        bad = sorted(b for b in spec.bits[f.bits] if not 0 <= b <= top)
        if bad:
            yield (
                f.name,
                (
                    f"bits table {f.bits!r} names bit {bad[0]}, outside the {f.type} field "
                    f"(allowed: 0–{top})"
                ),
            )
    if f.enum is None and f.bits is None and not f.unit:
        yield f.name, "missing unit (required for every numeric field; use '1' for a plain count)"
    max_regs = spec.model.max_registers_per_request
    if words > max_regs:
        yield (
            f.name,
            (
                f"{f.type} needs {words} registers but the model allows at most "
                f"{max_regs} per request (model.max_registers_per_request)"
            ),
        )
    lo, hi = type_raw_range(f.type)
    for sentinel in f.missing:
        if not lo <= sentinel <= hi:
            yield (
                f.name,
                (
                    f"missing value {sentinel} is outside what {f.type} can hold "
                    f"(allowed: {_fmt(lo)}–{_fmt(hi)})"
                ),
            )
    yield from _writable_problems(f)
    yield from _hole_problems(spec, f)


def _writable_problems(f: FieldSpec) -> Iterator[Problem]:
    if f.writable and not f.allowed:
        yield (
            f.name,
            ("read/write field without 'allowed' (list the writable values, e.g. [[0, 32]])"),
        )
    if not f.allowed:
        return
    elo, ehi = engineering_range(f)
    for interval in f.allowed:
        if not (math.isfinite(interval.lo) and math.isfinite(interval.hi)):
            yield (
                f.name,
                f"allowed interval [{interval.lo}, {interval.hi}] is not finite "
                "(allowed: finite numbers)",
            )
        elif interval.lo < elo or interval.hi > ehi:
            yield (
                f.name,
                (
                    f"allowed interval [{_fmt(interval.lo)}, {_fmt(interval.hi)}] is outside what "
                    f"{f.type} × {_fmt(f.scale)} can hold (allowed: {_fmt(elo)}–{_fmt(ehi)})"
                ),
            )


def _hole_problems(spec: RegisterMapSpec, f: FieldSpec) -> Iterator[Problem]:
    function = f.function if f.function is not None else spec.model.default_function
    for hole in spec.holes:
        if hole.overlaps(function, f.address, TYPE_WORDS[f.type]):
            yield (
                f.name,
                (
                    f"registers {f.address}–{f.address + TYPE_WORDS[f.type] - 1} (function "
                    f"{function}) touch the hole {hole.start}–{hole.end}, which does not exist "
                    "on the device (allowed: registers outside the holes)"
                ),
            )


def _overlaps(spec: RegisterMapSpec) -> Iterator[Problem]:
    by_function: dict[int, list[FieldSpec]] = {}
    for f in spec.fields:
        function: int = f.function if f.function is not None else spec.model.default_function
        by_function.setdefault(function, []).append(f)
    for function, fields in sorted(by_function.items()):
        ordered = sorted(fields, key=lambda f: f.address)
        for prev, cur in itertools.pairwise(ordered):
            prev_last = prev.address + TYPE_WORDS[prev.type] - 1
            if cur.address <= prev_last:
                yield (
                    cur.name,
                    (
                        f"register {cur.address} (function {function}) overlaps field "
                        f"{prev.name!r} ({prev.address}–{prev_last}) (allowed: one field per "
                        "register of a function code)"
                    ),
                )


def _identification(spec: RegisterMapSpec) -> Iterator[Problem]:
    names = {f.name for f in spec.fields}
    for check in spec.identification:
        if check.field not in names:
            yield (
                None,
                f"identification names unknown field {check.field!r} (allowed: a field of the map)",
            )


def _names(tables: Mapping[str, object]) -> str:
    return ", ".join(sorted(tables)) or "none defined"
