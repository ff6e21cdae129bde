"""From the validated site file to the engine's values, and the failsafe check on the fuses.

The config (pydantic, :mod:`ampgate.config`) is the edge; the engine (:mod:`ampgate.dlm`) takes
frozen values. :func:`build_site` converts one into the other. :func:`failsafe_plan` returns the
failsafe current (reg 20) per charger; :func:`failsafe_problems` says which fuse phase the plan
plus the fallback load would overload if the gateway died.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ampgate.config.schema import PHASES, SiteConfig
from ampgate.dlm import (
    ChargerSpec,
    EngineSettings,
    Group,
    MeterLocation,
    MeterSpec,
    Rotation,
    Site,
    check_site,
)
from ampgate.dlm.model import PhaseTriple


def engine_settings(config: SiteConfig) -> EngineSettings:
    """Return the engine settings the ``[dlm]`` section asks for."""
    dlm = config.dlm
    return EngineSettings(
        cycle_period_s=dlm.cycle_seconds,
        ramp_up_a_per_s=dlm.ramp_up_amps_per_second,
        hysteresis_a=dlm.hysteresis_amps,
        restart_delay_s=dlm.restart_delay_seconds,
        meter_stale_after_s=dlm.meter_stale_seconds,
        meter_hold_s=dlm.meter_hold_seconds,
        meter_lag_allowance_s=dlm.meter_lag_seconds,
        phase_switch_timeout_s=dlm.phase_switch_timeout_seconds,
        phase_switch_retry_s=dlm.phase_switch_retry_seconds,
        overdraw_margin_a=dlm.overdraw_margin_amps,
        overdraw_pause_s=dlm.overdraw_pause_seconds,
        meter_frozen_change_a=dlm.meter_frozen_change_amps,
        increase_margin_a=dlm.increase_margin_amps,
        restart_margin_a=dlm.restart_margin_amps,
        underdraw_margin_a=dlm.underdraw_margin_amps,
        underdraw_settle_s=dlm.underdraw_settle_seconds,
        phase_switch_interval_s=dlm.phase_switch_interval_seconds,
        fairness_rotation_s=dlm.fairness_rotation_seconds,
        failsafe_rotation_s=dlm.failsafe_rotation_seconds,
        phase_use_threshold_a=dlm.phase_use_threshold_amps,
        reading_skew_s=dlm.reading_skew_seconds,
        estimate_tolerance_a=dlm.estimate_tolerance_amps,
    )


def _triple(values: Sequence[float]) -> PhaseTriple:
    a, b, c = values
    return (float(a), float(b), float(c))


def build_site(config: SiteConfig) -> Site:
    """Return the engine's :class:`~ampgate.dlm.Site` for a validated config."""
    groups = tuple(
        Group(
            id=name,
            limit=_triple(g.limit),
            parent=g.parent,
            operator_limit=None if g.operator_limit is None else _triple(g.operator_limit),
            headroom=_triple(g.headroom),
            fallback_load=_triple(g.fallback_load),
            power_cap_kw=g.power_cap_kw,
            nominal_voltage=g.nominal_voltage,
            max_imbalance=g.max_imbalance,
        )
        for name, g in config.groups.items()
    )
    chargers = tuple(
        ChargerSpec(
            id=name,
            group=c.group,
            rotation=Rotation(c.rotation),
            wired_phases=(0, 1, 2) if c.phases == 3 else (0,),
            min_current=c.min_current,
            max_current=c.max_current,
            priority=c.priority,
            failsafe_current=c.failsafe_current if c.failsafe_current is not None else 6,
        )
        for name, c in config.chargers.items()
    )
    meters = tuple(
        MeterSpec(id=name, group=m.group, location=MeterLocation(m.location))
        for name, m in config.meters.items()
    )
    # the engine's own check, where its values are built: a site file the validator accepted
    # always passes it (tests/config), so a failure here is a bug in this translation
    return check_site(
        Site(groups=groups, chargers=chargers, meters=meters, settings=engine_settings(config))
    )


def failsafe_plan(config: SiteConfig, site: Site | None = None) -> dict[str, int]:
    """Return the failsafe current (reg 20, A) to program into each charger.

    Policy ``fixed``: each charger's configured ``failsafe_current``. Policy ``share``: the
    engine's plan (:func:`ampgate.dlm.plan_failsafe`), which fits every fuse phase with the
    fallback load; a charger's configured ``failsafe_current`` is its ceiling in that plan.
    ``site``: the engine site already built from ``config`` (the gateway passes its own, so
    the engine's tables cached by site identity are not rebuilt for a fresh copy).
    """
    if config.dlm.failsafe_policy == "fixed":
        return {name: int(c.failsafe_current or 0) for name, c in config.chargers.items()}
    from ampgate.dlm import plan_failsafe

    plan = plan_failsafe(site if site is not None else build_site(config))
    return {name: int(plan[name]) for name in config.chargers}


def phase_loads(config: SiteConfig, currents: Mapping[str, float]) -> dict[str, list[float]]:
    """Sum per-charger currents onto each group's site phases, rotations applied."""
    loads = {name: [0.0, 0.0, 0.0] for name in config.groups}
    for name, charger in config.chargers.items():
        amps = float(currents.get(name, 0))
        rotation = Rotation(charger.rotation)
        terminals = (0, 1, 2) if charger.phases == 3 else (0,)
        site = {rotation.site_phase(t) for t in terminals}
        for group in config.ancestors(charger.group):
            for phase in site:
                loads[group][phase] += amps
    return loads


def failsafe_problems(config: SiteConfig) -> list[str]:
    """Name every fuse phase that the failsafe currents plus the fallback load would overload.

    The check uses the fuse rating (``limit``), not the operator cap: it is about what happens
    when the gateway is gone. A group's ``fallback_load`` is taken as the whole non-EV load
    through that fuse (assumption: the main fuse's fallback includes any non-EV load of the
    sub-distributions under it).
    """
    plan = failsafe_plan(config)  # ConfigError when the engine refuses the site
    loads = phase_loads(config, plan)
    problems = []
    for name, group in config.groups.items():
        for phase, label in enumerate(PHASES):
            fallback = group.fallback_load[phase]
            if fallback > group.limit[phase]:
                problems.append(
                    f"groups.{name}.fallback_load: {label} {fallback:g} A alone exceeds the limit "
                    f"{group.limit[phase]:g} A; allowed: <= limit"
                )
                continue
            total = loads[name][phase] + fallback
            if total > group.limit[phase] + 1e-9:
                members = sorted(
                    c
                    for c, spec in config.chargers.items()
                    if name in config.ancestors(spec.group) and plan.get(c, 0) > 0
                )
                problems.append(
                    f"groups.{name}.limit: {label} {group.limit[phase]:g} A would be overloaded "
                    f"if the gateway stopped: failsafe currents {loads[name][phase]:g} A "
                    f"({', '.join(f'{c}={plan[c]}' for c in members)}) + fallback load "
                    f"{fallback:g} A = {total:g} A; allowed: failsafe sum + fallback <= limit "
                    "(lower chargers.*.failsafe_current or use dlm.failsafe_policy = 'share')"
                )
    return problems
