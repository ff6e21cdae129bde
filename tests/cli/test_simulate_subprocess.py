"""The real ``ampgate`` executable: ``simulate`` in a subprocess, read/scan against it, errors."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ampgate.cli.main import main

AMPGATE = str(Path(sys.executable).parent / "ampgate")


def _start_simulate(*extra: str) -> tuple[subprocess.Popen[str], int, list[str]]:
    where = () if "--serial" in extra else ("--tcp-port", "0")
    proc = subprocess.Popen(
        [AMPGATE, "simulate", *where, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("try: ") and "--serial" in extra:
            return proc, 0, lines
        if line.startswith("try: "):
            match = re.search(r"Modbus TCP on 127\.0\.0\.1:(\d+)", "\n".join(lines))
            assert match, lines
            return proc, int(match.group(1)), lines
    proc.kill()
    pytest.fail(f"simulate did not start: {lines} {proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture
def simulated() -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    proc, port, lines = _start_simulate("--chargers", "2", "--meter", "eastron-sdm630")
    try:
        yield proc, port, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def test_simulate_prints_where_it_serves_and_stops_cleanly_on_ctrl_c(simulated):
    proc, port, lines = simulated
    assert lines[0] == "simulating (Ctrl-C to stop):"
    assert f"  Modbus TCP on 127.0.0.1:{port}" in lines
    assert "  unit 1: teltocharge-evc2 rotation (1, 2, 3)" in lines
    assert "  unit 2: teltocharge-evc2 rotation (2, 3, 1)" in lines
    assert "  unit 100: eastron-sdm630" in lines
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert err == ""


def test_ampgate_executable_reads_a_simulated_charger(simulated):
    _proc, port, _lines = simulated
    result = subprocess.run(
        [AMPGATE, "read", f"tcp://127.0.0.1:{port}/2", "serial_number", "evse_id", "--json"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    fields = json.loads(result.stdout)["fields"]
    assert fields["serial_number"]["value"] == 123456789
    assert fields["evse_id"]["value"] == 21571


def test_scan_of_the_simulate_command_finds_its_chargers_and_meter(simulated, capsys):
    _proc, port, _lines = simulated
    args = ["scan", f"tcp://127.0.0.1:{port}", "--units", "1-3,100", "--timeout", "0.1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    found = re.findall(r"^tcp://\S+\s+(\d+)\s+(\S+)\s+(\S+)", out, re.MULTILINE)
    assert found == [
        ("1", "teltocharge-evc2", "identified"),
        ("2", "teltocharge-evc2", "identified"),
        ("100", "eastron-sdm630", "probable"),
    ]
    fields = ["voltage_l1", "current_l1", "power_total", "frequency", "energy_import"]
    meter = f"tcp://127.0.0.1:{port}/100"
    assert main(["read", meter, "--model", "eastron-sdm630", *fields]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"eastron-sdm630 at {meter}"
    rows = {line.split()[0]: line.split() for line in out[3:]}
    assert list(rows) == fields
    assert rows["voltage_l1"][1:3] == ["230", "V"] and rows["frequency"][1:3] == ["50", "Hz"]
    assert rows["energy_import"][2] == "kWh" and float(rows["energy_import"][1]) >= 1000


def test_simulate_stops_after_duration():
    started = time.monotonic()
    proc, _port, _lines = _start_simulate("--chargers", "1", "--duration", "0.5")
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 8


def test_ampgate_executable_error_is_one_line_with_nonzero_exit(closed_port):
    result = subprocess.run(
        [AMPGATE, "read", f"tcp://127.0.0.1:{closed_port}/1", "--timeout", "0.2"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ampgate: teltocharge-evc2 at tcp://127.0.0.1:{closed_port}/1")


def test_debug_flag_shows_the_traceback(closed_port):
    result = subprocess.run(
        [AMPGATE, "--debug", "read", f"tcp://127.0.0.1:{closed_port}/1", "--timeout", "0.2"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "TransportError" in result.stderr


def test_simulate_refuses_a_port_in_use(simulated, capsys):
    _proc, port, _lines = simulated
    assert main(["simulate", "--tcp-port", str(port), "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--tcp-port {port}" in err[0]


@pytest.mark.parametrize("emulation", [(), ("--line-emulation",)], ids=["plain", "line-emulation"])
def test_simulate_serves_rtu_on_a_serial_path(socat_pair, capsys, emulation):
    client, server_end = socat_pair
    proc, _port, lines = _start_simulate("--serial", server_end, "--baud", "19200", *emulation)
    try:
        suffix = ", line emulation" if emulation else ""
        assert f"  Modbus RTU on {server_end} at 19200 baud N1{suffix}" in lines
        assert main(["read", f"rtu://{client}/1?baud=19200", "evse_id", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["fields"]["evse_id"]["value"] == 21571
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
