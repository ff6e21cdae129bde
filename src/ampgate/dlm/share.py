"""Steps after water-filling: hold back increases until current is released; imbalance caps.

Both work on the engine's cycle (:class:`ampgate.dlm.engine._Cycle`): its views, flat
``capacity``/``fixed`` lists indexed by resource number, and the ``amps``/``results`` dicts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ampgate.dlm.observe import ChargerView

if TYPE_CHECKING:
    from ampgate.dlm.engine import _Cycle

EPS = 1e-9


def _committed(cycle: _Cycle, v: ChargerView, amps: int) -> list[tuple[int, float]]:
    """Per resource, what a charger may draw this cycle: max(new, previous, measured)."""
    cid = v.id
    phases = v.site_phases
    if cid in cycle.switched:
        phases = cycle.index.site_phases(cid, v.spec.wired_phases)
    phase_res, power_res = cycle.index.uses(cid, phases)
    base = amps if amps > v.previous else v.previous
    m = v.measured
    out = [(r, base if base >= m[r % 3] else m[r % 3]) for r in phase_res]
    if power_res:
        total = max(base * len(phases), m[0] + m[1] + m[2])
        out.extend((r, total) for r in power_res)
    return out


def hold_back_increases(cycle: _Cycle, admitted: list[ChargerView]) -> None:
    """Grant increases only out of current that is already free.

    Every online charger is counted at max(setpoint, previous setpoint, measured draw) — a
    decrease made this cycle has not taken effect yet — and the rising chargers, in site order,
    get what is left, never less than their previous setpoint.
    """
    amps = cycle.amps
    admitted_ids = {v.id for v in admitted}
    # site order (as the first version did; its comment said rank order, the code did not)
    rising = [v for v in cycle.views if v.id in admitted_ids and amps[v.id] > v.previous]
    if not rising:
        return
    rising_ids = {v.id for v in rising}
    load = [0.0] * len(cycle.capacity)
    for v in cycle.views:
        if not v.online:
            continue
        a = v.previous if v.id in rising_ids else amps.get(v.id, 0)
        for r, draw in _committed(cycle, v, a):
            load[r] += draw
    cap, index = cycle.capacity, cycle.index
    for v in rising:
        cid, target = v.id, amps[v.id]
        own = dict(_committed(cycle, v, v.previous))
        limit = float(target)
        phase_res, power_res = index.uses(cid, v.site_phases)
        for r in phase_res:
            free = cap[r] - (load[r] - own[r])
            if free < limit:
                limit = free
        k = len(v.site_phases)
        for r in power_res:
            free = (cap[r] - (load[r] - own[r])) / k
            if free < limit:
                limit = free
        granted = min(target, math.floor(limit + EPS))
        if granted < v.previous:
            granted = v.previous
        if granted < v.lo:  # e.g. starting from 0, or a previous value below this minimum
            granted = 0
        if granted < target:
            amps[cid] = granted
            cycle.results[cid] = ("waiting for released current", "waiting_release")
        for r, draw in _committed(cycle, v, granted):
            load[r] += draw - own[r]


def cap_imbalance(cycle: _Cycle, admitted: list[ChargerView]) -> None:
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
