"""Closed-loop site simulator for load management: pure, no Modbus, faster than real time.

A site (the :class:`ampgate.dlm.Site` tree), a building load per group and phase that steps
over time, cars that follow the charger's pilot limit after their own reaction delay
(1–5 s, IEC 61851-1 allows 5 s), and meters that report the true current through their group
with a lag. Any allocator — the engine, or a baseline — is called every ``period_s`` with what
the gateway would have measured, and its setpoints take effect in the chargers at once.

Scored per run:

- overload: A·s over any group phase limit (the fuse, or the operator limit if lower), and the
  longest continuous overload;
- overload beyond reaction: the part of that overload that persists longer than anyone could
  react to the last building-load change — change time + meter lag + meter update interval
  (when the meter first can show it) + one allocator period (when the allocator first runs
  after that) + the slowest car's reaction delay. Overload inside that window is caused by the
  load step itself (only headroom avoids it); overload after it is the allocator's doing;
- utilisation: current delivered to cars ÷ current *safely available* to them. Safely
  available = what an omniscient allocator could give at each instant: max-min fair sharing
  of (limit − headroom − true building load) over the cars that want current, each at most its
  own maximum, on the phases it really uses, with no 6 A minimum and no reaction delay;
- fairness: Jain's index over energy delivered, among cars with equal needs (same effective
  maximum, phase count, energy need and presence): the minimum over such groups of two or
  more cars (None when no two cars have equal needs). Also over all cars with unlimited need;
- setpoint changes per charger per hour.

Scenario files are TOML (see ``benchmarks/scenarios/``); :func:`load_scenario` reads them.
"""

from __future__ import annotations

import math
import tomllib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ampgate.dlm import (
    ChargerReading,
    ChargerSpec,
    EngineSettings,
    EngineState,
    Group,
    Measurements,
    MeterLocation,
    MeterReading,
    MeterSpec,
    Rotation,
    Site,
    VehicleState,
    allocate,
    check_site,
)
from ampgate.dlm.fill import FillItem, water_fill
from ampgate.dlm.topology import site_index
from ampgate.errors import ConfigError

Allocator = Callable[[Site, Measurements, Any, float], tuple[dict[str, int], dict[str, Any], Any]]
"""(site, measurements, state, now) -> (amps per charger, phase mode per charger, next state)."""


@dataclass(frozen=True, slots=True)
class Car:
    """A car plugged into a charger from ``arrive_s`` to ``depart_s``."""

    id: str
    charger: str
    phases: int = 3
    max_current: int = 16
    reaction_s: float = 2.0
    arrive_s: float = 0.0
    depart_s: float = math.inf
    need_kwh: float = math.inf


@dataclass(frozen=True, slots=True)
class Scenario:
    """A site, its building load steps (group → [(time, per-phase A)]), cars and meter lag."""

    name: str
    site: Site
    cars: tuple[Car, ...]
    building: Mapping[str, tuple[tuple[float, tuple[float, float, float]], ...]]
    duration_s: float = 3600.0
    step_s: float = 0.5
    meter_lag_s: float = 0.0
    meter_update_s: float = 1.0
    voltage: float = 230.0


@dataclass(frozen=True, slots=True)
class RunResult:
    """Scores of one allocator on one scenario."""

    scenario: str
    allocator: str
    period_s: float
    overload_amp_s: float
    longest_overload_s: float
    utilisation: float
    jain: float
    """Jain's index over all cars with unlimited need (equal or not)."""
    setpoint_changes_per_charger_hour: float
    energy_kwh: dict[str, float] = field(default_factory=dict)
    overload_beyond_reaction_amp_s: float = 0.0
    """Overload later than :attr:`reaction_window_s` after the last building-load change."""
    reaction_window_s: float = 0.0
    jain_equal_need: float | None = None
    """Minimum Jain's index over groups of cars with equal needs (None: no such group)."""


def engine_allocator(site: Site, meas: Measurements, state: Any, now: float):
    """Adapter: the ampgate engine as a simulator allocator."""
    alloc = allocate(site, meas, state or EngineState(), now)
    amps = {cid: sp.amps for cid, sp in alloc.setpoints.items()}
    return amps, {cid: sp.phases for cid, sp in alloc.setpoints.items()}, alloc.state


class _CarState:
    __slots__ = ("current", "delivered_kwh", "pending", "spec")

    def __init__(self, spec: Car):
        self.spec = spec
        self.current = 0.0
        self.delivered_kwh = 0.0
        self.pending: deque[tuple[float, float]] = deque()  # (apply at, target)


def _building_at(steps, now: float) -> tuple[float, float, float]:
    value = (0.0, 0.0, 0.0)
    for at, load in steps:
        if at <= now:
            value = load
    return value


def simulate(
    scenario: Scenario, allocator: Allocator, period_s: float, name: str = "engine"
) -> RunResult:
    """Run ``allocator`` every ``period_s`` on ``scenario`` and score it."""
    site = scenario.site
    index = site_index(site)
    cars = {c.id: _CarState(c) for c in scenario.cars}
    car_at = {c.charger: c.id for c in scenario.cars}  # one car per charger in a scenario
    setpoint = {c.id: 0 for c in site.chargers}
    mode: dict[str, Any] = {c.id: None for c in site.chargers}
    state: Any = None
    meter_history: deque[tuple[float, dict[str, tuple[float, float, float]]]] = deque()
    last_meter: dict[str, MeterReading] = {}
    next_meter, next_alloc = 0.0, 0.0
    overload, longest, run_len, changes = 0.0, 0.0, 0.0, 0
    delivered, available = 0.0, 0.0
    building_of = {g.id: scenario.building.get(g.id, ()) for g in site.groups}
    descendants = {g.id: [h.id for h in site.groups if g.id in _ancestry(site, h.id)] for g in
                   site.groups}  # fmt: skip
    steps = round(scenario.duration_s / scenario.step_s)
    change_times = sorted({at for b in building_of.values() for at, _ in b})
    window = (
        scenario.meter_lag_s
        + scenario.meter_update_s
        + period_s
        + max((c.reaction_s for c in scenario.cars), default=0.0)
    )
    beyond = 0.0
    for i in range(steps + 1):
        now = i * scenario.step_s
        present = {cid: c for cid, c in cars.items() if c.spec.arrive_s <= now < c.spec.depart_s}
        for c in cars.values():
            if c.spec.id not in present:
                c.current, c.pending = 0.0, deque()
        # true currents per charger terminal and per group phase
        terminal_currents = {}
        for ch in site.chargers:
            cid = car_at.get(ch.id)
            cur = [0.0, 0.0, 0.0]
            if cid in present:
                for t in _car_terminals(ch, cars[cid].spec, mode[ch.id]):
                    cur[t] = cars[cid].current
            terminal_currents[ch.id] = tuple(cur)
        true_load = {}
        building_total = {}
        for g in site.groups:
            b = [0.0, 0.0, 0.0]
            for h in descendants[g.id]:
                for p, x in enumerate(_building_at(building_of[h], now)):
                    b[p] += x
            building_total[g.id] = tuple(b)
            load = list(b)
            for chid in index.members[g.id]:
                spec = index.chargers[chid]
                for t, x in enumerate(terminal_currents[chid]):
                    load[spec.rotation.site_phase(t)] += x
            true_load[g.id] = load
        # meters with lag
        seen = {
            m.id: tuple(
                building_total[m.group]
                if m.location is MeterLocation.EXCLUDING
                else true_load[m.group]
            )
            for m in site.meters
        }
        meter_history.append((now, seen))
        while len(meter_history) > 1 and meter_history[1][0] <= now - scenario.meter_lag_s + 1e-9:
            meter_history.popleft()  # keep the newest value at least meter_lag_s old first
        if now >= next_meter - 1e-9:
            values = meter_history[0][1]
            last_meter = {mid: MeterReading(v, now) for mid, v in values.items()}
            next_meter += scenario.meter_update_s
        # overload and scores
        worst = 0.0
        for g in site.groups:
            for p in range(3):
                worst = max(worst, true_load[g.id][p] - g.effective_limit(p))
        if worst > 1e-6:
            overload += worst * scenario.step_s
            last_change = max((t for t in change_times if t <= now), default=-math.inf)
            if now > last_change + window + 1e-9:
                beyond += worst * scenario.step_s
            run_len += scenario.step_s
            longest = max(longest, run_len)
        else:
            run_len = 0.0
        wanting = {cid: c for cid, c in present.items() if c.delivered_kwh < c.spec.need_kwh}
        available += _oracle(site, index, scenario, building_total, wanting, car_at, mode, now)
        delivered += sum(c.current * _phase_count(c.spec, site, mode) for c in wanting.values())
        # allocator
        if now >= next_alloc - 1e-9:
            meas = _measure(site, scenario, present, wanting, car_at, terminal_currents,
                            last_meter, setpoint, now)  # fmt: skip
            amps, modes, state = allocator(site, meas, state, now)
            for chid, a in amps.items():
                if meas.chargers[chid].online and (
                    a != setpoint[chid] or modes[chid] != mode[chid]
                ):
                    changes += a != setpoint[chid]
                    setpoint[chid], mode[chid] = a, modes[chid]
            next_alloc += period_s
        # cars follow the pilot after their reaction delay; energy accrues
        for cid, c in present.items():
            chid = c.spec.charger
            pilot = setpoint[chid]
            target = (
                0.0 if pilot < 6 or cid not in wanting else float(min(pilot, c.spec.max_current))
            )
            if not c.pending or c.pending[-1][1] != target:
                c.pending.append((now + c.spec.reaction_s, target))
            while c.pending and c.pending[0][0] <= now:
                c.current = c.pending.popleft()[1]
            if cid not in wanting:
                c.current = 0.0
            kw = c.current * _phase_count(c.spec, site, mode) * scenario.voltage / 1000
            c.delivered_kwh += kw * scenario.step_s / 3600
    hours = scenario.duration_s / 3600
    energies = {cid: c.delivered_kwh for cid, c in cars.items()}
    equal = [c.delivered_kwh for c in cars.values() if math.isinf(c.spec.need_kwh)]
    jain = (sum(equal) ** 2 / (len(equal) * sum(x * x for x in equal))) if equal and any(
        equal) else 1.0  # fmt: skip
    return RunResult(
        scenario=scenario.name,
        allocator=name,
        period_s=period_s,
        overload_amp_s=overload,
        longest_overload_s=longest,
        utilisation=delivered / available if available > 0 else 1.0,
        jain=jain,
        setpoint_changes_per_charger_hour=changes / max(1, len(site.chargers)) / hours,
        energy_kwh=energies,
        overload_beyond_reaction_amp_s=beyond,
        reaction_window_s=window,
        jain_equal_need=_jain_equal_need(scenario, energies),
    )


def _jain_of(values: list[float]) -> float:
    total = sum(values)
    if total <= 0:
        return 1.0
    return total**2 / (len(values) * sum(x * x for x in values))


def _jain_equal_need(scenario: Scenario, energies: Mapping[str, float]) -> float | None:
    """Minimum Jain's index over groups (≥ 2 cars) with identical needs, None if none."""
    index = site_index(scenario.site)
    groups: dict[tuple, list[float]] = {}
    for car in scenario.cars:
        charger = index.chargers[car.charger]
        key = (
            min(car.max_current, charger.max_current),
            len(_car_terminals(charger, car, None)),
            car.need_kwh,
            car.arrive_s,
            car.depart_s,
        )
        groups.setdefault(key, []).append(energies[car.id])
    scores = [_jain_of(v) for v in groups.values() if len(v) >= 2]
    return min(scores) if scores else None


def _ancestry(site: Site, gid: str) -> list[str]:
    parents = {g.id: g.parent for g in site.groups}
    out, cur = [], gid
    while cur is not None:
        out.append(cur)
        cur = parents[cur]
    return out


def _car_terminals(charger: ChargerSpec, car: Car, mode: Any) -> tuple[int, ...]:
    if mode == 1 or car.phases == 1 or len(charger.wired_phases) == 1:
        return (charger.wired_phases[0],)
    return charger.wired_phases


def _phase_count(car: Car, site: Site, mode: Mapping[str, Any]) -> int:
    charger = site_index(site).chargers[car.charger]
    return len(_car_terminals(charger, car, mode[car.charger]))


def _measure(site, scenario, present, wanting, car_at, terminal_currents, meters, setpoint, now):
    chargers = {}
    for ch in site.chargers:
        cid = car_at.get(ch.id)
        if cid not in present:
            vehicle = VehicleState.NOT_CONNECTED
        elif cid not in wanting:
            vehicle = VehicleState.SUSPENDED_BY_EV
        elif max(terminal_currents[ch.id]) > 0.5:
            vehicle = VehicleState.CHARGING
        else:
            vehicle = VehicleState.CONNECTED
        chargers[ch.id] = ChargerReading(
            online=True,
            currents=terminal_currents[ch.id],
            vehicle=vehicle,
            timestamp=now,
            last_setpoint=setpoint[ch.id],
        )
    return Measurements(meters=dict(meters), chargers=chargers)


def _oracle(site, index, scenario, building_total, wanting, car_at, mode, now) -> float:
    """Current safely available to the wanting cars (A summed over phases), see module doc."""
    capacity = {}
    for g in site.groups:
        for p in range(3):
            capacity[g.id, p] = g.effective_limit(p) - g.headroom[p] - building_total[g.id][p]
    items = []
    for cid, c in wanting.items():
        ch = index.chargers[c.spec.charger]
        terminals = _car_terminals(ch, c.spec, None)
        phases = ch.site_phases(terminals)
        uses = tuple(((g, p), 1.0) for g in index.chain[ch.id] for p in phases)
        items.append((FillItem(cid, 0, min(c.spec.max_current, ch.max_current), uses), phases))
    if not items:
        return 0.0
    if any(v < 0 for v in capacity.values()):
        capacity = {k: max(0.0, v) for k, v in capacity.items()}
    filled = water_fill([it for it, _ in items], capacity)
    return float(sum(filled[it.id].amps * len(ph) for it, ph in items))


# ------------------------------------------------------------------ scenario files


def _triple(value: Any, where: str) -> tuple[float, float, float]:
    if isinstance(value, int | float):
        return (float(value),) * 3  # type: ignore[return-value]
    if isinstance(value, list) and len(value) == 3:
        return tuple(float(x) for x in value)  # type: ignore[return-value]
    raise ConfigError(f"{where}: {value!r} must be a number or [L1, L2, L3]")


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML file; ConfigError names the file and the bad entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read scenario: {exc}") from exc
    try:
        settings = replace(EngineSettings(), **data.get("settings", {}))
        groups = tuple(
            Group(
                id=g["id"],
                limit=_triple(g["limit"], f"{path}: group {g['id']!r} limit"),
                parent=g.get("parent"),
                headroom=_triple(g.get("headroom", 0), f"{path}: headroom"),
                fallback_load=_triple(g.get("fallback_load", 0), f"{path}: fallback_load"),
                power_cap_kw=g.get("power_cap_kw"),
                max_imbalance=g.get("max_imbalance"),
            )
            for g in data["groups"]
        )
        meters = tuple(
            MeterSpec(m["id"], m["group"], MeterLocation(m.get("location", "including")))
            for m in data.get("meters", [])
        )
        chargers = tuple(
            ChargerSpec(
                id=c["id"],
                group=c["group"],
                rotation=Rotation(c.get("rotation", "L1L2L3")),
                wired_phases=tuple(c.get("wired_phases", (0, 1, 2))),
                max_current=c.get("max_current", 32),
                phase_change_possible=c.get("phase_change_possible", False),
                priority=c.get("priority", 0),
                failsafe_current=c.get("failsafe_current", 6),
            )
            for c in data["chargers"]
        )
        cars = tuple(Car(**{"need_kwh": math.inf, **c}) for c in data.get("cars", []))
        building: dict[str, list] = {}
        for b in data.get("building", []):
            load = _triple(b["load"], f"{path}: building load")
            building.setdefault(b["group"], []).append((float(b.get("at_s", 0)), load))
        site = check_site(Site(groups, chargers, meters, settings))
        return Scenario(
            name=data.get("name", path.stem),
            site=site,
            cars=cars,
            building={g: tuple(sorted(v)) for g, v in building.items()},
            duration_s=float(data.get("duration_s", 3600)),
            step_s=float(data.get("step_s", 0.5)),
            meter_lag_s=float(data.get("meter_lag_s", 0)),
            meter_update_s=float(data.get("meter_update_s", 1)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: invalid scenario: {exc!r}") from exc
