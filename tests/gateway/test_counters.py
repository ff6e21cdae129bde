"""Energy counters never go backwards in what the gateway publishes (ampgate.gateway.counters)."""

from __future__ import annotations

import asyncio
import time

from ampgate.gateway.counters import record_counters
from ampgate.gateway.events import EventLog
from ampgate.gateway.loop import Gateway
from ampgate.gateway.runtime import MeterRuntime

from .simsite import start_site


def test_a_smaller_or_non_finite_counter_reading_is_kept_out_and_reported_once():
    rt, events = MeterRuntime(name="grid", device=None), EventLog()
    record_counters(rt, {"energy_import": 10.5}, events)
    assert rt.counters == {"energy_import": 10.5}
    for glitch in (0.0, 3.0, float("nan"), float("inf")):
        record_counters(rt, {"energy_import": glitch}, events)
        assert rt.counters == {"energy_import": 10.5}, glitch
    assert events.counts == {"energy_counter_backwards": 1}  # once, not every poll
    record_counters(rt, {"energy_import": 10.6}, events)
    assert rt.counters == {"energy_import": 10.6}
    record_counters(rt, {"energy_import": 1.0}, events)
    assert events.counts == {"energy_counter_backwards": 2}  # a new glitch is a new event


def test_an_unread_counter_is_not_a_reading_and_counters_are_kept_apart():
    rt, events = MeterRuntime(name="grid", device=None), EventLog()
    record_counters(rt, {"energy_import": 5.0, "energy_export": None}, events)
    record_counters(rt, {"energy_import": None, "energy_export": 2.0}, events)
    assert rt.counters == {"energy_import": 5.0, "energy_export": 2.0}
    assert events.counts == {}


async def test_a_meter_glitching_to_zero_does_not_move_the_published_counter_back():
    site = await start_site(1, limit=32)
    gateway = Gateway(site.config())
    try:
        await gateway.start()
        for _ in range(3):
            await gateway.cycle()
            await asyncio.sleep(0.2)

        def published() -> float | None:
            (meter,) = [d for d in gateway.store.latest().devices if d.kind == "meter"]
            return meter.meter.energy_import_kwh if meter.meter else None

        before = published()
        assert before is not None and before >= 1000.0
        site.meter.set_energy(0.0)
        deadline = time.monotonic() + 5
        while gateway.events.counts.get("energy_counter_backwards", 0) == 0:
            assert time.monotonic() < deadline, "the glitch was never read"
            await gateway.cycle()
            await asyncio.sleep(0.2)
        assert published() == before
        site.meter.set_energy(before + 2.0)
        for _ in range(10):
            await gateway.cycle()
            await asyncio.sleep(0.2)
        assert before + 2.0 <= published() < before + 2.5  # counting on from the new value
    finally:
        await gateway.shutdown()
        await site.stop()
