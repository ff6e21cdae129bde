"""Encoding: refusals name model, field, value and the allowed set; values round-trip."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.codec import RegisterMap, decode_field, encode_field
from ampgate.codec.load import map_from_dict
from ampgate.codec.rules import engineering_range
from ampgate.codec.schema import FieldSpec
from ampgate.errors import EncodeError
from strategies import FIELD_TYPES, WORD_ORDERS, map_data, raw_values, scales, word_orders


def writable_map(type_: str, order: str = "ABCD", scale: float = 1.0, **extra: Any) -> RegisterMap:
    """One RW field whose allowed set is everything its type and scale can hold."""
    probe = FieldSpec(name="v", address=0, type=type_, scale=scale)  # type: ignore[arg-type]
    lo, hi = engineering_range(probe)
    lo, hi = max(lo, -1e300), min(hi, 1e300)
    spec = {
        "name": "v",
        "address": 0,
        "type": type_,
        "word_order": order,
        "scale": scale,
        "unit": "1",
        "access": "RW",
        "allowed": [[lo, hi]],
        **extra,
    }
    return map_from_dict(map_data([spec]), name="t.toml")


def test_in_range_setpoint_encodes(evc2_like: RegisterMap) -> None:
    assert encode_field(evc2_like, "amps_to_use", 16) == [16]
    assert encode_field(evc2_like, "amps_to_use", 0) == [0]
    assert encode_field(evc2_like, "amps_to_use", 32.0) == [32]
    assert encode_field(evc2_like, "communication_timeout", 600) == [600]


def test_out_of_range_value_names_the_allowed_set(evc2_like: RegisterMap) -> None:
    with pytest.raises(EncodeError) as info:
        encode_field(evc2_like, "amps_to_use", 3)
    assert str(info.value) == "evc2-like/amps_to_use: 3 A is not allowed (allowed: 0 or 6–32 A)"
    assert info.value.model == "evc2-like" and info.value.field == "amps_to_use"
    with pytest.raises(EncodeError, match=r"33 A is not allowed \(allowed: 0 or 6–32 A\)"):
        encode_field(evc2_like, "amps_to_use", 33)
    with pytest.raises(EncodeError, match=r"-6 A is not allowed"):
        encode_field(evc2_like, "failsafe_current", -6)


def test_read_only_field_is_refused(evc2_like: RegisterMap) -> None:
    with pytest.raises(EncodeError, match=r"^evc2-like/current_l1: the field is read-only$"):
        encode_field(evc2_like, "current_l1", 16)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_value_is_refused(evc2_like: RegisterMap, value: float) -> None:
    with pytest.raises(EncodeError, match="is not allowed"):
        encode_field(evc2_like, "amps_to_use", value)


def test_fraction_is_refused_where_integer(evc2_like: RegisterMap) -> None:
    with pytest.raises(EncodeError, match=r"16.5 A is not allowed \(allowed: whole numbers 0 or"):
        encode_field(evc2_like, "amps_to_use", 16.5)


@pytest.mark.parametrize("value", ["16", None, True, [16], b"\x10"])
def test_non_number_is_refused(evc2_like: RegisterMap, value: object) -> None:
    with pytest.raises(EncodeError, match="is not a number"):
        encode_field(evc2_like, "amps_to_use", value)


def test_enum_field_accepts_its_labels(evc2_like: RegisterMap) -> None:
    assert encode_field(evc2_like, "phase_to_use", "3ph") == [6]
    assert encode_field(evc2_like, "phase_to_use", 0) == [0]
    with pytest.raises(EncodeError, match="'4ph' is not a label of the field"):
        encode_field(evc2_like, "phase_to_use", "4ph")


def test_value_finer_than_the_scale_is_refused() -> None:
    rmap = writable_map("u16", scale=0.1)
    assert encode_field(rmap, "v", 16.1) == [161]
    with pytest.raises(
        EncodeError, match=r"16\.05 is not a multiple of the field's resolution 0\.1"
    ):
        encode_field(rmap, "v", 16.05)
    coarse = writable_map("u16", scale=10)
    assert encode_field(coarse, "v", 40) == [4]
    with pytest.raises(EncodeError, match="not a multiple"):
        encode_field(coarse, "v", 45)


def test_both_word_orders_encode_as_decoded() -> None:
    assert encode_field(writable_map("u32", "ABCD"), "v", 0x0001_0002) == [1, 2]
    assert encode_field(writable_map("u32", "CDAB"), "v", 0x0001_0002) == [2, 1]
    assert encode_field(writable_map("u64", "CDAB"), "v", 0x0001_0002_0003_0004) == [4, 3, 2, 1]
    assert encode_field(writable_map("i16"), "v", -1) == [0xFFFF]


def test_f32_overflow_is_refused() -> None:
    rmap = writable_map("f32")
    with pytest.raises(EncodeError):
        encode_field(rmap, "v", 1e39)


def test_every_allowed_setpoint_round_trips(evc2_like: RegisterMap) -> None:
    for amps in [0, *range(6, 33)]:
        words = encode_field(evc2_like, "amps_to_use", amps)
        assert decode_field(evc2_like, "amps_to_use", words).value == amps


FLOAT_SCALES = (1.0, 0.5, 0.25)  # exact in binary: float × scale ÷ scale loses nothing


@st.composite
def field_and_raw(draw: st.DrawFn) -> tuple[str, str, float, int | float]:
    type_ = draw(st.sampled_from(FIELD_TYPES))
    order = draw(word_orders)
    if type_.startswith("f"):
        scale = draw(st.sampled_from(FLOAT_SCALES))
        raw = draw(raw_values(type_).filter(lambda x: x == 0 or 1e-300 < abs(x) < 1e300))
    else:
        scale = draw(scales)
        raw = draw(raw_values(type_))
        if scale != 1 and not float(scale).is_integer():
            # engineering values are floats: keep within float precision
            raw = max(min(raw, 2**50), -(2**50))
    return type_, order, scale, raw


@settings(max_examples=400, deadline=None)
@given(field_and_raw())
def test_decode_then_encode_gives_back_the_words(case: tuple[str, str, float, int | float]) -> None:
    type_, order, scale, raw = case
    rmap = writable_map(type_, order, scale)
    words = encode_raw(type_, order, raw)
    reading = decode_field(rmap, "v", words)
    assert encode_field(rmap, "v", reading.value) == words


def encode_raw(type_: str, order: str, raw: int | float) -> list[int]:
    """Words of a raw value, written independently of the codec (struct, big-endian words)."""
    import struct

    from ampgate.codec.decode import STRUCT_CODE

    data = struct.pack(">" + STRUCT_CODE[type_], raw)
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    return words[::-1] if order == "CDAB" else words


@pytest.mark.parametrize("order", WORD_ORDERS)
def test_encode_refuses_what_the_type_cannot_hold(order: str) -> None:
    # a map whose allowed set is wider than u16 cannot load, so build the spec by hand
    spec = FieldSpec(
        name="v",
        address=0,
        type="u16",
        unit="1",
        access="RW",
        allowed=[[0, 70000]],  # type: ignore[list-item]
    )
    rmap = writable_map("u16", order)
    with pytest.raises(EncodeError, match=r"70000 does not fit u16"):
        encode_field(rmap, spec, 70000)
