"""The quarter-hour peak budget (ampgate.dlm.peak): what the quarter has left, spread over it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ampgate.dlm import QUARTER_S, PeakBudget

Q = 1_800_000_000 // 900 * 900  # a quarter boundary in Unix time


def test_aligned_spreads_what_the_quarter_has_left_over_what_is_left_of_it():
    budget = PeakBudget(10.0, margin=0.0)
    assert budget.allowed_kw(Q) == pytest.approx(10.0)  # nothing used: the peak itself
    budget.record(Q, 20.0)  # 20 kW for the first 5 minutes uses 2/3 of the budget
    assert budget.average_kw(Q + 300) == pytest.approx(20.0 * 300 / 900)
    assert budget.allowed_kw(Q + 300) == pytest.approx((2.5 - 20 * 300 / 3600) * 3600 / 600)
    budget.record(Q + 300, 0.0)  # then nothing for 5 minutes: the rest over the last 5
    assert budget.allowed_kw(Q + 600) == pytest.approx((2.5 - 20 * 300 / 3600) * 3600 / 300)
    assert budget.allowed_kw(Q + QUARTER_S) == pytest.approx(10.0)  # a new quarter


def test_a_spent_quarter_allows_nothing_and_export_earns_no_budget():
    budget = PeakBudget(5.0, margin=0.0)
    budget.record(Q, 30.0)
    assert budget.allowed_kw(Q + 200) == 0.0
    other = PeakBudget(5.0, margin=0.0)
    other.record(Q, -50.0)  # exporting
    assert other.allowed_kw(Q + 450) == pytest.approx(10.0)  # all of it, over half the time


def test_rolling_keeps_the_window_that_ends_a_horizon_ahead_under_the_peak():
    budget = PeakBudget(10.0, rolling=True, horizon_s=300, margin=0.0)
    budget.record(Q, 15.0)
    budget.record(Q + 600, 5.0)
    t = Q + 900
    # what the window ending at t + 300 already holds: 15 kW over [t-600, t-300), 5 over the rest
    held = (15.0 * 300 + 5.0 * 300) / 3600
    assert budget.allowed_kw(t) == pytest.approx((2.5 - held) * 3600 / 300)


def test_the_margin_is_kept_free():
    assert PeakBudget(10.0, margin=0.05).allowed_kw(Q) == pytest.approx(9.5)


@pytest.mark.parametrize(
    "kwargs", [{"peak_kw": 0.0}, {"peak_kw": 5.0, "horizon_s": 0}, {"peak_kw": 5.0, "margin": 1}]
)
def test_a_budget_it_cannot_honour_is_refused_with_the_allowed_range(kwargs):
    with pytest.raises(ValueError, match="allowed"):
        PeakBudget(**kwargs)


@given(
    st.lists(st.floats(0, 60), min_size=1, max_size=40),
    st.sampled_from([False, True]),
)
def test_drawing_what_is_allowed_keeps_every_quarter_under_the_peak(draws, rolling):
    """Following the budget (each cycle drawing at most what it allows) never exceeds it."""
    budget = PeakBudget(10.0, rolling=rolling, horizon_s=60, margin=0.0)
    step = 60.0
    for i in range(60):
        t = Q + i * step
        budget.record(t, min(draws[i % len(draws)], budget.allowed_kw(t)))
        end = t + step
        if rolling or (end - Q) % QUARTER_S == 0:  # any window, or each aligned quarter
            assert budget.energy_kwh(end - QUARTER_S, end) <= 2.5 + 1e-6
