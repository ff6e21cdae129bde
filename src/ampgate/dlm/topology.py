"""Site validation and the precomputed shape of a site (group chains, phase mapping).

:func:`check_site` is the one place a site is validated; :func:`site_index` turns a valid site
into lookup tables the engine uses every cycle (cached per site value).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ampgate.dlm.model import (
    MAX_CHARGING_CURRENT,
    MIN_CHARGING_CURRENT,
    PHASE_NAMES,
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
        seen, cur = set(), gid
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


@dataclass(frozen=True, slots=True)
class SiteIndex:
    """Lookup tables of a valid site."""

    groups: dict[str, Group]
    chain: dict[str, tuple[str, ...]]
    """Charger id → the groups it counts against, nearest first, root last."""
    members: dict[str, tuple[str, ...]]
    """Group id → ids of every charger under it (directly or through child groups)."""
    meter_of_group: dict[str, MeterSpec]
    chargers: dict[str, ChargerSpec]


@lru_cache(maxsize=64)
def site_index(site: Site) -> SiteIndex:
    """Return the lookup tables for ``site`` (cached; sites are immutable values)."""
    groups = {g.id: g for g in site.groups}
    chain: dict[str, tuple[str, ...]] = {}
    members: dict[str, list[str]] = {g: [] for g in groups}
    for charger in site.chargers:
        path, cur = [], charger.group
        while cur is not None:
            path.append(cur)
            members[cur].append(charger.id)
            cur = groups[cur].parent
        chain[charger.id] = tuple(path)
    return SiteIndex(
        groups=groups,
        chain=chain,
        members={g: tuple(m) for g, m in members.items()},
        meter_of_group={m.group: m for m in site.meters},
        chargers={c.id: c for c in site.chargers},
    )


def phase_label(group: str, phase: int) -> str:
    """Human label of one phase of one group: ``group 'sub' L2``."""
    return f"group {group!r} {PHASE_NAMES[phase]}"
