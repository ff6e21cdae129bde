"""The systemd unit, checked by the real ``systemd-analyze`` (verify and offline security)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "ampgate.service"
INSTALLED = "/usr/local/bin/ampgate"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian package systemd)"
)
MAX_EXPOSURE = 2.0


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _venv_ampgate() -> Path:
    """The ``ampgate`` console script of the running environment (the dev venv)."""
    script = Path(sys.executable).parent / "ampgate"
    if not script.exists():
        pytest.fail(f"{script} missing: install the project (scripts/setup) first")
    return script


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "ampgate.service"
    path.write_text(unit_text)
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_analyze
def test_unit_verifies_without_any_message(tmp_path):
    """verify insists that ExecStart exists; the copy points at this venv's real ampgate."""
    text = UNIT.read_text().replace(INSTALLED, str(_venv_ampgate()))
    result = _verify(text, tmp_path)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


@needs_analyze
def test_verify_reports_a_broken_unit(tmp_path):
    """The check above can fail: a typo'd key or a missing binary is reported."""
    text = UNIT.read_text().replace(INSTALLED, str(_venv_ampgate()))
    typo = _verify(text.replace("Type=notify", "Type=notfy"), tmp_path)
    assert "notfy" in typo.stdout + typo.stderr
    missing = _verify(UNIT.read_text().replace(INSTALLED, "/nonexistent/ampgate"), tmp_path)
    assert "/nonexistent/ampgate" in missing.stdout + missing.stderr


@needs_analyze
def test_security_exposure_is_ok_or_better():
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_declares_notify_watchdog_restart_and_serial_only_devices():
    d = _directives(UNIT.read_text())
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["ExecStart"] == [f"{INSTALLED} run --config /etc/ampgate/site.toml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"] and "WatchdogSec" in d
    assert d["DevicePolicy"] == ["closed"] and "PrivateDevices" not in d
    assert {a.split()[0] for a in d["DeviceAllow"]} >= {"char-ttyUSB", "char-ttyS", "char-ttyACM"}
    assert d["SupplementaryGroups"] == ["dialout"]
    assert d["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert d["MemoryDenyWriteExecute"] == ["yes"] and d["CapabilityBoundingSet"] == [""]


def test_cli_offers_the_commands_the_unit_runs():
    """ExecStartPre/ExecStart call ``check-config FILE`` and ``run --config FILE``."""
    for argv in (["check-config", "--help"], ["run", "--help"]):
        result = subprocess.run(
            [str(_venv_ampgate()), *argv], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"ampgate {' '.join(argv)}: {result.stderr}"
    run_help = subprocess.run(
        [str(_venv_ampgate()), "run", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "--config" in run_help


MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, json, mmap, urllib.request
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print("NO-MDWE"); raise SystemExit(0)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        raise SystemExit("write+execute mapping was allowed: MDWE not in force")
    except PermissionError:
        pass
    import asyncio, pydantic, pymodbus.client, structlog, ampgate.cli
    from ampgate.interfaces.api import make_app
    from ampgate.interfaces.http import HttpServer
    from ampgate.interfaces.snapshot import LoopHealth, DaemonSnapshot
    from ampgate.interfaces.store import SnapshotStore
    import time
    loop = LoopHealth(last_iteration_monotonic=time.monotonic())
    store = SnapshotStore(DaemonSnapshot(loop=loop))
    async def main():
        server = HttpServer(make_app(store), port=0)
        host, port = await server.start()
        status = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5).status)
        await server.stop()
        return status
    status = asyncio.run(main())
    print("OK", status)
    """
)


def test_runtime_works_with_memory_deny_write_execute():
    """MemoryDenyWriteExecute=yes: the kernel's PR_SET_MDWE gives the same W^X rule to a probe."""
    result = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if result.stdout.strip() == "NO-MDWE":
        pytest.skip("kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert result.stdout.strip() == "OK 200"
