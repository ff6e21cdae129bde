"""Steps after water-filling: hold back increases until current is released; imbalance caps.

Both work on the engine's cycle (:class:`ampgate.dlm.cycle.Cycle`): its views, flat
``capacity``/``fixed`` lists indexed by resource number, and the ``amps``/``results`` dicts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ampgate.dlm.model import CAR_REACTION_S, WRITE_S, PhaseTriple
from ampgate.dlm.observe import ChargerView

if TYPE_CHECKING:
    from ampgate.dlm.cycle import Cycle

EPS = 1e-9


def _previous(v: ChargerView) -> PhaseTriple:
    """The setpoint in effect per site phase before this cycle (its latest target)."""
    if v.recent_targets:
        return v.recent_targets[-1][1]
    a = float(v.previous)
    on = v.site_phases
    return (a if 0 in on else 0.0, a if 1 in on else 0.0, a if 2 in on else 0.0)


def _committed(
    cycle: Cycle, v: ChargerView, amps: int | None, before: PhaseTriple
) -> list[tuple[int, float]]:
    """Per resource, what a charger may draw this cycle: per phase, the largest of its new
    setpoint (``amps`` on its phases; None: no change), what was in effect before
    (``before``), its measured draw, and any target it was told within a car's reaction time
    (a slow car may still be on its way to one it was told before the last change).

    An over-drawing car's excess is already off the capacity (``Cycle.reserved``, on the phases
    it was accounted on then): there its measured draw counts net of that excess, so the
    excess is counted once — the car is budgeted at the larger of its setpoints plus its
    excess and what it is measured drawing, never at less than its measured draw.
    """
    reserved = cycle.reserved.get(v.id)
    measured = v.measured
    if reserved is None:
        m = [max(before[p], measured[p]) for p in range(3)]
    else:
        m = [max(before[p], measured[p] - reserved[p]) for p in range(3)]
    since = cycle.now - CAR_REACTION_S - WRITE_S
    targets = v.recent_targets
    if targets and not _at_latest_target(v):
        for t, target in targets:
            if t > since:
                for p in range(3):
                    if target[p] > m[p]:
                        m[p] = target[p]
    phases = v.site_phases
    if amps is not None:
        for p in phases:
            if amps > m[p]:
                m[p] = float(amps)
    on = {p for p in range(3) if m[p] > 0.0} | set(phases)
    phase_res, power_res = cycle.index.uses(v.id, tuple(sorted(on)))
    out = [(r, m[r % 3]) for r in phase_res]
    if power_res:
        total = m[0] + m[1] + m[2]
        out.extend((r, total) for r in power_res)
    return out


def _at_latest_target(v: ChargerView) -> bool:
    """True when the charger's newest reading, taken after its latest target was decided,
    shows it there: a car follows its targets in turn, so none before it is still to come."""
    t, target = v.recent_targets[-1]
    if v.measured_at < t:
        return False
    tolerance = 1.0
    return all(abs(target[p] - v.measured[p]) <= tolerance for p in range(3))


def _rises(v: ChargerView, amps: int, before: PhaseTriple) -> bool:
    return any(amps > before[p] + EPS for p in v.site_phases)


def hold_back_increases(cycle: Cycle, admitted: list[ChargerView]) -> None:
    """Grant increases only out of current that is already free.

    Every online charger is counted, per phase, at the largest of its new setpoint, the one in
    effect before, its measured draw and any target it may still be moving to — a decrease
    made this cycle has not taken effect yet; an over-drawing car's excess once, see
    :func:`_committed` — and the chargers that rise on some phase (a
    higher setpoint, or a switch to more phases), in site order, get what is left, never less
    than before, and only when ``increase_margin_a`` is left free above the increase (a dead
    band: the meter's noise at a whole-amp boundary does not make setpoints flap). A phase
    switch that does not fit is not made. A charger under a group whose meter is not live but
    held (its last reading stands in for it) does not rise at all: what the meter would show
    is not known.
    """
    amps = cycle.amps
    admitted_ids = {v.id for v in admitted}
    before = {v.id: _previous(v) for v in cycle.views if v.online}
    rising = [
        v for v in cycle.views if v.id in admitted_ids and _rises(v, amps[v.id], before[v.id])
    ]
    if not rising:
        return
    held = {g for g, load in cycle.loads.items() if load.source == "held"}
    if held:
        chain = cycle.index.chain
        for v in [v for v in rising if held.intersection(chain[v.id])]:
            _keep(cycle, v, "steady: meter not live, holding", "meter_held")
            rising.remove(v)
    rising_ids = {v.id for v in rising}
    load = [0.0] * len(cycle.capacity)
    for v in cycle.views:
        if not v.online:
            continue
        a = None if v.id in rising_ids else amps.get(v.id, 0)
        for r, draw in _committed(cycle, v, a, before[v.id]):
            load[r] += draw
    cap, index = cycle.capacity, cycle.index
    margin = cycle.settings.increase_margin_a
    metered = {g for g, load in cycle.loads.items() if load.source == "meter"}
    for v in rising:
        cid, target = v.id, amps[v.id]
        own = dict(_committed(cycle, v, None, before[cid]))
        # the dead band applies where a meter's noise is in the capacity
        dead = margin if metered.intersection(index.chain[cid]) else 0.0
        limit = math.inf
        phase_res, power_res = index.uses(cid, v.site_phases)
        for r in phase_res:
            free = cap[r] - (load[r] - own.get(r, 0.0))
            if free < limit:
                limit = free
        k = len(v.site_phases)
        for r in power_res:
            free = (cap[r] - (load[r] - own.get(r, 0.0))) / k
            if free < limit:
                limit = free
        granted = target if limit >= target + dead else math.floor(limit - dead + EPS)
        if cid in cycle.switched and granted < target:
            _keep(cycle, v, "waiting for released current to switch phases", "waiting_release")
            continue
        if granted < v.previous:
            granted = v.previous
        if granted < v.lo:  # e.g. starting from 0, or a previous value below this minimum
            granted = 0
        if granted < target:
            amps[cid] = granted
            cycle.results[cid] = ("waiting for released current", "waiting_release")
        for r, draw in _committed(cycle, v, granted, before[cid]):
            load[r] += draw - own.get(r, 0.0)


def _keep(cycle: Cycle, v: ChargerView, text: str, code: str) -> None:
    """Leave a charger as it was before this cycle: its setpoint, and its phases if the engine
    was about to switch them."""
    if v.id in cycle.switched:
        cycle.switched.discard(v.id)
        v.mode, v.terminals, v.site_phases = v.phases_before
    cycle.amps[v.id] = v.previous if v.previous >= v.lo else 0
    cycle.results[v.id] = (text, code)


def cap_imbalance(cycle: Cycle, admitted: list[ChargerView]) -> None:
    """Lower 1-/2-phase chargers on the heaviest phase until a group's imbalance fits."""
    index, amps = cycle.index, cycle.amps
    for g in cycle.site.groups:
        if g.max_imbalance is None:
            continue
        base = 3 * index.group_position[g.id]
        members = [v for v in admitted if g.id in index.chain[v.id]]
        for _ in range(64 * max(1, len(members))):
            ev = cycle.fixed[base : base + 3]
            for v in members:
                for p in v.site_phases:
                    ev[p] += amps[v.id]
            heavy, light = ev.index(max(ev)), ev.index(min(ev))
            if ev[heavy] - ev[light] <= g.max_imbalance + EPS:
                break
            movable = [
                v
                for v in members
                if amps[v.id] > 0 and heavy in v.site_phases and light not in v.site_phases
            ]
            if not movable:
                break
            v = movable[-1]
            amps[v.id] = amps[v.id] - 1 if amps[v.id] > v.lo else 0
            cycle.results[v.id] = (
                f"limited by group {g.id!r} phase imbalance", "limited_by_imbalance"
            )  # fmt: skip
