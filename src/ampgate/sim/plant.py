"""The simulated site of a scenario: EVC2 and meter simulators on one clock, run by its script.

The same plant serves two harnesses: the closed-loop simulation (:mod:`ampgate.sim.closed_loop`,
a manual clock, registers read directly) and the daemon benchmarks and end-to-end tests (real
time, registers served over Modbus TCP or RTU). Either calls :meth:`Plant.step` as time passes:
it applies the script (cars arriving and leaving, building-load steps, meter faults) and
returns what really flows (:class:`Truth`) for scoring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ampgate.devices.evc2 import PHASE_SETS
from ampgate.dlm.topology import site_index
from ampgate.sim.device import Clock, Faults, FaultyDevice
from ampgate.sim.evc2 import ElectricVehicle, Evc2Simulator
from ampgate.sim.meter import MeterSimulator
from ampgate.sim.scenario import CarPlan, ChargerPlan, MeterFault, PhaseTriple, Scenario

ROTATIONS = {"L1L2L3": (1, 2, 3), "L2L3L1": (2, 3, 1), "L3L1L2": (3, 1, 2)}


@dataclass(frozen=True, slots=True)
class CarTruth:
    """One plugged-in car as it really is."""

    id: str
    charger: str
    wanting: bool
    """Plugged in and not yet full."""
    pilot: float
    """Amps the charger offers (its setpoint, or the failsafe current after a timeout)."""
    draw: float
    """Amps drawn on each phase in use."""
    terminals: tuple[int, ...]
    """Charger terminals (0–2) the car draws on, or would draw on if offered current."""


@dataclass(frozen=True, slots=True)
class Truth:
    """What flows in the site at one instant."""

    time: float
    building: Mapping[str, PhaseTriple]
    """Non-EV load through each group (its own and its sub-groups'), per site phase."""
    total: Mapping[str, PhaseTriple]
    """Everything through each group's fuse: building plus chargers."""
    cars: Mapping[str, CarTruth]
    meter_faulty: frozenset[str]
    """Groups whose meter is frozen or silent now."""


class Plant:
    """Every simulated device of a scenario, and its script applied as time passes."""

    def __init__(self, scenario: Scenario, clock: Clock) -> None:
        """Power the site on at ``clock()`` (expected to start at 0 for the script's times)."""
        self.scenario = scenario
        self.clock = clock
        site, config = scenario.site, scenario.config
        self.index = site_index(site)
        self.chargers: dict[str, Evc2Simulator] = {}
        for name, charger in config.chargers.items():
            plan = scenario.chargers.get(name, ChargerPlan())
            self.chargers[name] = Evc2Simulator(
                clock,
                rotation=ROTATIONS[charger.rotation],
                amp_limit=plan.amp_limit,
                amps_to_use=plan.found_amps,
                ignore_phase_switch=plan.ignores_phase_switch,
                serial_number=1000 + scenario.unit_ids()[name],
            )
        parent = {g.id: g.parent for g in site.groups}

        def upstream(gid: str | None) -> set[str]:
            seen: set[str] = set()
            while gid is not None and gid not in seen:
                seen.add(gid)
                gid = parent[gid]
            return seen

        self.groups_below = {
            g.id: [h.id for h in site.groups if g.id in upstream(h.id)] for g in site.groups
        }
        self.meters: dict[str, MeterSimulator] = {}
        self.meter_faults: dict[str, Faults] = {}
        for i, (name, meter) in enumerate(config.meters.items()):
            behind = [
                self.chargers[c]
                for c in self.index.members[meter.group]
                if meter.location == "including"
            ]
            self.meters[name] = MeterSimulator(
                meter.model,
                self._building_profile(meter.group),
                clock,
                chargers=behind,
                noise_a=scenario.meter_noise_a,
                update_interval=scenario.meter_update_s,
                lag=scenario.meter_lag_s,
                seed=i + 1,
            )
            self.meter_faults[name] = Faults()
        self.charger_faults: dict[str, Faults] = {name: Faults() for name in self.chargers}
        """Faults of each charger's served device (a test makes one silent)."""
        self._script = sorted(self._script_entries(), key=lambda e: e[0])
        self._done = 0
        self.cars: dict[str, CarPlan] = {}
        """Cars plugged in now, by charger."""
        self.step(clock())
        for meter_sim in self.meters.values():  # the site ran before the gateway started
            meter_sim.settle()

    def _building_profile(self, group: str):
        below = self.groups_below[group]

        def profile(now: float) -> PhaseTriple:
            total = [0.0, 0.0, 0.0]
            for g in below:
                load = self.scenario.building_at(g, now)
                for p in range(3):
                    total[p] += load[p]
            return (total[0], total[1], total[2])

        return profile

    def _script_entries(self) -> list[tuple[float, str, object]]:
        entries: list[tuple[float, str, object]] = []
        for car in self.scenario.cars:
            entries.append((car.arrive_s, "arrive", car))
            if car.depart_s < float("inf"):
                entries.append((car.depart_s, "depart", car))
        for fault in self.scenario.meter_faults:
            entries.append((fault.from_s, "fault_on", fault))
            entries.append((fault.to_s, "fault_off", fault))
        return entries

    def devices(self) -> dict[str, FaultyDevice]:
        """Every device by name, wrapped for fault injection (serve them by unit id)."""
        out = {
            name: FaultyDevice(sim, self.charger_faults[name])
            for name, sim in self.chargers.items()
        }
        for name, meter in self.meters.items():
            out[name] = FaultyDevice(meter, self.meter_faults[name])
        return out

    def step(self, now: float) -> Truth:
        """Apply the script up to ``now`` and return what flows now."""
        self.apply_script(now)
        return self.truth(now)

    def apply_script(self, now: float) -> None:
        """Apply every scripted change due by ``now`` (cars, meter faults)."""
        while self._done < len(self._script) and self._script[self._done][0] <= now + 1e-9:
            _, action, item = self._script[self._done]
            self._done += 1
            self._apply(action, item)

    def _apply(self, action: str, item: object) -> None:
        if action == "arrive":
            assert isinstance(item, CarPlan)
            ev = ElectricVehicle(
                phases=item.phases,
                max_current=item.max_current,
                reaction_delay=item.reaction_s,
                overdraw=item.overdraw_a,
                need_kwh=item.need_kwh,
            )
            self.chargers[item.charger].plug_in(
                ev, charging=item.charging_at_start and item.arrive_s <= 0
            )
            self.cars[item.charger] = item
        elif action == "depart":
            assert isinstance(item, CarPlan)
            self.chargers[item.charger].unplug()
            self.cars.pop(item.charger, None)
        else:
            assert isinstance(item, MeterFault)
            on = action == "fault_on"
            if item.kind == "freeze":
                self.meters[item.meter].freeze(on)
            else:
                self.meter_faults[item.meter].silent = on

    def truth(self, now: float) -> Truth:
        """Building, fuse currents and cars at ``now`` (advances every simulator to ``now``)."""
        site, index = self.scenario.site, self.index
        terminal: dict[str, tuple[float, float, float]] = {}
        cars: dict[str, CarTruth] = {}
        for name, sim in self.chargers.items():
            sim.advance(now)
            terminal[name] = sim.phase_currents()
            plan = self.cars.get(name)
            if plan is None or sim.ev is None:
                continue
            drawing = tuple(p - 1 for p in sim.phases_in_use)
            acting = PHASE_SETS.get(sim.acting_phase_code, (0, 1, 2))
            would = acting[:1] if sim.ev.phases == 1 else acting
            cars[plan.id] = CarTruth(
                id=plan.id,
                charger=name,
                wanting=not sim.battery_full,
                pilot=sim.allowed_current,
                draw=sim.current,
                terminals=drawing or would,
            )
        building: dict[str, PhaseTriple] = {}
        total: dict[str, PhaseTriple] = {}
        for g in site.groups:
            b = [0.0, 0.0, 0.0]
            for h in self.groups_below[g.id]:
                load = self.scenario.building_at(h, now)
                for p in range(3):
                    b[p] += load[p]
            t = list(b)
            for cid in index.members[g.id]:
                table = index.rotation_tables[cid]
                for k, amps in enumerate(terminal[cid]):
                    t[table[k]] += amps
            building[g.id] = (b[0], b[1], b[2])
            total[g.id] = (t[0], t[1], t[2])
        for meter in self.meters.values():
            meter.advance(now)
        faulty = frozenset(
            self.scenario.config.meters[name].group
            for name, meter in self.meters.items()
            if meter.frozen or self.meter_faults[name].silent
        )
        return Truth(now, building, total, cars, faulty)
