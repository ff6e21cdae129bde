"""Device faults end to end over Modbus TCP: a charger rebooting to its defaults, settings
changed from the mobile app, a meter serving NaN, infinity, its sentinel, zeros or a counter
that goes backwards. Each test checks the fuse (the simulators' truth), every write the
simulators received, the event and the metric, and recovery without a restart."""

from __future__ import annotations

import math
import time

import pytest

from ampgate.gateway.loop import Gateway
from ampgate.sim import ElectricVehicle
from gateway.simsite import start_site

from .faultsite import (
    FAILSAFE,
    SETPOINT,
    WATCHDOG,
    Truth,
    assert_writes_clean,
    cycles,
    metric,
    programming,
    setpoints,
    writes,
)

REACTION_S = 1.0
"""The cars' reaction delay here: a rebooted charger's 32 A reaches the fuse after it."""


def _cars(n: int, max_current: float = 32) -> list[ElectricVehicle | None]:
    return [
        ElectricVehicle(phases=3, max_current=max_current, reaction_delay=REACTION_S)
        for _ in range(n)
    ]


async def test_a_rebooted_charger_is_reprogrammed_within_one_cycle_of_its_return():
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_cars(2))
    gateway = Gateway(site.config())
    truth = Truth()
    try:
        await gateway.start()
        await cycles(gateway, 12, site, truth)
        share = setpoints(site)["c1"]
        assert 6 <= share <= 14
        assert site.chargers["c1"].image.raw("communication_timeout") == 2
        # The charger reboots: silent while it starts, then back with its defaults.
        site.faults["c1"].silent = True
        await cycles(gateway, 3, site, truth)
        assert not gateway.chargers["c1"].online
        assert metric(gateway, "ampgate_device_up", device="c1") == 0
        programmed = gateway.events.counts.get("watchdog_programmed", 0)
        site.chargers["c1"].reboot()
        assert site.chargers["c1"].image.raw("communication_timeout") == 30
        site.faults["c1"].silent = False
        returned = time.monotonic()
        await cycles(gateway, 1, site, truth)  # one cycle of its return (and its bring-up)
        image = site.chargers["c1"].image
        assert image.raw("communication_timeout") == 2
        assert image.raw("failsafe_current") == 6
        assert image.raw("amps_to_use") <= share + 1  # lowered from 32 in the same cycle
        assert gateway.events.counts["watchdog_programmed"] == programmed + 1
        assert gateway.events.counts["device_online"] >= 2
        assert programming(writes(site, "c1", returned)).get(WATCHDOG) == 2
        await cycles(gateway, 12, site, truth)
        # the rebooted charger's 32 A reaches the fuse only after the car's reaction delay,
        # by then it was lowered: nothing over the fuse after the reaction window
        window = gateway.config.dlm.cycle_seconds * 2 + REACTION_S
        assert truth.over(site.limit, returned + window) == []
        assert truth.over(site.limit) == []
        assert metric(gateway, "ampgate_device_up", device="c1") == 1
        assert metric(gateway, "ampgate_charger_watchdog_timeout_seconds", device="c1") == 2
        assert metric(gateway, "ampgate_charger_failsafe_current_amperes", device="c1") == 6
        assert_writes_clean(site, max_amps=32)
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


async def test_a_reboot_too_short_to_be_seen_offline_is_repaired_by_the_settings_check():
    """Rebooted between two polls (never seen silent): the fast poll sees 32 A and the setpoint
    is written back in that cycle; the watchdog comes back with the next slow read."""
    every = 5
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_cars(2))
    gateway = Gateway(site.config(slow_poll_every=every))
    truth = Truth()
    try:
        await gateway.start()
        await cycles(gateway, 12, site, truth)
        share = setpoints(site)["c1"]
        mismatches = gateway.events.counts.get("config_mismatch", 0)
        site.chargers["c1"].reboot()
        rebooted = time.monotonic()
        await cycles(gateway, 1, site, truth)
        assert setpoints(site)["c1"] <= share + 1
        await cycles(gateway, every, site, truth)
        assert site.chargers["c1"].image.raw("communication_timeout") == 2
        assert gateway.events.counts["config_mismatch"] == mismatches + 1  # reg 19: 30 ≠ 2
        await cycles(gateway, 8, site, truth)
        assert truth.over(site.limit, rebooted + 0.4 + REACTION_S) == []
        assert_writes_clean(site, max_amps=32)
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


async def test_settings_changed_in_the_app_are_re_applied_within_slow_poll_every_cycles():
    every = 5
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_cars(2, 16))
    gateway = Gateway(site.config(slow_poll_every=every))
    truth = Truth()
    try:
        await gateway.start()
        await cycles(gateway, 8, site, truth)
        assert metric(gateway, "ampgate_charger_watchdog_timeout_seconds", device="c2") == 2
        changed = time.monotonic()
        # Someone switches the watchdog off and raises the failsafe current in the app.
        site.chargers["c2"].image.set_raw("communication_timeout", 0)
        site.chargers["c2"].image.set_raw("failsafe_current", 16)
        taken = every + 1
        for n in range(1, every + 1):
            await cycles(gateway, 1, site, truth)
            if site.chargers["c2"].image.raw("communication_timeout") == 2:
                taken = n
                break
        assert taken <= every, "not re-applied within slow_poll_every cycles"
        assert site.chargers["c2"].image.raw("failsafe_current") == 6
        assert gateway.events.counts["config_mismatch"] == 2  # one per field, once
        await cycles(gateway, every + 1, site, truth)
        assert gateway.events.counts["config_mismatch"] == 2  # not repeated once repaired
        assert metric(gateway, "ampgate_charger_watchdog_timeout_seconds", device="c2") == 2
        assert metric(gateway, "ampgate_charger_failsafe_current_amperes", device="c2") == 6
        fixes = [w for w in writes(site, "c2", changed) if w.address != SETPOINT]
        assert programming(fixes) == {WATCHDOG: 2, FAILSAFE: 6}
        assert len(fixes) <= 2  # written once, not every cycle
        assert writes(site, "c1", changed) == [] or all(
            w.address == SETPOINT for w in writes(site, "c1", changed)
        )
        assert truth.over(site.limit) == []
        assert_writes_clean(site, max_amps=16)
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


GLITCHES = {
    "nan": {"current_l1": math.nan, "current_l2": math.nan, "current_l3": math.nan},
    "plus_infinity": {"current_l1": math.inf},
    "minus_infinity": {"current_l2": -math.inf},
    "zeros": {
        **{f"current_l{i}": 0.0 for i in (1, 2, 3)},
        **{f"power_l{i}": 0.0 for i in (1, 2, 3)},
        "power_total": 0.0,
        "energy_import": 0.0,
    },
    "counter_backwards": {"energy_import": 500.0},
    "energy_nan": {"energy_import": math.nan},
    "energy_infinity": {"energy_import": math.inf},
}


@pytest.mark.parametrize(
    "glitch",
    [
        "nan",
        "plus_infinity",
        "minus_infinity",
        "zeros",
        "counter_backwards",
        "energy_nan",
        "energy_infinity",
    ],
)
async def test_a_meter_glitch_is_no_wrong_decision_and_counters_never_go_back(glitch):
    """While the meter serves the glitch the building load rises to the fallback load (8 A; a
    gateway believing the glitch would give the cars 32 A and overload the 32 A fuse): whatever
    the meter shows, no phase goes over the fuse, the setpoints stay in range, the published energy
    counter never moves back; when the meter is right again everything resumes."""
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_cars(2, 16))
    gateway = Gateway(site.config())
    truth = Truth()

    def published() -> float | None:
        value = metric(gateway, "ampgate_meter_energy_imported_joules_total", device="grid")
        return value

    counters: list[float] = []
    try:
        await gateway.start()
        # settled: past the start-up ramp and the 6 s a lower target counts as possibly followed
        await cycles(gateway, 40, site, truth)
        counters.append(published() or 0.0)
        assert counters[0] >= 1000 * 3.6e6
        before = dict(gateway.events.counts)
        site.meter.override(**GLITCHES[glitch])
        site.building[:] = [8.0, 8.0, 8.0]
        began = time.monotonic()
        for _ in range(20):  # 4 s: past the 2 s a meter must contradict the chargers
            await cycles(gateway, 1, site, truth)
            value = published()
            if value is not None:
                counters.append(value)
        events = {k: v - before.get(k, 0) for k, v in gateway.events.counts.items()}
        events = {k: v for k, v in events.items() if v}
        # the reaction window: the meter goes stale (0.6 s), or a reading that looks like one
        # is judged against the chargers within the meter's lag allowance (meter_lag_seconds,
        # 1 s: the chargers' draw of that long ago may explain it), one cycle to write, the
        # cars' reaction
        window = max(0.6, 1.0) + 0.4 + REACTION_S
        assert truth.over(site.limit, began + window) == [], (glitch, events, truth.samples)
        site.meter.override()
        for _ in range(10):
            await cycles(gateway, 1, site, truth)
            value = published()
            if value is not None:
                counters.append(value)
        assert counters == sorted(counters), (glitch, counters)
        assert truth.over(site.limit, began + window) == []
        assert gateway.meters["grid"].online and not gateway.meters["grid"].stale
        assert min(setpoints(site).values()) >= 6  # cars that fit keep charging
        assert_writes_clean(site, max_amps=16)
        expected = EXPECTED_EVENT[glitch]
        assert expected is None or events.get(expected, 0) >= 1, (glitch, events)
    finally:
        await gateway.shutdown(write=False)
        await site.stop()


EXPECTED_EVENT: dict[str, str | None] = {
    "nan": "meter_reading_invalid",
    "plus_infinity": "meter_reading_invalid",
    "minus_infinity": "meter_reading_invalid",
    "zeros": "meter_implausible",
    "counter_backwards": "energy_counter_backwards",
    "energy_nan": None,
    "energy_infinity": None,
}
