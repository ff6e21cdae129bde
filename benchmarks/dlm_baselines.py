"""Two simple allocators to compare the engine against in the closed-loop benchmark.

Both see the same measurements and use the engine's non-EV estimate without memory (meter −
the chargers' newest readings / meter / fallback), as a simple gateway would. Neither ramps,
delays restarts or looks at under-drawing cars; both respect 0 or 6..max and the limits *as
they see them*.
"""

from __future__ import annotations

import math

from ampgate.dlm import EngineState, Measurements, Site
from ampgate.dlm.engine import building_loads
from ampgate.dlm.topology import site_index


def _room(site: Site, meas: Measurements, now: float) -> dict[tuple[str, int], float]:
    loads = building_loads(site, meas, EngineState(), now)
    return {
        (g.id, p): g.effective_limit(p) - g.headroom[p] - loads[g.id].non_ev[p]
        for g in site.groups
        for p in range(3)
    }


def _wanting(site: Site, meas: Measurements) -> list[str]:
    return [
        c.id
        for c in site.chargers
        if (r := meas.chargers.get(c.id)) is not None and r.online and r.vehicle.wants_current
    ]


def equal_split(site: Site, meas: Measurements, state, now: float):
    """Split each group's worst phase equally over its wanting chargers (all phases reserved)."""
    index, room = site_index(site), _room(site, meas, now)
    wanting = _wanting(site, meas)
    amps = {c.id: 0 for c in site.chargers}
    share = {}
    for cid in wanting:
        per_group = []
        for g in index.chain[cid]:
            n = sum(1 for w in wanting if g in index.chain[w])
            per_group.append(min(room[g, p] for p in range(3)) / n)
        share[cid] = min(index.chargers[cid].max_current, math.floor(min(per_group)))
    if all(s >= 6 for s in share.values()):
        amps.update(share)
    else:  # not enough for everyone at 6 A: the first ones by id get 6 A while it fits
        used = {k: 0.0 for k in room}
        for cid in sorted(wanting):
            keys = [(g, p) for g in index.chain[cid] for p in range(3)]
            if all(used[k] + 6 <= room[k] for k in keys):
                amps[cid] = 6
                for k in keys:
                    used[k] += 6
    return amps, {c.id: None for c in site.chargers}, state


def first_come_first_served(site: Site, meas: Measurements, state, now: float):
    """Chargers in order of arrival take as much as fits on their phases; the rest wait."""
    index, room = site_index(site), _room(site, meas, now)
    arrival = dict(state or {})
    wanting = _wanting(site, meas)
    for cid in wanting:
        arrival.setdefault(cid, now)
    for cid in list(arrival):
        if cid not in wanting:
            del arrival[cid]
    amps = {c.id: 0 for c in site.chargers}
    for cid in sorted(wanting, key=lambda c: (arrival[c], c)):
        spec = index.chargers[cid]
        keys = [(g, p) for g in index.chain[cid] for p in spec.site_phases(spec.wired_phases)]
        give = math.floor(min([spec.max_current] + [room[k] for k in keys]))
        if give >= 6:
            amps[cid] = give
            for k in keys:
                room[k] -= give
    return amps, {c.id: None for c in site.chargers}, arrival
