"""Shared hypothesis strategies: register words, field types, raw values, small register maps.

Import from any test: ``from strategies import words, raw_values, small_maps``. ``tests/`` must
be on sys.path; tests/codec/conftest.py puts it there (copy its two lines into your conftest).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ampgate.codec.schema import TYPE_WORDS, type_raw_range

FIELD_TYPES: tuple[str, ...] = tuple(TYPE_WORDS)
INTEGER_TYPES: tuple[str, ...] = tuple(t for t in FIELD_TYPES if not t.startswith("f"))
WORD_ORDERS: tuple[str, ...] = ("ABCD", "CDAB")
#: Scales seen in real maps (decimal fractions) plus a few awkward ones.
SCALES: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001, 10.0, 100.0, 0.5, 0.25, 2.5)

field_types = st.sampled_from(FIELD_TYPES)
integer_types = st.sampled_from(INTEGER_TYPES)
word_orders = st.sampled_from(WORD_ORDERS)
scales = st.sampled_from(SCALES)
register = st.integers(min_value=0, max_value=0xFFFF)


def words(count: int) -> st.SearchStrategy[list[int]]:
    """Exactly ``count`` 16-bit register values."""
    return st.lists(register, min_size=count, max_size=count)


def raw_values(type_: str, *, allow_nan: bool = False) -> st.SearchStrategy[int | float]:
    """Raw numbers the register type can hold (finite floats unless ``allow_nan``)."""
    if type_ == "f32":
        return st.floats(width=32, allow_nan=allow_nan, allow_infinity=False)
    if type_ == "f64":
        return st.floats(width=64, allow_nan=allow_nan, allow_infinity=False)
    lo, hi = type_raw_range(type_)
    return st.integers(min_value=int(lo), max_value=int(hi))


def map_data(fields: list[dict[str, Any]], **model: Any) -> dict[str, Any]:
    """A map as parsed TOML data (for `ampgate.codec.load.map_from_dict`)."""
    base = {
        "id": "test-map",
        "name": "Test map",
        "vendor": "test",
        "kind": "meter",
    }
    base.update(model)
    return {"model": base, "fields": fields}


@st.composite
def small_maps(
    draw: st.DrawFn,
    *,
    max_fields: int = 6,
    functions: tuple[int, ...] = (3,),
    max_address: int = 40,
) -> dict[str, Any]:
    """Map data with up to ``max_fields`` non-overlapping numeric fields, optional holes between
    them, and a small max_registers_per_request: the planner's search space in miniature."""
    n = draw(st.integers(min_value=1, max_value=max_fields))
    fields: list[dict[str, Any]] = []
    taken: dict[int, set[int]] = {f: set() for f in functions}
    for i in range(n):
        type_ = draw(st.sampled_from(("u16", "u16", "u32", "f32", "u64")))
        function = draw(st.sampled_from(functions))
        size = TYPE_WORDS[type_]
        address = draw(st.integers(min_value=0, max_value=max_address))
        span = set(range(address, address + size))
        if span & taken[function]:
            continue
        taken[function] |= span
        fields.append(
            {
                "name": f"f{i}",
                "address": address,
                "type": type_,
                "unit": "1",
                "function": function,
            }
        )
    holes = []
    for function in functions:
        free = sorted(set(range(max_address + 4)) - taken[function])
        for start in draw(st.lists(st.sampled_from(free), max_size=2, unique=True)) if free else []:
            end = start
            while end + 1 in free and end - start < 2 and draw(st.booleans()):
                end += 1
            holes.append({"function": function, "start": start, "end": end})
    widest = max(TYPE_WORDS[f["type"]] for f in fields)
    limit = draw(st.integers(min_value=widest, max_value=16))
    data = map_data(fields, max_registers_per_request=limit)
    data["holes"] = holes
    return data
