"""Site validation and the precomputed shape of a site (group chains, phase mapping).

:func:`check_site` is the one place a site is validated; :func:`site_index` turns a valid site
into lookup tables the engine uses every cycle (cached per site value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ampgate.dlm.model import (
    MAX_CHARGING_CURRENT,
    MIN_CHARGING_CURRENT,
    PHASE_NAMES,
    ROTATION_TABLE,
    ChargerSpec,
    Group,
    MeterSpec,
    Site,
)
from ampgate.errors import ConfigError


def _check_group(group: Group, ids: set[str]) -> list[str]:
    problems = []
    where = f"group {group.id!r}"
    for name in ("limit", "headroom", "fallback_load"):
        values = getattr(group, name)
        if len(values) != 3 or any(v < 0 for v in values):
            problems.append(f"{where}: {name} {values!r} must be three amps ≥ 0 (L1, L2, L3)")
    if group.operator_limit is not None:
        op = group.operator_limit
        if len(op) != 3 or any(o < 0 or o > lim for o, lim in zip(op, group.limit, strict=False)):
            problems.append(
                f"{where}: operator_limit {op!r} must be three amps within 0..limit {group.limit!r}"
            )
    if group.parent is not None and group.parent not in ids:
        problems.append(f"{where}: parent {group.parent!r} is not a group; known: {sorted(ids)}")
    if group.power_cap_kw is not None and group.power_cap_kw <= 0:
        problems.append(f"{where}: power_cap_kw {group.power_cap_kw!r} must be > 0")
    if group.nominal_voltage <= 0:
        problems.append(f"{where}: nominal_voltage {group.nominal_voltage!r} must be > 0 V")
    if group.max_imbalance is not None and group.max_imbalance < MIN_CHARGING_CURRENT:
        problems.append(
            f"{where}: max_imbalance {group.max_imbalance!r} must be ≥ {MIN_CHARGING_CURRENT} A "
            "(otherwise no 1-phase car could ever charge)"
        )
    return problems


def _check_charger(charger: ChargerSpec, ids: set[str]) -> list[str]:
    problems = []
    where = f"charger {charger.id!r}"
    if charger.group not in ids:
        problems.append(f"{where}: group {charger.group!r} is not a group; known: {sorted(ids)}")
    if not charger.wired_phases or any(p not in (0, 1, 2) for p in charger.wired_phases):
        problems.append(f"{where}: wired_phases {charger.wired_phases!r} must be a subset of 0,1,2")
    if not MIN_CHARGING_CURRENT <= charger.max_current <= MAX_CHARGING_CURRENT:
        problems.append(
            f"{where}: max_current {charger.max_current!r} must be in "
            f"{MIN_CHARGING_CURRENT}..{MAX_CHARGING_CURRENT} A"
        )
    if not 0 <= charger.min_current <= charger.max_current:
        problems.append(
            f"{where}: min_current {charger.min_current!r} must be in 0..max_current "
            f"{charger.max_current}"
        )
    fs = charger.failsafe_current
    if fs != 0 and not MIN_CHARGING_CURRENT <= fs <= MAX_CHARGING_CURRENT:
        problems.append(
            f"{where}: failsafe_current {fs!r} must be 0 or "
            f"{MIN_CHARGING_CURRENT}..{MAX_CHARGING_CURRENT} A"
        )
    return problems


def check_site(site: Site) -> Site:
    """Validate a site; return it unchanged or raise ConfigError listing every problem."""
    problems: list[str] = []
    ids = {g.id for g in site.groups}
    if len(ids) != len(site.groups):
        problems.append("groups: group ids must be unique")
    if not site.groups:
        problems.append("groups: a site needs at least one group (its main fuse)")
    for group in site.groups:
        problems.extend(_check_group(group, ids))
    parents = {g.id: g.parent for g in site.groups}
    for gid in ids:
        seen: set[str] = set()
        cur: str | None = gid
        while cur is not None and cur in parents:
            if cur in seen:
                problems.append(f"group {gid!r}: parent chain loops through {cur!r}")
                break
            seen.add(cur)
            cur = parents[cur]
    if len({c.id for c in site.chargers}) != len(site.chargers):
        problems.append("chargers: charger ids must be unique")
    for charger in site.chargers:
        problems.extend(_check_charger(charger, ids))
    metered: set[str] = set()
    for meter in site.meters:
        if meter.group not in ids:
            problems.append(f"meter {meter.id!r}: group {meter.group!r} is not a group")
        if meter.group in metered:
            problems.append(f"meter {meter.id!r}: group {meter.group!r} already has a meter")
        metered.add(meter.group)
    s = site.settings
    if s.cycle_period_s <= 0 or s.ramp_up_a_per_s <= 0:
        problems.append("settings: cycle_period_s and ramp_up_a_per_s must be > 0")
    if s.hysteresis_a < 0 or s.restart_margin_a < 0 or s.underdraw_margin_a < 0:
        problems.append("settings: hysteresis_a, restart_margin_a, underdraw_margin_a must be ≥ 0")
    if problems:
        raise ConfigError(f"invalid site: {problems[0]}", problems)
    return site


FillRow = tuple[tuple[int, float], ...]
"""``((resource, coefficient), ...)``: what one charger loads, for the water-filling."""


@dataclass(frozen=True, slots=True)
class SiteIndex:
    """Lookup tables of a valid site, built once per site (see :func:`site_index`).

    Resources are numbered for the engine's hot path: resource ``3 * i + p`` is site phase ``p``
    of the ``i``-th group (site order); groups with a power cap get one more resource each,
    numbered after all the phase resources.
    """

    groups: dict[str, Group]
    chain: dict[str, tuple[str, ...]]
    """Charger id → the groups it counts against, nearest first, root last."""
    members: dict[str, tuple[str, ...]]
    """Group id → ids of every charger under it (directly or through child groups)."""
    meter_of_group: dict[str, MeterSpec]
    chargers: dict[str, ChargerSpec]
    group_position: dict[str, int] = field(default_factory=dict)
    """Group id → its position in ``site.groups`` (phase resources 3·i .. 3·i+2)."""
    power_resource: dict[str, int] = field(default_factory=dict)
    """Group id → the resource number of its power cap (only groups with a cap)."""
    resource_keys: tuple[tuple[str, int] | tuple[str, str], ...] = ()
    """Resource number → ``(group id, phase)`` or ``("power", group id)``."""
    base_capacity: tuple[float, ...] = ()
    """Resource number → limit − headroom (phase), or the power cap in amps at nominal voltage."""
    rotation_tables: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Charger id → site phase of each of its terminals 0, 1, 2."""
    _phase_cache: dict[tuple[str, tuple[int, ...]], tuple[int, ...]] = field(default_factory=dict)
    _uses_cache: dict[tuple[str, tuple[int, ...]], tuple[tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=dict
    )
    _failsafe_cache: dict[int, dict[str, int]] = field(default_factory=dict)
    _row_cache: dict[Any, FillRow] = field(default_factory=dict)
    reason_cache: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)
    """Memoised reason texts, keyed by whatever the engine needs (internal)."""

    def phase_of(self, resource: int) -> tuple[str, int]:
        """``(group id, site phase)`` of a phase resource (a power cap has none: ValueError)."""
        group, phase = self.resource_keys[resource]
        if isinstance(phase, str):
            raise ValueError(f"resource {resource} is the power cap of group {phase!r}")
        return group, phase

    def site_phases(self, charger_id: str, terminals: tuple[int, ...]) -> tuple[int, ...]:
        """Site phases (sorted) that ``terminals`` of a charger sit on (memoised)."""
        key = (charger_id, terminals)
        hit = self._phase_cache.get(key)
        if hit is None:
            table = self.rotation_tables[charger_id]
            hit = self._phase_cache[key] = tuple(sorted({table[t] for t in terminals}))
        return hit

    def uses(
        self, charger_id: str, site_phases: tuple[int, ...]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Resources a charger on ``site_phases`` loads: (phase resources, power resources).

        Phase resources come nearest group first, phases in order; each power resource is
        loaded ``len(site_phases)`` times the setpoint.
        """
        key = (charger_id, site_phases)
        hit = self._uses_cache.get(key)
        if hit is None:
            chain = self.chain[charger_id]
            pos = self.group_position
            phase_res = tuple(3 * pos[g] + p for g in chain for p in site_phases)
            power_res = tuple(self.power_resource[g] for g in chain if g in self.power_resource)
            hit = self._uses_cache[key] = (phase_res, power_res)
        return hit

    def fill_row(self, charger_id: str, site_phases: tuple[int, ...]) -> FillRow:
        """``((resource, coefficient), ...)`` of a charger on ``site_phases``.

        Equal rows are the same tuple object, which lets the water-filling merge chargers
        that are interchangeable.

        Phase resources have coefficient 1, power resources ``len(site_phases)``.
        """
        key = (charger_id, site_phases)
        hit = self._row_cache.get(key)
        if hit is None:
            phase_res, power_res = self.uses(charger_id, site_phases)
            k = float(len(site_phases))
            row = tuple((r, 1.0) for r in phase_res) + tuple((r, k) for r in power_res)
            hit = self._row_cache.setdefault(row, row)  # chargers with equal rows share one
            self._row_cache[key] = hit
        return hit


def _build_index(site: Site) -> SiteIndex:
    groups = {g.id: g for g in site.groups}
    chain: dict[str, tuple[str, ...]] = {}
    members: dict[str, list[str]] = {g: [] for g in groups}
    for charger in site.chargers:
        path: list[str] = []
        cur: str | None = charger.group
        while cur is not None:
            path.append(cur)
            members[cur].append(charger.id)
            cur = groups[cur].parent
        chain[charger.id] = tuple(path)
    keys: list[tuple[str, int] | tuple[str, str]] = []
    base: list[float] = []
    for g in site.groups:
        for p in range(3):
            keys.append((g.id, p))
            base.append(g.effective_limit(p) - g.headroom[p])
    power: dict[str, int] = {}
    for g in site.groups:
        if g.power_cap_kw is not None:
            power[g.id] = len(keys)
            keys.append(("power", g.id))
            base.append(g.power_cap_kw * 1000 / g.nominal_voltage)
    return SiteIndex(
        groups=groups,
        chain=chain,
        members={g: tuple(m) for g, m in members.items()},
        meter_of_group={m.group: m for m in site.meters},
        chargers={c.id: c for c in site.chargers},
        group_position={g.id: i for i, g in enumerate(site.groups)},
        power_resource=power,
        resource_keys=tuple(keys),
        base_capacity=tuple(base),
        rotation_tables={c.id: ROTATION_TABLE[c.rotation.value] for c in site.chargers},
    )


_INDEX_CACHE: dict[int, tuple[Site, SiteIndex]] = {}
_INDEX_CACHE_SIZE = 16


def site_index(site: Site) -> SiteIndex:
    """Return the lookup tables for ``site``, built once per site object.

    Cached by object identity (the cache holds the site, so its id cannot be reused while
    cached): the daemon and the simulator pass the same frozen ``Site`` every cycle, and
    hashing a large site every cycle would cost more than the allocation itself.
    """
    hit = _INDEX_CACHE.get(id(site))
    if hit is not None and hit[0] is site:
        return hit[1]
    index = _build_index(site)
    if len(_INDEX_CACHE) >= _INDEX_CACHE_SIZE:
        del _INDEX_CACHE[next(iter(_INDEX_CACHE))]
    _INDEX_CACHE[id(site)] = (site, index)
    return index


def phase_label(group: str, phase: int) -> str:
    """Human label of one phase of one group: ``group 'sub' L2``."""
    return f"group {group!r} {PHASE_NAMES[phase]}"
