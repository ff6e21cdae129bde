"""The allocator: ``allocate(site, measurements, state, now) -> Allocation``. Pure, no I/O.

One cycle, in order:

1. observe every charger (session, the phases it is measured using, a phase switch confirmed
   or not, over-draw, under-draw, fairness time) — :mod:`.observe`;
2. non-EV load per group from its meter minus what the chargers measured at the meter's
   instant, a held reading or the fallback; the meter's plausibility — :mod:`.loads`,
   :mod:`.plausibility`;
3. offline chargers are assumed to draw max(last setpoint, failsafe) on all wired phases (and
   any other terminal seen drawing this session), over-drawing cars their measured excess on
   every phase they are accounted on — a terminal measured drawing is one, wired or not; a
   group phase whose non-EV load + headroom +
   those draws already exceed the limit stops every controllable charger on it (reason
   ``over_limit_without_ev``);
4. admission: chargers that want current, best rank first (priority, then least charging time,
   a running car keeping ``fairness_rotation_s`` of credit), get their minimum if it fits on all
   their phases in all their groups (+ restart margin, after the restart delay, for a charger
   the engine paused); otherwise they pause at 0 A — nobody gets 1–5 A. A phase-switchable
   charger that does not fit on 3 phases may switch to 1 (at most once per interval);
5. max-min fair water-filling of what is left, each charger between its minimum and the lesser
   of its maximum and its under-draw cap — :mod:`.fill`; a charger then gets at most its ramp
   limit, the others keeping only their fair share (a late car's room is made at once);
6. hysteresis on increases; increases only use current that is free even if this cycle's
   decreases have not taken effect yet (each charger counted at max(new, previous, measured),
   an over-drawing car's excess, already reserved in 3, not counted again), and none while a
   group's meter is held;
7. phase-imbalance caps (decrease only) — :mod:`.share`;
8. the meter is the final word: a phase the meter shows over its limit is lowered by at least
   the excess, counted from the measured draws — :mod:`.guard`.

Decreases always take effect in the cycle they are computed.

Hot path: the site's shape is precomputed once per ``Site`` object (:func:`site_index`);
capacities live in a flat list indexed by resource number (3 per group, plus power caps), and
each charger's memory is built once at the end of the cycle.
"""

from __future__ import annotations

from ampgate.dlm.cycle import Cycle
from ampgate.dlm.failsafe import plan_failsafe
from ampgate.dlm.guard import guard_measured
from ampgate.dlm.loads import GroupLoad
from ampgate.dlm.model import (
    Allocation,
    EngineState,
    Measurements,
    Setpoint,
    Site,
)
from ampgate.dlm.share import cap_imbalance, hold_back_increases


def building_loads(
    site: Site, measurements: Measurements, state: EngineState, now: float
) -> dict[str, GroupLoad]:
    """The non-EV load of every group as the engine estimates it for these measurements."""
    return Cycle(site, measurements, state, now).loads


def allocate(site: Site, measurements: Measurements, state: EngineState, now: float) -> Allocation:
    """Compute this cycle's setpoints, accounting, failsafe plan and the next engine state.

    ``site`` must be valid (:func:`ampgate.dlm.check_site`); ``now`` is the caller's monotonic
    time in seconds. Never raises on odd measurements: missing or stale data is treated
    conservatively (fallback load, offline charger). Pass the same ``Site`` object every
    cycle: its lookup tables are built once per object.
    """
    cycle = Cycle(site, measurements, state, now)
    cycle.reserve_fixed()
    admitted = cycle.admit()
    cycle.share(admitted)
    hold_back_increases(cycle, admitted)
    cap_imbalance(cycle, admitted)
    overloads, guard_notices = guard_measured(
        site.groups,
        cycle.index,
        cycle.loads,
        cycle.views,
        cycle.amps,
        cycle.results,
        {c.id: c.priority for c in site.chargers},
        state.overloaded,
        site.settings.estimate_tolerance_a,
    )
    cycle.notices.extend(guard_notices)
    amps, results = cycle.amps, cycle.results
    setpoints = {}
    memories = {}
    for v in cycle.views:
        cid = v.id
        text, code = results[cid]
        setpoints[cid] = Setpoint(amps[cid], text, code, v.mode)
        memories[cid] = cycle.next_memory(v)
    offset, rotated_at = state.failsafe_offset, state.failsafe_rotated_at
    if rotated_at is None:
        rotated_at = now
    elif now - rotated_at >= site.settings.failsafe_rotation_s:
        offset, rotated_at = offset + 1, now
    next_state = EngineState(
        time=now,
        chargers=memories,
        meters=cycle.meter_memory,
        failsafe_offset=offset,
        failsafe_rotated_at=rotated_at,
        overloaded=frozenset((o.group, o.phase) for o in overloads),
    )
    return Allocation(
        setpoints=setpoints,
        state=next_state,
        accounts=cycle.accounts(),
        failsafe=plan_failsafe(site, next_state),
        overloads=tuple(overloads),
        notices=tuple(cycle.notices),
    )
