"""A tiny TOML writer for the fuzz tests: parsed TOML data back to text that `tomllib` reads.

Everything is written as ``key = value`` with inline tables and arrays, which TOML allows at any
depth; strings are written as basic strings with every character TOML forbids escaped.
"""

from __future__ import annotations

import json
import math
from typing import Any

INT64 = (-(2**63), 2**63 - 1)
"""The integers TOML promises; `tomllib` reads any size."""


def _string(text: str) -> str:
    # json escapes quotes, backslashes and U+0000–U+001F; TOML also forbids a raw DEL
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def value_text(value: Any) -> str:
    """One TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # tomllib reads integers beyond 64 bits (the maps' u64 sentinels)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_string(str(k))} = {value_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"{value!r} has no TOML form")


def toml_text(data: dict[str, Any]) -> str:
    """A whole document: one ``key = value`` line per top-level key."""
    return "".join(f"{_string(str(k))} = {value_text(v)}\n" for k, v in data.items())
