"""Differential tests: the codec agrees with pymodbus's own register conversion.

pymodbus ``word_order="big"`` is ABCD; ``"little"`` reverses the whole word sequence, which is the
codec's CDAB (for 64-bit values too). Tests may import pymodbus; the codec never does.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin

from ampgate.codec import RegisterMap, decode_field, encode_field
from ampgate.codec.load import map_from_dict
from ampgate.codec.schema import TYPE_WORDS, type_raw_range
from strategies import FIELD_TYPES, map_data, raw_values, word_orders, words

DATATYPE = ModbusClientMixin.DATATYPE
PYMODBUS_TYPE = {
    "u16": DATATYPE.UINT16,
    "i16": DATATYPE.INT16,
    "u32": DATATYPE.UINT32,
    "i32": DATATYPE.INT32,
    "u64": DATATYPE.UINT64,
    "i64": DATATYPE.INT64,
    "f32": DATATYPE.FLOAT32,
    "f64": DATATYPE.FLOAT64,
}
PYMODBUS_ORDER = {"ABCD": "big", "CDAB": "little"}

_maps: dict[tuple[str, str], RegisterMap] = {}


def rw_map(type_: str, order: str) -> RegisterMap:
    """A one-field map (scale 1) writable over the type's whole range, built once per case."""
    key = (type_, order)
    if key not in _maps:
        lo, hi = type_raw_range(type_)
        spec = {
            "name": "v",
            "address": 0,
            "type": type_,
            "word_order": order,
            "unit": "1",
            "access": "RW",
            "allowed": [[lo, hi]],
        }
        _maps[key] = map_from_dict(map_data([spec]), name="t.toml")
    return _maps[key]


@st.composite
def type_order_words(draw: st.DrawFn) -> tuple[str, str, list[int]]:
    type_ = draw(st.sampled_from(FIELD_TYPES))
    return type_, draw(word_orders), draw(words(TYPE_WORDS[type_]))


@settings(max_examples=600, deadline=None)
@given(type_order_words())
def test_decode_matches_pymodbus_convert_from_registers(case: tuple[str, str, list[int]]) -> None:
    type_, order, regs = case
    expected = ModbusClientMixin.convert_from_registers(
        regs, PYMODBUS_TYPE[type_], word_order=PYMODBUS_ORDER[order]
    )
    reading = decode_field(rw_map(type_, order), "v", regs)
    if isinstance(expected, float) and math.isnan(expected):
        assert reading.missing and reading.value is None and math.isnan(reading.raw)  # type: ignore[arg-type]
    else:
        assert reading.raw == expected and reading.value == expected
        assert type(reading.raw) is type(expected)


@st.composite
def type_order_value(draw: st.DrawFn) -> tuple[str, str, int | float]:
    type_ = draw(st.sampled_from(FIELD_TYPES))
    return type_, draw(word_orders), draw(raw_values(type_))


@settings(max_examples=600, deadline=None)
@given(type_order_value())
def test_encode_matches_pymodbus_convert_to_registers(case: tuple[str, str, int | float]) -> None:
    type_, order, value = case
    expected = ModbusClientMixin.convert_to_registers(
        value, PYMODBUS_TYPE[type_], word_order=PYMODBUS_ORDER[order]
    )
    assert encode_field(rw_map(type_, order), "v", value) == expected
