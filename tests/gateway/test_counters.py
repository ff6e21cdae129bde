"""Energy counters never go backwards in what the gateway publishes (ampgate.gateway.counters)."""

from __future__ import annotations

import asyncio
import time

from ampgate.codec.model import Reading
from ampgate.gateway.counters import monotonic_readings
from ampgate.gateway.events import EventLog
from ampgate.gateway.loop import Gateway
from ampgate.gateway.runtime import MeterRuntime, number_of

from .simsite import start_site


def kwh(name: str, value: float) -> Reading:
    return Reading(name, value, value, "kWh")


def test_a_smaller_or_non_finite_counter_reading_is_kept_out_and_reported_once():
    rt, events = MeterRuntime(name="grid", device=None), EventLog()
    assert (
        number_of(
            monotonic_readings(rt, {"energy_import": kwh("energy_import", 10.5)}, events),
            "energy_import",
        )
        == 10.5
    )
    for glitch in (0.0, 3.0, float("nan"), float("inf")):
        kept = monotonic_readings(rt, {"energy_import": kwh("energy_import", glitch)}, events)
        assert "energy_import" not in kept, glitch
    assert events.counts == {"energy_counter_backwards": 1}  # once, not every poll
    back = monotonic_readings(rt, {"energy_import": kwh("energy_import", 10.6)}, events)
    assert number_of(back, "energy_import") == 10.6
    monotonic_readings(rt, {"energy_import": kwh("energy_import", 1.0)}, events)
    assert events.counts == {"energy_counter_backwards": 2}  # a new glitch is a new event


def test_session_energy_may_start_again_and_other_fields_pass_through():
    rt, events = MeterRuntime(name="c1", device=None), EventLog()
    for value in (5.0, 0.0):
        out = monotonic_readings(rt, {"session_energy": kwh("session_energy", value)}, events)
        assert number_of(out, "session_energy") == value
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
