"""What is drawing on each phase besides the chargers ampgate controls (the non-EV load).

Rules (Bender "External Meter Location", "External Load Fallback", reference dlm.md 8–12):

- meter *including* the chargers: non-EV = meter − what the chargers *measured* at the
  meter's instant, per site phase through each charger's rotation — never minus a setpoint a
  car has not been measured following;
- meter *excluding* the chargers: non-EV = meter;
- reading stale, a phase missing, the meter implausible (:mod:`.plausibility`), or reading
  less than the chargers' own draw: hold the last estimate for ``meter_hold_s`` after that
  reading, then use the group's fallback load — never zero;
- group without a meter: its fallback load (the static non-EV load of that fuse).

**At the meter's instant.** Readings are taken at different times: a charger's reading may be
older or newer than the meter's, and the meter itself may lag by up to
``meter_lag_allowance_s``. For each charger, :func:`draw_bounds` gives the least and the most it
can have drawn while the meter measured (``[t − lag, t]``): the range of its readings around
that window (a car's draw moves once, from one reading's value to the next, between two
readings), widened down to any lower target it was told within :data:`CAR_REACTION_S` (+
:data:`WRITE_S` for the write to reach it) before the window and has not been seen reaching
(it may have followed a lowering already). The building load then lies in
``[meter − Σ most, meter − Σ least]`` per phase.

**The estimate.** When that range is at most ``estimate_tolerance_a`` wide, the estimate is its
top (conservative within the measurement's uncertainty). While cars change their draw the
range widens by their change; the estimate is then the previous one, kept *inside* the range
(lowered to its top if the building fell by more than the cars' change); if the building rose
by more than that (the previous estimate is below the range by more than the tolerance), the
meter minus the least the chargers' readings allow (their lower targets not counted): its
bottom would over-allocate by up to the cars' change (measured: 1 A over a 40 A fuse for 3 s
after a building step while a car ramped), its top pause a car for a lowering it was told and
may not have followed. Before anything was measured (a gateway starting while cars follow the
setpoints it just wrote): the meter minus the chargers' newest readings, inside the range. A
car told to draw *more* is taken at what it was measured drawing until a reading shows it
drawing more: had it risen sooner, the estimate is high by that until its next reading — the
safe side.

So a car still drawing its old current is never taken for building load (which paused every
car for a minute), and a car that followed quickly never hides building load behind an older
reading (which over-allocated). **Error bound**: for cars that move towards their targets
within :data:`CAR_REACTION_S`, the true building load is at most the estimate plus its
uncertainty (the range's width: the changes the chargers were told to make and have not been
measured completing) plus the meter's and the chargers' measurement error; the bench and a
property test against the simulators check it (``tests/dlm/test_dlm_estimate.py``). Unsure: a
car that changes its draw by itself (battery full, unplugged) between its reading and the
meter's is not known until its next reading; the error is then that change, for at most one
polling round.

Non-EV load is clamped at 0 per phase: a negative value (export, or a charger measured a moment
after the meter) must not create capacity that is not there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from ampgate.dlm.model import (
    CAR_REACTION_S,
    WRITE_S,
    EngineState,
    MeterLocation,
    MeterMemory,
    MeterReading,
    Notice,
    PhaseTriple,
    Site,
)
from ampgate.dlm.plausibility import check_meter
from ampgate.dlm.topology import SiteIndex

_ZERO: PhaseTriple = (0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class GroupLoad:
    """Non-EV load of one group per site phase, where it came from, and what was measured."""

    non_ev: PhaseTriple
    source: str  # "meter" | "held" | "fallback" | "static"
    measured: PhaseTriple | None = None
    """Current through the fuse per the live meter, chargers included (None: no live meter)."""
    uncertainty: PhaseTriple = _ZERO
    """Width of the range of building loads consistent with the readings, per phase."""
    most: Mapping[str, PhaseTriple] | None = None
    """The most each charger under the group may have drawn while the meter measured."""


class ChargerDraw(Protocol):
    """What the estimate needs to know about one charger (the engine's view of it)."""

    id: str
    online: bool
    measured: PhaseTriple
    measured_at: float
    recent_draw: tuple[tuple[float, PhaseTriple], ...]
    recent_targets: tuple[tuple[float, PhaseTriple], ...]


def draw_bounds(
    samples: Sequence[tuple[float, PhaseTriple]],
    targets: Sequence[tuple[float, PhaseTriple]],
    meter_at: float,
    lag: float,
    skew: float,
    noise: float,
) -> tuple[PhaseTriple, PhaseTriple]:
    """Least and most a charger drew per site phase while a meter measured at ``meter_at``.

    ``samples`` are its readings (time, draw), oldest first, the newest included; ``targets``
    the draws it was told to move to (time decided, draw), oldest first. The meter measured at
    some moment of ``[meter_at − lag, meter_at]``; a reading within ``skew`` before the window's
    end counts as taken at its end. Readings within ``noise`` of each other are the same draw
    (the newest is taken). See the module text for the rules.
    """
    start, end = meter_at - lag, meter_at - skew
    first = None
    for i, (t, _) in enumerate(samples):
        if t <= start:
            first = i
        else:
            break
    last = None
    if first is None:  # the meter measured before every reading: any of them may apply
        first = 0
    else:
        for i in range(first, len(samples)):
            if samples[i][0] >= end:
                last = i
                break
    span = samples[first:] if last is None else samples[first : last + 1]
    newest = span[-1][1]
    lo = list(newest)
    hi = list(newest)
    for _, d in span[:-1]:
        for p in range(3):
            if d[p] < lo[p]:
                lo[p] = d[p]
            elif d[p] > hi[p]:
                hi[p] = d[p]
    for p in range(3):
        if hi[p] - lo[p] <= noise:
            lo[p] = hi[p] = newest[p]
    # where it was told to go lower: it may have been there, or on its way, while the meter
    # measured (a car told to draw more is taken at what it was measured drawing: if it rose
    # sooner, the building load is over-estimated by that until its next reading — safe)
    t_last, d_last = samples[-1]
    for t, target in targets:
        if t <= start - CAR_REACTION_S - WRITE_S or t > meter_at:
            continue
        if t <= t_last and all(abs(target[p] - d_last[p]) <= noise for p in range(3)):
            continue  # the newest reading shows it there
        for p in range(3):
            if target[p] < lo[p]:
                lo[p] = target[p]
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def group_loads(
    site: Site,
    index: SiteIndex,
    chargers: Mapping[str, ChargerDraw],
    meter_readings: Mapping[str, MeterReading],
    state: EngineState,
    now: float,
) -> tuple[dict[str, GroupLoad], dict[str, MeterMemory], list[Notice]]:
    """Each group's non-EV load, the meters' memory for the next state, and notices."""
    s = site.settings
    loads: dict[str, GroupLoad] = {}
    memory: dict[str, MeterMemory] = {}
    notices: list[Notice] = []
    for group in site.groups:
        meter = index.meter_of_group.get(group.id)
        if meter is None:
            loads[group.id] = GroupLoad(group.fallback_load, "static")
            continue
        reading = meter_readings.get(meter.id)
        held = state.meters.get(meter.id)
        m = None if reading is None else _every_phase(reading.currents)
        if reading is None or m is None or not now - reading.timestamp <= s.meter_stale_after_s:
            loads[group.id] = _held_or_fallback(group.fallback_load, held, now, s.meter_hold_s)
            if held is not None:
                memory[meter.id] = held
            continue
        least = [0.0, 0.0, 0.0]
        read_least = [0.0, 0.0, 0.0]  # the least by the readings alone (no target widening)
        most = [0.0, 0.0, 0.0]
        latest = [0.0, 0.0, 0.0]
        most_of: dict[str, PhaseTriple] = {}
        including = meter.location is MeterLocation.INCLUDING
        for cid in index.members[group.id]:
            v = chargers.get(cid)
            if v is None or not v.online:
                continue
            samples = v.recent_draw
            if not samples or samples[-1][0] < v.measured_at:
                samples = (*samples, (v.measured_at, v.measured))
            lo, hi = draw_bounds(
                samples,
                v.recent_targets,
                reading.timestamp,
                s.meter_lag_allowance_s,
                s.reading_skew_s,
                s.estimate_tolerance_a,
            )
            newest = samples[-1][1]
            read_lo, _ = draw_bounds(
                samples,
                (),
                reading.timestamp,
                s.meter_lag_allowance_s,
                s.reading_skew_s,
                s.estimate_tolerance_a,
            )
            most_of[cid] = hi
            for p in range(3):
                read_least[p] += read_lo[p]
                least[p] += lo[p]
                most[p] += hi[p]
                latest[p] += newest[p]
        checked = check_meter(
            meter.id, group.id, including, m, reading.timestamp, least, most, held, s
        )
        notices.extend(checked.notices)
        if checked.implausible is not None or checked.memory.below_since is not None:
            # not believed, or (for now) reading less than the chargers draw: it says nothing
            # about the building load this cycle
            memory[meter.id] = checked.memory
            load = _held_or_fallback(group.fallback_load, checked.memory, now, s.meter_hold_s)
            loads[group.id] = load
            continue
        if including:
            top = (m[0] - least[0], m[1] - least[1], m[2] - least[2])
            bottom = (m[0] - most[0], m[1] - most[1], m[2] - most[2])
            measured = m
        else:
            top = bottom = m
            measured = (m[0] + most[0], m[1] + most[1], m[2] + most[2])
        before = checked.memory
        estimate = [0.0, 0.0, 0.0]
        known = list(before.non_ev_load)
        known_at = list(before.measured_at)
        for p in range(3):
            if top[p] - bottom[p] <= s.estimate_tolerance_a:
                estimate[p] = top[p]
                known[p], known_at[p] = top[p], reading.timestamp
            elif before.non_ev_load[p] < bottom[p] - s.estimate_tolerance_a:
                # the building rose by more than the cars' uncertain change: the safe side of
                # what the readings themselves allow (a lower target told but not yet seen
                # followed would pause cars for a building load that is not there)
                estimate[p] = known[p] = _clamp(m[p] - read_least[p], bottom[p], top[p])
            elif before.measured_at[p] > float("-inf"):
                # what the readings allow, nearest to what was known: a building load that fell
                # by more than the cars' uncertain change moves the estimate at once
                estimate[p] = known[p] = _clamp(before.non_ev_load[p], bottom[p], top[p])
            else:  # never measured yet: the meter minus what the chargers measured last
                point = m[p] - latest[p] if including else m[p]
                estimate[p] = known[p] = _clamp(point, bottom[p], top[p])
                known_at[p] = reading.timestamp
        non_ev = (max(0.0, estimate[0]), max(0.0, estimate[1]), max(0.0, estimate[2]))
        keep = [e for e in before.history if reading.timestamp - e[0] <= s.meter_hold_s]
        memory[meter.id] = replace(
            before,
            non_ev_load=(known[0], known[1], known[2]),
            measured_at=(known_at[0], known_at[1], known_at[2]),
            timestamp=reading.timestamp,
            history=(*keep, (reading.timestamp, non_ev)),
        )
        uncertainty = (top[0] - bottom[0], top[1] - bottom[1], top[2] - bottom[2])
        loads[group.id] = GroupLoad(non_ev, "meter", measured, uncertainty, most_of)
    return loads, memory, notices


def _every_phase(currents: tuple[float | None, float | None, float | None]) -> PhaseTriple | None:
    """The three currents as floats, or None when a phase is missing."""
    l1, l2, l3 = currents
    if l1 is None or l2 is None or l3 is None:
        return None
    return (float(l1), float(l2), float(l3))


def _held_or_fallback(
    fallback: PhaseTriple, held: MeterMemory | None, now: float, hold_s: float
) -> GroupLoad:
    """The non-EV load of a group whose meter is not live: the fallback, or for ``hold_s`` after
    its last good reading that reading where it is higher (per phase).

    Never less than the fallback: while the meter is not live the building may have risen
    (a meter that freezes or reads zeros as the building steps up), and the fallback is the
    installer's bound for that (reference rule 8). A building estimate above the fallback is
    held rather than dropped to it at once."""
    if held is not None and held.history:
        since = held.suspect_since if held.suspect_since is not None else now
        good = [e for e in held.history if e[0] <= since + 1e-9]
        if good and now - good[-1][0] <= hold_s:
            last = good[-1][1]
            if any(h > f for h, f in zip(last, fallback, strict=True)):
                kept = (
                    max(last[0], fallback[0]),
                    max(last[1], fallback[1]),
                    max(last[2], fallback[2]),
                )
                return GroupLoad(kept, "held")
    return GroupLoad(fallback, "fallback")
