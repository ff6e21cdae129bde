"""Safety paths found in review: a stop request is never lost to a reload; a charger that
answers only after start-up is identified and programmed before anything is written to it."""

from __future__ import annotations

import asyncio
import time

from structlog.testing import capture_logs

from ampgate.daemon.run import Daemon
from ampgate.gateway.loop import Gateway
from ampgate.sim import ElectricVehicle

from .simsite import start_site


async def test_sigterm_arriving_with_a_sighup_still_stops_the_daemon(tmp_path):
    """SIGHUP then SIGTERM within one cycle: the daemon exits and writes the failsafe current.

    Both signals only set the loop's stop event; a reload that cleared it used to swallow the
    stop request, leaving the daemon running after SIGTERM.
    """
    site = await start_site(1, limit=32)
    path = tmp_path / "site.toml"
    path.write_text(site.config_text())
    daemon = Daemon(site.config(), path, serve_metrics=False)
    task = asyncio.create_task(daemon.run())
    try:
        for _ in range(100):
            if int(site.chargers["c1"].image.raw("amps_to_use")) > 6:
                break
            await asyncio.sleep(0.05)
        assert int(site.chargers["c1"].image.raw("amps_to_use")) > 6
        daemon.request_reload()
        daemon.request_stop()
        assert await asyncio.wait_for(asyncio.shield(task), 5) == 0
        assert int(site.chargers["c1"].image.raw("amps_to_use")) == 6
    finally:
        if not task.done():
            daemon.request_stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await site.stop()


async def _cycles(gateway, n: int, period: float = 0.2) -> None:
    for _ in range(n):
        began = time.monotonic()
        await gateway.cycle()
        await asyncio.sleep(max(0.0, period - (time.monotonic() - began)))
    await gateway.settle()


async def test_a_charger_silent_at_start_is_identified_before_it_is_written():
    """A unit that answers only after start-up is identified first: the wrong model is refused.

    It used to be taken for an EVC2 on its first answer (identity was checked at start-up only)
    and got its watchdog, failsafe and setpoint written.
    """
    site = await start_site(2, limit=63, cars=[ElectricVehicle(reaction_delay=0.1), None])
    site.chargers["c2"].image.set_raw("evse_id", 1234)  # not an EVC2
    site.faults["c2"].silent = True
    gateway = Gateway(site.config())
    try:
        await gateway.start()
        await _cycles(gateway, 2)
        site.faults["c2"].silent = False
        with capture_logs() as logs:
            await _cycles(gateway, 6)
        assert [e["device"] for e in logs if e["event"] == "device_identity_mismatch"] == ["c2"]
        assert gateway.chargers["c2"].refused
        assert site.chargers["c2"].image.raw("communication_timeout") == 30  # untouched
        assert site.chargers["c2"].image.raw("failsafe_current") == 6
        assert site.chargers["c2"].image.raw("amps_to_use") == 0
        assert site.chargers["c1"].image.raw("amps_to_use") >= 6
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


async def test_a_genuine_charger_silent_at_start_is_programmed_before_its_first_setpoint():
    """An EVC2 answering only after start-up: identified, watchdog/failsafe programmed, then
    controlled; the first setpoint it receives comes after reg 19 holds the watchdog."""
    site = await start_site(2, limit=63)
    site.faults["c2"].silent = True
    gateway = Gateway(site.config())
    try:
        await gateway.start()
        await _cycles(gateway, 2)
        assert site.chargers["c2"].image.raw("communication_timeout") == 30
        site.faults["c2"].silent = False
        await _cycles(gateway, 8)
        assert not gateway.chargers["c2"].refused
        assert site.chargers["c2"].image.raw("communication_timeout") == 2
        assert site.chargers["c2"].image.raw("amps_to_use") >= 6
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


async def test_a_meter_silent_at_start_is_identified_before_its_readings_are_used():
    """A meter unit that answers only after start-up is identified first: an SDM72D where the
    file says SDM120 is refused (its currents would be read at the SDM120's addresses)."""
    from ampgate.config import check_config_text
    from ampgate.sim import Evc2Simulator, Faults, FaultyDevice, MeterSimulator, serve_tcp

    from .test_publish import SITE

    clock = time.monotonic
    charger = Evc2Simulator(clock)
    meter = MeterSimulator("eastron-sdm72d", lambda _now: (5.0, 5.0, 5.0), clock)
    faults = Faults(silent=True)
    server = await serve_tcp({1: charger, 10: FaultyDevice(meter, faults)}, port=0)
    config, problems = check_config_text(SITE.format(port=server.port), "sdm120.toml")
    assert config is not None, problems
    gateway = Gateway(config)
    try:
        await gateway.start()
        await _cycles(gateway, 2)
        faults.silent = False
        with capture_logs() as logs:
            await _cycles(gateway, 3)
        assert [e["device"] for e in logs if e["event"] == "device_identity_mismatch"] == ["grid"]
        assert gateway.meters["grid"].refused
        assert gateway.meters["grid"].measured_at is None  # its readings never reach the engine
    finally:
        await gateway.shutdown(write=False)
        await server.stop()


class _MeasurementsFail:
    """An SDM120 that answers its identification (FC 03) but fails every measurement (FC 04)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def read(self, function: int, address: int, count: int):
        from ampgate.sim import ModbusExceptionCode

        if function == 4:
            return ModbusExceptionCode.SERVER_DEVICE_FAILURE
        return self.inner.read(function, address, count)

    def write(self, address: int, values):
        return self.inner.write(address, values)


async def test_a_meter_that_identifies_but_fails_its_measurements_goes_stale():
    """Freshness is the age of the last MEASUREMENT, not of the last answer: a meter whose
    identification read keeps succeeding while its measurement reads fail is reported stale."""
    from ampgate.config import check_config_text
    from ampgate.sim import Evc2Simulator, MeterSimulator, serve_tcp

    from .test_publish import SITE

    clock = time.monotonic
    meter = MeterSimulator("eastron-sdm120", lambda _now: (5.0, 0.0, 0.0), clock)
    server = await serve_tcp({1: Evc2Simulator(clock), 10: _MeasurementsFail(meter)}, port=0)
    text = SITE.format(port=server.port).replace("[dlm]\n", "[dlm]\nmeter_stale_seconds = 0.5\n")
    config, problems = check_config_text(text, "sdm120.toml")
    assert config is not None, problems
    gateway = Gateway(config)
    try:
        with capture_logs() as logs:
            await gateway.start()
            await _cycles(gateway, 8)
        assert gateway.meters["grid"].measured_at is None
        assert gateway.meters["grid"].stale
        assert any(e["event"] == "meter_stale" for e in logs)
    finally:
        await gateway.shutdown(write=False)
        await server.stop()


async def test_a_charger_swapped_while_online_is_refused_on_the_next_slow_read():
    """The slow read carries reg 9: a unit whose identity changes without ever going silent
    (swapped between two polls) is refused, logged, and no longer written."""
    site = await start_site(2, limit=32)
    gateway = Gateway(site.config(slow_poll_every=2))
    try:
        await gateway.start()
        await _cycles(gateway, 3)
        assert not gateway.chargers["c1"].refused
        site.chargers["c1"].image.set_raw("evse_id", 12345)
        with capture_logs() as logs:
            await _cycles(gateway, 6)
        assert [e["device"] for e in logs if e["event"] == "device_identity_mismatch"] == ["c1"]
        assert gateway.chargers["c1"].refused
        assert not gateway.chargers["c2"].refused
        writes = site.chargers["c1"].image.raw("amps_to_use")
        await _cycles(gateway, 3)
        assert site.chargers["c1"].image.raw("amps_to_use") == writes
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


async def test_a_reload_that_drops_a_charger_leaves_it_at_its_failsafe_current(tmp_path):
    """SIGHUP with a file that no longer lists c2: c2 gets the shutdown current (its failsafe)
    instead of keeping its last setpoint uncontrolled; c1 stays under control."""
    site = await start_site(2, limit=40)
    path = tmp_path / "site.toml"
    text = site.config_text()
    path.write_text(text)
    daemon = Daemon(site.config(), path, serve_metrics=False)
    task = asyncio.create_task(daemon.run())
    try:
        for _ in range(100):
            if int(site.chargers["c2"].image.raw("amps_to_use")) > 6:
                break
            await asyncio.sleep(0.05)
        assert int(site.chargers["c2"].image.raw("amps_to_use")) > 6
        head, rest = text.split("[chargers.c2]")
        path.write_text(head + rest[rest.index("[dlm]") :])
        daemon.request_reload()
        for _ in range(100):
            if int(site.chargers["c2"].image.raw("amps_to_use")) == 6:
                break
            await asyncio.sleep(0.05)
        assert int(site.chargers["c2"].image.raw("amps_to_use")) == 6
        assert "c2" not in daemon.gateway.chargers
        daemon.request_stop()
        assert await asyncio.wait_for(asyncio.shield(task), 5) == 0
    finally:
        if not task.done():
            task.cancel()
        await site.stop()
