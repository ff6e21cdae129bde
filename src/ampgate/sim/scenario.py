"""Site scenarios for load-management benchmarks and end-to-end tests: a site file plus a script.

A scenario file is TOML. Its ``[groups]``, ``[meters]``, ``[chargers]`` and ``[dlm]`` tables are
those of a site file (same keys, same validation, same engine settings as the daemon builds
from them; buses and unit ids are added by whoever runs the scenario). The rest scripts the
world around the gateway::

    [scenario]
    name = "start-up at 32 A"
    duration_s = 600
    transport = "rtu"          # "tcp": charger polls just before the meter read; "rtu": one line
    baudrate = 9600            # rtu only
    meter_update_s = 1.0       # the meter refreshes its registers this often
    meter_lag_s = 0.0          # ... showing what flowed this long before
    meter_noise_a = 0.05       # measurement jitter of the meter's currents

    [sim.chargers.c1]          # how a charger misbehaves (all optional)
    found_amps = 32            # reg 15 when the gateway starts (the factory 32 A)
    ignores_phase_switch = true
    amp_limit = 32             # reg 12, the hardware limit

    [[cars]]                   # one car at a time per charger
    charger = "c1"
    phases = 3
    max_current = 32           # the car's onboard maximum
    reaction_s = 2.0           # time to follow a changed pilot (1–5 s)
    overdraw_a = 0             # draws this much above the pilot
    arrive_s = 0
    depart_s = 600
    need_kwh = 20              # stops drawing when charged (default: never)
    charging_at_start = true   # found drawing at t = 0

    [[building]]               # non-EV load through a group, from at_s on
    group = "main"
    at_s = 0
    load = [10, 12, 8]

    [[meter_faults]]           # freeze: answers with the values of from_s; silent: no answer
    meter = "grid"
    kind = "freeze"
    from_s = 120
    to_s = 135

:func:`load_scenario` returns a :class:`Scenario`; every problem names the file and the key.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ampgate.config import SiteConfig, check_config_data
from ampgate.config.to_engine import build_site
from ampgate.dlm import Site
from ampgate.errors import ConfigError

PhaseTriple = tuple[float, float, float]
DEFAULT_METER_MODEL = "eastron-sdm630"
METER_UNIT_BASE = 100
"""Meters get unit ids 100, 101, …; chargers 1, 2, … in file order."""


@dataclass(frozen=True, slots=True)
class CarPlan:
    """A car plugged into ``charger`` from ``arrive_s`` to ``depart_s``."""

    id: str
    charger: str
    phases: Literal[1, 3] = 3
    max_current: float = 16.0
    reaction_s: float = 2.0
    overdraw_a: float = 0.0
    arrive_s: float = 0.0
    depart_s: float = math.inf
    need_kwh: float = math.inf
    charging_at_start: bool = False


@dataclass(frozen=True, slots=True)
class ChargerPlan:
    """How a simulated charger behaves beyond the reference."""

    found_amps: int = 0
    ignores_phase_switch: bool = False
    amp_limit: int = 32


@dataclass(frozen=True, slots=True)
class MeterFault:
    """A meter that freezes (answers with old values) or goes silent from ``from_s`` to ``to_s``."""

    meter: str
    kind: Literal["freeze", "silent"]
    from_s: float
    to_s: float


@dataclass(frozen=True, slots=True)
class Scenario:
    """A site (as the daemon would run it) and the script of the world around it."""

    name: str
    tables: Mapping[str, Any]
    """The site-file tables (groups, meters, chargers, dlm) without buses."""
    config: SiteConfig
    """The site validated with placeholder buses (one TCP bus, unit ids in file order)."""
    site: Site
    """The engine's site exactly as the daemon builds it from ``config``."""
    cars: tuple[CarPlan, ...]
    chargers: Mapping[str, ChargerPlan]
    building: Mapping[str, tuple[tuple[float, PhaseTriple], ...]]
    meter_faults: tuple[MeterFault, ...] = ()
    duration_s: float = 600.0
    transport: Literal["tcp", "rtu"] = "tcp"
    baudrate: int = 9600
    meter_update_s: float = 1.0
    meter_lag_s: float = 0.0
    meter_noise_a: float = 0.05
    note: str = ""
    source: str = ""
    meter_models: Mapping[str, str] = field(default_factory=dict)

    def unit_ids(self) -> dict[str, int]:
        """Unit id of every charger (1, 2, … in file order) and meter (100, 101, …)."""
        return _unit_ids(self.tables)

    def site_config(
        self,
        buses: Mapping[str, Mapping[str, Any]],
        bus_of: Mapping[str, str],
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> SiteConfig:
        """The site file with real ``buses`` (tables by name) and each device's bus.

        ``bus_of`` names the bus of every charger and meter; unit ids are :meth:`unit_ids`.
        ``extra`` adds or replaces top-level tables (``metrics``, ``log``, keys of ``dlm``).
        """
        return _validate(self.tables, self.source or self.name, dict(buses), bus_of, extra or {})

    def building_at(self, group: str, now: float) -> PhaseTriple:
        """Non-EV load of ``group`` alone (not its sub-groups) at ``now``."""
        value: PhaseTriple = (0.0, 0.0, 0.0)
        for at, load in self.building.get(group, ()):
            if at <= now:
                value = load
        return value

    def change_times(self) -> list[float]:
        """Times at which the world changes by itself: start, building steps, meter faults."""
        times = {0.0}
        for steps in self.building.values():
            times.update(at for at, _ in steps)
        for fault in self.meter_faults:
            times.update((fault.from_s, fault.to_s))
        return sorted(times)


def _triple(value: Any, where: str) -> PhaseTriple:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (float(value),) * 3
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(x, int | float) for x in value)
    ):
        return (float(value[0]), float(value[1]), float(value[2]))
    raise ConfigError(f"{where}: {value!r} is not allowed; allowed: a number or [L1, L2, L3]")


def _unit_ids(tables: Mapping[str, Any]) -> dict[str, int]:
    ids = {name: i for i, name in enumerate(tables["chargers"], start=1)}
    for i, name in enumerate(tables.get("meters", {})):
        ids[name] = METER_UNIT_BASE + i
    return ids


def _validate(
    site_tables: Mapping[str, Any],
    label: str,
    buses: Mapping[str, Mapping[str, Any]],
    bus_of: Mapping[str, str],
    extra: Mapping[str, Any],
) -> SiteConfig:
    """The site of a scenario's ``site_tables`` with ``buses``; ``label`` names it in problems."""
    tables = copy.deepcopy(dict(site_tables))
    ids = _unit_ids(site_tables)
    for section in ("chargers", "meters"):
        for name, entry in tables.get(section, {}).items():
            entry["bus"] = bus_of[name]
            entry["unit_id"] = ids[name]
            if section == "meters":
                entry.setdefault("model", DEFAULT_METER_MODEL)
    raw: dict[str, Any] = {"buses": buses, **tables}
    raw.setdefault("metrics", {"enabled": False})
    for key, value in extra.items():
        if key == "dlm":
            raw["dlm"] = {**raw.get("dlm", {}), **value}
        else:
            raw[key] = value
    config, problems = check_config_data(raw, label)
    if config is None:
        raise ConfigError(
            f"{label}: the scenario's site is not valid: " + "; ".join(problems),
            problems,
        )
    return config


_SITE_TABLES = ("groups", "meters", "chargers", "dlm")
_TOP_LEVEL = {*_SITE_TABLES, "scenario", "sim", "cars", "building", "meter_faults"}


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    """Build a scenario from parsed TOML tables; ConfigError names ``source`` and the key."""
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        allowed = ", ".join(sorted(_TOP_LEVEL))
        raise ConfigError(f"{source}: unknown table(s) {', '.join(unknown)}; allowed: {allowed}")
    head = dict(data.get("scenario", {}))
    tables = {k: copy.deepcopy(data[k]) for k in _SITE_TABLES if k in data}
    tables.setdefault("meters", {})
    try:
        chargers = {
            name: ChargerPlan(**entry)
            for name, entry in data.get("sim", {}).get("chargers", {}).items()
        }
        cars = tuple(
            CarPlan(**{"id": f"car{i}", **entry}) for i, entry in enumerate(data.get("cars", []), 1)
        )
        building: dict[str, list[tuple[float, PhaseTriple]]] = {}
        for i, entry in enumerate(data.get("building", [])):
            where = f"{source}: building[{i}]"
            load = _triple(entry["load"], f"{where}.load")
            building.setdefault(entry["group"], []).append((float(entry.get("at_s", 0)), load))
        faults = tuple(MeterFault(**entry) for entry in data.get("meter_faults", []))
        models = {n: m.get("model", DEFAULT_METER_MODEL) for n, m in tables["meters"].items()}
        known_head = {
            "name", "duration_s", "transport", "baudrate", "meter_update_s", "meter_lag_s",
            "meter_noise_a", "note",
        }  # fmt: skip
        bad = sorted(set(head) - known_head)
        if bad:
            raise ConfigError(
                f"{source}: scenario.{bad[0]} is not a scenario key; "
                f"allowed: {', '.join(sorted(known_head))}"
            )
        if head.get("transport", "tcp") not in ("tcp", "rtu"):
            raise ConfigError(
                f"{source}: scenario.transport = {head['transport']!r}; allowed: 'tcp', 'rtu'"
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid scenario entry: {exc!r}") from exc
    name = str(head.get("name", Path(source).stem))
    steps = {g: tuple(sorted(v)) for g, v in building.items()}
    _check_references(source, tables, chargers, cars, steps, faults)
    placeholder = {"sim": {"kind": "tcp", "host": "127.0.0.1", "port": 502}}
    bus_of = dict.fromkeys(_unit_ids(tables), "sim")
    config = _validate(tables, source or name, placeholder, bus_of, {})
    return Scenario(
        name=name,
        tables=tables,
        config=config,
        site=build_site(config),
        cars=cars,
        chargers=chargers,
        building=steps,
        meter_faults=faults,
        duration_s=float(head.get("duration_s", 600)),
        transport=head.get("transport", "tcp"),
        baudrate=int(head.get("baudrate", 9600)),
        meter_update_s=float(head.get("meter_update_s", 1.0)),
        meter_lag_s=float(head.get("meter_lag_s", 0.0)),
        meter_noise_a=float(head.get("meter_noise_a", 0.05)),
        note=str(head.get("note", "")),
        source=source,
        meter_models=models,
    )


def _check_references(
    source: str,
    tables: Mapping[str, Any],
    plans: Mapping[str, ChargerPlan],
    cars: tuple[CarPlan, ...],
    building: Mapping[str, object],
    meter_faults: tuple[MeterFault, ...],
) -> None:
    chargers = tables.get("chargers", {})
    groups = tables.get("groups", {})
    meters = tables.get("meters", {})
    for name in plans:
        if name not in chargers:
            raise ConfigError(f"{source}: sim.chargers.{name}: no charger {name!r} in [chargers]")
    seen: dict[str, list[CarPlan]] = {}
    for car in cars:
        if car.charger not in chargers:
            raise ConfigError(
                f"{source}: cars: {car.id} names charger {car.charger!r}; "
                f"allowed: {', '.join(chargers)}"
            )
        if car.depart_s <= car.arrive_s:
            raise ConfigError(f"{source}: cars: {car.id} departs before it arrives")
        for other in seen.get(car.charger, []):
            if car.arrive_s < other.depart_s and other.arrive_s < car.depart_s:
                raise ConfigError(
                    f"{source}: cars: {car.id} and {other.id} are at {car.charger} at once"
                )
        seen.setdefault(car.charger, []).append(car)
    for group in building:
        if group not in groups:
            raise ConfigError(
                f"{source}: building: no group {group!r}; allowed: {', '.join(groups)}"
            )
    for fault in meter_faults:
        if fault.meter not in meters:
            raise ConfigError(f"{source}: meter_faults: no meter {fault.meter!r}")
        if fault.kind not in ("freeze", "silent") or fault.to_s <= fault.from_s:
            raise ConfigError(
                f"{source}: meter_faults: {fault.kind!r} from {fault.from_s} to {fault.to_s}; "
                "allowed: kind 'freeze' or 'silent', to_s > from_s"
            )


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; ConfigError names the file and the bad entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read scenario: {exc}") from exc
    return parse_scenario(data, str(path))
