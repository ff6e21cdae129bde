"""``ampgate maps``: the model listing and one map as a table, as text and JSON."""

from __future__ import annotations

import json

import pytest

from ampgate.cli.main import main
from ampgate.codec import list_models, load_map


def test_maps_lists_every_shipped_model_with_kind_phases_and_serial_defaults(capsys):
    assert main(["maps"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "vendor", "name", "kind", "phases", "serial", "defaults"]
    rows = {line.split()[0]: line for line in out[2:]}
    assert sorted(rows) == list_models()
    evc2 = rows["teltocharge-evc2"]
    assert "Teltonika Energy" in evc2 and "charger" in evc2 and "9600 8N1, unit 1" in evc2
    assert "19200 8N2, unit 126" in rows["siemens-7km2200"]
    assert "2400 8N1" in rows["eastron-sdm120"]


def test_maps_json_gives_models_with_serial_settings_and_identification(capsys):
    assert main(["maps", "--json"]) == 0
    models = {m["id"]: m for m in json.loads(capsys.readouterr().out)}
    assert sorted(models) == list_models()
    evc2 = models["teltocharge-evc2"]
    assert evc2["kind"] == "charger" and evc2["phases"] == 3
    assert evc2["serial"] == {
        "baudrate": 9600,
        "parity": "N",
        "stopbits": 1,
        "bytesize": 8,
        "unit_id": 1,
    }
    assert evc2["identification"] == [{"field": "evse_id", "equals": [21571]}]
    assert models["eastron-sdm630"]["identification"] == []


def _row(out: str, name: str) -> list[str]:
    for line in out.splitlines():
        cells = line.split("  ")
        if name in [c.strip() for c in cells]:
            return [c.strip() for c in cells if c.strip()]
    raise AssertionError(f"no row for {name}")


def test_maps_evc2_table_shows_address_type_order_scale_unit_range_and_verified(capsys):
    assert main(["maps", "teltocharge-evc2"]) == 0
    out = capsys.readouterr().out
    assert "identification: evse_id == 21571" in out
    assert _row(out, "amps_to_use") == [
        "15", "03", "amps_to_use", "RW", "u16", "1", "A", "allowed 0 or 6–32 A", "yes"
    ]  # fmt: skip
    assert _row(out, "serial_number")[:5] == ["24-25", "03", "serial_number", "R", "u32"]
    assert "CDAB" in _row(out, "lifetime_energy") and "0.01" in _row(out, "lifetime_energy")
    assert _row(out, "current_l1")[5:7] == ["0.1", "A"]
    assert "enum phases: 0-7 (8 values)" in _row(out, "phase_to_use")[-2]
    assert "bits" in _row(out, "error_code")[-2]
    # one row per field, nothing dropped
    rows = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(rows) == len(load_map("teltocharge-evc2").fields)


def test_maps_marks_unverified_fields_and_explains_them(capsys):
    rmap = load_map("eastron-sdm630")
    unverified = [f.name for f in rmap.fields if not f.verified]
    assert unverified, "the SDM630 map keeps its unconfirmed meter code unverified"
    assert main(["maps", "eastron-sdm630"]) == 0
    out = capsys.readouterr().out
    for name in unverified:
        assert _row(out, name)[-1] == "NO"
        assert f"  {name}: " in out.split("unverified:")[1]


def test_maps_shows_a_maps_holes_and_missing_identification(capsys):
    assert main(["maps", "siemens-7km2200"]) == 0
    out = capsys.readouterr().out
    assert "identification: none" in out
    assert "hole: registers 43-53" in out


def test_maps_json_of_one_model_is_the_whole_map(capsys):
    assert main(["maps", "eastron-sdm120", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["id"] == "eastron-sdm120"
    names = [f["name"] for f in data["fields"]]
    assert names == [f.name for f in load_map("eastron-sdm120").fields]
    assert data["source"].endswith("eastron-sdm120.toml")


def test_unknown_model_is_one_line_naming_the_known_models(capsys):
    assert main(["maps", "teltocharge-evc3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'teltocharge-evc3' is not a known model" in err[0]
    assert "teltocharge-evc2" in err[0]


@pytest.mark.parametrize("model", list_models())
def test_every_shipped_map_prints_as_a_table(capsys, model):
    assert main(["maps", model]) == 0
    assert model in capsys.readouterr().out
