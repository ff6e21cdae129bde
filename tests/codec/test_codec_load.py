"""Map loading: every cross-field rule rejects with a MapError naming file, field and problem."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ampgate.codec import RegisterMap, list_models, load_map, load_map_file
from ampgate.codec.load import map_from_dict
from ampgate.errors import MapError
from strategies import map_data


def field(name: str, address: int, type_: str = "u16", **extra: Any) -> dict[str, Any]:
    """One field's TOML data with a unit (so it is valid unless a test breaks it)."""
    return {"name": name, "address": address, "type": type_, "unit": "1", **extra}


def load(fields: list[dict[str, Any]], **top: Any) -> RegisterMap:
    model = top.pop("model", {})
    data = map_data(fields, **model)
    data.update(top)
    return map_from_dict(data, name="evc2.toml")


def rejected(fields: list[dict[str, Any]], **top: Any) -> str:
    with pytest.raises(MapError) as info:
        load(fields, **top)
    message = str(info.value)
    assert message.startswith("evc2.toml: "), message
    return message


def test_a_valid_map_loads_and_resolves_defaults() -> None:
    rmap = load(
        [field("a", 0), field("b", 1, "u32"), field("c", 3, "u32", word_order="ABCD")],
        model={"default_function": 4, "word_order": "CDAB"},
    )
    assert rmap.id == "test-map"
    assert [rmap.function_of(f) for f in rmap.fields] == [4, 4, 4]
    assert rmap.word_order_of("b") == "CDAB"  # from the model default
    assert rmap.word_order_of("c") == "ABCD"  # the field's own choice wins


def test_unknown_type_names_the_field_and_the_allowed_types() -> None:
    message = rejected([field("current_l1", 3, "u17")])
    assert message == (
        "evc2.toml: field 'current_l1': unknown type 'u17' "
        "(allowed: u16, i16, u32, i32, u64, i64, f32, f64)"
    )


def test_overlapping_fields_on_one_function_code_are_rejected() -> None:
    message = rejected([field("a", 10, "u32"), field("b", 11)])
    assert "field 'b'" in message and "overlaps field 'a' (10–11)" in message


def test_fields_at_the_same_address_on_different_function_codes_may_coexist() -> None:
    rmap = load([field("a", 10, "u32", function=3), field("b", 11, function=4)])
    assert len(rmap.fields) == 2


def test_duplicate_field_name_is_rejected() -> None:
    message = rejected([field("a", 0), field("a", 5)])
    assert "field 'a': duplicate field name" in message


def test_numeric_field_without_unit_is_rejected() -> None:
    message = rejected([{"name": "volts", "address": 0, "type": "u16"}])
    assert "field 'volts': missing unit" in message


def test_enum_and_bits_fields_need_no_unit() -> None:
    rmap = load(
        [
            {"name": "state", "address": 0, "type": "u16", "enum": "states"},
            {"name": "alarms", "address": 1, "type": "u16", "bits": "alarms"},
        ],
        enums={"states": {"0": "idle"}},
        bits={"alarms": {"0": "hot"}},
    )
    assert rmap.enum_of("state") == {0: "idle"} and rmap.bits_of("alarms") == {0: "hot"}


def test_writable_field_without_allowed_is_rejected() -> None:
    message = rejected([field("amps", 15, access="RW")])
    assert "field 'amps': read/write field without 'allowed'" in message


def test_allowed_interval_beyond_the_scaled_type_range_is_rejected() -> None:
    # u16 × 0.1 holds 0–6553.5
    message = rejected([field("amps", 15, access="RW", scale=0.1, allowed=[[0, 7000]])])
    assert "allowed interval [0, 7000] is outside what u16 × 0.1 can hold" in message
    assert "(allowed: 0–6553.5)" in message
    assert len(load([field("amps", 15, access="RW", scale=0.1, allowed=[[0, 6553.5]])]).fields)


def test_negative_allowed_value_on_an_unsigned_field_is_rejected() -> None:
    message = rejected([field("amps", 15, access="RW", allowed=[[-1, 32]])])
    assert "allowed interval [-1, 32]" in message


def test_field_crossing_a_hole_is_rejected() -> None:
    message = rejected([field("e", 42, "u32")], holes=[{"start": 43, "end": 53}])
    assert "field 'e': registers 42–43 (function 3) touch the hole 43–53" in message


def test_field_inside_a_hole_is_rejected() -> None:
    message = rejected([field("e", 45)], holes=[{"start": 43, "end": 53}])
    assert "field 'e'" in message and "hole 43–53" in message


def test_hole_of_another_function_code_does_not_reject_the_field() -> None:
    rmap = load([field("e", 45, function=4)], holes=[{"function": 3, "start": 43, "end": 53}])
    assert rmap.field("e").address == 45


def test_unknown_enum_table_is_rejected() -> None:
    message = rejected(
        [{"name": "s", "address": 0, "type": "u16", "enum": "statez"}],
        enums={"states": {"0": "idle"}},
    )
    assert "field 's': unknown enum table 'statez' (tables: states)" in message


def test_unknown_bits_table_is_rejected() -> None:
    message = rejected([{"name": "w", "address": 0, "type": "u16", "bits": "warn"}])
    assert "field 'w': unknown bits table 'warn' (tables: none defined)" in message


def test_bit_number_outside_the_field_width_is_rejected() -> None:
    fields = [{"name": "w", "address": 0, "type": "u16", "bits": "warn"}]
    message = rejected(fields, bits={"warn": {"0": "a", "16": "b"}})
    assert "names bit 16, outside the u16 field (allowed: 0–15)" in message
    wide = [{"name": "w", "address": 0, "type": "u32", "bits": "warn"}]
    assert load(wide, bits={"warn": {"31": "top"}}).bits_of("w") == {31: "top"}
    assert "(allowed: 0–31)" in rejected(wide, bits={"warn": {"32": "past"}})


def test_negative_bit_number_is_rejected() -> None:
    fields = [{"name": "w", "address": 0, "type": "u16", "bits": "warn"}]
    assert "names bit -1" in rejected(fields, bits={"warn": {"-1": "a"}})


def test_identification_naming_an_unknown_field_is_rejected() -> None:
    message = rejected([field("evse_id", 9)], identification=[{"field": "evse_idd", "equals": 1}])
    assert "identification names unknown field 'evse_idd'" in message


def test_missing_sentinel_outside_the_raw_range_is_rejected() -> None:
    message = rejected([field("v", 0, missing=[65536])])
    assert "field 'v': missing value 65536 is outside what u16 can hold (allowed: 0–65535)" in (
        message
    )
    assert "missing value 40000" in rejected([field("v", 0, "i16", missing=[40000])])
    assert load([field("v", 0, "i32", missing=[2147483647])]).field("v").missing == (2147483647,)


def test_field_longer_than_max_registers_per_request_is_rejected() -> None:
    message = rejected([field("energy", 0, "u64")], model={"max_registers_per_request": 2})
    assert "field 'energy': u64 needs 4 registers but the model allows at most 2" in message


def test_enum_on_a_float_field_is_rejected() -> None:
    fields = [{"name": "s", "address": 0, "type": "f32", "enum": "states"}]
    assert "need an integer type, not f32" in rejected(fields, enums={"states": {"0": "x"}})


def test_zero_scale_is_rejected() -> None:
    assert "scale 0.0 is not allowed" in rejected([field("v", 0, scale=0)])


def test_field_running_past_the_last_address_is_rejected() -> None:
    assert "past the last Modbus address 65535" in rejected([field("v", 65535, "u32")])


def test_misspelt_key_is_named() -> None:
    message = rejected([field("v", 0, scael=0.1)])
    assert message.startswith("evc2.toml: field 'v': unknown key 'scael'")


def test_address_out_of_range_names_the_limit() -> None:
    message = rejected([field("v", 70000)])
    assert "field 'v': address 70000 is out of range (allowed: at most 65535)" in message


def test_unknown_word_order_is_named() -> None:
    message = rejected([field("v", 0, "u32", word_order="BADC")])
    assert "field 'v': unknown word order 'BADC' (allowed: ABCD, CDAB)" in message


def test_model_level_problem_names_the_key() -> None:
    message = rejected([field("v", 0)], model={"max_registers_per_request": 200})
    assert "model.max_registers_per_request 200 is out of range (allowed: at most 125)" in message


def test_field_without_a_name_is_named_by_position() -> None:
    message = rejected([field("a", 0), {"address": 1, "type": "u16", "unit": "1"}])
    assert "field '#2': missing required key 'name'" in message


def test_more_problems_are_counted() -> None:
    message = rejected([field("a", 0, "u17"), field("b", 0, "u18")])
    assert message.endswith("(and 1 more problem)")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[model\nid = 1\n")
    with pytest.raises(MapError, match=r"^broken\.toml: not valid TOML"):
        load_map_file(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(MapError, match=r"^absent\.toml: cannot read the map file"):
        load_map_file(tmp_path / "absent.toml")


def test_fixture_maps_load(evc2_like: RegisterMap, meter_like: RegisterMap) -> None:
    assert len(evc2_like.fields) == 40 and evc2_like.identification[0].equals == (21571,)
    assert meter_like.holes[0].start == 43 and meter_like.word_order_of("energy_import") == "ABCD"


def test_unknown_field_lookup_suggests_close_names(evc2_like: RegisterMap) -> None:
    with pytest.raises(
        MapError, match=r"evc2-like: no field 'amps_to_us' \(did you mean amps_to_use"
    ):
        evc2_like.field("amps_to_us")


def test_unknown_model_lists_the_shipped_ones() -> None:
    with pytest.raises(MapError, match=r"unknown model 'no-such-meter' \(allowed: "):
        load_map("no-such-meter")
    with pytest.raises(MapError, match=r"is not a model id"):
        load_map("../etc/passwd")


@pytest.mark.parametrize("model_id", list_models())
def test_every_shipped_map_loads_once_and_is_cached(model_id: str) -> None:
    rmap = load_map(model_id)
    assert rmap.id == model_id and load_map(model_id) is rmap


def test_map_data_is_not_mutated_by_loading() -> None:
    data = map_data([field("a", 0, "u32")], word_order="CDAB")
    before = copy.deepcopy(data)
    map_from_dict(data, name="x.toml")
    assert data == before
