"""The daemon as a process: SIGKILL leaves the site on failsafe, SIGTERM writes the shutdown
current, SIGHUP reloads (keeping the old config when the new one is invalid), and the demo runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from gateway.simsite import SimSite, start_site

ROOT = Path(__file__).resolve().parents[2]
AMPGATE = [sys.executable, "-m", "ampgate"]


async def _start_daemon(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *AMPGATE,
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _replace(path: Path, text: str) -> None:
    """Write a file atomically, as an editor or a deployment tool does."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def _setpoints(site: SimSite) -> dict[str, int]:
    return {n: int(s.image.raw("amps_to_use")) for n, s in site.chargers.items()}


def _events(stderr: bytes) -> list[dict]:
    out = []
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def test_sigkill_leaves_every_charger_on_failsafe_and_the_fuse_holds(tmp_path):
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0))
    config = tmp_path / "site.toml"
    config.write_text(site.config_text(watchdog_seconds=2))
    proc = await _start_daemon(config)
    try:
        await _until(lambda: min(_setpoints(site).values()) > 6, 20, "setpoints above failsafe")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed_at = time.monotonic()
        # The gateway is gone: the building rises to the configured fallback load (8 A).
        site.building[:] = [8.0, 8.0, 8.0]
        await _until(
            lambda: all(s.watchdog_expired for s in site.chargers.values()),
            2 + 1.0,
            "the watchdog of every charger",
        )
        assert time.monotonic() - killed_at <= 2 + 1.0
        await asyncio.sleep(0.3)  # the cars follow the failsafe current (0.1 s reaction)
        for name, sim in site.chargers.items():
            assert sim.allowed_current == 6, name
            assert sim.current <= 6, name
        assert max(site.true_currents()) <= site.limit
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await site.stop()


async def test_sigterm_writes_the_failsafe_current_and_exits_cleanly(tmp_path):
    site = await start_site(2, limit=32)
    config = tmp_path / "site.toml"
    config.write_text(site.config_text())
    proc = await _start_daemon(config)
    try:
        await _until(lambda: min(_setpoints(site).values()) > 6, 20, "setpoints above failsafe")
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        _, stderr = await asyncio.wait_for(proc.communicate(), 5)
        assert proc.returncode == 0, stderr.decode()
        assert time.monotonic() - began < 4
        assert _setpoints(site) == {"c1": 6, "c2": 6}
        names = [e["event"] for e in _events(stderr)]
        assert names.count("shutdown_setpoint") == 2 and "daemon_stopped" in names
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await site.stop()


async def test_sighup_keeps_the_old_config_when_the_new_one_is_invalid(tmp_path):
    site = await start_site(1, limit=32)
    config = tmp_path / "site.toml"
    config.write_text(site.config_text(watchdog_seconds=2))
    proc = await _start_daemon(config)
    try:
        await _until(lambda: _setpoints(site)["c1"] > 6, 20, "a setpoint")
        text = site.config_text(watchdog_seconds=2)
        _replace(config, text.replace("unit_id = 1\n", "unit_id = 0\n"))
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.6)
        requests = site.chargers["c1"].requests
        await asyncio.sleep(0.6)
        assert site.chargers["c1"].requests > requests  # still polling under the old config
        _replace(config, site.config_text(watchdog_seconds=3))
        proc.send_signal(signal.SIGHUP)
        await _until(
            lambda: site.chargers["c1"].image.raw("communication_timeout") == 3, 5, "the reload"
        )
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 5)
        assert proc.returncode == 0
        events = _events(stderr)
        (refused,) = [e for e in events if e["event"] == "config_reload_refused"]
        assert any("chargers.c1.unit_id: 0 is out of range" in p for p in refused["problems"]), (
            refused
        )
        assert [e["event"] for e in events].count("config_reloaded") == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await site.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _http_status(port: int, path: str = "/healthz") -> int | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # nobody listening


async def test_sighup_applies_the_new_log_and_metrics_sections(tmp_path):
    site = await start_site(1, limit=32)
    config = tmp_path / "site.toml"
    first, second = _free_port(), _free_port()
    text = site.config_text().replace("enabled = false", f'listen = "127.0.0.1:{first}"')
    config.write_text(text)
    proc = await _start_daemon(config)
    try:
        await _until(lambda: _setpoints(site)["c1"] > 6, 20, "a setpoint")
        assert await asyncio.to_thread(_http_status, first) is not None
        moved = text.replace(f"127.0.0.1:{first}", f"127.0.0.1:{second}")
        _replace(config, moved + '\n[log]\nformat = "json"\nlevel = "warning"\n')
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(_http_status, second) is None:
            assert time.monotonic() < deadline, "metrics did not move to the new listen address"
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(_http_status, first) is None  # the old one is closed
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 5)
        events = _events(stderr)
        (reconfigured,) = [e for e in events if e["event"] == "logging_reconfigured"]
        assert reconfigured["log_level"] == "warning"
        after = events[events.index(reconfigured) + 1 :]
        assert not [e for e in after if e.get("level") == "info"], after  # the new level holds
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await site.stop()


async def test_demo_runs_for_its_duration_and_exits_0():
    proc = await asyncio.create_subprocess_exec(
        *AMPGATE,
        "demo",
        "--duration",
        "5",
        "--metrics-listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    began = time.monotonic()
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr.decode()
    assert time.monotonic() - began < 15
    out = stdout.decode()
    assert "4 simulated EVC2 chargers" in out
    assert "socat pty pair" in out or "socat not installed" in out
    cycles = [line for line in out.splitlines() if line.startswith("cycle=")]
    assert len(cycles) >= 4
    assert "c4=" in cycles[-1] and "main.L1=" in cycles[-1]


async def test_daemon_serves_metrics_and_notifies_systemd(tmp_path):
    import socket
    import urllib.request

    site = await start_site(2, limit=32)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    with socket.socket() as probe:  # a free port for /metrics
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "site.toml"
    text = site.config_text().replace("enabled = false", f'listen = "127.0.0.1:{port}"')
    config.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        *AMPGATE,
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
    )
    messages: list[str] = []
    try:
        await _until(lambda: min(_setpoints(site).values()) > 6, 20, "setpoints")
        await asyncio.sleep(0.5)
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except BlockingIOError:
                break

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        status, metrics = await asyncio.to_thread(get, "/metrics")
        health_status, health = await asyncio.to_thread(get, "/healthz")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 5)
        notify.close()
        await site.stop()
    assert messages[0].startswith("READY=1")
    assert "WATCHDOG=1" in messages[1:]
    assert status == 200
    assert 'ampgate_device_up{device="c1"} 1.0' in metrics
    assert 'ampgate_device_up{device="grid"} 1.0' in metrics
    assert "ampgate_dlm_cycles_total" in metrics
    assert health_status == 200 and json.loads(health)["status"] == "ok"
