"""The gateway's parts one at a time, against the EVC2 simulators over Modbus TCP.

Each part is made the way the gateway makes it (its dependencies in its constructor) and driven
directly: device health, programming (watchdog, failsafe, drift, identity) and the writer
(lowering first, raises in the background, only lowering before programming, phase read-back).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ampgate.config.to_engine import build_site
from ampgate.devices.evc2 import PHASE_TO_USE
from ampgate.dlm import Allocation, EngineState, Setpoint
from ampgate.errors import TransportError
from ampgate.gateway.events import EventLog
from ampgate.gateway.health import DeviceHealth
from ampgate.gateway.open_devices import open_devices
from ampgate.gateway.programming import DeviceProgramming
from ampgate.gateway.runtime import ChargerRuntime
from ampgate.gateway.writes import SetpointWriter
from ampgate.logging import get_logger

from .simsite import start_site

PHASE_REGISTER = 14


class Parts:
    """The parts of one gateway over a simulated site, and the chargers' runtimes."""

    def __init__(self, site, **dlm) -> None:
        self.config = site.config(**dlm)
        self.events = EventLog()
        self.health = DeviceHealth(self.events, time.monotonic, time.time)
        log = get_logger("test")
        self.programming = DeviceProgramming(
            self.config, build_site(self.config), self.events, self.health, log
        )
        self.writer = SetpointWriter(
            self.config, self.events, self.health, self.programming, log, time.monotonic
        )
        self.buses, chargers, _ = open_devices(self.config)
        self.chargers = {
            n: ChargerRuntime(name=n, device=d, config=self.config.chargers[n])
            for n, d in chargers.items()
        }

    async def close(self) -> None:
        for bus in self.buses:
            await bus.close()


@pytest.fixture
async def parts():
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0))
    made = Parts(site)
    yield site, made
    await made.close()
    await site.stop()


def allocation(amps: dict[str, int], failsafe: dict[str, int], phases=None) -> Allocation:
    setpoints = {n: Setpoint(a, "test", "test", phases) for n, a in amps.items()}
    return Allocation(setpoints, EngineState(), (), failsafe)


def raw(site, charger: str, field: str) -> int:
    return int(site.chargers[charger].image.raw(field))


async def test_health_marks_a_device_online_and_offline_with_events(parts):
    _, p = parts
    rt = p.chargers["c1"]
    p.health.succeeded(rt)
    assert rt.online and rt.last_ok is not None and rt.last_error is None
    p.health.failed(rt, TransportError("no answer"))
    assert not rt.online and rt.last_error == "no answer"
    assert p.events.counts.get("device_offline") == 1
    p.health.succeeded(rt)
    assert rt.online  # first seen, then back: two device_online events
    assert p.events.counts == {"device_online": 2, "device_offline": 1}


async def test_programming_writes_watchdog_and_the_planned_failsafe_and_repairs_drift(parts):
    site, p = parts
    rt = p.chargers["c1"]
    await p.programming.identify(rt)
    assert rt.online and rt.refused is None
    await p.programming.program_planned(rt)
    watchdog = p.config.dlm.watchdog_seconds
    assert (rt.watchdog, raw(site, "c1", "communication_timeout")) == (watchdog, watchdog)
    assert raw(site, "c1", "failsafe_current") == rt.failsafe
    # the installer's app changes the failsafe: reported and put back
    site.chargers["c1"].image.set_raw("failsafe_current", 32)
    await p.programming.read_slow(rt)
    await p.programming.repair_drift(rt)
    assert p.events.counts.get("config_mismatch") == 1
    assert raw(site, "c1", "failsafe_current") == rt.failsafe != 32


async def test_programming_refuses_a_unit_that_is_not_the_configured_model(parts):
    site, p = parts
    site.chargers["c2"].image.set_raw("evse_id", 1234)  # reg 9 is 21571 ("TC") on an EVC2
    rt = p.chargers["c2"]
    identity = rt.device.identity_from(await _fast_values(rt))
    assert not identity.matches
    assert not p.programming.accept_identity(rt, identity)
    assert rt.refused and p.events.counts.get("device_identity_mismatch") == 1


async def _fast_values(rt: ChargerRuntime):
    return (await rt.device.read_fast()).readings


async def test_writer_only_lowers_a_charger_not_yet_programmed(parts):
    site, p = parts
    rt = p.chargers["c1"]
    await p.programming.identify(rt)
    site.chargers["c1"].image.set_raw("amps_to_use", 16)
    rt.setpoint = 16  # as the fast poll reports it
    assert rt.watchdog is None
    await p.writer.write_all(p.chargers, allocation({"c1": 20}, {}), time.monotonic())
    await asyncio.gather(*p.writer.in_progress())
    assert raw(site, "c1", "amps_to_use") == 16  # no raise before the watchdog is set
    await p.writer.write_all(p.chargers, allocation({"c1": 6}, {}), time.monotonic())
    assert raw(site, "c1", "amps_to_use") == 6  # a lowering is awaited, on the wire at return


async def test_writer_raises_in_the_background_and_changes_the_failsafe_with_the_plan(parts):
    site, p = parts
    rt = p.chargers["c1"]
    await p.programming.identify(rt)
    await p.programming.program_planned(rt)
    rt.setpoint = 6
    site.chargers["c1"].image.set_raw("amps_to_use", 6)
    await p.writer.write_all(p.chargers, allocation({"c1": 14}, {"c1": 0}), time.monotonic())
    tasks = p.writer.in_progress()
    assert tasks  # the cycle does not wait for a raise
    await asyncio.gather(*tasks)
    assert raw(site, "c1", "amps_to_use") == 14
    assert (rt.failsafe, raw(site, "c1", "failsafe_current")) == (0, 0)


async def test_writer_switches_phases_once_and_keeps_the_read_back(parts):
    site, p = parts
    rt = p.chargers["c1"]
    await p.programming.identify(rt)
    await p.programming.program_planned(rt)
    rt.setpoint = 10
    one_phase = allocation({"c1": 8}, {"c1": rt.failsafe}, phases=1)
    await p.writer.write_all(p.chargers, one_phase, time.monotonic())
    assert raw(site, "c1", "phase_to_use") == PHASE_TO_USE[1]
    assert rt.phase_to_use == PHASE_TO_USE[1]  # the read-back is kept: not written again
    sim, written = site.chargers["c1"], []
    original = sim.write

    def counting(address, values):
        written.append(address)
        return original(address, values)

    sim.write = counting  # observe the wire at the simulator
    await p.writer.write_all(p.chargers, one_phase, time.monotonic())
    assert PHASE_REGISTER not in written, written
