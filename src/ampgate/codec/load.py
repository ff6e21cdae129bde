"""Load register maps: TOML → pydantic schema → cross-field rules → frozen `RegisterMap`.

Every rejection is a `MapError` naming the file, the field and the problem in plain words;
pydantic's messages are translated, never shown raw.
"""

from __future__ import annotations

import re
import threading
import tomllib
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ampgate.codec import schema
from ampgate.codec.model import RegisterMap
from ampgate.codec.rules import check_map
from ampgate.codec.schema import TYPE_WORDS, RegisterMapSpec
from ampgate.errors import MapError

MAPS_PACKAGE = "ampgate.register_maps"
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_cache: dict[str, RegisterMap] = {}
_cache_lock = threading.Lock()

_LITERALS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "type": ("type", get_args(schema.FieldType)),
    "word_order": ("word order", get_args(schema.WordOrder)),
    "function": ("function code", get_args(schema.FunctionCode)),
    "default_function": ("function code", get_args(schema.FunctionCode)),
    "access": ("access", get_args(schema.Access)),
}


def load_map_file(path: str | PathLike[str]) -> RegisterMap:
    """Load, validate and resolve one TOML map file; MapError naming file, field and problem."""
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MapError(f"cannot read the map file ({exc.strerror or exc})", file=name) from None
    except UnicodeDecodeError as exc:
        raise MapError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=name) from None
    return parse_map(text, name=name, source=str(path))


def parse_map(text: str, *, name: str, source: str | None = None) -> RegisterMap:
    """Validate map TOML given as text; ``name`` is used in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MapError(f"not valid TOML: {exc}", file=name) from None
    return map_from_dict(data, name=name, source=source)


def map_from_dict(data: dict[str, Any], *, name: str, source: str | None = None) -> RegisterMap:
    """Validate a map given as parsed TOML data (tests build maps this way)."""
    try:
        spec = RegisterMapSpec.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, data, name) from None
    spec = _resolve_defaults(spec)
    problems = check_map(spec)
    if problems:
        field, problem = problems[0]
        if len(problems) > 1:
            problem += f" (and {len(problems) - 1} more problem{'s' * (len(problems) > 2)})"
        raise MapError(problem, file=name, field=field)
    return RegisterMap.from_spec(spec, source or name)


def list_models() -> list[str]:
    """Ids of the maps shipped in ``ampgate.register_maps``, sorted."""
    root = resources.files(MAPS_PACKAGE)
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in root.iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    )


def load_map(model_id: str) -> RegisterMap:
    """Load a shipped map by model id (cached); MapError if unknown or invalid."""
    cached = _cache.get(model_id)
    if cached is not None:
        return cached
    if not isinstance(model_id, str) or not _MODEL_ID.match(model_id):
        raise MapError(f"{model_id!r} is not a model id (allowed: {', '.join(list_models())})")
    entry = resources.files(MAPS_PACKAGE) / f"{model_id}.toml"
    if not entry.is_file():
        raise MapError(f"unknown model {model_id!r} (allowed: {', '.join(list_models())})")
    with resources.as_file(entry) as path:
        rmap = load_map_file(path)
    if rmap.id != model_id:
        raise MapError(
            f"model.id {rmap.id!r} does not match the file name (expected {model_id!r})",
            file=f"{model_id}.toml",
        )
    with _cache_lock:
        return _cache.setdefault(model_id, rmap)


def _resolve_defaults(spec: RegisterMapSpec) -> RegisterMapSpec:
    """Fill each field's function code and (multi-word) word order from the model defaults."""
    model = spec.model
    resolved = []
    for f in spec.fields:
        update: dict[str, Any] = {}
        if f.function is None:
            update["function"] = model.default_function
        if TYPE_WORDS.get(f.type, 1) > 1 and "word_order" not in f.model_fields_set:
            update["word_order"] = model.word_order
        resolved.append(f.model_copy(update=update) if update else f)
    return spec.model_copy(update={"fields": tuple(resolved)})


def _translate(exc: ValidationError, data: dict[str, Any], name: str) -> MapError:
    """Turn the first pydantic error into a MapError in plain words."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    field_name, subject = _locate(tuple(err["loc"]), data)
    problem = _describe(err, subject, in_field=field_name is not None)
    if err["type"] == "extra_forbidden" and (model := _model_at(tuple(err["loc"]))) is not None:
        problem = problem.removesuffix(")") + f"; allowed: {', '.join(model.model_fields)})"
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})"
    return MapError(problem, file=name, field=field_name)


def _locate(loc: tuple[Any, ...], data: dict[str, Any]) -> tuple[str | None, str]:
    """Return (field name or None, dotted key inside the field or file) for a pydantic loc."""
    field_name = None
    if len(loc) >= 2 and loc[0] == "fields" and isinstance(loc[1], int):
        fields = data.get("fields")
        raw = fields[loc[1]] if isinstance(fields, list) and loc[1] < len(fields) else None
        label = raw.get("name") if isinstance(raw, dict) else None
        field_name = label if isinstance(label, str) else f"#{loc[1] + 1}"
        loc = loc[2:]
    parts: list[str] = []
    for p in loc:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    return field_name, "".join(parts)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema model holding the last key of ``loc`` (for the keys it allows), or None."""
    model: type[BaseModel] = RegisterMapSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        inner = None if info is None else _base_model(info.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _base_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``tuple[FieldSpec, ...]`` -> FieldSpec)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (model := _base_model(arg)) is not None:
            return model
    return None


_PATTERNS = {
    "name": "a lower-case letter, then lower-case letters, digits and '_'",
    "id": "lower-case letters, digits and '-', not starting with '-'",
}


def _describe(err: ErrorDetails, subject: str, *, in_field: bool) -> str:
    """Plain-words text for one pydantic error about ``subject`` (a dotted key)."""
    kind = err["type"]
    key = subject.rsplit(".", 1)[-1]
    given = err.get("input")
    ctx = err.get("ctx") or {}
    prefix = f"{subject}: " if subject else ""
    if kind == "literal_error" and key in _LITERALS:
        label, allowed = _LITERALS[key]
        text = f"unknown {label} {given!r} (allowed: {', '.join(str(a) for a in allowed)})"
        return text if in_field else prefix + text
    if kind == "literal_error":
        return f"{prefix}{given!r} is not allowed (allowed: {ctx.get('expected', '?')})"
    if kind == "missing":
        return f"missing required key {subject!r}"
    if kind == "extra_forbidden":
        return f"unknown key {subject!r} (check the spelling)"
    if kind == "string_pattern_mismatch":
        pattern = _PATTERNS.get(key, f"text matching {ctx.get('pattern')}")
        return f"{subject} {given!r} is not allowed (allowed: {pattern})"
    if kind in _BOUNDS:
        word, ctx_key = _BOUNDS[kind]
        return f"{subject} {given!r} is out of range (allowed: {word} {ctx.get(ctx_key)})"
    if kind == "value_error":
        return f"{prefix}{ctx.get('error', err['msg'])}"
    expected = next((text for start, text in _EXPECTED if kind.startswith(start)), None)
    takes = f"; allowed: {expected}" if expected else ""
    return f"{prefix}{err['msg'][:1].lower()}{err['msg'][1:]} (got {given!r}{takes})"


_EXPECTED = (
    ("int", "a whole number"),
    ("float", "a number"),
    ("finite", "a finite number"),
    ("str", "text"),
    ("bool", "true or false"),
    ("dict", "a table"),
    ("tuple", "an array"),
    ("list", "an array"),
    ("too_", "an array of the right length"),
)
"""What a pydantic error type (by its start) says the key takes."""


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "less_than_equal": ("at most", "le"),
    "greater_than": ("more than", "gt"),
    "less_than": ("less than", "lt"),
}
