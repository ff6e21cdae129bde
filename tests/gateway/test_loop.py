"""The gateway loop end to end over real Modbus TCP to the EVC2 and meter simulators."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from structlog.testing import capture_logs

from ampgate.gateway.loop import Gateway
from ampgate.sim import ElectricVehicle

from .simsite import start_site


@pytest.fixture
async def site():
    sim = await start_site(2, limit=32, building=(4.0, 4.0, 4.0))
    yield sim
    await sim.stop()


async def _cycles(gateway: Gateway, n: int, period: float = 0.2) -> None:
    for _ in range(n):
        began = time.monotonic()
        await gateway.cycle()
        await asyncio.sleep(max(0.0, period - (time.monotonic() - began)))


def _setpoints(site) -> dict[str, int]:
    return {n: int(s.image.raw("amps_to_use")) for n, s in site.chargers.items()}


async def test_watchdog_and_failsafe_are_programmed_on_every_charger(site):
    gateway = Gateway(site.config())
    try:
        await gateway.start()
        # start() sends nothing: the first cycle identifies each charger by its fast poll
        assert all(s.image.raw("communication_timeout") == 30 for s in site.chargers.values())
        await gateway.cycle()
        await gateway.settle()
        for name, sim in site.chargers.items():
            assert sim.image.raw("communication_timeout") == 2, name
            assert sim.image.raw("failsafe_current") == 6, name
    finally:
        await gateway.shutdown(write=False)


async def test_chargers_found_at_32_a_are_lowered_before_they_are_programmed():
    # The factory setpoint is 32 A; two cars draw it through a 32 A fuse with 10 A of building
    # load. The first cycle's lowering writes go out before any watchdog/failsafe write.
    site = await start_site(2, limit=32, building=(10.0, 10.0, 10.0))
    order: list[tuple[str, int, int]] = []
    for name, sim in site.chargers.items():
        sim.write(15, [32])  # the factory setpoint, as found
        sim.plug_in(ElectricVehicle(phases=3, max_current=32, reaction_delay=2.0), charging=True)
        original = sim.write

        def spy(address, values, _name=name, _original=original):
            order.append((_name, address, int(values[0])))
            return _original(address, values)

        sim.write = spy  # type: ignore[method-assign]
    gateway = Gateway(site.config())
    try:
        await gateway.start()
        assert order == []
        began = time.monotonic()
        await gateway.cycle()
        lowered_within = time.monotonic() - began
        await gateway.settle()
        for name in site.chargers:
            mine = [(a, v) for n, a, v in order if n == name]
            assert mine[0][0] == 15 and mine[0][1] < 32, mine  # the lowering comes first
            assert (19, 2) in mine, mine  # then the watchdog (regs 19, 20 in one write)
        assert lowered_within < 1.0  # one cycle: a round of polls, the meter, the writes
        assert sum(_setpoints(site).values()) <= 32 - 10
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


async def test_load_step_is_answered_within_one_cycle_and_the_fuse_holds(site):
    gateway = Gateway(site.config())
    await gateway.start()
    try:
        await _cycles(gateway, 6)
        before = _setpoints(site)
        assert all(v >= 6 for v in before.values()), before
        assert max(site.true_currents()) <= site.limit
        # A building load step of 16 A on every phase: the next cycle must lower the setpoints
        # so building + cars fit the fuse, on the wire, before the cycle returns.
        site.building[:] = [20.0, 20.0, 20.0]
        site.meter.advance()
        step_at = time.monotonic()
        await gateway.cycle()
        reaction = time.monotonic() - step_at
        after = _setpoints(site)
        assert sum(after.values()) < sum(before.values())
        assert reaction < 0.2 + 0.2  # one cycle period + bus time on loopback
        # Every phase carries building + both 3-phase cars: building + their sum <= limit.
        assert 20.0 + sum(after.values()) <= site.limit + 1e-9
        await asyncio.sleep(0.3)  # the cars follow within their reaction delay (0.1 s)
        worst = 0.0
        for _ in range(8):
            await gateway.cycle()
            worst = max(worst, *site.true_currents())
            await asyncio.sleep(0.05)
        assert worst <= site.limit, f"fuse exceeded: {worst} A > {site.limit} A"
    finally:
        await gateway.shutdown(write=False)


async def test_settings_drift_is_reported_and_re_applied(site):
    gateway = Gateway(site.config(slow_poll_every=2))
    await gateway.start()
    try:
        await _cycles(gateway, 2)
        # Someone changes the watchdog and the failsafe in the app.
        site.chargers["c2"].image.set_raw("communication_timeout", 0)
        site.chargers["c2"].image.set_raw("failsafe_current", 16)
        with capture_logs() as logs:
            await _cycles(gateway, 2)
        mismatches = [e for e in logs if e["event"] == "config_mismatch"]
        assert {(e["device"], e["field"], e["actual"]) for e in mismatches} == {
            ("c2", "communication_timeout", 0),
            ("c2", "failsafe_current", 16),
        }
        assert site.chargers["c2"].image.raw("communication_timeout") == 2
        assert site.chargers["c2"].image.raw("failsafe_current") == 6
    finally:
        await gateway.shutdown(write=False)


async def test_setpoint_is_refreshed_within_the_watchdog_so_it_never_trips(site):
    gateway = Gateway(site.config(watchdog_seconds=1, cycle_seconds=0.2))
    await gateway.start()
    try:
        writes: list[float] = []
        original = site.chargers["c1"].write

        def spy(address, values):
            if address == 15:
                writes.append(time.monotonic())
            return original(address, values)

        site.chargers["c1"].write = spy  # type: ignore[method-assign]
        await _cycles(gateway, 12)  # 2.4 s with a steady load: the setpoint does not change
        assert len(writes) >= 3
        gaps = [b - a for a, b in itertools.pairwise(writes)]
        assert max(gaps) <= 1 / 3 + 0.25  # watchdog / 3 plus one cycle of slack
        assert not site.chargers["c1"].watchdog_expired
    finally:
        await gateway.shutdown(write=False)


async def test_silent_meter_means_fallback_load_and_an_event(site):
    gateway = Gateway(site.config())
    await gateway.start()
    try:
        await _cycles(gateway, 3)
        site.faults["grid"].silent = True
        with capture_logs() as logs:
            await _cycles(gateway, 8)
        stale = [e for e in logs if e["event"] == "meter_stale"]
        assert len(stale) == 1 and stale[0]["device"] == "grid"
        sources = {a.non_ev_source for a in gateway.allocation.accounts}
        assert sources == {"fallback"}
        # Fallback 8 A per phase: two cars fit the rest of the 32 A fuse.
        assert 8 + sum(_setpoints(site).values()) <= 32
        site.faults["grid"].silent = False
        with capture_logs() as logs:
            await _cycles(gateway, 3)
        assert [e["event"] for e in logs if e["event"].startswith("meter_")] == ["meter_fresh"]
    finally:
        await gateway.shutdown(write=False)


async def test_one_silent_charger_does_not_stop_the_others():
    # 46 A: the silent charger counts twice (its real draw is in the meter reading and the
    # engine assumes its last setpoint on top), and the others must still fit after the step.
    site = await start_site(3, limit=46, building=(4.0, 4.0, 4.0))
    gateway = Gateway(site.config())
    try:
        await gateway.start()
        await _cycles(gateway, 4)
        site.faults["c2"].silent = True
        with capture_logs() as logs:
            await _cycles(gateway, 8)
        assert any(e["event"] == "device_offline" and e["device"] == "c2" for e in logs)
        # The engine assumes the silent charger still draws its last setpoint; the others are
        # still controlled both ways: paused when the building load rises, resumed after.
        site.building[:] = [24.0, 24.0, 24.0]
        await _cycles(gateway, 2)
        after = _setpoints(site)
        assert after["c1"] == 0 and after["c3"] == 0, after
        site.building[:] = [4.0, 4.0, 4.0]
        await _cycles(gateway, 4)
        resumed = _setpoints(site)
        assert resumed["c1"] >= 6 and resumed["c3"] >= 6, (
            resumed,
            {n: r.reason for n, r in gateway.chargers.items()},
        )
        assert gateway.counters.cycles == 18
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


async def test_a_device_that_is_not_an_evc2_is_refused_and_never_written():
    site = await start_site(2, limit=63, cars=[ElectricVehicle(reaction_delay=0.1), None])
    site.chargers["c2"].image.set_raw("evse_id", 1234)
    gateway = Gateway(site.config())
    try:
        with capture_logs() as logs:
            await gateway.start()
            await _cycles(gateway, 3)
        (mismatch,) = [e for e in logs if e["event"] == "device_identity_mismatch"]
        assert mismatch["device"] == "c2"
        assert mismatch["checks"] == {"evse_id": {"expected": [21571], "found": 1234}}
        assert site.chargers["c2"].image.raw("communication_timeout") == 30  # untouched
        assert site.chargers["c2"].image.raw("amps_to_use") == 0
        assert site.chargers["c1"].image.raw("amps_to_use") >= 6
        # Nothing is known of what the refused unit draws: the engine assumes its maximum.
        assert gateway.allocation.setpoints["c2"].reason_code == "charger_offline"
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


async def test_shutdown_writes_each_chargers_failsafe(site):
    gateway = Gateway(site.config())
    await gateway.start()
    await _cycles(gateway, 4)
    assert all(v > 6 for v in _setpoints(site).values())
    await gateway.shutdown()
    assert _setpoints(site) == {"c1": 6, "c2": 6}


async def test_the_engine_gets_one_site_object_and_builds_its_tables_once(site, monkeypatch):
    # the engine caches its site tables by object identity: a fresh Site per cycle (or per
    # failsafe plan) would rebuild them and churn the cache
    from ampgate.dlm import topology
    from ampgate.gateway import loop

    gateway = Gateway(site.config(slow_poll_every=1))
    seen: list[int] = []
    builds: list[int] = []
    real_allocate, real_build = loop.allocate, topology._build_index

    def recording_allocate(site_arg, *args):
        seen.append(id(site_arg))
        return real_allocate(site_arg, *args)

    def counting_build(site_arg):
        builds.append(id(site_arg))
        return real_build(site_arg)

    monkeypatch.setattr(loop, "allocate", recording_allocate)
    monkeypatch.setattr(topology, "_build_index", counting_build)
    await gateway.start()
    try:
        # drift on every slow poll makes the loop re-plan the failsafe currents each cycle
        for _ in range(4):
            site.chargers["c1"].image.set_raw("failsafe_current", 16)
            await _cycles(gateway, 1)
        await gateway.settle()
        assert len(seen) >= 3 and set(seen) == {id(gateway.site)}
        assert builds == [id(gateway.site)]
    finally:
        await gateway.shutdown(write=False)


async def test_each_poll_is_one_request_and_slow_reads_are_spread_over_cycles():
    # RS485 pays per request: the fast fields (regs 0-38) in one read, and the settings /
    # identity / energy read (regs 9-44) of different chargers in different cycles
    site = await start_site(4, limit=63)
    reads: dict[str, list[tuple[int, int, int]]] = {n: [] for n in site.chargers}
    for name, sim in site.chargers.items():
        original = sim.read

        def spy(function, address, count, _name=name, _original=original):
            reads[_name].append((cycle[0], address, count))
            return _original(function, address, count)

        sim.read = spy  # type: ignore[method-assign]
    cycle = [0]
    gateway = Gateway(site.config(slow_poll_every=4))
    try:
        await gateway.start()
        await _cycles(gateway, 1)  # the first poll identifies; the settings read follows it
        await gateway.settle()
        for reads_of in reads.values():
            reads_of.clear()
        for n in range(1, 9):
            cycle[0] = n
            await _cycles(gateway, 1)
            await gateway.settle()
        for name, seen in reads.items():
            polls = [r for r in seen if r[1] == 0]
            assert [(a, c) for _, a, c in polls] == [(0, 39)] * 8, (name, seen)
        slow_cycles = [
            {name for name, seen in reads.items() if any(c == n and a == 9 for c, a, _ in seen)}
            for n in range(1, 9)
        ]
        assert all(len(names) <= 1 for names in slow_cycles), slow_cycles
        assert all(sum(name in names for names in slow_cycles) == 2 for name in reads)
    finally:
        await gateway.shutdown(write=False)
        await site.stop()
