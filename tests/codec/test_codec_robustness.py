"""Bad input never crashes: any words decode on every map; any value either encodes in range or
is refused with an EncodeError."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.codec import decode_request, encode_field, list_models, load_map, plan_reads
from ampgate.errors import EncodeError
from strategies import register

MODELS = list_models()

any_value = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 6, 32, 6.0, 31.9, -0.0, 2**64]),
)


@pytest.mark.parametrize("model_id", MODELS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_words_decode_on_every_shipped_map(model_id: str, data: st.DataObject) -> None:
    rmap = load_map(model_id)
    for request in plan_reads(rmap):
        words = data.draw(st.lists(register, min_size=request.count, max_size=request.count))
        readings = decode_request(rmap, request, words)
        assert list(readings) == list(request.fields)
        for reading in readings.values():
            assert reading.missing == (reading.value is None)


@pytest.mark.parametrize("model_id", MODELS)
@settings(max_examples=60, deadline=None)
@given(value=any_value, data=st.data())
def test_any_value_encodes_in_range_or_is_refused(
    model_id: str, value: int | float, data: st.DataObject
) -> None:
    rmap = load_map(model_id)
    writable = [f for f in rmap.fields if f.writable]
    if not writable:
        return
    f = data.draw(st.sampled_from(writable))
    try:
        words = encode_field(rmap, f, value)
    except EncodeError as refused:
        assert str(refused).startswith(f"{rmap.id}/{f.name}: ")
        return
    assert len(words) == f.words and all(0 <= w <= 0xFFFF for w in words)
    assert math.isfinite(value)
    assert any(i.contains(value) for i in f.allowed)
