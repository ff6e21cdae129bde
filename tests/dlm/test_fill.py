"""The water-filling on its own (ampgate.dlm.fill): feasible, bounded, fair in whole amps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.dlm.fill import FillItem, fill_levels, water_fill


@st.composite
def problems(draw: st.DrawFn, coefficients=(1,)):
    resources = draw(st.integers(1, 6))
    capacity = [float(draw(st.integers(0, 80))) for _ in range(resources)]
    n = draw(st.integers(1, 8))
    lo, hi, uses = [], [], []
    for _ in range(n):
        low = draw(st.integers(0, 6))
        lo.append(low)
        hi.append(draw(st.integers(low, 32)))
        picked = draw(st.lists(st.integers(0, resources - 1), min_size=1, max_size=3, unique=True))
        uses.append(tuple((r, float(draw(st.sampled_from(coefficients)))) for r in sorted(picked)))
    # capacity for everyone's minimum, as admission guarantees before filling
    for i in range(n):
        for r, c in uses[i]:
            capacity[r] += lo[i] * c
    return lo, hi, uses, capacity


@settings(max_examples=300, deadline=None)
@given(problems(coefficients=(1, 3)))
def test_levels_fit_every_resource_and_stay_in_bounds(problem):
    # no maximality: rounding to whole amps gives each item at most one amp above its
    # rounded-down level, so a few amps may stay unused where an item blocked elsewhere
    # would have taken them (see the rounding test below)
    lo, hi, uses, capacity = problem
    amps, limited = fill_levels(lo, hi, uses, capacity)
    load = [0.0] * len(capacity)
    for i, row in enumerate(uses):
        assert lo[i] <= amps[i] <= hi[i]
        assert limited[i] is None or limited[i] in {r for r, _ in row}
        for r, c in row:
            load[r] += amps[i] * c
    assert all(load[r] <= capacity[r] + 1e-6 for r in range(len(capacity)))


def test_max_min_fair_the_small_share_is_not_taken_by_the_big_one():
    # two chargers on one 20 A phase, one wanting only 6 A: it gets 6, the other the rest
    amps, limited = fill_levels([6, 6], [6, 32], [((0, 1.0),), ((0, 1.0),)], [20.0])
    assert amps == [6, 14] and limited == [None, 0]


def test_water_fill_names_resources_by_key_and_leaves_missing_keys_unlimited():
    items = [
        FillItem("a", 6, 16, (("main.L1", 1.0),)),
        FillItem("b", 6, 16, (("main.L1", 1.0), ("other", 1.0))),
    ]
    out = water_fill(items, {"main.L1": 24.0})
    assert (out["a"].amps, out["b"].amps) == (12, 12)
    assert out["a"].limited_by == "main.L1"


def test_rounding_leftover_is_one_amp_each_in_rank_order():
    # a 1-phase charger next to a 3-phase one (coefficient 3) under a 27 A power resource: the
    # continuous level is 6.75 A; rounded down both sit at 6 A and 3 A are left; one round of
    # +1 A gives the first 7 A and leaves 2 A (less than the 3-phase charger's 3 A) unused
    amps, _ = fill_levels([6, 6], [16, 16], [((0, 1.0),), ((0, 3.0),)], [27.0])
    assert amps == [7, 6]
