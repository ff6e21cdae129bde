"""One validator for the site file: every problem reported at once, each naming its key path,
the bad value and what is allowed.

:func:`check_config` returns the validated :class:`~ampgate.config.schema.SiteConfig` or the list
of every problem; :func:`load_config` raises :class:`~ampgate.errors.ConfigError` carrying that
list. Besides each section's own model (:mod:`ampgate.config.schema`) it checks what spans
sections: references between entries, unique bus addresses, the fuse tree, the watchdog against
the cycle, and that the failsafe plan plus the fallback load fits every fuse
(:func:`ampgate.config.to_engine.failsafe_problems`).

Longer than 400 lines on purpose: every cross-section rule of the site file is here, the one
validator, so an installer's problem list has one author and one wording.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ampgate.config.control_rules import control_input_problems
from ampgate.config.mqtt_rules import mqtt_problems
from ampgate.config.schema import (
    DEPRECATED_METRICS_KEYS,
    MIN_CHARGING_CURRENT,
    PHASES,
    WATCHDOG_MIN_CYCLES,
    ChargerConfig,
    DlmConfig,
    EmsConfig,
    GroupConfig,
    HttpConfig,
    LogConfig,
    MeterConfig,
    MqttConfig,
    SerialBusConfig,
    SiteConfig,
    SiteInfo,
    TcpBusConfig,
)
from ampgate.config.to_engine import failsafe_problems
from ampgate.errors import ConfigError

_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "site": SiteInfo,
    "dlm": DlmConfig,
    "http": HttpConfig,
    "log": LogConfig,
}
_OPTIONAL_SECTION_MODELS: dict[str, type[BaseModel]] = {"ems": EmsConfig, "mqtt": MqttConfig}
"""Sections that switch a feature on by being present (absent = off, not defaults)."""
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
            problems.append(f"{path}: {value} is not allowed; allowed: {_expected(err['msg'])}")
    return problems


def _expected(message: str) -> str:
    """What pydantic's message says a value should be: "Input should be a valid integer" ->
    "a valid integer", "String should have at least 1 character" -> "a string with at least
    1 character"."""
    subject, sep, rest = message.partition(" should ")
    if not sep:
        return message[:1].lower() + message[1:]
    if subject == "Input":
        return rest.removeprefix("be ")
    return f"a {subject.lower()} with {rest.removeprefix('have ')}"


def _model_catalogue() -> dict[str, str]:
    """Return ``{model_id: kind}`` for every shipped register map.

    A map that fails to load gets the kind ``"broken: <problem>"``, so a site using it is told
    why instead of the whole check failing.
    """
    from ampgate.codec import list_models, load_map
    from ampgate.errors import MapError

    catalogue: dict[str, str] = {}
    for model in list_models():
        try:
            catalogue[model] = load_map(model).model.kind
        except MapError as exc:
            catalogue[model] = f"broken: {exc}"
    return catalogue


class _Checker:
    """Collects every problem of a raw TOML document; builds the SiteConfig when there is none."""

    def __init__(self, raw: dict[str, Any], catalogue: Mapping[str, str], source: str = "") -> None:
        self.source = source
        """The site file's path: relative file names in it are taken from its folder."""
        self.raw = raw
        self.catalogue = catalogue
        self.problems: list[str] = []
        self.valid: dict[str, Any] = {}
        self.partial = False
        """True when some entry only validated after dropping its bad keys."""
        self.deprecations: list[str] = []

    def run(self) -> None:
        known = set(_SECTION_MODELS) | set(_OPTIONAL_SECTION_MODELS) | set(_NAMED_MODELS)
        known.add("buses")
        self._read_deprecated_metrics()
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
        for key, model in _OPTIONAL_SECTION_MODELS.items():
            if key in self.raw:
                self._validate_one(key, model, self.raw[key])
        self._validate_named("buses", None)
        for key, model in _NAMED_MODELS.items():
            self._validate_named(key, model)
        self._check_references()
        self._check_unique_addresses()
        self._check_groups()
        self._check_watchdog()
        self.problems.extend(control_input_problems(self.valid))
        self.problems.extend(mqtt_problems(self.valid, self.source))
        if self._tree_sound():
            self._check_failsafe()

    def _read_deprecated_metrics(self) -> None:
        """Read the old ``[metrics]`` section's keys as the same keys of ``[http]``.

        Each one used is a deprecation; one given in both sections, or a key ``[metrics]``
        never had, is a problem naming the keys.
        """
        if "metrics" not in self.raw:
            return
        legacy = self.raw.pop("metrics")
        http = self.raw.get("http", {})
        if not isinstance(legacy, Mapping) or not isinstance(http, Mapping):
            if not isinstance(legacy, Mapping):
                self.problems.append(f"metrics: {_fmt_value(legacy)} is not a table")
            return
        merged = dict(http)
        for key, value in legacy.items():
            if key not in DEPRECATED_METRICS_KEYS:
                self.problems.append(
                    f"metrics.{key}: unknown key; [metrics] is deprecated, its keys "
                    f"({', '.join(DEPRECATED_METRICS_KEYS)}) now live in [http]"
                )
            elif key in http:
                self.problems.append(
                    f"metrics.{key} and http.{key}: both are set; allowed: only http.{key} "
                    f"(metrics.{key} is its deprecated name)"
                )
            else:
                try:
                    HttpConfig.model_validate({key: value})
                except ValidationError as exc:
                    self.problems.extend(_pydantic_problems("metrics", HttpConfig, exc))
                    continue
                merged[key] = value
                self.deprecations.append(
                    f"metrics.{key} is deprecated; write it as http.{key} (same meaning)"
                )
        self.raw["http"] = merged

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
            if entry_model is None:  # buses: the model follows the entry's kind
                kind = value.get("kind") if isinstance(value, Mapping) else None
                entry_model = _BUS_MODELS.get(kind) if isinstance(kind, str) else None
                if entry_model is None:
                    self.problems.append(
                        f"{path}.kind: {kind!r} is not a bus kind; allowed: 'serial', 'tcp'"
                    )
                    continue
            if section in ("meters", "chargers") and isinstance(value, Mapping):
                self._check_model(path, section, value.get("model", "teltocharge-evc2"))
            obj = self._validate_one(path, entry_model, value)
            if obj is not None:
                out[name] = obj
        self.valid[section] = out

    def _check_model(self, path: str, section: str, model: object) -> None:
        want = "meter" if section == "meters" else "charger"
        fitting = sorted(m for m, k in self.catalogue.items() if k == want)
        kind = self.catalogue.get(model) if isinstance(model, str) else None
        if kind is None:
            self.problems.append(
                f"{path}.model: {model!r} is not a known model; allowed: {', '.join(fitting)}"
            )
        elif kind.startswith("broken: "):
            self.problems.append(
                f"{path}.model: the register map of {model!r} cannot be loaded "
                f"({kind.removeprefix('broken: ')})"
            )
        elif kind != want:
            self.problems.append(
                f"{path}.model: {model!r} is a {kind} map, not a {want}; "
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
        try:
            self.problems.extend(failsafe_problems(self.build()))
        except ConfigError:
            # the engine refuses the site: a problem named above already, in other words;
            # with none above it would be a gap in this validator, so it is said
            if not self.problems:
                raise

    def build(self) -> SiteConfig:
        """Return the SiteConfig assembled from the validated sections."""
        return SiteConfig.model_construct(
            site=self.valid.get("site", SiteInfo()),
            buses=self.valid.get("buses", {}),
            groups=self.valid.get("groups", {}),
            meters=self.valid.get("meters", {}),
            chargers=self.valid.get("chargers", {}),
            dlm=self.valid.get("dlm", DlmConfig()),
            http=self.valid.get("http", HttpConfig()),
            log=self.valid.get("log", LogConfig()),
            source=self.raw.get("__source__", ""),
            deprecations=tuple(self.deprecations),
            **{k: self.valid[k] for k in _OPTIONAL_SECTION_MODELS if k in self.valid},
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
    checker = _Checker(
        dict(raw), catalogue if catalogue is not None else _model_catalogue(), source
    )
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
