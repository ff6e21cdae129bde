"""A quarter-hour power budget: a group's 15-minute average import kept under a peak.

Capacity tariffs (Flanders since 2023, several German and Dutch grid operators) bill the
highest 15-minute average import power of a month. :class:`PeakBudget` records the import
power through a metered group and says how much power the group may draw from now on so the
quarter's average stays under ``peak_kw``:

* ``aligned`` (the tariff's own quarters, starting at :00, :15, :30 and :45): what the quarter
  has left, spread over what is left of it. Early in a quarter with little import so far, the
  cars may draw more than the peak for a while; late in a quarter that imported much, less.
* ``rolling``: any 15 minutes. The power allowed now keeps the average of the window that
  ends ``horizon_s`` from now under the peak, given what the window already holds.

A ``margin`` (a share of the peak) is kept for what a lowering costs before the cars follow it.
The times are seconds on one clock that counts whole quarters at multiples of 900 s (Unix time
does, in every time zone that is offset by whole quarter hours). Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

QUARTER_S = 900.0
"""The averaging period of a capacity tariff, s."""
MIN_REMAINING_S = 60.0
"""Aligned: the last minute of a quarter is planned as if a minute were left (no burst of the
whole remainder into a few seconds that the cars could not follow anyway)."""


@dataclass(slots=True)
class PeakBudget:
    """The import power recorded for one group and the power it may draw to keep ``peak_kw``."""

    peak_kw: float
    rolling: bool = False
    horizon_s: float = 300.0
    """Rolling: how far ahead the window's average is kept under the peak."""
    margin: float = 0.03
    """Share of the peak not planned with (cars follow a lowering seconds late)."""
    _samples: deque[tuple[float, float]] = field(default_factory=deque)
    """(time, kW) from that time until the next sample."""

    def __post_init__(self) -> None:
        """Reject a budget the arithmetic cannot honour."""
        if not self.peak_kw > 0:
            raise ValueError(f"peak_kw {self.peak_kw!r} is not allowed (allowed: > 0 kW)")
        if not 0 < self.horizon_s <= QUARTER_S:
            raise ValueError(f"horizon_s {self.horizon_s!r} is not allowed (allowed: 0 < h <= 900)")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin {self.margin!r} is not allowed (allowed: 0 <= m < 1)")

    def record(self, t: float, power_kw: float) -> None:
        """The group imports ``power_kw`` from ``t`` on (export counts as 0: it earns no
        budget); a non-finite value or a time before the last one is ignored."""
        if not math.isfinite(power_kw) or (self._samples and t < self._samples[-1][0]):
            return
        self._samples.append((t, max(0.0, power_kw)))
        horizon = t - 2 * QUARTER_S
        while len(self._samples) > 1 and self._samples[1][0] <= horizon:
            self._samples.popleft()

    def energy_kwh(self, start: float, end: float) -> float:
        """Energy imported between ``start`` and ``end`` (the last power held until ``end``;
        nothing before the first record)."""
        total = 0.0
        samples = list(self._samples)
        for i, (t, kw) in enumerate(samples):
            until = samples[i + 1][0] if i + 1 < len(samples) else end
            overlap = min(until, end) - max(t, start)
            if overlap > 0:
                total += kw * overlap / 3600.0
        return total

    def window(self, t: float) -> tuple[float, float]:
        """The quarter the budget is about at ``t``: the aligned quarter holding ``t``, or the
        15 minutes up to ``t``."""
        if self.rolling:
            return (t - QUARTER_S, t)
        start = math.floor(t / QUARTER_S) * QUARTER_S
        return (start, start + QUARTER_S)

    def average_kw(self, t: float) -> float:
        """The quarter's average import so far (aligned: what it holds at ``t`` over the whole
        quarter, so it only grows to the quarter's value; rolling: the last 15 minutes)."""
        start, _ = self.window(t)
        return self.energy_kwh(start, t) * 3600.0 / QUARTER_S

    def allowed_kw(self, t: float) -> float:
        """The power the group may import from ``t`` on and keep the quarter under the peak."""
        budget = self.peak_kw * (1.0 - self.margin) * QUARTER_S / 3600.0
        if self.rolling:
            held = self.energy_kwh(t - QUARTER_S + self.horizon_s, t)
            return max(0.0, (budget - held) * 3600.0 / self.horizon_s)
        start, end = self.window(t)
        remaining = max(end - t, MIN_REMAINING_S)
        return max(0.0, (budget - self.energy_kwh(start, t)) * 3600.0 / remaining)
