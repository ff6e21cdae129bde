"""``ampgate scan`` over loopback TCP and an RTU pty pair, against the simulators."""

from __future__ import annotations

import io
import json
import re
import tomllib

import pytest

from ampgate.cli.commission.device_io import parse_units
from ampgate.cli.commission.scan import Progress
from ampgate.cli.main import main
from ampgate.config import check_config_text
from ampgate.errors import ConfigError
from ampgate.sim import (
    Evc2Simulator,
    Faults,
    FaultyDevice,
    ManualClock,
    MeterSimulator,
    ModbusExceptionCode,
    constant_load,
)


def _found_rows(out: str) -> dict[int, list[str]]:
    rows: dict[int, list[str]] = {}
    for line in out.splitlines():
        cells = [c for c in re.split(r"\s{2,}", line.strip()) if c]
        if len(cells) >= 4 and cells[0].startswith(("tcp://", "rtu://")) and cells[1].isdigit():
            rows[int(cells[1])] = cells
    return rows


def _snippet(out: str) -> str:
    return out[out.index("# Suggested by") :]


def test_scan_finds_exactly_the_simulated_devices_on_a_range_with_gaps(site, capsys):
    assert main(["scan", site.address(), "--units", "1-10,100", "--timeout", "0.1"]) == 0
    captured = capsys.readouterr()
    rows = _found_rows(captured.out)
    assert sorted(rows) == [1, 2, 5, 100]
    for unit in (1, 2, 5):
        assert rows[unit][2:4] == ["teltocharge-evc2", "identified"]
        assert "evse_id == 21571" in rows[unit][4]
    assert "serial_number 123456793" in rows[5][5]  # unit 5's own serial number
    assert rows[100][2:4] == ["eastron-sdm72d", "identified"]
    assert "meter_code == 137" in rows[100][4]
    # progress: one line per pass when stderr is not a terminal, no per-unit spam
    assert captured.err.strip().splitlines() == [f"scanning {site.address()}: 11 unit id(s)"]


def test_scan_snippet_is_a_site_file_that_passes_check_config_once_the_fuse_is_set(site, capsys):
    assert main(["scan", site.address(), "--units", "1-2,5,100", "--timeout", "0.1"]) == 0
    snippet = _snippet(capsys.readouterr().out)
    assert "# limit = [L1, L2, L3]" in snippet
    config, problems = check_config_text(snippet)
    assert config is None and any("groups.main.limit" in p for p in problems)
    filled = snippet.replace("# limit = [L1, L2, L3]", "limit = [63, 63, 63]  #")
    config, problems = check_config_text(filled)
    assert problems == []
    assert config is not None
    assert {n: (c.bus, c.unit_id) for n, c in config.chargers.items()} == {
        "charger1": ("lan", 1),
        "charger2": ("lan", 2),
        "charger5": ("lan", 5),
    }
    assert config.meters["meter100"].model == "eastron-sdm72d"
    assert config.buses["lan"].port == site.port


def test_meter_without_identification_is_reported_as_probable(serve_devices, capsys):
    clock = ManualClock(0.0)
    served = serve_devices({3: MeterSimulator("siemens-7km2200", constant_load(5.0), clock)})
    assert main(["scan", served.address(), "--units", "2-4", "--timeout", "0.1"]) == 0
    out = capsys.readouterr().out
    rows = _found_rows(out)
    assert list(rows) == [3]
    assert rows[3][2:4] == ["siemens-7km2200", "probable"]
    assert "frequency 50 Hz" in rows[3][4]
    assert "# probable model" in _snippet(out)


def test_scan_json_lists_devices_and_snippet(site, capsys):
    assert main(["scan", site.address(), "--units", "4-5", "--timeout", "0.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["unit_id"], d["model"], d["match"]) for d in data["found"]] == [
        (5, "teltocharge-evc2", "identified")
    ]
    assert data["found"][0]["details"]["serial_number"] == "123456793"
    assert "[chargers.charger5]" in data["snippet"]


def test_scan_of_an_empty_range_says_nothing_was_found(site, capsys):
    assert main(["scan", site.address(), "--units", "7-8", "--timeout", "0.1"]) == 1
    assert "nothing found" in capsys.readouterr().out


def test_scan_rtu_over_a_pty_pair_finds_the_charger_per_baud_rate(rtu_site, capsys):
    client, _charger = rtu_site
    args = ["scan", f"rtu://{client}", "--units", "1-3", "--baud", "9600,19200"]
    assert main([*args, "--timeout", "0.1"]) == 0
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines() if line.startswith("rtu://")]
    # a pty moves bytes whatever the baud rate, so the charger answers in both passes
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (f"rtu://{client}?baud={b}&parity=N&stopbits=1&bytesize=8", "2", "teltocharge-evc2",
         "identified")
        for b in (9600, 19200)
    ]  # fmt: skip
    assert len(captured.err.strip().splitlines()) == 2  # one progress line per baud rate
    snippet = _snippet(captured.out)
    assert 'kind = "serial"' in snippet and f'port = "{client}"' in snippet
    assert "baudrate = 9600" in snippet and "baudrate = 19200" in snippet
    assert "different baud rates" in snippet
    site = tomllib.loads(snippet)
    assert {n: c["bus"] for n, c in site["chargers"].items()} == {
        "charger2": "rs485",
        "charger2_rs485_2": "rs485_2",
    }
    assert (site["buses"]["rs485"]["baudrate"], site["buses"]["rs485_2"]["baudrate"]) == (
        9600,
        19200,
    )


def test_read_over_rtu_uses_the_model_serial_defaults(rtu_site, capsys):
    client, _charger = rtu_site
    assert main(["read", f"rtu://{client}/2", "serial_number", "evse_id", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["device"] == f"rtu://{client}/2?baud=9600&parity=N&stopbits=1&bytesize=8"
    assert data["fields"]["serial_number"]["value"] == 123456789


def test_scan_refuses_a_unit_id_in_the_bus_address(capsys):
    assert main(["scan", "tcp://127.0.0.1:502/3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drop the unit id and use --units" in err[0]


def test_scan_refuses_baud_rates_on_tcp(capsys):
    assert main(["scan", "tcp://127.0.0.1:502", "--baud", "9600"]) == 2
    assert "--baud does not apply" in capsys.readouterr().err


def test_unit_ranges_parse_and_bad_ones_name_the_allowed_form():
    assert parse_units("1-3,100,2") == [1, 2, 3, 100]
    for bad in ("x", "5-1", "1-300", ""):
        with pytest.raises(ConfigError, match="--units"):
            parse_units(bad)


def test_a_device_matching_no_map_is_unknown_and_gateway_failures_are_absent(serve_devices, capsys):
    served = serve_devices(
        {
            2: FaultyDevice(faults=Faults(exception=ModbusExceptionCode.ILLEGAL_DATA_ADDRESS)),
            3: FaultyDevice(
                faults=Faults(exception=ModbusExceptionCode.GATEWAY_TARGET_NO_RESPONSE)
            ),
            4: FaultyDevice(),  # silent
        }
    )
    assert main(["scan", served.address(), "--units", "2-4", "--timeout", "0.1"]) == 0
    out = capsys.readouterr().out
    rows = _found_rows(out)
    assert list(rows) == [2]
    assert rows[2][2:4] == ["?", "unknown"]
    assert "answers but matches no map" in rows[2][4] and "exception 2" in rows[2][4]
    assert "[chargers." not in out and "[meters." not in out


def test_garbled_rtu_answers_are_reported_without_probing_every_map(serve_rtu_devices, capsys):
    charger = Evc2Simulator(ManualClock(0.0))
    client = serve_rtu_devices({1: FaultyDevice(charger, Faults(corrupt_crc=True))})
    assert main(["scan", f"rtu://{client}", "--units", "1", "--timeout", "0.1"]) == 0
    rows = _found_rows(capsys.readouterr().out)
    assert rows[1][2:4] == ["?", "unknown"] and "bad CRC" in rows[1][4]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_rewritten_line_on_a_terminal_and_one_line_per_pass_otherwise():
    tty = _Terminal()
    progress = Progress(tty)
    progress.start("rtu:///dev/ttyUSB0", 3)
    for done in (1, 2, 3):
        progress.update("rtu:///dev/ttyUSB0", done, 3, done - 1)
    progress.finish()
    text = tty.getvalue()
    assert "\n" not in text and text.count("\r") == 4
    assert "unit 3/3, found 2" in text
    log = io.StringIO()
    progress = Progress(log)
    progress.start("tcp://10.0.0.5:502", 247)
    for done in range(1, 248):
        progress.update("tcp://10.0.0.5:502", done, 247, 0)
    progress.finish()
    assert log.getvalue() == "scanning tcp://10.0.0.5:502: 247 unit id(s)\n"
