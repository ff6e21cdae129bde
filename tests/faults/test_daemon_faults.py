"""Daemon faults: SIGKILL at chosen and random points (one of them mid-write: the process dies
with a write on the wire), a restart while cars charge, a reload that changes the site. The
daemon is a real process (or the in-process `Daemon` for the reload) against the simulators."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ampgate.daemon.run import Daemon
from ampgate.sim import ElectricVehicle
from gateway.simsite import SimSite, start_site

from .faultsite import SETPOINT, WATCHDOG, Truth, assert_writes_clean, metric, setpoints, unit

ROOT = Path(__file__).resolve().parents[2]
AMPGATE = [sys.executable, "-m", "ampgate"]
WATCHDOG_S = 2


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _daemon(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *AMPGATE, "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip


def _charging_site_cars() -> list[ElectricVehicle | None]:
    return [ElectricVehicle(phases=3, max_current=16, reaction_delay=0.2) for _ in range(2)]


def _found_charging(site: SimSite) -> None:
    """As a previous run left them: watchdog 2 s, failsafe 6 A, 12 A each, cars drawing it."""
    for sim in site.chargers.values():
        sim.write(19, [WATCHDOG_S, 6])
        sim.write(15, [12])
        assert sim.ev is not None
        sim.plug_in(sim.ev, charging=True)


def _kill_on_write(site: SimSite, proc_pid: list[int], address: int, apply: bool) -> list[float]:
    """SIGKILL the daemon the moment c1 receives a write to ``address``: ``apply`` — the write
    lands but its answer never reaches the dead daemon; else the frame is lost with it."""
    killed: list[float] = []
    sim = site.chargers["c1"]
    original = sim.write

    def spy(addr, values):
        if addr == address and not killed and proc_pid:
            os.kill(proc_pid[0], signal.SIGKILL)
            killed.append(time.monotonic())
            if not apply:
                from ampgate.sim import ModbusExceptionCode

                return ModbusExceptionCode.DEVICE_FAILURE
        return original(addr, values)

    sim.write = spy  # type: ignore[method-assign]
    return killed


KILL_POINTS = {
    "setpoint_write_applied": (SETPOINT, True),
    "setpoint_write_lost": (SETPOINT, False),
    "watchdog_write": (WATCHDOG, True),
    "random": (None, True),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
async def test_sigkill_at_any_point_leaves_every_charger_on_failsafe_within_the_watchdog(
    tmp_path, point
):
    address, apply = KILL_POINTS[point]
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_charging_site_cars())
    _found_charging(site)
    config = tmp_path / "site.toml"
    config.write_text(site.config_text(watchdog_seconds=WATCHDOG_S))
    pid: list[int] = []
    killed = _kill_on_write(site, pid, address, apply) if address is not None else []
    proc = await _daemon(config)
    pid.append(proc.pid)
    try:
        if address is None:
            # a random moment of the daemon's life: start-up, programming or steady control
            await asyncio.sleep(random.Random(14).uniform(0.5, 3.0))
            proc.send_signal(signal.SIGKILL)
            killed.append(time.monotonic())
        await _until(lambda: bool(killed), 15, f"the daemon's write to reg {address}")
        await proc.wait()
        # the daemon is gone: the building rises to the configured fallback load (8 A)
        site.building[:] = [8.0, 8.0, 8.0]
        await _until(
            lambda: all(s.watchdog_expired for s in site.chargers.values()),
            WATCHDOG_S + 1.0,
            "every charger's watchdog",
        )
        assert time.monotonic() - killed[0] <= WATCHDOG_S + 1.0
        await asyncio.sleep(0.4)  # the cars follow the failsafe current (0.2 s reaction)
        for name, sim in site.chargers.items():
            assert sim.allowed_current == 6, name
            assert sim.current <= 6, name
        assert max(site.true_currents()) <= site.limit
        if not apply:  # the frame lost with the daemon: not a write the charger acted on
            log = unit(site, "c1").writes
            log[:] = [w for w in log if w.answer is None]
        assert_writes_clean(site, max_amps=16)
        assert unit(site, "grid").writes == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await site.stop()


async def test_a_restart_while_cars_charge_pauses_no_car_that_fits(tmp_path):
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_charging_site_cars())
    _found_charging(site)
    config = tmp_path / "site.toml"
    config.write_text(site.config_text(watchdog_seconds=WATCHDOG_S))
    proc = await _daemon(config)
    truth = Truth()
    drawn: list[float] = []
    try:
        await _until(lambda: min(setpoints(site).values()) >= 12, 15, "the cars at their share")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        restarted = time.monotonic()
        proc = await _daemon(config)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            drawn.append(min(s.current for s in site.chargers.values()))
            truth.samples.append((time.monotonic(), max(site.true_currents())))
            await asyncio.sleep(0.05)
        # the second daemon never paused a car: every setpoint it wrote kept both charging
        later = [
            w for n in site.chargers for w in unit(site, n).writes
            if w.at > restarted and w.address == SETPOINT
        ]  # fmt: skip
        assert all(w.values[0] >= 6 for w in later), later
        assert min(drawn) >= 6, "a car stopped drawing during the restart"
        assert truth.over(site.limit) == []
        assert_writes_clean(site, max_amps=16)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await site.stop()


async def test_a_reload_with_a_changed_site_applies_the_new_fuse_within_a_cycle(tmp_path):
    """SIGHUP with the main fuse lowered from 32 A to 20 A: the new gateway lowers the cars
    at once; the fuse (the new one) holds after the reaction window; no restart."""
    cars = [ElectricVehicle(phases=3, max_current=16, reaction_delay=0.2) for _ in range(2)]
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=cars)
    path = tmp_path / "site.toml"
    text = site.config_text()
    path.write_text(text)
    daemon = Daemon(site.config(), path, serve_metrics=False)
    task = asyncio.create_task(daemon.run())
    try:
        await _until(lambda: min(setpoints(site).values()) >= 12, 10, "setpoints")
        assert "limit = 32\n" in text
        path.write_text(text.replace("limit = 32\n", "limit = 20\n"))
        site.limit = 20
        with capture_logs() as logs:
            daemon.request_reload()
            reloaded = time.monotonic()
            await _until(lambda: sum(setpoints(site).values()) + 4 <= 20, 3, "the new fuse")
            took = time.monotonic() - reloaded
            await asyncio.sleep(1.0)
        assert took < 1.5
        assert [e["event"] for e in logs].count("config_reloaded") == 1
        assert max(site.true_currents()) <= 20
        assert min(setpoints(site).values()) >= 6  # both still charge within 20 A
        limit = metric(daemon.gateway, "ampgate_dlm_limit_amperes", group="main", phase="L1")
        assert limit == 20
        assert_writes_clean(site, max_amps=16)
        daemon.request_stop()
        assert await asyncio.wait_for(asyncio.shield(task), 5) == 0
    finally:
        if not task.done():
            daemon.request_stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await site.stop()
