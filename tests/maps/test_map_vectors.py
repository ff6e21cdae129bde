"""Known vectors from the reference documents, decoded and encoded through the shipped maps.

Sources: /work/shared/reference/teltocharge-evc2.md (serial default, "TC" id, low-word-first
counters, tables "e" and "f", writable ranges) and /work/shared/reference/meters.md (Siemens
float64 Wh, Phoenix CDAB float32, ABB all-bits-set "no value").
"""

from __future__ import annotations

import struct

import pytest

from ampgate.codec import decode_field, encode_field, load_map
from ampgate.errors import EncodeError


def words_of(data: bytes) -> list[int]:
    """Big-endian bytes as 16-bit register words, first register first."""
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@pytest.fixture(scope="module")
def evc2():
    return load_map("teltocharge-evc2")


# --- TeltoCharge EVC2 ----------------------------------------------------------------------------


def test_evc2_serial_words_low_word_first_give_the_documented_default(evc2) -> None:
    reading = decode_field(evc2, "serial_number", [52501, 1883])
    assert reading.value == 123456789 == evc2.field("serial_number").default
    assert decode_field(evc2, "serial_number", [1883, 52501]).value != 123456789


def test_evc2_id_21571_identifies_the_model_and_reads_tc(evc2) -> None:
    (check,) = evc2.identification
    assert check.field == "evse_id"
    reading = decode_field(evc2, "evse_id", [21571])
    assert reading.raw in check.equals
    assert reading.raw == 0x5443
    assert reading.raw.to_bytes(2, "big") == b"TC"
    assert decode_field(evc2, "evse_id", [0x4354]).raw not in check.equals


def test_evc2_lifetime_energy_is_a_u64_low_word_first_in_hundredths_of_kwh(evc2) -> None:
    reading = decode_field(evc2, "lifetime_energy", [0x5678, 0x1234, 0, 0])
    assert reading.raw == 0x12345678
    assert reading.value == 0x12345678 / 100
    assert reading.unit == "kWh"
    assert decode_field(evc2, "lifetime_energy", [0, 0, 0, 1]).raw == 1 << 48


def test_evc2_status_time_is_a_u32_low_word_first(evc2) -> None:
    reading = decode_field(evc2, "evse_status_time", [0x0001, 0x0002])
    assert reading.value == 0x0002_0001
    assert reading.unit == "s"


def test_evc2_currents_and_temperature_are_tenths(evc2) -> None:
    assert decode_field(evc2, "current_l1", [160]).value == 16.0
    assert decode_field(evc2, "current_l1", [160]).unit == "A"
    temperature = decode_field(evc2, "internal_temperature", [0x10000 - 400])
    assert (temperature.value, temperature.unit) == (-40.0, "°C")
    assert decode_field(evc2, "session_energy", [1234]).value == 12.34


def test_evc2_error_bits_4_and_9_are_overcurrent_and_socket_lock(evc2) -> None:
    reading = decode_field(evc2, "error_code", [(1 << 4) | (1 << 9)])
    assert reading.value == frozenset({"overcurrent error", "socket lock error"})
    assert not reading.unknown
    assert evc2.bits_of("error_code")[4] == "overcurrent error"
    assert evc2.bits_of("error_code")[9] == "socket lock error"


def test_evc2_undocumented_warning_bit_is_named_not_dropped(evc2) -> None:
    reading = decode_field(evc2, "warning_code", [(1 << 1) | (1 << 12)])
    assert reading.value == frozenset({"temperature warning", "unknown bit 12"})
    assert reading.unknown


def test_evc2_current_limit_cause_8_is_unknown(evc2) -> None:
    assert decode_field(evc2, "current_limit_cause", [7]).value == "temperature"
    reading = decode_field(evc2, "current_limit_cause", [8])
    assert reading.value == "unknown (8)"
    assert reading.unknown


def test_evc2_phase_enum_is_shared_by_connected_and_to_use(evc2) -> None:
    assert evc2.enum_of("phase_connected") == evc2.enum_of("phase_to_use")
    assert decode_field(evc2, "phase_connected", [6]).value == "3ph"
    assert decode_field(evc2, "phase_connected", [7]).value == "none"
    assert encode_field(evc2, "phase_to_use", "L1") == [0]
    assert encode_field(evc2, "phase_to_use", 7) == [7]
    with pytest.raises(EncodeError):
        encode_field(evc2, "phase_to_use", 8)


@pytest.mark.parametrize("amps", [0, 6, 16, 32])
def test_evc2_amps_to_use_accepts_0_and_6_to_32(evc2, amps: int) -> None:
    assert encode_field(evc2, "amps_to_use", amps) == [amps]


@pytest.mark.parametrize("amps", [1, 2, 3, 4, 5, 33, -1, 16.5])
def test_evc2_amps_to_use_refuses_values_a_charger_must_not_get(evc2, amps: float) -> None:
    with pytest.raises(EncodeError) as excinfo:
        encode_field(evc2, "amps_to_use", amps)
    assert excinfo.value.field == "amps_to_use"
    assert excinfo.value.model == "teltocharge-evc2"


@pytest.mark.parametrize(
    ("name", "accepted", "refused"),
    [
        ("failsafe_current", [0, 6, 32], [1, 5, 33]),
        ("communication_timeout", [0, 30, 600], [601, -1]),
        ("request_stop_charging", [0, 1, 2], [3]),
        ("request_authorize", [0, 1], [2]),
        ("socket_lock_mode", [0, 2], [3]),
        ("request_reboot", [0, 1], [2]),
    ],
)
def test_evc2_writable_ranges(evc2, name: str, accepted: list[int], refused: list[int]) -> None:
    for value in accepted:
        assert encode_field(evc2, name, value) == [value]
    for value in refused:
        with pytest.raises(EncodeError):
            encode_field(evc2, name, value)


def test_evc2_read_only_fields_are_refused(evc2) -> None:
    for name in ("evse_id", "amp_limit", "serial_number", "lifetime_energy"):
        with pytest.raises(EncodeError):
            encode_field(evc2, name, 0)


# --- meters --------------------------------------------------------------------------------------


def test_siemens_energy_is_a_float64_in_wh_high_word_first() -> None:
    rmap = load_map("siemens-7km2200")
    words = words_of(struct.pack(">d", 12345678.9))
    for name in ("energy_import", "energy_export", "energy_import_tariff2"):
        reading = decode_field(rmap, name, words)
        assert (reading.value, reading.unit) == (12345678.9, "Wh")
    assert decode_field(rmap, "voltage_l1", words_of(struct.pack(">f", 231.25))).value == 231.25


def test_phoenix_float32_is_low_word_first() -> None:
    rmap = load_map("phoenix-eem-mb371")
    high, low = words_of(struct.pack(">f", 230.5))
    reading = decode_field(rmap, "voltage_l1", [low, high])
    assert (reading.value, reading.unit) == (230.5, "V")
    assert decode_field(rmap, "voltage_l1", [high, low]).value != 230.5


@pytest.mark.parametrize("model_id", ["eastron-sdm630", "eastron-sdm72d", "eastron-sdm120"])
def test_eastron_float32_is_high_word_first_and_energy_in_kwh(model_id: str) -> None:
    rmap = load_map(model_id)
    assert decode_field(rmap, "current_l1", words_of(struct.pack(">f", 15.75))).value == 15.75
    energy = decode_field(rmap, "energy_import", words_of(struct.pack(">f", 1024.5)))
    assert (energy.value, energy.unit) == (1024.5, "kWh")


@pytest.mark.parametrize("model_id", ["abb-b23", "abb-b21"])
@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("voltage_l1", [0xFFFF, 0xFFFF]),
        ("current_l1", [0xFFFF, 0xFFFF]),
        ("power_total", [0x7FFF, 0xFFFF]),
        ("power_l1", [0x7FFF, 0xFFFF]),
        ("frequency", [0xFFFF]),
        ("energy_import", [0xFFFF] * 4),
        ("energy_export", [0xFFFF] * 4),
    ],
)
def test_abb_all_bits_set_decodes_as_missing(model_id: str, name: str, words: list[int]) -> None:
    reading = decode_field(load_map(model_id), name, words)
    assert reading.missing
    assert reading.value is None


def test_abb_integer_scales() -> None:
    rmap = load_map("abb-b23")
    assert decode_field(rmap, "voltage_l1", [0, 2305]).value == 230.5
    assert decode_field(rmap, "current_l2", [0, 1234]).value == 12.34
    assert decode_field(rmap, "power_total", [0xFFFF, 0xFF9C]).value == -1.0
    assert decode_field(rmap, "frequency", [5001]).value == 50.01
    assert decode_field(rmap, "energy_import", [0, 0, 0x0001, 0x86A0]).value == 1000.0
    assert not decode_field(rmap, "power_total", [0xFFFF, 0xFFFF]).missing  # -1 is a value
