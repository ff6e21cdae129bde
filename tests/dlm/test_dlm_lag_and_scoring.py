"""Meter-lag estimation, the closed-loop scores, and the fast-path structures of the engine."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.dlm import ChargerSpec, EngineSettings, Group, MeterSpec, Site, check_site
from ampgate.dlm.fill import FillItem, fill_levels, water_fill
from ampgate.dlm.loads import CAR_REACTION_S, draw_at
from ampgate.dlm.topology import site_index
from ampgate.sim.closed_loop import Car, Scenario, engine_allocator, simulate

STEP_UP = (10.0, 12.0, 8.0), (35.0, 30.0, 28.0)


def step_scenario(lag: float = 0.0, allowance: float = 0.0, headroom=(0.0, 0.0, 0.0), **kw):
    """Three cars behind a metered 3 × 63 A main; the building steps up at 129 s, down at 400 s."""
    site = check_site(
        Site(
            (Group("main", (63.0,) * 3, headroom=headroom, fallback_load=(40.0,) * 3),),
            tuple(ChargerSpec(f"cp{i}", "main") for i in (1, 2, 3)),
            (MeterSpec("m", "main"),),
            EngineSettings(meter_lag_allowance_s=allowance),
        )
    )
    cars = (
        Car("car1", "cp1", max_current=32, reaction_s=2),
        Car("car2", "cp2", max_current=16, reaction_s=4),
        Car("car3", "cp3", max_current=32, reaction_s=5),
    )
    building = {"main": ((0.0, STEP_UP[0]), (129.0, STEP_UP[1]), (400.0, (5.0, 5.0, 5.0)))}
    defaults = dict(duration_s=600.0, meter_lag_s=lag, meter_update_s=2.0 if lag else 1.0)
    return Scenario("step", site, cars, building, **{**defaults, **kw})


def test_lagging_meter_does_not_make_setpoints_oscillate():
    no_lag = simulate(step_scenario(), engine_allocator, 1.0)
    lag = simulate(step_scenario(lag=3.0, allowance=3.0), engine_allocator, 1.0)
    # equal here (82 /h each); the first version made 146 /h with the lag (139 vs 16 /h over
    # the hour-long benchmark scenario): it read the cars' own changes as non-EV load
    assert lag.setpoint_changes_per_charger_hour <= 1.2 * no_lag.setpoint_changes_per_charger_hour
    assert lag.overload_beyond_reaction_amp_s == 0.0


def test_engine_overload_ends_within_the_reaction_window_and_headroom_avoids_it():
    raw = simulate(step_scenario(), engine_allocator, 1.0)
    assert raw.overload_amp_s > 0  # the step itself overloads the fuse: nobody saw it coming
    assert raw.overload_beyond_reaction_amp_s == 0.0
    steps = tuple(b - a for a, b in zip(*STEP_UP, strict=True))
    padded = simulate(step_scenario(headroom=steps), engine_allocator, 1.0)
    assert padded.overload_amp_s == 0.0


def test_overload_beyond_reaction_counts_an_allocator_that_ignores_the_meter():
    def greedy(site, meas, state, now):  # gives every car its maximum whatever the load
        return {c.id: c.max_current for c in site.chargers}, {c.id: None for c in site.chargers}, 0

    result = simulate(step_scenario(), greedy, 1.0)
    assert result.overload_beyond_reaction_amp_s > 0.5 * result.overload_amp_s > 0


def test_meter_lag_is_applied_in_the_simulator():
    # the step at 129 s is 1 s before a 10 s cycle: seen at 130 s without lag, at 140 s with it
    no_lag = simulate(step_scenario(), engine_allocator, 10.0)
    lag = simulate(step_scenario(lag=3.0, allowance=3.0), engine_allocator, 10.0)
    assert lag.overload_amp_s > no_lag.overload_amp_s + 50
    assert lag.reaction_window_s == no_lag.reaction_window_s + 3.0 + 1.0


def test_jain_is_reported_among_cars_with_equal_needs():
    scenario = step_scenario()
    scenario = replace(
        scenario, cars=(*scenario.cars[:2], replace(scenario.cars[2], max_current=16))
    )
    result = simulate(scenario, engine_allocator, 1.0)
    e = result.energy_kwh
    equal = [e["car2"], e["car3"]]  # both 16 A, 3-phase, unlimited need
    assert result.jain_equal_need == sum(equal) ** 2 / (2 * sum(x * x for x in equal))
    unequal = replace(scenario, cars=scenario.cars[:1])
    assert simulate(unequal, engine_allocator, 1.0).jain_equal_need is None


def test_draw_at_uses_the_sample_matching_the_meter_time():
    history = ((7.0, (10.0, 10.0, 10.0)), (8.0, (12.0, 12.0, 12.0)), (9.0, (14.0, 14.0, 14.0)))
    now, current = 10.0, (16.0, 16.0, 16.0)
    assert draw_at(history, now, current, 8.0) == (12.0, 12.0, 12.0)
    # between two samples while the draw changes: the smaller (never hides load)
    assert draw_at(history, now, current, 8.5) == (12.0, 12.0, 12.0)
    # older than the history: the smallest draw seen
    assert draw_at(history, now, current, 3.0) == (10.0, 10.0, 10.0)
    # the earlier sample is a car reaction time or more before: the car had settled since
    sparse = ((0.0, (6.0, 6.0, 6.0)),)
    assert draw_at(sparse, 10.0, current, CAR_REACTION_S) == current
    assert draw_at(sparse, 10.0, current, CAR_REACTION_S - 1) == (6.0, 6.0, 6.0)


def test_site_index_is_built_once_per_site_object():
    site = step_scenario().site
    assert site_index(site) is site_index(site)
    copy = replace(site)
    assert copy == site and site_index(copy) is not site_index(site)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_merging_interchangeable_chargers_does_not_change_the_fill(data):
    n_res = data.draw(st.integers(1, 5))
    capacity = [data.draw(st.floats(0, 90).map(lambda x: round(x, 1))) for _ in range(n_res)]
    rows = [
        tuple(
            (r, data.draw(st.sampled_from([1.0, 3.0])))
            for r in data.draw(st.sets(st.integers(0, n_res - 1), min_size=1))
        )
        for _ in range(3)
    ]
    picks = data.draw(st.lists(st.integers(0, 2), min_size=1, max_size=10))
    lo = [6] * len(picks)
    hi = [data.draw(st.sampled_from([6, 10, 16, 32])) for _ in picks]
    shared = [rows[k] for k in picks]  # equal rows are one object: merged
    distinct = [tuple(list(rows[k])) for k in picks]  # equal rows, separate objects
    assert fill_levels(lo, hi, shared, capacity) == fill_levels(lo, hi, distinct, capacity)
    items = [FillItem(f"i{i}", lo[i], hi[i], row) for i, row in enumerate(distinct)]
    amps = water_fill(items, dict(enumerate(capacity)))
    for r in range(n_res):  # and the result fits every resource that can hold the minimums
        if sum(c * 6 for row in distinct for rr, c in row if rr == r) <= capacity[r]:
            used = sum(c * amps[it.id].amps for it in items for rr, c in it.uses if rr == r)
            assert used <= capacity[r] + 1e-6
