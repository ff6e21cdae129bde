"""The closed-loop scores, the simulated meter lag, and the fast-path structures of the engine."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.dlm.fill import FillItem, fill_levels, water_fill
from ampgate.dlm.topology import site_index
from ampgate.sim.closed_loop import engine_allocator, simulate
from ampgate.sim.device import ManualClock
from ampgate.sim.plant import Plant
from ampgate.sim.scenario import parse_scenario
from ampgate.sim.scoring import jain

STEP_UP = (10.0, 12.0, 8.0), (35.0, 30.0, 28.0)


def step_scenario(lag: float = 0.0, headroom=(0.0, 0.0, 0.0), **head):
    """Three cars behind a metered 3 × 63 A main; the building steps up at 129 s, down at 400 s."""
    data = {
        "scenario": {"name": "step", "duration_s": 600, "meter_lag_s": lag, **head},
        "groups": {"main": {"limit": 63, "fallback_load": 40, "headroom": list(headroom)}},
        "meters": {"grid": {"group": "main"}},
        "chargers": {f"cp{i}": {"group": "main"} for i in (1, 2, 3)},
        "dlm": {"meter_lag_seconds": lag + 1.0},
        "cars": [
            {"id": "car1", "charger": "cp1", "max_current": 32, "reaction_s": 2},
            {"id": "car2", "charger": "cp2", "max_current": 16, "reaction_s": 4},
            {"id": "car3", "charger": "cp3", "max_current": 32, "reaction_s": 5},
        ],
        "building": [
            {"group": "main", "at_s": 0, "load": list(STEP_UP[0])},
            {"group": "main", "at_s": 129, "load": list(STEP_UP[1])},
            {"group": "main", "at_s": 400, "load": [5, 5, 5]},
        ],
    }
    return parse_scenario(data, "step.toml")


def test_engine_overload_ends_within_the_reaction_window_and_headroom_avoids_it():
    raw = simulate(step_scenario())
    assert raw.overload_amp_s > 0  # the step itself overloads the fuse: nobody saw it coming
    assert raw.overload_beyond_reaction_amp_s == 0.0
    assert raw.waiting_with_room_share < 0.02
    steps = tuple(b - a for a, b in zip(*STEP_UP, strict=True))
    padded = simulate(step_scenario(headroom=steps))
    assert padded.overload_amp_s == 0.0


def test_overload_beyond_reaction_counts_an_allocator_that_ignores_the_meter():
    def greedy(site, meas, state, now):  # gives every car its maximum whatever the load
        return {c.id: c.max_current for c in site.chargers}, {c.id: None for c in site.chargers}, 0

    result = simulate(step_scenario(), greedy, "greedy")
    assert result.overload_beyond_reaction_amp_s > 0.5 * result.overload_amp_s > 0


def test_waiting_with_room_counts_a_car_held_at_zero_for_no_reason():
    def idle(site, meas, state, now):  # never gives anyone current
        return {c.id: 0 for c in site.chargers}, {c.id: None for c in site.chargers}, 0

    result = simulate(step_scenario(), idle, "idle")
    assert result.waiting_with_room_share > 0.9 and result.energy_ratio == 0.0


def test_the_meter_lag_is_applied_in_the_simulator():
    scenario = step_scenario(lag=3.0, meter_update_s=0.5, meter_noise_a=0.0)
    clock = ManualClock()
    plant = Plant(scenario, clock)
    meter = plant.meters["grid"]
    seen = {}
    for k in range(0, 1300):
        clock.now = 120.0 + k / 100
        seen[k] = plant.step(clock.now).total["main"]
        if k >= 400:
            # what flowed 3 s (and up to one refresh, 0.5 s) earlier
            assert meter.served_currents in [seen[j] for j in range(k - 350, k - 299)]
    assert seen[1299][0] - seen[0][0] == STEP_UP[1][0] - STEP_UP[0][0]


def test_engine_beats_the_reaction_window_with_a_lagging_meter_it_is_told_about():
    result = simulate(step_scenario(lag=3.0))
    assert result.reaction_window_s == simulate(step_scenario()).reaction_window_s + 3.0
    assert result.overload_beyond_reaction_amp_s == 0.0


def test_jain_is_reported_among_cars_with_equal_needs():
    scenario = step_scenario()
    result = simulate(scenario, engine_allocator)
    e = result.car_energy_kwh
    assert result.jain_equal_need == pytest.approx(jain([e["car1"], e["car3"]]))  # both 32 A
    assert jain([1.0, 1.0]) == 1.0 and jain([1.0, 0.0]) == 0.5


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
