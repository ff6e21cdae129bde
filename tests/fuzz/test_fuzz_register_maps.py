"""Random mutations of every shipped register map: accepted (and then any words decode) or
rejected with a MapError naming the file, the key and what is allowed. Never another exception.

Each mutation changes one thing of a real map (``register_maps/*.toml``) as parsed TOML: a value
of another type or out of range, a required key deleted, an unknown key added, an address or a
name duplicated, a bad enum or bit table, a bad word order, a scale of 0. The mutated data is
written back as TOML text and loaded with ``parse_map``, as a map file is.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampgate.codec import RegisterMap, decode_request, list_models, plan_reads
from ampgate.codec.load import parse_map
from ampgate.codec.schema import FieldSpec, Hole, IdentityCheck, ModelInfo, SerialDefaults
from ampgate.errors import MapError
from strategies import register

from .toml_text import INT64, toml_text

MODELS = list_models()
SECTION_MODELS = {"model": ModelInfo, "serial": SerialDefaults}
TABLE_LISTS = {"fields": FieldSpec, "holes": Hole, "identification": IdentityCheck}
REQUIRED_FIELD_KEYS = ("name", "address", "type")
REQUIRED_MODEL_KEYS = ("id", "name", "vendor", "kind")
#: A rejection says what is allowed when it has an "allowed"/"allows" clause, pydantic's
#: "should be" (the expected type), "required" (a key that must be present) or lists the
#: tables there are ("tables: a, b").
SAYS_ALLOWED = re.compile(r"allow|should be|required|tables: ")


def shipped(model_id: str) -> tuple[str, dict[str, Any]]:
    text = (resources.files("ampgate.register_maps") / f"{model_id}.toml").read_text("utf-8")
    return text, tomllib.loads(text)


@dataclass
class Mutation:
    """One change to a map and what a rejection of it must name."""

    what: str
    data: dict[str, Any] = field(repr=False)
    names: tuple[str, ...]
    """A rejection names the key when its message contains one of these: the mutated field's
    name (its repr ``'name'``, as MapError shows it, or ``'#N'`` for a field without a name) or
    the key path
    (``model.max_registers_per_request``, ``serial.unit_id``, ``identification``, the unknown
    key's own name)."""
    must_reject: bool


any_value = st.one_of(
    st.text(max_size=6),
    st.integers(*INT64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(-5, 70000), max_size=3),
    st.just({"x": 1}),
    st.just([[1, 2, 3]]),
)
out_of_range = {
    "address": st.sampled_from([-1, 65536, 2**40, -(2**63)]),
    "scale": st.sampled_from([0, 0.0, -0.0, float("inf"), float("nan")]),
    "function": st.sampled_from([0, 1, 2, 5, 6, 16, 255]),
    "missing": st.sampled_from([[1.5], ["x"], [[1]]]),
    "allowed": st.sampled_from([[[5, 1]], [[1, 2, 3]], [[0, float("inf")]], [[float("nan"), 1]]]),
    "max_registers_per_request": st.sampled_from([0, -1, 126, 2**31]),
    "unit_id": st.sampled_from([0, 248, -1]),
    "baudrate": st.sampled_from([-9600, 0, "fast"]),
    "phases": st.sampled_from([0, 2, 4]),
}
unknown_keys = st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True)


def field_label(fields: list[Any], index: int) -> str:
    raw = fields[index]
    name = raw.get("name") if isinstance(raw, dict) else None
    return repr(name) if isinstance(name, str) else repr(f"#{index + 1}")


@st.composite
def mutations(draw: st.DrawFn, model_id: str) -> Mutation:
    _, base = shipped(model_id)
    data = copy.deepcopy(base)
    fields: list[dict[str, Any]] = data["fields"]
    i = draw(st.integers(0, len(fields) - 1))
    f = fields[i]
    kind = draw(
        st.sampled_from(
            [
                "retype_field",
                "retype_section",
                "out_of_range_field",
                "out_of_range_section",
                "delete_field_key",
                "delete_model_key",
                "delete_top",
                "unknown_key",
                "duplicate_address",
                "duplicate_name",
                "hole_over_field",
                "bad_enum",
                "bad_word_order",
                "scale_zero",
                "bad_identification",
            ]
        )
    )
    if kind == "retype_field":
        key = draw(st.sampled_from(sorted(set(f) | {"address", "type", "scale", "unit"})))
        label = field_label(fields, i)
        f[key] = draw(any_value)
        if key == "name":
            label = field_label(fields, i)
        # a renamed field can leave the identification naming a field that is gone
        names = (field_label(fields, i), "identification") if key == "name" else (label,)
        return Mutation(f"fields[{i}].{key} = {f[key]!r}", data, names, False)
    if kind == "retype_section":
        section = draw(st.sampled_from(sorted(SECTION_MODELS)))
        table = data.setdefault(section, {})
        key = draw(st.sampled_from(sorted(SECTION_MODELS[section].model_fields)))
        table[key] = draw(any_value)
        return Mutation(f"{section}.{key} = {table[key]!r}", data, (f"{section}.{key}",), False)
    if kind == "out_of_range_field":
        key = draw(st.sampled_from(["address", "scale", "function", "missing", "allowed"]))
        f[key] = draw(out_of_range[key])
        integer_type = f.get("type", "u16")[0] in "ui"
        if key == "missing" and integer_type and f["type"] != "i64" and draw(st.booleans()):
            f[key] = [beyond_type(f["type"])]  # a sentinel the type cannot hold
        if key == "allowed":
            f["access"] = "RW"
            if integer_type and draw(st.booleans()):
                f[key] = [[-1e30, 1e30]]  # beyond what the type holds at any map's scale
        return Mutation(f"fields[{i}].{key} = {f[key]!r}", data, (field_label(fields, i),), True)
    if kind == "out_of_range_section":
        section, key = draw(
            st.sampled_from(
                [
                    ("model", "max_registers_per_request"),
                    ("model", "phases"),
                    ("serial", "unit_id"),
                    ("serial", "baudrate"),
                ]
            )
        )
        value = draw(out_of_range[key])
        data.setdefault(section, {})[key] = value
        return Mutation(f"{section}.{key} = {value!r}", data, (f"{section}.{key}",), True)
    if kind == "delete_field_key":
        key = draw(st.sampled_from(REQUIRED_FIELD_KEYS))
        label = field_label(fields, i) if key != "name" else f"'#{i + 1}'"
        del f[key]
        return Mutation(f"del fields[{i}].{key}", data, (label,), True)
    if kind == "delete_model_key":
        key = draw(st.sampled_from(REQUIRED_MODEL_KEYS))
        del data["model"][key]
        return Mutation(f"del model.{key}", data, (f"model.{key}",), True)
    if kind == "delete_top":
        key = draw(st.sampled_from(["model", "fields"]))
        del data[key]
        return Mutation(f"del {key}", data, (f"'{key}'",), True)
    if kind == "unknown_key":
        key = draw(unknown_keys)
        where = draw(st.sampled_from(["field", "model", "serial", "top", "hole", "identification"]))
        if where == "field":
            if key in FieldSpec.model_fields:
                key += "_x"
            f[key] = draw(any_value)
            names: tuple[str, ...] = (field_label(fields, i),)
        elif where in SECTION_MODELS:
            if key in SECTION_MODELS[where].model_fields:
                key += "_x"
            data.setdefault(where, {})[key] = draw(any_value)
            names = (f"{where}.{key}",)
        elif where == "top":
            if key in ("model", "serial", "holes", "identification", "fields", "enums", "bits"):
                key += "_x"
            data[key] = draw(any_value)
            names = (f"'{key}'",)
        else:
            table_key = "holes" if where == "hole" else "identification"
            tables = data.setdefault(table_key, [])
            if not tables:
                tables.append({"start": 65000, "end": 65000} if where == "hole" else {})
                if where != "hole":
                    tables[0].update(field=fields[i]["name"], equals=1)
            j = draw(st.integers(0, len(tables) - 1))
            if key in TABLE_LISTS[table_key].model_fields:
                key += "_x"
            tables[j][key] = draw(any_value)
            names = (f"{table_key}[{j}].{key}",)
        return Mutation(f"unknown key {key!r} in {where}", data, names, True)
    if kind in ("duplicate_address", "duplicate_name"):
        j = draw(st.integers(0, len(fields) - 1).filter(lambda j: j != i))
        other = fields[j]
        labels = (field_label(fields, i), field_label(fields, j))
        if kind == "duplicate_name":
            other["name"] = f["name"]
            return Mutation(f"fields[{j}].name = fields[{i}].name", data, labels, True)
        default_function = data["model"].get("default_function", 3)
        other["address"] = f["address"] + draw(st.integers(0, words_of(f) - 1))
        other["function"] = f.get("function", default_function)
        return Mutation(f"fields[{j}] overlaps fields[{i}]", data, labels, True)
    if kind == "hole_over_field":
        start = f["address"] + draw(st.integers(0, words_of(f) - 1))
        function = f.get("function", data["model"].get("default_function", 3))
        data.setdefault("holes", []).append({"function": function, "start": start, "end": start})
        return Mutation(f"hole at {start}", data, (field_label(fields, i),), True)
    if kind == "bad_enum":
        return bad_table(draw, data, i)
    if kind == "bad_word_order":
        value = draw(st.sampled_from(["BADC", "DCBA", "abcd", "", 1, True]))
        if draw(st.booleans()):
            f["word_order"] = value
            return Mutation(f"fields[{i}].word_order", data, (field_label(fields, i),), True)
        data["model"]["word_order"] = value
        return Mutation("model.word_order", data, ("model.word_order",), True)
    if kind == "scale_zero":
        f["scale"] = draw(st.sampled_from([0, 0.0, -0.0]))
        return Mutation(f"fields[{i}].scale = 0", data, (field_label(fields, i),), True)
    # bad_identification
    checks = data.setdefault("identification", [{"field": fields[i]["name"], "equals": 1}])
    j = draw(st.integers(0, len(checks) - 1))
    checks[j]["field"] = draw(st.sampled_from(["", "no_such_field", "evse_idd", "Voltage_L1"]))
    return Mutation(f"identification[{j}].field", data, ("identification",), True)


def beyond_type(type_: str) -> int:
    return {"i16": 40000, "i32": 2**31}.get(type_, -1)


def words_of(f: dict[str, Any]) -> int:
    return {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2}.get(f.get("type", "u16"), 4)


def bad_table(draw: st.DrawFn, data: dict[str, Any], i: int) -> Mutation:
    fields = data["fields"]
    tabled = [j for j, g in enumerate(fields) if "enum" in g or "bits" in g]
    j = draw(st.sampled_from(tabled)) if tabled else i
    g = fields[j]
    label = field_label(fields, j)
    kind = "bits" if "bits" in g else "enum"
    choice = draw(
        st.sampled_from(["unknown_table", "bad_key", "bad_label", "not_a_table", "float_type"])
    )
    if choice == "unknown_table" or kind not in g:
        g[kind] = "no_such_table"
        return Mutation(f"fields[{j}].{kind} unknown", data, (label,), True)
    tables_key = "bits" if kind == "bits" else "enums"
    table = data[tables_key][g[kind]]
    if choice == "bad_key":
        bad = draw(st.sampled_from(["x", "-1", "64", "1.5", "99999999999999999999"]))
        table[bad] = "bogus"
        # an enum may hold any integer key; bits only 0..width-1: "-1" and "64" are bad bits
        must = bad in ("x", "1.5") or kind == "bits"
        names = (label, f"{tables_key}.{g[kind]}")
        return Mutation(f"{tables_key}.{g[kind]}[{bad!r}]", data, names, must)
    if choice == "bad_label":
        key = next(iter(table), "0")
        table[key] = draw(st.sampled_from([1, 1.5, True, [1], {"a": 1}]))
        return Mutation(f"{tables_key}.{g[kind]}[{key}] label", data, (f"{tables_key}.",), True)
    if choice == "not_a_table":
        data[tables_key][g[kind]] = draw(st.sampled_from([1, "a", [1, 2]]))
        return Mutation(f"{tables_key}.{g[kind]} not a table", data, (f"{tables_key}.",), True)
    g["type"] = draw(st.sampled_from(["f32", "f64"]))
    return Mutation(f"fields[{j}] {kind} on a float", data, (label,), True)


def check_accepted(rmap: RegisterMap, data: st.DataObject) -> None:
    for request in plan_reads(rmap):
        words = data.draw(st.lists(register, min_size=request.count, max_size=request.count))
        readings = decode_request(rmap, request, words)
        assert list(readings) == list(request.fields)


def check_rejected(error: MapError, mutation: Mutation, name: str) -> None:
    message = str(error)
    assert "Traceback" not in message and "\n" not in message, message
    # names the file
    assert error.file == name and message.startswith(f"{name}: "), message
    # names the key: the mutated field's name or the mutated key path
    assert any(n in message for n in mutation.names), (mutation.what, mutation.names, message)
    # says what is allowed
    assert SAYS_ALLOWED.search(message), message


def test_the_shipped_maps_survive_the_round_trip_through_toml_text() -> None:
    for model_id in MODELS:
        _, data = shipped(model_id)
        assert tomllib.loads(toml_text(data)) == data
        assert parse_map(toml_text(data), name=f"{model_id}.toml").id == model_id


@pytest.mark.parametrize("model_id", MODELS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_map_is_accepted_or_rejected_naming_file_key_and_allowed(
    model_id: str, data: st.DataObject
) -> None:
    mutation = data.draw(mutations(model_id), label="mutation")
    name = f"{model_id}.toml"
    text = toml_text(mutation.data)
    try:
        rmap = parse_map(text, name=name, source=f"register_maps/{name}")
    except MapError as error:
        check_rejected(error, mutation, name)
        return
    assert not mutation.must_reject, f"{mutation.what} was accepted"
    assert rmap.source == f"register_maps/{name}"
    check_accepted(rmap, data)


@pytest.mark.parametrize("model_id", MODELS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_map_file_with_lines_dropped_or_repeated_never_raises_anything_else(
    model_id: str, data: st.DataObject
) -> None:
    text, _ = shipped(model_id)
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 3))):
        k = data.draw(st.integers(0, len(lines) - 1))
        if data.draw(st.booleans()):
            del lines[k]
        else:
            lines.insert(k, lines[k])
    name = f"{model_id}.toml"
    try:
        rmap = parse_map("".join(lines), name=name, source=name)
    except MapError as error:
        message = str(error)
        assert message.startswith(f"{name}: ") and "\n" not in message.strip(), message
        return
    check_accepted(rmap, data)
