"""The site configuration: one TOML file, validated with pydantic, every problem reported at once.

A site file has these sections (see ``examples/*.toml`` for annotated files)::

    [site]        name
    [buses.NAME]  kind = "serial" (port, baudrate, parity, stopbits, timeout, retries, gap)
                  kind = "tcp"    (host, port, timeout, retries, framing)
    [groups.NAME] limit = [L1, L2, L3] (fuse, A), operator_limit, parent, headroom, fallback_load
    [meters.NAME] model, bus, unit_id, location ("including" | "excluding"), group (metered group)
    [chargers.NAME] model, bus, unit_id, group, rotation, phases, priority, min/max current,
                  failsafe_current
    [dlm]         cycle_seconds, ramp_up_amps, hysteresis_amps, meter_stale_seconds,
                  meter_hold_seconds, meter_lag_seconds, device_stale_seconds,
                  watchdog_seconds, failsafe_policy, shutdown, slow_poll_every
    [metrics]     listen
    [log]         format, level

:func:`check_config` returns the validated :class:`SiteConfig` or the list of every problem, each
naming its key path, the bad value and what is allowed. :func:`load_config` raises
:class:`~ampgate.errors.ConfigError` carrying that list.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ampgate.errors import ConfigError

Phase = Literal["L1", "L2", "L3"]
PHASES: tuple[Phase, Phase, Phase] = ("L1", "L2", "L3")
Rotation = Literal["L1L2L3", "L2L3L1", "L3L1L2"]
ROTATIONS: tuple[str, ...] = ("L1L2L3", "L2L3L1", "L3L1L2")
MIN_CHARGING_CURRENT = 6
"""EVC2 setpoints are 0 or 6–32 A; 1–5 A are rejected by the charger."""
MAX_CHARGING_CURRENT = 32
WATCHDOG_MIN_CYCLES = 3
"""The watchdog must outlast at least this many cycles, so one slow cycle never trips it."""
EVC2_WATCHDOG_RANGE = (1, 600)
"""Reg 19 accepts 0–600 s; 0 disables the watchdog, which ampgate never does."""


def site_phases(rotation: str) -> tuple[Phase, Phase, Phase]:
    """Return the site phases a charger's own L1, L2, L3 sit on for a rotation (RST/STR/TRS)."""
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation {rotation!r} unknown; allowed: {', '.join(ROTATIONS)}")
    return tuple(rotation[i : i + 2] for i in (0, 2, 4))  # type: ignore[return-value]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SerialBusConfig(_Section):
    """An RS485 line: one serial port shared by every device on it."""

    kind: Literal["serial"]
    port: str = Field(min_length=1)
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout: float = Field(default=0.5, gt=0, le=10)
    """Seconds to wait for one answer."""
    retries: int = Field(default=0, ge=0, le=5)
    gap: float = Field(default=0.005, ge=0, le=1)
    """Silent seconds between requests (on top of the 3.5-character frame gap)."""


class TcpBusConfig(_Section):
    """A Modbus TCP endpoint (a device, or a serial-to-TCP gateway with ``framing = "rtu"``)."""

    kind: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    timeout: float = Field(default=1.0, gt=0, le=10)
    retries: int = Field(default=0, ge=0, le=5)
    framing: Literal["socket", "rtu"] = "socket"
    """``socket``: Modbus TCP (MBAP). ``rtu``: raw RTU frames tunnelled over TCP."""


PhaseAmps = tuple[float, float, float]


def _per_phase(value: object) -> object:
    """Accept one number for all three phases, or a list of three."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (value, value, value)
    return value


class GroupConfig(_Section):
    """A fuse (main distribution or sub-distribution) with per-phase limits in amperes."""

    limit: PhaseAmps
    """Fuse rating per site phase L1, L2, L3 (A)."""
    operator_limit: PhaseAmps | None = None
    """Optional operator cap, at most the fuse rating (A)."""
    parent: str | None = None
    """The upstream fuse this one sits under; ``None`` for the main fuse."""
    headroom: PhaseAmps = (0.0, 0.0, 0.0)
    """Margin kept free below the limit (A)."""
    fallback_load: PhaseAmps = (0.0, 0.0, 0.0)
    """Non-EV load assumed on this fuse when its meter is stale or absent (A)."""

    _norm = field_validator("limit", "operator_limit", "headroom", "fallback_load", mode="before")(
        classmethod(lambda cls, v: _per_phase(v))
    )

    @field_validator("limit", "operator_limit", "headroom", "fallback_load")
    @classmethod
    def _non_negative(cls, value: PhaseAmps | None) -> PhaseAmps | None:
        if value is not None and any(v < 0 for v in value):
            raise ValueError(f"{list(value)} has a negative phase; allowed: amperes >= 0")
        return value

    def effective_limit(self) -> PhaseAmps:
        """Per-phase limit the allocator keeps: the lower of the fuse and the operator cap."""
        if self.operator_limit is None:
            return self.limit
        return tuple(min(a, b) for a, b in zip(self.limit, self.operator_limit, strict=True))  # type: ignore[return-value]


class MeterConfig(_Section):
    """An energy meter at a fuse: it measures the load through that fuse."""

    model: str
    bus: str
    unit_id: int = Field(ge=1, le=247)
    group: str
    """The fuse whose load this meter measures (the metered group)."""
    location: Literal["including", "excluding"] = "including"
    """``including``: the meter sees building + chargers. ``excluding``: building only."""


class ChargerConfig(_Section):
    """One EVC2 charger under a fuse."""

    model: str = "teltocharge-evc2"
    bus: str
    unit_id: int = Field(ge=1, le=247)
    group: str
    rotation: Rotation = "L1L2L3"
    """Site phases of the charger's L1, L2, L3 (RST = L1L2L3, STR = L2L3L1, TRS = L3L1L2)."""
    phases: Literal[1, 3] = 3
    """Phases the charger is wired with (1: only its L1, mapped through ``rotation``)."""
    priority: int = Field(default=0, ge=0, le=100)
    """Higher is served first when current is short."""
    min_current: int = Field(default=MIN_CHARGING_CURRENT, ge=6, le=32)
    max_current: int = Field(default=MAX_CHARGING_CURRENT, ge=6, le=32)
    failsafe_current: int | None = None
    """Current the charger falls back to when the gateway is silent (0 or 6–32 A); ``None``: the
    engine's failsafe plan decides."""

    @field_validator("failsafe_current")
    @classmethod
    def _failsafe_allowed(cls, value: int | None) -> int | None:
        if value is not None and not (value == 0 or 6 <= value <= 32):
            raise ValueError(f"{value} A is not allowed; allowed: 0 or 6–32 A")
        return value


class DlmConfig(_Section):
    """How the allocator runs."""

    cycle_seconds: float = Field(default=1.0, ge=0.05, le=60)
    ramp_up_amps_per_second: float = Field(default=2.0, gt=0, le=100)
    """Largest increase of one setpoint per second (A/s). Reductions are never rate-limited."""
    hysteresis_amps: int = Field(default=1, ge=0, le=10)
    """An increase smaller than this is not made (A)."""
    restart_delay_seconds: float = Field(default=60.0, ge=0, le=3600)
    """A charger paused for lack of current is not restarted before this many seconds."""
    meter_stale_seconds: float = Field(default=5.0, gt=0, le=600)
    """A meter reading older than this is stale (the last good non-EV load is held)."""
    meter_hold_seconds: float = Field(default=10.0, ge=0, le=600)
    """After the last good reading, hold the last non-EV load this long, then use the fallback."""
    meter_lag_seconds: float = Field(default=1.0, ge=0, le=10)
    """How late a meter's reading may be against the moment it is read (its averaging or
    register refresh), s. With a meter ``including`` the chargers the engine takes each
    charger's draw over that range, so neither a car's change nor a lagging meter is taken for
    building load or for free capacity. 1 s covers meters that refresh their registers once a
    second (assumption; the reference gives no meter refresh times)."""
    phase_switch_timeout_seconds: float = Field(default=30.0, ge=5, le=600)
    """A phase switch (reg 14) that reg 13 and the currents have not confirmed after this long
    is not followed (event ``phase_switch_not_followed``); the charger keeps its phases."""
    phase_switch_retry_seconds: float = Field(default=1800.0, ge=0, le=86400)
    """After a switch that was not followed, the charger is not switched again for this long."""
    overdraw_margin_amps: float = Field(default=2.0, ge=0.5, le=16)
    """A car drawing more than anything it was told + this margin is over-drawing (event
    ``charger_overdraw``): it is budgeted at what it draws, and others get less."""
    overdraw_pause_seconds: float = Field(default=30.0, ge=1, le=3600)
    """A car that keeps drawing beyond its budget this long is paused (0 A)."""
    meter_frozen_change_amps: float = Field(default=6.0, ge=1, le=100)
    """A meter that includes the chargers and does not move while their draw on a phase changed
    by this much is implausible (event ``meter_implausible``)."""
    device_stale_seconds: float = Field(default=10.0, gt=0, le=600)
    """A charger that has not answered for this long is offline."""
    watchdog_seconds: int = Field(default=30, ge=1, le=600)
    """Programmed into every charger's reg 19 (communication timeout)."""
    failsafe_policy: Literal["share", "fixed"] = "share"
    """``share``: the engine's plan (:func:`ampgate.dlm.plan_failsafe`): each charger gets its
    ``failsafe_current`` (6 A when unset) while it fits every fuse phase with the fallback load,
    else 0, by priority and in rotation. ``fixed``: every charger's ``failsafe_current`` as set,
    and the file is refused when they would overload a fuse."""
    shutdown: Literal["failsafe", "zero", "keep"] = "failsafe"
    """Setpoint written on SIGTERM/SIGINT: each charger's failsafe current, 0 A, or unchanged."""
    slow_poll_every: int = Field(default=10, ge=1, le=3600)
    """Settings, identity and energy are read every N cycles."""


class MetricsConfig(_Section):
    """The Prometheus /metrics and /healthz endpoint."""

    listen: str = "127.0.0.1:9740"
    enabled: bool = True

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not HOST:PORT; allowed e.g. '127.0.0.1:9740'")
        return value

    def host_port(self) -> tuple[str, int]:
        """Return ``(host, port)`` of ``listen``."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class LogConfig(_Section):
    """Log output."""

    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: JSON lines when stderr is not a TTY, a console layout when it is."""
    level: Literal["debug", "info", "warning", "error"] = "info"


class SiteInfo(_Section):
    """Site metadata."""

    name: str = "site"


class SiteConfig(_Section):
    """A whole validated site file."""

    site: SiteInfo = SiteInfo()
    buses: dict[str, SerialBusConfig | TcpBusConfig]
    groups: dict[str, GroupConfig]
    meters: dict[str, MeterConfig] = {}
    chargers: dict[str, ChargerConfig]
    dlm: DlmConfig = DlmConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    source: str = ""
    """Path of the file this was read from."""

    def ancestors(self, group: str) -> list[str]:
        """Return ``group`` and every fuse above it, nearest first."""
        chain: list[str] = []
        current: str | None = group
        while current is not None and current not in chain:
            chain.append(current)
            current = self.groups[current].parent
        return chain

    def children(self, group: str) -> list[str]:
        """Return the groups whose parent is ``group``, sorted."""
        return sorted(n for n, g in self.groups.items() if g.parent == group)


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "site": SiteInfo,
    "dlm": DlmConfig,
    "metrics": MetricsConfig,
    "log": LogConfig,
}
_NAMED_MODELS: dict[str, type[BaseModel]] = {
    "groups": GroupConfig,
    "meters": MeterConfig,
    "chargers": ChargerConfig,
}
_BUS_MODELS: dict[str, type[BaseModel]] = {"serial": SerialBusConfig, "tcp": TcpBusConfig}
_REQUIRED_SECTIONS = ("buses", "groups", "chargers")
_NAME_PATTERN = "letters, digits, '-' and '_'"


def _fmt_value(value: object) -> str:
    if isinstance(value, Mapping):
        return "a table"
    return repr(value)


def _field_range(model: type[BaseModel], name: object) -> str | None:
    """Return the allowed range of a numeric field ("1–247", "> 0 and <= 10") from pydantic."""
    info = model.model_fields.get(name) if isinstance(name, str) else None
    if info is None:
        return None
    bounds: dict[str, object] = {}
    for meta in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(meta, attr, None) is not None:
                bounds[attr] = getattr(meta, attr)
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}–{bounds['le']}"
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [f"{ops[k]} {v}" for k, v in bounds.items()]
    return " and ".join(parts) or None


_BOUND_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


def _pydantic_problems(prefix: str, model: type[BaseModel], exc: ValidationError) -> list[str]:
    """Turn a ValidationError into one line per problem: key path, bad value, what is allowed."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        path = f"{prefix}.{loc}" if loc else prefix
        kind = err["type"]
        value = _fmt_value(err.get("input"))
        if kind == "extra_forbidden":
            allowed = ", ".join(n for n in model.model_fields if n != "source")
            problems.append(f"{path}: unknown key; allowed keys: {allowed}")
        elif kind == "missing":
            problems.append(f"{path}: required key is missing")
        elif kind in _BOUND_ERRORS and (bounds := _field_range(model, err["loc"][0])):
            problems.append(f"{path}: {value} is out of range; allowed: {bounds}")
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            problems.append(f"{path}: {value} is not allowed; allowed: {expected}")
        elif kind == "value_error":
            problems.append(f"{path}: {err['msg'].removeprefix('Value error, ')}")
        else:
            problems.append(f"{path}: {value}: {err['msg']}")
    return problems


def _model_catalogue() -> dict[str, str]:
    """Return ``{model_id: kind}`` for every shipped register map.

    A map that fails to load gets the kind ``"broken: <problem>"``, so a site using it is told
    why instead of the whole check failing.
    """
    from ampgate.codec import list_models, load_map
    from ampgate.errors import MapError

    catalogue = {}
    for model in list_models():
        try:
            catalogue[model] = load_map(model).model.kind
        except MapError as exc:
            catalogue[model] = f"broken: {exc}"
    return catalogue


class _Checker:
    """Collects every problem of a raw TOML document; builds the SiteConfig when there is none."""

    def __init__(self, raw: dict[str, Any], catalogue: Mapping[str, str]) -> None:
        self.raw = raw
        self.catalogue = catalogue
        self.problems: list[str] = []
        self.valid: dict[str, Any] = {}
        self.partial = False
        """True when some entry only validated after dropping its bad keys."""

    def run(self) -> None:
        known = set(_SECTION_MODELS) | set(_NAMED_MODELS) | {"buses"}
        for key in self.raw:
            if key not in known:
                self.problems.append(
                    f"{key}: unknown section; allowed sections: {', '.join(sorted(known))}"
                )
        for key in _REQUIRED_SECTIONS:
            if not self.raw.get(key):
                self.problems.append(f"{key}: required section is missing or empty")
        for key, model in _SECTION_MODELS.items():
            self._validate_one(key, model, self.raw.get(key, {}))
        self._validate_named("buses", None)
        for key, model in _NAMED_MODELS.items():
            self._validate_named(key, model)
        self._check_references()
        self._check_unique_addresses()
        self._check_groups()
        self._check_watchdog()
        if self._tree_sound():
            self._check_failsafe()

    def _tree_sound(self) -> bool:
        """True when the failsafe check can run: every charger and group usable, refs resolve."""
        groups = self.valid.get("groups", {})
        chargers = self.valid.get("chargers", {})
        raw_groups = dict(self._raw_entries("groups"))
        raw_chargers = dict(self._raw_entries("chargers"))
        if not groups or len(groups) != len(raw_groups) or len(chargers) != len(raw_chargers):
            return False
        if "dlm" not in self.valid:
            return False
        if any(g.parent is not None and g.parent not in groups for g in groups.values()):
            return False
        return all(c.group in groups for c in chargers.values())

    def _validate_one(self, path: str, model: type[BaseModel], value: object) -> Any:
        if not isinstance(value, Mapping):
            self.problems.append(f"{path}: {_fmt_value(value)} is not a table")
            return None
        try:
            obj = model.model_validate(value)
        except ValidationError as exc:
            self.problems.extend(_pydantic_problems(path, model, exc))
            # Drop the bad keys and try again: what remains still takes part in the
            # cross-checks (groups, addresses, failsafe), so every problem shows at once.
            bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
            try:
                obj = model.model_validate({k: v for k, v in value.items() if k not in bad})
            except ValidationError:
                return None
            self.partial = True
        self.valid[path] = obj
        return obj

    def _validate_named(self, section: str, model: type[BaseModel] | None) -> None:
        entries = self.raw.get(section, {})
        if not isinstance(entries, Mapping):
            self.problems.append(f"{section}: {_fmt_value(entries)} is not a table of names")
            return
        out = {}
        for name, value in entries.items():
            path = f"{section}.{name}"
            if not name.replace("-", "").replace("_", "").isalnum():
                self.problems.append(f"{path}: name {name!r} is not allowed; use {_NAME_PATTERN}")
            entry_model = model
            if section == "buses":
                kind = value.get("kind") if isinstance(value, Mapping) else None
                entry_model = _BUS_MODELS.get(kind)  # type: ignore[arg-type]
                if entry_model is None:
                    self.problems.append(
                        f"{path}.kind: {kind!r} is not a bus kind; allowed: 'serial', 'tcp'"
                    )
                    continue
            if section in ("meters", "chargers") and isinstance(value, Mapping):
                self._check_model(path, section, value.get("model", "teltocharge-evc2"))
            obj = self._validate_one(path, entry_model, value)  # type: ignore[arg-type]
            if obj is not None:
                out[name] = obj
        self.valid[section] = out

    def _check_model(self, path: str, section: str, model: object) -> None:
        want = "meter" if section == "meters" else "charger"
        fitting = sorted(m for m, k in self.catalogue.items() if k == want)
        if model not in self.catalogue:
            self.problems.append(
                f"{path}.model: {model!r} is not a known model; allowed: {', '.join(fitting)}"
            )
        elif self.catalogue[model].startswith("broken: "):  # type: ignore[index]
            self.problems.append(
                f"{path}.model: the register map of {model!r} cannot be loaded "
                f"({self.catalogue[model].removeprefix('broken: ')})"  # type: ignore[index]
            )
        elif self.catalogue[model] != want:  # type: ignore[index]
            self.problems.append(
                f"{path}.model: {model!r} is a {self.catalogue[model]} map, not a {want}; "  # type: ignore[index]
                f"allowed: {', '.join(fitting)}"
            )

    def _raw_entries(self, section: str) -> Iterable[tuple[str, Mapping[str, Any]]]:
        entries = self.raw.get(section, {})
        if isinstance(entries, Mapping):
            for name, value in entries.items():
                if isinstance(value, Mapping):
                    yield name, value

    def _check_references(self) -> None:
        buses = (
            set(self.raw.get("buses", {}) or {})
            if isinstance(self.raw.get("buses"), Mapping)
            else set()
        )
        groups = (
            set(self.raw.get("groups", {}) or {})
            if isinstance(self.raw.get("groups"), Mapping)
            else set()
        )
        for section in ("meters", "chargers"):
            for name, entry in self._raw_entries(section):
                bus = entry.get("bus")
                if isinstance(bus, str) and bus not in buses:
                    self.problems.append(
                        f"{section}.{name}.bus: {bus!r} is not a bus; allowed: "
                        f"{', '.join(sorted(buses)) or '(no buses defined)'}"
                    )
                group = entry.get("group")
                if isinstance(group, str) and group not in groups:
                    self.problems.append(
                        f"{section}.{name}.group: {group!r} is not a group; allowed: "
                        f"{', '.join(sorted(groups)) or '(no groups defined)'}"
                    )
                if section == "chargers" and "group" not in entry:
                    pass  # reported by pydantic as a missing required key
        for name, entry in self._raw_entries("groups"):
            parent = entry.get("parent")
            if isinstance(parent, str) and parent not in groups:
                self.problems.append(
                    f"groups.{name}.parent: {parent!r} is not a group; allowed: "
                    f"{', '.join(sorted(groups - {name}))}"
                )
        metered: dict[str, str] = {}
        for name, entry in self._raw_entries("meters"):
            group = entry.get("group")
            if isinstance(group, str):
                if group in metered:
                    self.problems.append(
                        f"meters.{name}.group: {group!r} is already metered by "
                        f"meters.{metered[group]}; allowed: one meter per group"
                    )
                metered[group] = name

    def _check_unique_addresses(self) -> None:
        seen: dict[tuple[str, int], str] = {}
        for section in ("meters", "chargers"):
            for name, entry in self._raw_entries(section):
                bus, unit = entry.get("bus"), entry.get("unit_id")
                if not isinstance(bus, str) or not isinstance(unit, int):
                    continue
                if (bus, unit) in seen:
                    self.problems.append(
                        f"{section}.{name}.unit_id: {unit} on bus {bus!r} is already used by "
                        f"{seen[(bus, unit)]}; allowed: one device per bus and unit id"
                    )
                else:
                    seen[(bus, unit)] = f"{section}.{name}"

    def _check_groups(self) -> None:
        groups: dict[str, GroupConfig] = self.valid.get("groups", {})
        for name, group in groups.items():
            for label, amps in (("limit", group.limit), ("operator_limit", group.operator_limit)):
                if amps is None:
                    continue
                low = [
                    f"{phase} {value:g} A"
                    for phase, value in zip(PHASES, amps, strict=True)
                    if value < MIN_CHARGING_CURRENT
                ]
                if low:
                    self.problems.append(
                        f"groups.{name}.{label}: {', '.join(low)} below the "
                        f"{MIN_CHARGING_CURRENT} A a charger needs; allowed: >= "
                        f"{MIN_CHARGING_CURRENT} A on every phase"
                    )
            if group.operator_limit is not None:
                for phase, op, fuse in zip(PHASES, group.operator_limit, group.limit, strict=True):
                    if op > fuse:
                        self.problems.append(
                            f"groups.{name}.operator_limit: {phase} {op} A is above the fuse "
                            f"limit {fuse} A; allowed: <= limit"
                        )
            seen = [name]
            parent = group.parent
            while parent is not None and parent in groups:
                if parent in seen:
                    self.problems.append(
                        f"groups.{name}.parent: the chain {' -> '.join([*seen, parent])} is a "
                        "loop; allowed: a tree with one main fuse"
                    )
                    break
                seen.append(parent)
                parent = groups[parent].parent
        roots = [n for n, g in groups.items() if g.parent is None]
        if groups and len(roots) != 1:
            self.problems.append(
                f"groups: {len(roots)} top-level fuses ({', '.join(sorted(roots)) or 'none'}); "
                "allowed: exactly one group without a parent (the main fuse)"
            )
        chargers: dict[str, ChargerConfig] = self.valid.get("chargers", {})
        for name, charger in chargers.items():
            if charger.min_current > charger.max_current:
                self.problems.append(
                    f"chargers.{name}.min_current: {charger.min_current} A is above max_current "
                    f"{charger.max_current} A; allowed: min_current <= max_current"
                )

    def _check_watchdog(self) -> None:
        dlm = self.valid.get("dlm")
        if dlm is None:
            return
        floor = WATCHDOG_MIN_CYCLES * dlm.cycle_seconds
        if dlm.watchdog_seconds < floor:
            self.problems.append(
                f"dlm.watchdog_seconds: {dlm.watchdog_seconds} s is shorter than "
                f"{WATCHDOG_MIN_CYCLES} cycles of {dlm.cycle_seconds} s; allowed: >= {floor:g} s"
            )
        if dlm.failsafe_policy == "fixed":
            for name, entry in self._raw_entries("chargers"):
                if entry.get("failsafe_current") is None:
                    self.problems.append(
                        f"chargers.{name}.failsafe_current: missing while dlm.failsafe_policy is "
                        "'fixed'; allowed: 0 or 6–32 A, or failsafe_policy = 'share'"
                    )

    def _check_failsafe(self) -> None:
        site = self.build()
        from ampgate.daemon.site import failsafe_problems

        self.problems.extend(failsafe_problems(site))

    def build(self) -> SiteConfig:
        """Return the SiteConfig assembled from the validated sections."""
        return SiteConfig.model_construct(
            site=self.valid.get("site", SiteInfo()),
            buses=self.valid.get("buses", {}),
            groups=self.valid.get("groups", {}),
            meters=self.valid.get("meters", {}),
            chargers=self.valid.get("chargers", {}),
            dlm=self.valid.get("dlm", DlmConfig()),
            metrics=self.valid.get("metrics", MetricsConfig()),
            log=self.valid.get("log", LogConfig()),
            source=self.raw.get("__source__", ""),
        )


def check_config_text(
    text: str, source: str = "<string>", catalogue: Mapping[str, str] | None = None
) -> tuple[SiteConfig | None, list[str]]:
    """Validate a site file's text; return ``(config, [])`` or ``(None, problems)``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [f"{source}: not valid TOML: {exc}"]
    return check_config_data(raw, source, catalogue)


def check_config_data(
    raw: Mapping[str, Any], source: str = "<data>", catalogue: Mapping[str, str] | None = None
) -> tuple[SiteConfig | None, list[str]]:
    """Validate a site file already parsed into tables (as :func:`check_config_text` does)."""
    checker = _Checker(dict(raw), catalogue if catalogue is not None else _model_catalogue())
    checker.run()
    if checker.problems:
        return None, checker.problems
    site = checker.build()
    return site.model_copy(update={"source": source}), []


def check_config(path: str | Path) -> tuple[SiteConfig | None, list[str]]:
    """Validate the site file at ``path``; return ``(config, [])`` or ``(None, problems)``.

    Every problem is one line naming the key path (``chargers.bay2.unit_id``), the bad value and
    what is allowed; all problems of the file are reported at once.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{path}: cannot read the file: {exc.strerror or exc}"]
    except UnicodeDecodeError as exc:
        return None, [f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}"]
    return check_config_text(text, str(path))


def load_config(path: str | Path) -> SiteConfig:
    """Return the validated site config at ``path``; raise ConfigError listing every problem."""
    site, problems = check_config(path)
    if site is None:
        raise ConfigError(
            f"{path}: {len(problems)} problem(s) in the site configuration: " + "; ".join(problems),
            problems,
        )
    return site
