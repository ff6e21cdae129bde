"""Random mutations of the example site files: the validator never raises; a rejected file gives
problems that each start with a key path and say what is allowed; an accepted one builds the
engine's site.

The sections come from the schema (``SiteConfig``'s fields) when the test runs, not from a list
here: sections added to the site file are fuzzed too.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ampgate.config import SiteConfig, check_config_text
from ampgate.config.to_engine import build_site

from .toml_text import INT64, toml_text

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))
NOT_SECTIONS = {"source", "deprecations"}


_REFERENCES = (
    ("chargers", "bus"),
    ("chargers", "group"),
    ("meters", "bus"),
    ("meters", "group"),
    ("groups", "parent"),
)
"""The keys of a site file that name another section's entry."""


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def sections() -> dict[str, tuple[bool, list[type[BaseModel]]]]:
    """Every section of the site file: name -> (a table of named entries?, its models)."""
    out = {}
    for name, info in SiteConfig.model_fields.items():
        if name in NOT_SECTIONS:
            continue
        named = "dict[" in str(info.annotation)
        out[name] = (named, _models(info.annotation))
    return out


SECTIONS = sections()
#: A problem starts with a key path: ``section``, ``section.key`` or ``section.name.key``
#: (``groups.main.limit.0`` for one phase of a limit; ``a.b and c.d:`` for two keys that clash).
KEY_PATH = re.compile(r"^([A-Za-z0-9_-]+)((\.[A-Za-z0-9_-]+)*)( and [A-Za-z0-9_.-]+)?: ")
#: ... and says what is allowed: an "allowed" clause, or "required" for a key or section that
#: must be there.
SAYS_ALLOWED = re.compile(r"allowed|required")

any_value = st.one_of(
    st.text(max_size=6),
    st.integers(*INT64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(-5, 300), max_size=4),
    st.just({"x": 1}),
)
bad_numbers = st.sampled_from(
    [-1, 0, -0.5, 1e9, -1e9, 2**40, 65536, 248, float("nan"), float("inf"), 0.0001]
)
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@dataclass
class Mutation:
    what: str
    data: dict[str, Any] = field(repr=False)
    prefixes: tuple[str, ...] = ()
    """A rejection of a mutation that must be rejected has a problem starting with one of
    these key paths (the section, entry or key that was changed)."""
    must_reject: bool = False
    new_sections: tuple[str, ...] = ()
    """Unknown sections the mutation added (a problem may start with their names)."""


def leaves(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """Paths of every value in the known sections: (section, key) or (section, name, key)."""
    out: list[tuple[str, ...]] = []
    for section, (named, _) in SECTIONS.items():
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        if named:
            for name, entry in table.items():
                out += [(section, name, key) for key in entry]
        else:
            out += [(section, key) for key in table]
    return out


def tables(data: dict[str, Any]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for section, (named, _) in SECTIONS.items():
        table = data.get(section)
        if isinstance(table, dict):
            out += [(section, name) for name in table] if named else [(section,)]
    return out


def at(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for part in path:
        data = data[part]
    return data


def required(path: tuple[str, ...], data: dict[str, Any]) -> bool:
    """True when the key at ``path`` is required by its section's model."""
    _named, models = SECTIONS[path[0]]
    key = path[-1]
    if path[0] == "buses":
        kind = at(data, path[:-1]).get("kind")
        models = [m for m in models if kind in str(m.model_fields["kind"].annotation)]
    return any(key in m.model_fields and m.model_fields[key].is_required() for m in models)


@st.composite
def mutations(draw: st.DrawFn, base: dict[str, Any]) -> Mutation:
    data = copy.deepcopy(base)
    kind = draw(
        st.sampled_from(
            [
                "retype",
                "out_of_range",
                "unknown_key",
                "unknown_section",
                "delete_key",
                "delete_section",
                "bad_reference",
                "duplicate_unit",
                "add_section",
            ]
        )
    )
    if kind in ("retype", "out_of_range", "delete_key") and leaves(data):
        path = draw(st.sampled_from(leaves(data)))
        where = ".".join(path)
        if kind == "delete_key":
            must = required(path, data)
            del at(data, path[:-1])[path[-1]]
            return Mutation(f"del {where}", data, (where, ".".join(path[:-1])), must)
        value = draw(any_value if kind == "retype" else bad_numbers)
        at(data, path[:-1])[path[-1]] = value
        return Mutation(f"{where} = {value!r}", data, (where,))
    if kind == "unknown_key" and tables(data):
        path = draw(st.sampled_from(tables(data)))
        table = at(data, path)
        key = draw(names.filter(lambda k: k not in table))
        # a key no model of the section has (entries of [buses] have either bus kind's keys)
        if any(key in m.model_fields for m in SECTIONS[path[0]][1]):
            key += "_unknown"
        table[key] = draw(any_value)
        where = ".".join((*path, key))
        return Mutation(f"{where} added", data, (where,), True)
    if kind == "unknown_section":
        section = draw(names.filter(lambda k: k not in SECTIONS and k != "metrics"))
        data[section] = draw(st.one_of(any_value, st.just({"a": 1})))
        return Mutation(f"[{section}] added", data, (section,), True, (section,))
    if kind == "delete_section" and any(s in SECTIONS for s in data):
        section = draw(st.sampled_from(sorted(s for s in data if s in SECTIONS)))
        del data[section]
        must = section in ("buses", "groups", "chargers")
        return Mutation(f"del [{section}]", data, (section,), must)
    if kind == "bad_reference":
        choices = [
            (section, name, key) for section, key in _REFERENCES for name in data.get(section, {})
        ]
        if not choices:
            return Mutation("nothing to refer from", data)
        path = draw(st.sampled_from(choices))
        at(data, path[:-1])[path[-1]] = draw(st.sampled_from(["nosuch", "Main", "main-"]))
        where = ".".join(path)
        return Mutation(f"{where} refers to nothing", data, (where,), True)
    if kind == "duplicate_unit":
        devices = [
            (section, name)
            for section in ("meters", "chargers")
            for name, entry in data.get(section, {}).items()
            if isinstance(entry, dict) and {"bus", "unit_id"} <= set(entry)
        ]
        if len(devices) < 2:
            return Mutation("fewer than two devices", data)
        first, second = draw(
            st.lists(st.sampled_from(devices), min_size=2, max_size=2, unique=True)
        )
        a, b = at(data, first), at(data, second)
        b["bus"], b["unit_id"] = a["bus"], a["unit_id"]
        prefixes = (".".join((*first, "unit_id")), ".".join((*second, "unit_id")))
        return Mutation(f"{second} has the unit id of {first}", data, prefixes, True)
    # add_section: one the file does not have, with keys of its model set to anything
    if kind != "add_section":
        return Mutation(f"{kind}: nothing to change", data)
    absent = sorted(s for s in SECTIONS if s not in data)
    if not absent:
        return Mutation("nothing", data)
    section = draw(st.sampled_from(absent))
    named, models = SECTIONS[section]
    model = draw(st.sampled_from(models))
    keys = draw(st.lists(st.sampled_from(sorted(model.model_fields)), max_size=4, unique=True))
    table = {key: draw(any_value) for key in keys}
    data[section] = {"x": table} if named else table
    return Mutation(f"[{section}] = {table!r}", data, (section,))


def check(mutation: Mutation, source: str) -> None:
    config, problems = check_config_text(toml_text(mutation.data), source)
    if config is None:
        assert problems, mutation.what
        known = {*SECTIONS, "metrics", *mutation.new_sections}
        for problem in problems:
            match = KEY_PATH.match(problem)
            assert match and match.group(1) in known, (mutation.what, problem)
            assert SAYS_ALLOWED.search(problem), (mutation.what, problem)
        if mutation.must_reject:
            assert any(p.startswith(mutation.prefixes) for p in problems), (
                mutation.what,
                mutation.prefixes,
                problems,
            )
        return
    assert problems == []
    assert not mutation.must_reject, f"{mutation.what} was accepted"
    assert config.source == source
    site = build_site(config)
    assert {c.id for c in site.chargers} == set(config.chargers)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_valid_and_survives_the_round_trip_through_toml_text(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert tomllib.loads(toml_text(data)) == data
    config, problems = check_config_text(toml_text(data), str(path))
    assert config is not None, problems
    build_site(config)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_site_file_is_refused_key_by_key_or_builds_the_engine_site(
    path: Path, data: st.DataObject
) -> None:
    base = tomllib.loads(path.read_text(encoding="utf-8"))
    mutation = data.draw(mutations(base), label="mutation")
    check(mutation, str(path))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_several_mutations_at_once_never_raise(path: Path, data: st.DataObject) -> None:
    mutation = Mutation("original", tomllib.loads(path.read_text(encoding="utf-8")))
    what: list[str] = []
    added: list[str] = []
    for _ in range(data.draw(st.integers(2, 4))):
        mutation = data.draw(mutations(mutation.data))
        what.append(mutation.what)
        added += mutation.new_sections
    mutation.what = "; ".join(what)
    mutation.must_reject = False  # a later change may undo an earlier one
    mutation.new_sections = tuple(added)
    check(mutation, str(path))
