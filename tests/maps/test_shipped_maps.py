"""Every shipped register map loads through the codec and keeps the shared contracts.

The contracts are those of docs/architecture.md: the EVC2 field names and addresses, the meter
fields every consumer relies on (with their units), writable fields carrying their allowed values,
unconfirmed facts carrying a note, and block reads that respect each map's limits and holes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ampgate.codec import RegisterMap, list_models, load_map, load_map_file, plan_reads

MAPS_DIR = Path(__file__).resolve().parents[2] / "register_maps"

SHIPPED = {
    "teltocharge-evc2",
    "siemens-7km2200",
    "phoenix-eem-mb371",
    "eastron-sdm630",
    "eastron-sdm72d",
    "eastron-sdm120",
    "abb-b23",
    "abb-b21",
}
METERS = sorted(SHIPPED - {"teltocharge-evc2"})

#: docs/architecture.md, "Field names shared across the code": EVC2 name -> first register.
EVC2_FIELDS = {
    "voltage_l1": 0,
    "voltage_l2": 1,
    "voltage_l3": 2,
    "current_l1": 3,
    "current_l2": 4,
    "current_l3": 5,
    "evse_status": 6,
    "evse_status_time": 7,
    "evse_id": 9,
    "three_phase_possible": 10,
    "phase_change_possible": 11,
    "amp_limit": 12,
    "phase_connected": 13,
    "phase_to_use": 14,
    "amps_to_use": 15,
    "request_stop_charging": 16,
    "request_authorize": 17,
    "socket_lock_mode": 18,
    "communication_timeout": 19,
    "failsafe_current": 20,
    "request_reboot": 21,
    "require_authorization": 22,
    "product_code": 23,
    "serial_number": 24,
    "firmware_version": 26,
    "charge_point_state": 27,
    "max_power_from_grid": 28,
    "user_max_current": 29,
    "lock_status": 30,
    "internal_temperature": 31,
    "ocpp_connected": 32,
    "iec_state": 33,
    "warning_code": 34,
    "error_code": 35,
    "current_limit_cause": 36,
    "max_supported_power": 37,
    "active_power": 38,
    "session_energy": 39,
    "session_duration": 40,
    "lifetime_energy": 41,
}

METER_UNITS = {"voltage": "V", "current": "A", "power": "W"}


def test_the_shipped_models_are_exactly_the_map_files() -> None:
    assert set(list_models()) == SHIPPED
    assert {p.stem for p in MAPS_DIR.glob("*.toml")} == SHIPPED


@pytest.mark.parametrize("model_id", sorted(SHIPPED))
def test_each_map_loads_and_its_id_is_its_file_name(model_id: str) -> None:
    rmap = load_map(model_id)
    from_file = load_map_file(MAPS_DIR / f"{model_id}.toml")
    assert rmap.id == from_file.id == model_id
    assert [f.name for f in rmap.fields] == [f.name for f in from_file.fields]
    assert rmap.model.source, "every map names its source"


@pytest.mark.parametrize("model_id", sorted(SHIPPED))
def test_unconfirmed_facts_say_why(model_id: str) -> None:
    rmap = load_map(model_id)
    silent = [f.name for f in rmap.fields if not f.verified and not f.note.strip()]
    assert silent == []


@pytest.mark.parametrize("model_id", sorted(SHIPPED))
def test_writable_fields_list_whole_allowed_values(model_id: str) -> None:
    rmap = load_map(model_id)
    for f in rmap.fields:
        if f.writable:
            assert f.allowed, f.name
            assert f.integer, f"{f.name}: every shipped writable field takes whole numbers"


def test_evc2_has_the_architecture_field_names_at_their_addresses() -> None:
    rmap = load_map("teltocharge-evc2")
    assert {f.name: f.address for f in rmap.fields} == EVC2_FIELDS


def test_evc2_covers_registers_0_to_44_once_each_with_holding_registers() -> None:
    rmap = load_map("teltocharge-evc2")
    covered = sorted(r for f in rmap.fields for r in range(f.address, f.address + f.words))
    assert covered == list(range(45))
    assert {rmap.function_of(f) for f in rmap.fields} == {3}


def test_evc2_multiword_fields_are_low_word_first() -> None:
    rmap = load_map("teltocharge-evc2")
    multi = {f.name: (f.type, rmap.word_order_of(f)) for f in rmap.fields if f.words > 1}
    assert multi == {
        "evse_status_time": ("u32", "CDAB"),
        "serial_number": ("u32", "CDAB"),
        "lifetime_energy": ("u64", "CDAB"),
    }


def test_evc2_writable_set_and_documented_defaults() -> None:
    rmap = load_map("teltocharge-evc2")
    writable = {f.name for f in rmap.fields if f.writable}
    assert writable == {
        "phase_to_use",
        "amps_to_use",
        "request_stop_charging",
        "request_authorize",
        "socket_lock_mode",
        "communication_timeout",
        "failsafe_current",
        "request_reboot",
    }
    defaults = {f.name: f.default for f in rmap.fields if f.default is not None}
    assert defaults == {
        "evse_id": 21571,
        "socket_lock_mode": 0,
        "communication_timeout": 30,
        "failsafe_current": 6,
        "request_reboot": 0,
        "product_code": 1234,
        "serial_number": 123456789,
        "max_power_from_grid": 30,
        "user_max_current": 10,
    }


def test_evc2_reads_in_one_request() -> None:
    rmap = load_map("teltocharge-evc2")
    (request,) = plan_reads(rmap)
    assert (request.function, request.address, request.count) == (3, 0, 45)


def _phase_fields(rmap: RegisterMap) -> set[str]:
    quantities = ("voltage", "current", "power")
    return {f.name for f in rmap.fields if f.name.startswith(quantities) and f.name[-3:-1] == "_l"}


@pytest.mark.parametrize("model_id", METERS)
def test_meter_has_the_shared_fields_with_their_units(model_id: str) -> None:
    rmap = load_map(model_id)
    assert rmap.model.kind == "meter"
    phases = range(1, rmap.model.phases + 1)
    expected = {f"{q}_l{n}" for q in METER_UNITS for n in phases}
    assert _phase_fields(rmap) == expected
    for name in expected:
        assert rmap.field(name).unit == METER_UNITS[name.split("_")[0]], name
    assert rmap.field("frequency").unit == "Hz"
    for name in ("energy_import", "energy_export"):
        assert rmap.field(name).unit in {"Wh", "kWh"}, name
    # A single-phase meter without a separate total register offers power_l1 as its total.
    total = "power_total" if rmap.has_field("power_total") else "power_l1"
    assert rmap.model.phases == 1 or total == "power_total"
    assert rmap.field(total).unit == "W"


@pytest.mark.parametrize("model_id", METERS)
def test_meter_block_reads_respect_the_request_limit_and_holes(model_id: str) -> None:
    rmap = load_map(model_id)
    plan = plan_reads(rmap, gap=200)
    covered = {name for request in plan for name in request.fields}
    assert covered == {f.name for f in rmap.fields}
    for request in plan:
        assert request.count <= rmap.max_registers_per_request
        for hole in rmap.holes:
            assert not hole.overlaps(request.function, request.address, request.count)


def test_siemens_plan_splits_around_the_missing_registers_43_to_53() -> None:
    rmap = load_map("siemens-7km2200")
    plan = plan_reads(rmap, ["power_l3", "frequency"], gap=100)
    assert len(plan) == 2  # registers 29-56 would span the hole 43-53
    assert rmap.field("frequency").address == 55  # confirmed by two public drivers


def test_eastron_measurements_are_input_registers_and_identity_holding() -> None:
    for model_id in ("eastron-sdm630", "eastron-sdm72d", "eastron-sdm120"):
        rmap = load_map(model_id)
        for f in rmap.fields:
            expected = 3 if f.name in {"serial_number", "meter_code"} else 4
            assert rmap.function_of(f) == expected, (model_id, f.name)
        assert rmap.field("serial_number").address == 0xFC00
        assert rmap.field("meter_code").address == 0xFC02
    codes = {
        m: [c.equals for c in load_map(m).identification]
        for m in ("eastron-sdm630", "eastron-sdm72d", "eastron-sdm120")
    }
    assert codes == {
        "eastron-sdm630": [],
        "eastron-sdm72d": [(0x0089,)],
        "eastron-sdm120": [(0x0020,)],
    }
    limits = {m: load_map(m).max_registers_per_request for m in codes}
    assert limits["eastron-sdm630"] == 60  # the SDM630 protocol document V1.7
    assert limits["eastron-sdm72d"] == 60


def test_phoenix_energy_import_is_0x8100_and_export_0x8106() -> None:
    rmap = load_map("phoenix-eem-mb371")
    assert rmap.field("energy_import").address == 0x8100  # Ea+ "Bezug"
    assert rmap.field("energy_export").address == 0x8106  # Ea- "Abgabe"
    for name in ("energy_import", "energy_export"):
        assert rmap.field(name).unit == "Wh" and rmap.field(name).word_order == "CDAB"


def test_sdm72d_map_says_it_fits_the_v2_only() -> None:
    rmap = load_map("eastron-sdm72d")
    assert "v2" in rmap.model.name


def test_no_shipped_map_names_a_path_outside_the_repository() -> None:
    for path in sorted(MAPS_DIR.glob("*.toml")):
        text = path.read_text()
        assert "/work/" not in text and "/shared/" not in text, path.name


def test_abb_single_phase_is_a_variant_with_the_same_registers() -> None:
    b23, b21 = load_map("abb-b23"), load_map("abb-b21")
    assert b21.model.variant_of == "abb-b23"
    for f in b21.fields:
        twin = b23.field(f.name)
        assert (f.address, f.type, f.scale, f.unit, f.missing) == (
            twin.address,
            twin.type,
            twin.scale,
            twin.unit,
            twin.missing,
        )
