"""Is a meter that answers telling the truth? Three checks against the chargers' own readings.

A meter can keep answering with values that are no longer measurements (a hung measurement
core behind a live Modbus interface, a gateway serving cached values). Reference
dlm.md rule 12: a meter that contradicts the chargers' own measurements is not live. A meter is
*implausible* — treated as stale: its last believable non-EV load is held, then the fallback
load is used — while:

1. **it repeats exactly the same values** on every phase for ``meter_stale_after_s`` or longer
   (a real meter's currents always move a little; readings below :data:`IDLE_A` on every
   phase are exempt, a coarse meter on an idle site may repeat them);
2. (*including* meter) **it reads less than the chargers' own draw** on a phase: less than
   the least the chargers can have drawn at its instant, minus :data:`BELOW_MARGIN_A` and
   :data:`BELOW_MARGIN_SHARE` of that draw (the two instruments' accuracy), for
   :data:`REFRESH_GRACE_S` or ``meter_lag_allowance_s``, whichever is longer;
3. (*including* meter) **its phase reading does not move** (by more than :data:`MOVE_A`) while
   the chargers' draw on that phase has certainly changed by ``meter_frozen_change_a`` or more
   — compared with their draw at least ``meter_lag_allowance_s`` + :data:`REFRESH_GRACE_S`
   before the reading, so a meter that refreshes slowly or lags is not accused.

It is believed again once a reading passes all three (for 1 and 3, its values moved again). The
held load is the last estimate from before the meter became suspect (for 1 and 3, from before
the values stopped moving). Unsure: the margins are not from a vendor document; they are set so
that a class-1 meter and a charger's current measurement (resolution 0.1 A) never trip them on
their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ampgate.dlm.model import EngineSettings, MeterMemory, Notice, PhaseTriple

IDLE_A = 0.5
BELOW_MARGIN_A = 1.0
BELOW_MARGIN_SHARE = 0.03
MOVE_A = 0.05
REFRESH_GRACE_S = 2.0
_PHASES = ("L1", "L2", "L3")
_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class MeterCheck:
    """The outcome of one reading's checks."""

    implausible: str | None
    memory: MeterMemory
    notices: list[Notice] = field(default_factory=list)


def _new_memory() -> MeterMemory:
    return MeterMemory(
        non_ev_load=(0.0, 0.0, 0.0), timestamp=_NEVER, measured_at=(_NEVER, _NEVER, _NEVER)
    )


def check_meter(
    meter: str,
    group: str,
    including: bool,
    currents: PhaseTriple,
    at: float,
    least: Sequence[float],
    most: Sequence[float],
    memory: MeterMemory | None,
    settings: EngineSettings,
) -> MeterCheck:
    """Run the checks on a fresh reading taken ``at``; ``least``/``most`` are the chargers'
    summed draw bounds at its instant (see :func:`ampgate.dlm.loads.draw_bounds`)."""
    mem = memory if memory is not None else _new_memory()
    reasons: list[tuple[str, float]] = []
    below_since = None
    # 1. the very same values again
    same_since = None
    if mem.last_currents == currents and any(abs(c) >= IDLE_A for c in currents):
        same_since = mem.same_since if mem.same_since is not None else mem.timestamp
        if at - same_since >= settings.meter_stale_after_s:
            reasons.append((f"repeats the same values for {at - same_since:.0f} s", same_since))
    lo = (least[0], least[1], least[2])
    hi = (most[0], most[1], most[2])
    if len(mem.moved) == 3:
        moved = list(mem.moved)
    else:
        moved = [(at, c, lo[p], hi[p]) for p, c in enumerate(currents)]
    keep = settings.meter_lag_allowance_s + 2 * REFRESH_GRACE_S + settings.meter_stale_after_s
    draws = (*(e for e in mem.draws if at - e[0] <= keep), (at, lo, hi))
    if including:
        # 2. below the chargers' own draw, for longer than the meter may lag
        below = [
            p for p in range(3) if currents[p] < lo[p] - BELOW_MARGIN_A - BELOW_MARGIN_SHARE * lo[p]
        ]
        if below:
            below_since = mem.below_since if mem.below_since is not None else at
            if at - below_since >= max(REFRESH_GRACE_S, settings.meter_lag_allowance_s):
                p = below[0]
                reasons.append(
                    (
                        f"{_PHASES[p]} reads {currents[p]:.1f} A, less than the chargers' own "
                        f"{lo[p]:.1f} A",
                        below_since,
                    )
                )
        # 3. not moving while the chargers' draw moved
        horizon = at - settings.meter_lag_allowance_s - REFRESH_GRACE_S
        then = next((e for e in reversed(draws) if e[0] <= horizon), None)
        for p in range(3):
            t_ref, value, lo_ref, hi_ref = moved[p]
            if abs(currents[p] - value) > MOVE_A:
                moved[p] = (at, currents[p], lo[p], hi[p])
                continue
            if then is None or then[0] < t_ref:
                continue
            change = max(then[1][p] - hi_ref, lo_ref - then[2][p])
            if change >= settings.meter_frozen_change_a:
                reasons.append(
                    (
                        f"{_PHASES[p]} stays at {currents[p]:.1f} A while the chargers' draw "
                        f"changed by {change:.1f} A",
                        t_ref,
                    )
                )
    else:
        moved = [(at, c, 0.0, 0.0) for c in currents]
    reason: str | None = None
    suspect: float | None = None
    if reasons:
        reason = reasons[0][0]
        suspect = min(r[1] for r in reasons)
        if mem.implausible is not None and mem.suspect_since is not None:
            suspect = min(suspect, mem.suspect_since)
    notices: list[Notice] = []
    if reason is not None and mem.implausible is None:
        notices.append(Notice("meter_implausible", meter, {"group": group, "reason": reason}))
    elif reason is None and mem.implausible is not None:
        notices.append(Notice("meter_plausible", meter, {"group": group}))
    updated = replace(
        mem,
        last_currents=currents,
        same_since=same_since,
        moved=tuple(moved),
        draws=draws,
        implausible=reason,
        suspect_since=suspect,
        below_since=below_since,
    )
    return MeterCheck(reason, updated, notices)
