"""Decoding: types, word orders, exact decimal scales, enums, bits, sentinels, NaN, bad words."""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any

import pytest

from ampgate.codec import (
    Reading,
    ReadRequest,
    RegisterMap,
    decode_field,
    decode_request,
    plan_reads,
)
from ampgate.codec.load import map_from_dict
from ampgate.codec.model import new_reading
from ampgate.errors import DecodeError, MapError
from strategies import map_data


def one_field_map(type_: str, **extra: Any) -> RegisterMap:
    spec = {"name": "v", "address": 0, "type": type_, "unit": "1", **extra}
    return map_from_dict(map_data([spec]), name="t.toml")


def test_decimal_scale_is_exact(evc2_like: RegisterMap) -> None:
    reading = decode_field(evc2_like, "current_l1", [160])
    assert reading.value == 16.0 and reading.raw == 160 and reading.unit == "A"
    # 160 × 0.1 in binary floating point is 16.000000000000004; the codec must not give that.
    assert decode_field(evc2_like, "session_energy", [1234]).value == 12.34
    assert decode_field(evc2_like, "internal_temperature", [0xFFFF - 9]).value == -1.0


def test_scale_one_keeps_integers(evc2_like: RegisterMap) -> None:
    reading = decode_field(evc2_like, "active_power", [7400])
    assert reading.value == 7400 and isinstance(reading.value, int)


def test_signed_16_bit(evc2_like: RegisterMap) -> None:
    assert decode_field(evc2_like, "voltage_l1", [0x8000]).value == -32768
    assert decode_field(evc2_like, "voltage_l1", [230]).value == 230


def test_cdab_u32_takes_the_first_register_as_the_low_word(evc2_like: RegisterMap) -> None:
    # EVC2 serial number default 123456789 is sent as words (52501, 1883): reg 24 low, reg 25 high.
    assert decode_field(evc2_like, "serial_number", [52501, 1883]).value == 123456789


def test_cdab_u64_reverses_the_whole_word_sequence(evc2_like: RegisterMap) -> None:
    # regs 41..44: lowest word first, highest ("<< 48") last
    words = [0x0004, 0x0003, 0x0002, 0x0001]
    reading = decode_field(evc2_like, "lifetime_energy", words)
    assert reading.raw == 0x0001_0002_0003_0004
    assert reading.value == 0x0001_0002_0003_0004 / 100


@pytest.mark.parametrize(
    ("type_", "order", "words", "raw"),
    [
        ("u32", "ABCD", [0x0001, 0x0002], 0x0001_0002),
        ("u32", "CDAB", [0x0001, 0x0002], 0x0002_0001),
        ("i32", "ABCD", [0xFFFF, 0xFFFE], -2),
        ("i32", "CDAB", [0xFFFE, 0xFFFF], -2),
        ("u64", "ABCD", [1, 2, 3, 4], 0x0001_0002_0003_0004),
        ("u64", "CDAB", [1, 2, 3, 4], 0x0004_0003_0002_0001),
        ("i64", "ABCD", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD], -3),
        ("i64", "CDAB", [0xFFFD, 0xFFFF, 0xFFFF, 0xFFFF], -3),
        ("f32", "ABCD", [0x4366, 0x8000], 230.5),
        ("f32", "CDAB", [0x8000, 0x4366], 230.5),
        ("f64", "ABCD", [0x40C3, 0x8800, 0, 0], 10000.0),
        ("f64", "CDAB", [0, 0, 0x8800, 0x40C3], 10000.0),
    ],
)
def test_word_orders(type_: str, order: str, words: list[int], raw: int | float) -> None:
    rmap = one_field_map(type_, word_order=order)
    reading = decode_field(rmap, "v", words)
    assert reading.raw == raw and reading.value == raw and not reading.missing


def test_known_enum_value_decodes_to_its_label(evc2_like: RegisterMap) -> None:
    reading = decode_field(evc2_like, "evse_status", [7])
    assert reading.value == "A EV not connected" and not reading.unknown


def test_unknown_enum_value_is_flagged_never_raised(evc2_like: RegisterMap) -> None:
    # current limit cause 8 is allowed by the table but undocumented
    reading = decode_field(evc2_like, "current_limit_cause", [8])
    assert reading.value == "unknown (8)" and reading.unknown and reading.raw == 8


def test_bits_decode_to_labels_and_unknown_bits(evc2_like: RegisterMap) -> None:
    reading = decode_field(evc2_like, "warning_code", [0b1000_0000_0010_0001])
    assert reading.value == frozenset({"warning 0", "warning 5", "unknown bit 15"})
    assert reading.unknown
    clean = decode_field(evc2_like, "error_code", [0])
    assert clean.value == frozenset() and not clean.unknown


def test_bits_of_a_signed_field_use_the_bit_pattern() -> None:
    spec = {"name": "v", "address": 0, "type": "i16", "bits": "b"}
    rmap = map_from_dict({**map_data([spec]), "bits": {"b": {"15": "top"}}}, name="t.toml")
    assert decode_field(rmap, "v", [0x8001]).value == frozenset({"top", "unknown bit 0"})


def test_sentinel_decodes_as_missing() -> None:
    rmap = one_field_map("u32", missing=[0xFFFFFFFF], scale=0.1)
    reading = decode_field(rmap, "v", [0xFFFF, 0xFFFF])
    assert reading.missing and reading.value is None and reading.raw == 0xFFFFFFFF
    assert decode_field(rmap, "v", [0, 10]).value == 1.0


def test_signed_sentinel_decodes_as_missing() -> None:
    rmap = one_field_map("i32", missing=[0x7FFFFFFF])
    assert decode_field(rmap, "v", [0x7FFF, 0xFFFF]).missing


def test_nan_float_decodes_as_missing() -> None:
    rmap = one_field_map("f32")
    reading = decode_field(rmap, "v", [0x7FC0, 0x0000])
    assert reading.missing and reading.value is None and math.isnan(reading.raw)  # type: ignore[arg-type]
    rmap64 = one_field_map("f64", word_order="CDAB")
    words = list(struct.unpack("<4H", struct.pack("<d", math.nan)))
    assert decode_field(rmap64, "v", words).missing


def test_infinity_is_a_value_not_missing() -> None:
    reading = decode_field(one_field_map("f32"), "v", [0x7F80, 0x0000])
    assert reading.value == math.inf and not reading.missing


def test_non_decimal_scale_multiplies() -> None:
    assert decode_field(one_field_map("u16", scale=2.5), "v", [4]).value == 10.0
    assert decode_field(one_field_map("u16", scale=10), "v", [4]).value == 40


@pytest.mark.parametrize("words", [[], [1, 2], [65536], [-1], [1.5], ["1"]])
def test_bad_words_raise_decode_error(evc2_like: RegisterMap, words: list[Any]) -> None:
    with pytest.raises(DecodeError, match="evc2-like/current_l1"):
        decode_field(evc2_like, "current_l1", words)


def test_request_decodes_every_field_in_address_order(evc2_like: RegisterMap) -> None:
    (request,) = plan_reads(evc2_like)
    assert (request.function, request.address, request.count) == (3, 0, 45)
    words = [0] * 45
    words[3], words[6], words[9], words[24], words[25] = 160, 3, 21571, 52501, 1883
    words[41:45] = [0x4240, 0x000F, 0, 0]  # 1_000_000 → 10000.0 kWh
    readings = decode_request(evc2_like, request, words)
    assert list(readings) == [f.name for f in sorted(evc2_like.fields, key=lambda f: f.address)]
    assert readings["current_l1"].value == 16.0
    assert readings["evse_status"].value == "B3 not enough power"
    assert readings["evse_id"].value == 21571
    assert readings["serial_number"].value == 123456789
    assert readings["lifetime_energy"].value == 10000.0


def test_request_with_gap_skips_unused_registers(meter_like: RegisterMap) -> None:
    request = ReadRequest(3, 55, 12, ("frequency", "power_total"))
    words = [0] * 12
    words[0:2] = struct.unpack(">2H", struct.pack(">f", 50.0))
    words[10:12] = struct.unpack(">2H", struct.pack(">f", -1500.0))
    readings = decode_request(meter_like, request, words)
    assert readings["frequency"].value == 50.0 and readings["power_total"].value == -1500.0


def test_request_mixing_word_orders() -> None:
    fields = [
        {"name": "a", "address": 0, "type": "u32", "unit": "1", "word_order": "CDAB"},
        {"name": "b", "address": 2, "type": "u16", "unit": "1"},
        {"name": "c", "address": 3, "type": "u32", "unit": "1", "word_order": "ABCD"},
    ]
    rmap = map_from_dict(map_data(fields), name="t.toml")
    (request,) = plan_reads(rmap)
    readings = decode_request(rmap, request, [1, 2, 3, 4, 5])
    assert list(readings) == ["a", "b", "c"]
    assert [r.value for r in readings.values()] == [0x0002_0001, 3, 0x0004_0005]


def test_request_with_wrong_word_count_raises(evc2_like: RegisterMap) -> None:
    (request,) = plan_reads(evc2_like)
    with pytest.raises(DecodeError, match="got 44 words, expected 45"):
        decode_request(evc2_like, request, [0] * 44)
    with pytest.raises(DecodeError, match=r"word 7 is 70000 \(allowed: an integer 0–65535\)"):
        decode_request(evc2_like, request, [0] * 7 + [70000] + [0] * 37)


def test_request_naming_a_field_outside_it_is_refused(evc2_like: RegisterMap) -> None:
    with pytest.raises(MapError, match=r"'serial_number' .* is not inside the request"):
        decode_request(evc2_like, ReadRequest(3, 20, 5, ("serial_number",)), [0] * 5)
    with pytest.raises(MapError, match="is not inside the request"):
        decode_request(evc2_like, ReadRequest(4, 0, 5, ("voltage_l1",)), [0] * 5)


def test_compiled_decoder_is_cached_per_request(evc2_like: RegisterMap) -> None:
    (request,) = plan_reads(evc2_like)
    decode_request(evc2_like, request, [0] * 45)
    compiled = evc2_like._cache[request]
    decode_request(evc2_like, request, [1] * 45)
    assert evc2_like._cache[request] is compiled


def test_fast_reading_constructor_builds_the_same_frozen_value() -> None:
    fast = new_reading("v", 1, 0.1, "A", False, True)
    assert fast == Reading("v", 1, 0.1, "A", False, True)
    assert hash(fast) == hash(Reading("v", 1, 0.1, "A", False, True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = 2  # type: ignore[misc]
