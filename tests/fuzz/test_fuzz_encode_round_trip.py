"""Every valid value of every writable field of every shipped map encodes and decodes back to
itself, through the request the daemon reads it with (``decode_request``): small ranges in full,
large ones at their edges plus hypothesis draws; enum labels too."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.codec import (
    FieldSpec,
    ReadRequest,
    RegisterMap,
    decode_request,
    encode_field,
    list_models,
    load_map,
)
from ampgate.codec.decode import apply_scale

ENUMERATE_UP_TO = 2000
WRITABLE = [
    (model_id, f.name)
    for model_id in list_models()
    for f in load_map(model_id).fields
    if f.writable
]
WRITABLE_ENUMS = [(m, n) for m, n in WRITABLE if load_map(m).enum_of(load_map(m).field(n))]
WRITABLE_INTEGERS = [(m, n) for m, n in WRITABLE if not load_map(m).field(n).type.startswith("f")]


def raw_range(f: FieldSpec, lo: float, hi: float) -> tuple[int, int]:
    """Raw values whose engineering value lies in [lo, hi] (integer types)."""
    step = f.scale
    a, b = sorted((lo / step, hi / step))
    first, last = math.ceil(a - 1e-9), math.floor(b + 1e-9)
    if f.integer:  # engineering values must be whole: raws that are multiples of 1/scale
        first, last = max(first, math.ceil(lo) / step), min(last, math.floor(hi) / step)
    return int(first), int(last)


def valid(f: FieldSpec, raw: int) -> bool:
    value = apply_scale(raw, f.scale)
    if f.integer and not float(value).is_integer():
        return False
    return any(i.contains(value) for i in f.allowed)


def edges(first: int, last: int) -> list[int]:
    mid = (first + last) // 2
    return sorted({first, first + 1, mid, last - 1, last} & set(range(first, last + 1)))


def round_trip(rmap: RegisterMap, f: FieldSpec, value: object) -> object:
    """Encode ``value``, then decode the words as the daemon's read of the field would."""
    words = encode_field(rmap, f, value)
    assert len(words) == f.words and all(0 <= w <= 0xFFFF for w in words)
    request = ReadRequest(rmap.function_of(f), f.address, f.words, (f.name,))
    return decode_request(rmap, request, words)[f.name]


def expected_value(rmap: RegisterMap, f: FieldSpec, raw: int | float) -> object:
    enum = rmap.enum_of(f)
    if enum is not None:
        return enum.get(int(raw), f"unknown ({raw})")
    return apply_scale(raw, f.scale)


def test_there_are_writable_fields_to_check() -> None:
    assert len(WRITABLE) >= 8 and WRITABLE_ENUMS and WRITABLE_INTEGERS


@pytest.mark.parametrize(("model_id", "name"), WRITABLE_INTEGERS)
def test_every_small_range_round_trips_value_by_value(model_id: str, name: str) -> None:
    # float fields are sampled by the hypothesis test below
    rmap = load_map(model_id)
    f = rmap.field(name)
    checked = 0
    for interval in f.allowed:
        first, last = raw_range(f, interval.lo, interval.hi)
        raws = range(first, last + 1) if last - first < ENUMERATE_UP_TO else edges(first, last)
        for raw in raws:
            if not valid(f, raw) or raw in f.missing:
                continue
            value = apply_scale(raw, f.scale)
            reading = round_trip(rmap, f, value)
            assert reading.raw == raw, (name, value, reading)
            assert reading.value == expected_value(rmap, f, raw), (name, value, reading)
            checked += 1
    assert checked, f"{model_id}/{name}: no valid value found in {f.allowed}"


@pytest.mark.parametrize(("model_id", "name"), WRITABLE_ENUMS)
def test_every_enum_label_in_the_allowed_set_round_trips(model_id: str, name: str) -> None:
    rmap = load_map(model_id)
    f = rmap.field(name)
    enum = rmap.enum_of(f)
    assert enum is not None
    labels = [label for raw, label in enum.items() if valid(f, raw)]
    assert labels, f"{model_id}/{name}: no label of the enum is writable"
    for label in labels:
        reading = round_trip(rmap, f, label)
        assert reading.value == label and not reading.unknown


@st.composite
def writable_values(draw: st.DrawFn) -> tuple[str, str, int | float]:
    model_id, name = draw(st.sampled_from(WRITABLE))
    f = load_map(model_id).field(name)
    interval = draw(st.sampled_from(f.allowed))
    if f.type.startswith("f"):
        width = 32 if f.type == "f32" else 64
        value = draw(
            st.floats(interval.lo, interval.hi, width=width, allow_nan=False)
            | st.sampled_from([interval.lo, interval.hi])
        )
        return model_id, name, value
    first, last = raw_range(f, interval.lo, interval.hi)
    raw = draw(st.integers(first, last) | st.sampled_from(edges(first, last)))
    return model_id, name, raw


@settings(max_examples=300, deadline=None)
@given(writable_values())
def test_any_drawn_valid_value_round_trips(case: tuple[str, str, int | float]) -> None:
    model_id, name, drawn = case
    rmap = load_map(model_id)
    f = rmap.field(name)
    if f.type.startswith("f"):
        value = drawn
        if f.integer and not float(value).is_integer():
            return
        reading = round_trip(rmap, f, value)
        assert reading.value == value
        return
    raw = int(drawn)
    if not valid(f, raw) or raw in f.missing:
        return
    reading = round_trip(rmap, f, apply_scale(raw, f.scale))
    assert reading.raw == raw and reading.value == expected_value(rmap, f, raw)
