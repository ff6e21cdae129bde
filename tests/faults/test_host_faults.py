"""Daemon and host faults: the HTTP port already taken at start, wall-clock jumps, a log
destination that cannot be written (disk full, read-only). The daemon runs as a process (or its
gateway in this process for the clock) against the simulators over Modbus TCP."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from ampgate.gateway.loop import Gateway
from ampgate.sim import ElectricVehicle
from gateway.simsite import start_site

from .faultsite import Truth, assert_writes_clean, metric, setpoints, unit

ROOT = Path(__file__).resolve().parents[2]
AMPGATE = [sys.executable, "-m", "ampgate"]


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_the_http_port_already_taken_at_start_is_a_clear_error_and_nothing_starts(
    tmp_path,
):
    site = await start_site(2, limit=32)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = tmp_path / "site.toml"
    text = site.config_text().replace("[http]\nenabled = false", "")
    config.write_text(text + f'[http]\nlisten = "127.0.0.1:{port}"\n')
    try:
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *AMPGATE, "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
        message = stderr.decode()
        assert proc.returncode not in (0, None), message
        assert time.monotonic() - began < 15
        assert "http.listen" in message and f"127.0.0.1:{port}" in message, message
        assert "Traceback" not in message, message
        # no half-started daemon: nothing was sent to any device
        assert all(sim.requests == 0 for sim in site.chargers.values())
        assert all(unit(site, n).writes == [] for n in [*site.chargers, "grid"])
    finally:
        taken.close()
        await site.stop()


async def test_wall_clock_jumps_do_not_change_the_loop_timing_or_the_control():
    """The wall clock jumps an hour forward, then two hours back: cycles keep their monotonic
    period, the watchdog is fed, the fuse holds; published timestamps follow the wall clock."""
    cars = [ElectricVehicle(phases=3, max_current=16, reaction_delay=0.1) for _ in range(2)]
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=cars)
    offset = [0.0]
    gateway = Gateway(site.config(), wall_clock=lambda: time.time() + offset[0])
    stop = asyncio.Event()
    truth = Truth()
    stamps: list[float] = []

    def on_cycle(gw: Gateway) -> None:
        truth.samples.append((time.monotonic(), max(site.true_currents())))
        stamps.append(time.monotonic())

    await gateway.start()
    task = asyncio.create_task(gateway.run(stop, on_cycle))
    try:
        await asyncio.sleep(1.5)
        for jump in (3600.0, -7200.0):
            offset[0] += jump
            n = len(stamps)
            await asyncio.sleep(1.5)
            # 0.2 s cycles: 7 or 8 in 1.5 s whatever the wall clock did
            assert 5 <= len(stamps) - n <= 9, (jump, len(stamps) - n)
            assert not any(s.watchdog_expired for s in site.chargers.values())
            seen = metric(gateway, "ampgate_device_last_success_timestamp_seconds", device="c1")
            assert seen is not None and abs(seen - (time.time() + offset[0])) < 2.0
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert max(gaps) < 0.2 * 2.5, max(gaps)
        assert min(setpoints(site).values()) >= 6
        assert truth.over(site.limit) == []
        assert_writes_clean(site, max_amps=16)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await gateway.shutdown(write=False)
        await site.stop()


@pytest.mark.parametrize("destination", ["/dev/full", "read-only"])
async def test_a_log_destination_that_cannot_be_written_does_not_stop_the_control(
    tmp_path, destination
):
    """stderr (the journal's pipe) on a full disk (/dev/full: every write ENOSPC) or a file
    opened read-only (every write EBADF): the daemon keeps controlling and stops cleanly."""
    site = await start_site(2, limit=32)
    config = tmp_path / "site.toml"
    config.write_text(site.config_text())
    if destination == "read-only":
        target = tmp_path / "log"
        target.write_text("")
        sink = os.open(target, os.O_RDONLY)
    else:
        sink = os.open(destination, os.O_WRONLY)
    proc = await asyncio.create_subprocess_exec(
        *AMPGATE, "run", "--config", str(config),
        stdout=sink, stderr=sink, cwd=ROOT,
    )  # fmt: skip
    os.close(sink)
    try:
        await _until(lambda: min(setpoints(site).values()) > 6, 15, "setpoints above failsafe")
        requests = site.chargers["c1"].requests
        await asyncio.sleep(1.0)
        assert proc.returncode is None, "the daemon died"
        assert site.chargers["c1"].requests > requests  # still polling
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 8)
        assert setpoints(site) == {"c1": 6, "c2": 6}  # the shutdown current was written
        assert_writes_clean(site, max_amps=32)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await site.stop()
