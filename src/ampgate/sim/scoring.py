"""Scores of load management on a scenario, from what really flowed (:class:`~.plant.Truth`).

Fed one :class:`~ampgate.sim.plant.Truth` per time step by either harness (the closed-loop
simulation or the daemon over Modbus), the :class:`Scorer` reports:

- overload: A·s over any group phase limit (the fuse, or the operator limit if lower; the
  worst phase of the site at each instant), the largest overload and the longest run;
- overload beyond reaction: the part of it later than the *reaction window* after anything
  changed by itself (start, a building-load step, a meter fault starting or ending, a car
  starting to over-draw its pilot): meter lag + meter update interval + one cycle + the wire
  time of the writes + the slowest car's reaction. Inside the window nobody could have reacted
  yet (only headroom avoids it); after it, overload is the gateway's doing;
- waiting with room: the share of plugged-car time (cars that want current) spent at a pilot
  below 6 A while every site phase the car would draw on, in every fuse above it, had at least
  :data:`ROOM_A` of room below limit − headroom at the fuse. The restart delay after a pause
  that was *needed* (true building load — the fallback load while the meter is faulty — + 6 A
  for every plugged car on one of the car's phases over limit − headroom) does not count; it
  is reported as the restart delay's cost;
- delivered energy against an oracle: the max-min fair allocation of whole amps (0 or 6 A up
  to each car's own maximum; when not every car can have 6 A, the higher priority first)
  computed with the true building load, on the phases each car
  really uses; while a meter is frozen or silent its group's fallback load takes the true
  load's place (the ceiling any gateway has then). The building load is taken as high as the
  meter's noise makes it look (no gateway can use current its meter cannot see is free: with
  whole-amp loads in a scenario, the exact truth would put every fill on a knife edge). Also
  over the time every meter is live;
- Jain's index over energy among cars with equal needs; setpoint changes per charger-hour.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

from ampgate.dlm.fill import FillItem, water_fill
from ampgate.dlm.model import MIN_CHARGING_CURRENT
from ampgate.dlm.peak import QUARTER_S
from ampgate.dlm.topology import site_index
from ampgate.sim.plant import CarTruth, Truth
from ampgate.sim.scenario import Scenario

ROOM_A = 7.0
"""A car at 0 A counts as waiting when each of its phases has at least this much room."""
VOLTAGE = 230.0


@dataclass(frozen=True, slots=True)
class Score:
    """What one gateway (or allocator) achieved on one scenario."""

    scenario: str
    allocator: str
    duration_s: float
    overload_amp_s: float
    overload_beyond_reaction_amp_s: float
    reaction_window_s: float
    max_overload_a: float
    longest_overload_s: float
    waiting_with_room_share: float
    plugged_s: float
    restart_delay_cost_s: float
    """Plugged time spent in the restart delay after pauses that were needed."""
    energy_kwh: float
    oracle_kwh: float
    energy_ratio: float
    energy_ratio_live: float
    """Delivered / oracle over the time every meter was live."""
    jain_equal_need: float | None
    setpoint_changes_per_charger_hour: float
    first_lowering_s: float | None
    """When the first lowered setpoint reached a charger (None: none was lowered)."""
    car_energy_kwh: dict[str, float] = field(default_factory=dict)
    max_quarter_kw: dict[str, float] = field(default_factory=dict)
    """Per group with a ``peak_kw``: the highest aligned 15-minute average import (true)."""


class Scorer:
    """Accumulates the scores of one run, one :class:`Truth` at a time."""

    def __init__(self, scenario: Scenario, allocator: str, wire_s: float = 0.0) -> None:
        """Score ``scenario``; ``wire_s`` is the time the lowering writes take on the wire."""
        self.scenario = scenario
        self.allocator = allocator
        site = scenario.site
        self.index = site_index(site)
        self.limits = {g.id: tuple(g.effective_limit(p) for p in range(3)) for g in site.groups}
        self.usable = {
            g.id: tuple(g.effective_limit(p) - g.headroom[p] for p in range(3)) for g in site.groups
        }
        self.fallback = {g.id: g.fallback_load for g in site.groups}
        self.noise = scenario.meter_noise_a
        self.priority = {c.id: c.priority for c in site.chargers}
        dlm = scenario.config.dlm
        self.restart_delay = dlm.restart_delay_seconds
        self.window = (
            scenario.meter_lag_s
            + scenario.meter_update_s
            + dlm.cycle_seconds
            + wire_s
            + max((c.reaction_s for c in scenario.cars), default=0.0)
        )
        self.changes = list(scenario.change_times())
        self.max_car = {c.id: c.max_current for c in scenario.cars}
        self.charger_max = {
            name: min(c.max_current, scenario.chargers[name].amp_limit)
            if name in scenario.chargers
            else c.max_current
            for name, c in scenario.config.chargers.items()
        }
        self.last_time: float | None = None
        self.overload = self.beyond = self.max_over = self.longest = self.run = 0.0
        self.plugged = self.waiting = self.delay_cost = 0.0
        self.delivered = self.oracle = self.delivered_live = self.oracle_live = 0.0
        self.car_wh: dict[str, float] = {c.id: 0.0 for c in scenario.cars}
        self.pilot: dict[str, float] = {}
        self.excused_until: dict[str, float] = {}
        self.overdrawing: set[str] = set()
        self.changes_written = 0
        self.first_lowering: float | None = None
        self._oracle_cache: dict[tuple, float] = {}
        self.peak_groups = [n for n, g in scenario.config.groups.items() if g.peak_kw is not None]
        self.quarter_kwh: dict[tuple[str, int], float] = {}

    # ------------------------------------------------------------------ inputs

    def setpoint_written(self, charger: str, old: int | None, new: int, now: float) -> None:
        """Count a changed setpoint that reached a charger (the first lowering is timed)."""
        if old == new:
            return
        self.changes_written += 1
        if old is not None and new < old and self.first_lowering is None:
            self.first_lowering = now

    def sample(self, truth: Truth) -> None:
        """Account the interval since the previous sample at the state of ``truth``."""
        now = truth.time
        dt = 0.0 if self.last_time is None else now - self.last_time
        self.last_time = now
        self._overload(truth, now, dt)
        self._quarters(truth, now, dt)
        self._cars(truth, now, dt)

    # ------------------------------------------------------------------ scores

    def _quarters(self, truth: Truth, now: float, dt: float) -> None:
        """Import energy of each budgeted group per aligned quarter (scenario time 0 is one)."""
        for gid in self.peak_groups:
            key = (gid, int((now - dt / 2) // QUARTER_S))
            kw = sum(max(0.0, a) for a in truth.total[gid]) * VOLTAGE / 1000.0
            self.quarter_kwh[key] = self.quarter_kwh.get(key, 0.0) + kw * dt / 3600.0

    def _overload(self, truth: Truth, now: float, dt: float) -> None:
        worst = 0.0
        for gid, total in truth.total.items():
            limit = self.limits[gid]
            for p in range(3):
                worst = max(worst, total[p] - limit[p])
        if worst > 1e-6:
            self.overload += worst * dt
            self.max_over = max(self.max_over, worst)
            last = max((t for t in self.changes if t <= now + 1e-9), default=-math.inf)
            if now > last + self.window + 1e-9:
                self.beyond += worst * dt
            self.run += dt
            self.longest = max(self.longest, self.run)
        else:
            self.run = 0.0

    def _phases(self, car: CarTruth) -> tuple[int, ...]:
        table = self.index.rotation_tables[car.charger]
        return tuple(sorted({table[t] for t in car.terminals}))

    def _cars(self, truth: Truth, now: float, dt: float) -> None:
        wanting = [c for c in truth.cars.values() if c.wanting]
        on_phase: dict[tuple[str, int], int] = {}
        for car in wanting:
            for g in self.index.chain[car.charger]:
                for p in self._phases(car):
                    on_phase[g, p] = on_phase.get((g, p), 0) + 1
        for car in truth.cars.values():
            kw = car.draw * len(car.terminals if car.draw > 0 else ()) * VOLTAGE
            self.car_wh[car.id] = self.car_wh.get(car.id, 0.0) + kw * dt / 3600.0
            if car.wanting and car.draw > car.pilot + 1.0 and car.id not in self.overdrawing:
                self.overdrawing.add(car.id)  # a car over-drawing its pilot: a change by itself
                self.changes.append(now)
                self.changes.sort()
        rate = sum(c.draw * len(c.terminals) for c in truth.cars.values() if c.draw > 0)
        best = self._oracle_rate(truth, wanting)
        self.delivered += rate * dt
        self.oracle += best * dt
        if not truth.meter_faulty:
            self.delivered_live += rate * dt
            self.oracle_live += best * dt
        for car in wanting:
            self.plugged += dt
            previous = self.pilot.get(car.id, car.pilot)
            if previous >= MIN_CHARGING_CURRENT > car.pilot and self._pause_needed(
                truth, car, on_phase
            ):
                self.excused_until[car.id] = now + self.restart_delay
            if car.pilot >= MIN_CHARGING_CURRENT:
                continue
            if now < self.excused_until.get(car.id, -math.inf):
                self.delay_cost += dt
            elif self._room(truth, car):
                self.waiting += dt
        self.pilot = {c.id: c.pilot for c in truth.cars.values()}

    def _room(self, truth: Truth, car: CarTruth) -> bool:
        phases = self._phases(car)
        for g in self.index.chain[car.charger]:
            usable, total = self.usable[g], truth.total[g]
            if any(usable[p] - total[p] < ROOM_A for p in phases):
                return False
        return True

    def _pause_needed(
        self, truth: Truth, car: CarTruth, on_phase: Mapping[tuple[str, int], int]
    ) -> bool:
        for g in self.index.chain[car.charger]:
            usable = self.usable[g]
            building = self.fallback[g] if g in truth.meter_faulty else truth.building[g]
            for p in self._phases(car):
                if building[p] + MIN_CHARGING_CURRENT * on_phase.get((g, p), 0) > usable[p]:
                    return True
        return False

    def _oracle_rate(self, truth: Truth, wanting: list[CarTruth]) -> float:
        """A·phases the max-min fair whole-amp allocation would deliver now."""
        building = {
            g: self.fallback[g] if g in truth.meter_faulty else b for g, b in truth.building.items()
        }
        key = (
            tuple(sorted((g, tuple(round(x, 2) for x in b)) for g, b in building.items())),
            tuple(sorted((c.id, c.charger, c.terminals) for c in wanting)),
        )
        hit = self._oracle_cache.get(key)
        if hit is not None:
            return hit
        noise = self.noise
        room = {
            (g, p): self.usable[g][p] - building[g][p] - noise for g in building for p in range(3)
        }
        admitted = []
        for car in sorted(wanting, key=lambda c: (-self.priority[c.charger], c.id)):
            uses = tuple(((g, p), 1.0) for g in self.index.chain[car.charger]
                         for p in self._phases(car))  # fmt: skip
            hi = int(min(self.max_car.get(car.id, 32), self.charger_max[car.charger]))
            if hi < MIN_CHARGING_CURRENT or any(room[k] < MIN_CHARGING_CURRENT for k, _ in uses):
                continue
            for k, _ in uses:
                room[k] -= MIN_CHARGING_CURRENT
            admitted.append((FillItem(car.id, MIN_CHARGING_CURRENT, hi, uses), len(car.terminals)))
        capacity: dict[Hashable, float] = dict(room)
        for item, _ in admitted:
            for resource, _c in item.uses:
                capacity[resource] += MIN_CHARGING_CURRENT
        filled = water_fill([item for item, _ in admitted], capacity) if admitted else {}
        rate = float(sum(filled[item.id].amps * n for item, n in admitted))
        if len(self._oracle_cache) > 50_000:
            self._oracle_cache.clear()
        self._oracle_cache[key] = rate
        return rate

    def result(self, duration_s: float | None = None) -> Score:
        """The scores so far."""
        duration = duration_s if duration_s is not None else (self.last_time or 0.0)
        to_kwh = VOLTAGE / 3.6e6
        chargers = max(1, len(self.scenario.config.chargers))
        return Score(
            scenario=self.scenario.name,
            allocator=self.allocator,
            duration_s=duration,
            overload_amp_s=self.overload,
            overload_beyond_reaction_amp_s=self.beyond,
            reaction_window_s=self.window,
            max_overload_a=self.max_over,
            longest_overload_s=self.longest,
            waiting_with_room_share=self.waiting / self.plugged if self.plugged else 0.0,
            plugged_s=self.plugged,
            restart_delay_cost_s=self.delay_cost,
            energy_kwh=self.delivered * to_kwh,
            oracle_kwh=self.oracle * to_kwh,
            energy_ratio=self.delivered / self.oracle if self.oracle else 1.0,
            energy_ratio_live=self.delivered_live / self.oracle_live if self.oracle_live else 1.0,
            jain_equal_need=self._jain_equal_need(),
            setpoint_changes_per_charger_hour=self.changes_written
            / chargers
            / max(duration / 3600, 1e-9),
            first_lowering_s=self.first_lowering,
            car_energy_kwh={k: v / 1000 for k, v in self.car_wh.items()},
            max_quarter_kw={
                gid: max(
                    (e * 3600.0 / QUARTER_S for (g, _), e in self.quarter_kwh.items() if g == gid),
                    default=0.0,
                )
                for gid in self.peak_groups
            },
        )

    def _jain_equal_need(self) -> float | None:
        groups: dict[tuple, list[float]] = {}
        for car in self.scenario.cars:
            key = (
                min(car.max_current, self.charger_max[car.charger]),
                car.phases if self.scenario.config.chargers[car.charger].phases == 3 else 1,
                car.need_kwh,
                car.arrive_s,
                car.depart_s,
                car.overdraw_a,
            )
            groups.setdefault(key, []).append(self.car_wh[car.id])
        scores = [jain(v) for v in groups.values() if len(v) >= 2]
        return min(scores) if scores else None


def jain(values: list[float]) -> float:
    """Jain's fairness index of ``values`` (1 = equal; 1 when nothing was delivered)."""
    total = sum(values)
    if total <= 0:
        return 1.0
    return total**2 / (len(values) * sum(x * x for x in values))
