"""The failsafe plan: what each charger may draw when the gateway is gone (its failsafe current).

When the gateway dies, every charger falls back to its failsafe current after its watchdog
timeout. Nobody measures anything then, so the plan must hold with the building at its
fallback load: on every phase of every group, Σ failsafe currents of the chargers wired to that
phase + fallback load ≤ limit (the operator limit if lower than the fuse). Headroom is not
subtracted: it is a margin for measured regulation, and the reference states the rule without it.

When not every charger fits, chargers are taken in priority order (higher first), within equal
priority in an order rotated by ``EngineState.failsafe_offset``; a charger whose failsafe does not
fit on all its wired phases in all its groups gets failsafe 0. Which charger gets 0 therefore
rotates as the engine advances the offset (every ``failsafe_rotation_s``).
"""

from __future__ import annotations

from ampgate.dlm.model import EngineState, Site
from ampgate.dlm.topology import SiteIndex, site_index

EPS = 1e-9


def plan_failsafe(site: Site, state: EngineState | None = None) -> dict[str, int]:
    """Return the failsafe current (0, or the configured one) to program per charger id.

    The plan depends only on the site and the rotation offset; it is computed once per pair
    (cached with the site's lookup tables) and a fresh dict is returned each call.
    """
    index = site_index(site)
    offset = state.failsafe_offset if state is not None else 0
    cached = index._failsafe_cache.get(offset)
    if cached is None:
        if len(index._failsafe_cache) >= 8:
            index._failsafe_cache.clear()
        cached = index._failsafe_cache[offset] = _plan(site, index, offset)
    return dict(cached)


def _plan(site: Site, index: SiteIndex, offset: int) -> dict[str, int]:
    room = {
        (g.id, p): g.effective_limit(p) - g.fallback_load[p] for g in site.groups for p in range(3)
    }
    chargers = list(site.chargers)
    n = len(chargers)
    rotated = [chargers[(i + offset) % n] for i in range(n)] if n else []
    rotated.sort(key=lambda c: -c.priority)  # stable: rotation order kept within a priority
    plan: dict[str, int] = {}
    for charger in rotated:
        amps = charger.failsafe_current
        phases = charger.site_phases(charger.wired_phases)
        keys = [(g, p) for g in index.chain[charger.id] for p in phases]
        if amps > 0 and all(room[k] - amps >= -EPS for k in keys):
            for k in keys:
                room[k] -= amps
            plan[charger.id] = amps
        else:
            plan[charger.id] = 0
    return plan
