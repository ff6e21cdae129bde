"""``ampgate read`` and ``ampgate write`` against simulated devices over loopback TCP."""

from __future__ import annotations

import json

from ampgate.cli.main import main
from ampgate.codec import Reading


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_read_json_of_simulated_evc2_gives_serial_and_evse_id(site, capsys):
    assert main(["read", site.address(1), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "teltocharge-evc2"
    assert data["device"] == site.address(1)
    fields = data["fields"]
    assert fields["serial_number"]["value"] == 123456789
    assert fields["evse_id"]["value"] == 21571
    assert fields["voltage_l1"] == {
        "value": 230,
        "raw": 230,
        "unit": "V",
        "missing": False,
        "unknown": False,
    }
    assert fields["internal_temperature"]["value"] == 25.0  # raw 250, scale 0.1
    assert fields["warning_code"]["value"] == []  # bits as a list
    assert isinstance(fields["phase_to_use"]["value"], str)  # enums by label
    assert len(fields) == 40  # every field of the map


def test_read_selected_fields_prints_an_aligned_table_with_units_and_labels(site, capsys):
    fields = ["serial_number", "amp_limit", "internal_temperature", "max_supported_power"]
    assert main(["read", site.address(2), *fields]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"teltocharge-evc2 at {site.address(2)}"
    assert out[1].split() == ["field", "value", "raw"]
    rows = {line.split()[0]: line for line in out[3:]}
    assert list(rows) == fields
    assert "123456790" in rows["serial_number"]  # unit 2's serial
    assert "32 A" in rows["amp_limit"]
    assert "25 °C" in rows["internal_temperature"] and rows["internal_temperature"].endswith("250")
    assert "22 kW (3ph 32 A)" in rows["max_supported_power"]
    value_column = out[1].index("value")
    assert all(line[value_column - 2 : value_column] == "  " for line in out[3:])


def test_read_meter_by_model_decodes_measurements(site, capsys):
    args = ["read", site.address(100), "--model", "eastron-sdm72d", "--json"]
    args += ["voltage_l1", "current_l2", "frequency", "meter_code"]
    assert main(args) == 0
    fields = json.loads(capsys.readouterr().out)["fields"]
    assert abs(fields["voltage_l1"]["value"] - 230.0) < 0.01
    assert fields["current_l2"]["unit"] == "A"
    assert abs(fields["frequency"]["value"] - 50.0) < 0.01
    assert fields["meter_code"]["raw"] == 0x0089


def test_read_of_a_meter_with_the_default_model_says_how_to_choose(site, capsys):
    assert main(["read", site.address(100)]) == 2
    line = _one_error_line(capsys)
    assert site.address(100) in line
    assert "not a teltocharge-evc2" in line and "--model" in line and "ampgate scan" in line


def test_read_with_the_wrong_explicit_model_is_refused_by_identification(site, capsys):
    assert main(["read", site.address(100), "--model", "eastron-sdm120"]) == 2
    line = _one_error_line(capsys)
    assert "is not a eastron-sdm120 (meter_code is 137, expected 32)" in line
    assert "check --model" in line
    # a charger has no meter-code register at all: exception 2, with the same advice
    assert main(["read", site.address(1), "--model", "eastron-sdm120"]) == 2
    line = _one_error_line(capsys)
    assert "identification failed: exception 2 (illegal data address)" in line
    assert "check --model" in line


def test_unknown_field_is_refused_before_connecting(closed_port, capsys):
    assert main(["read", f"tcp://127.0.0.1:{closed_port}/1", "amps_to_uze"]) == 2
    line = _one_error_line(capsys)
    assert "no field 'amps_to_uze'" in line and "amps_to_use" in line


def test_unreachable_device_is_one_line_with_nonzero_exit(closed_port, capsys):
    address = f"tcp://127.0.0.1:{closed_port}/1"
    assert main(["read", address, "--timeout", "0.2"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("ampgate: ")
    assert address in line and "cannot connect" in line and "check the host and port" in line
    assert capsys.readouterr().out == ""


def test_silent_unit_times_out_with_a_hint_about_unit_id_and_wiring(site, capsys):
    assert main(["read", site.address(9), "--timeout", "0.1", "evse_id"]) == 2
    line = _one_error_line(capsys)
    assert "no answer within 0.1 s" in line and "check the unit id" in line


def test_address_without_unit_id_says_where_it_goes(capsys):
    assert main(["read", "tcp://127.0.0.1:502"]) == 2
    assert "has no unit id" in _one_error_line(capsys)


def test_write_amps_to_use_16_prints_old_and_new_and_reads_back(site, capsys):
    charger = site.devices[1]
    charger.image.set_raw("amps_to_use", 10)
    assert main(["write", site.address(1), "amps_to_use", "16"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"teltocharge-evc2 at {site.address(1)}: amps_to_use 10 A → 16 A (read back)"
    assert charger.image.words_of("amps_to_use") == [16]
    assert main(["read", site.address(1), "amps_to_use", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"]["amps_to_use"]["value"] == 16


def test_write_enum_field_by_label(site, capsys):
    assert main(["write", site.address(2), "phase_to_use", "L1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["field"] == "phase_to_use" and data["new"] == "L1"
    assert site.devices[2].image.words_of("phase_to_use") == [0]


def test_write_3_amps_is_refused_with_the_allowed_range_and_nothing_is_sent(site, capsys):
    charger = site.devices[5]
    before = charger.image.words_of("amps_to_use")
    requests_before = site.server.requests
    assert main(["write", site.address(5), "amps_to_use", "3"]) == 2
    line = _one_error_line(capsys)
    assert (
        line == "ampgate: teltocharge-evc2/amps_to_use: 3 A is not allowed (allowed: 0 or 6–32 A)"
    )
    assert charger.image.words_of("amps_to_use") == before
    assert site.server.requests == requests_before  # not even a read reached the device


def test_refused_value_needs_no_device_at_all(closed_port, capsys):
    assert main(["write", f"tcp://127.0.0.1:{closed_port}/1", "failsafe_current", "40"]) == 2
    assert "allowed: 0 or 6–32 A" in _one_error_line(capsys)


def test_write_to_read_only_field_is_refused(site, capsys):
    assert main(["write", site.address(1), "evse_id", "1"]) == 2
    assert "read-only" in _one_error_line(capsys)


def test_missing_values_print_as_a_dash_and_json_null():
    from ampgate.cli.commission.format import MISSING, json_value, value_text

    missing = Reading("voltage_l2", 0xFFFFFFFF, None, "V", missing=True)
    assert value_text(missing) == MISSING == "—"
    assert json_value(missing) is None
    bits = Reading("error_code", 5, frozenset({"b", "a"}), None)
    assert value_text(bits) == "a, b" and json_value(bits) == ["a", "b"]
