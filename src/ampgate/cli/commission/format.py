"""Text and JSON shapes of the commissioning commands: map listings, map tables, readings.

Pure functions from codec values to strings / JSON-ready dicts; no I/O, so the formats are tested
without a device. Missing values print as ``—``; enums and bits print by label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ampgate.codec import FieldSpec, Reading, RegisterMap
from ampgate.codec.encode import describe_allowed

MISSING = "—"
"""What a missing value (sentinel, absent field) prints as."""


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, a dashed rule under the headers."""
    rows = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def format_number(value: int | float) -> str:
    """A number as a person writes it: ``16`` not ``16.0``, at most 3 decimals from 1 upwards."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        if abs(value) >= 1:
            return f"{value:.3f}".rstrip("0").rstrip(".")
        return f"{value:.6g}"
    return str(value)


def serial_summary(rmap: RegisterMap) -> str:
    """Default serial settings as installers write them: ``9600 8N1, unit 1``."""
    s = rmap.spec.serial
    return f"{s.baudrate} {s.bytesize}{s.parity}{s.stopbits}, unit {s.unit_id}"


# ------------------------------------------------------------------------------ maps


def models_rows(maps: Sequence[RegisterMap]) -> list[list[str]]:
    """One row per model: id, vendor, name, kind, phases, default serial settings."""
    return [
        [
            m.id,
            m.model.vendor,
            m.model.name,
            m.model.kind,
            str(m.model.phases),
            serial_summary(m),
        ]
        for m in maps
    ]


MODELS_HEADERS = ("id", "vendor", "name", "kind", "phases", "serial defaults")


def models_json(maps: Sequence[RegisterMap]) -> list[dict[str, Any]]:
    """The model listing for scripts: model info plus default serial settings."""
    return [
        {
            "id": m.id,
            "vendor": m.model.vendor,
            "name": m.model.name,
            "kind": m.model.kind,
            "phases": m.model.phases,
            "serial": m.spec.serial.model_dump(mode="json", exclude={"note"}),
            "identification": [
                {"field": c.field, "equals": list(c.equals)} for c in m.identification
            ],
        }
        for m in maps
    ]


def _address(f: FieldSpec) -> str:
    end = f.address + f.words - 1
    dec = str(f.address) if end == f.address else f"{f.address}-{end}"
    if f.address < 0x100:
        return dec
    hexa = f"0x{f.address:04X}" if end == f.address else f"0x{f.address:04X}-0x{end:04X}"
    return f"{dec} ({hexa})"


def _summary(rmap: RegisterMap, f: FieldSpec) -> str:
    parts: list[str] = []
    if f.writable and f.allowed:
        parts.append(f"allowed {describe_allowed(f)}")
    enum = rmap.enum_of(f)
    if enum is not None:
        parts.append(f"enum {f.enum}: {min(enum)}-{max(enum)} ({len(enum)} values)")
    bits = rmap.bits_of(f)
    if bits is not None:
        parts.append(f"bits {f.bits}: {len(bits)} named (0-{max(bits)})")
    if f.missing:
        parts.append("missing " + "/".join(f"0x{m:X}" for m in f.missing))
    if f.default is not None:
        parts.append(f"default {format_number(f.default)}")
    return "; ".join(parts)


MAP_HEADERS = (
    "address",
    "fc",
    "name",
    "access",
    "type",
    "order",
    "scale",
    "unit",
    "range / enum / bits",
    "verified",
)


def map_rows(rmap: RegisterMap) -> list[list[str]]:
    """One row per field of the map, in address order."""
    rows = []
    for f in sorted(rmap.fields, key=lambda f: (rmap.function_of(f), f.address)):
        rows.append(
            [
                _address(f),
                f"{rmap.function_of(f):02d}",
                f.name,
                f.access,
                f.type,
                rmap.word_order_of(f) if f.words > 1 else "",
                format_number(f.scale),
                "" if f.unit is None or f.unit == "1" else f.unit,
                _summary(rmap, f),
                "yes" if f.verified else "NO",
            ]
        )
    return rows


def map_text(rmap: RegisterMap) -> str:
    """The map as installers read it: a heading, the field table, unverified-field notes."""
    m = rmap.model
    head = [
        f"{m.vendor} {m.name} ({rmap.id}): {m.kind}, {m.phases} phase(s), "
        f"max {m.max_registers_per_request} registers per read",
        f"serial defaults: {serial_summary(rmap)}",
    ]
    if rmap.identification:
        checks = ", ".join(
            f"{c.field} == {' or '.join(map(str, c.equals))}" for c in rmap.identification
        )
        head.append(f"identification: {checks}")
    else:
        head.append("identification: none (scan reports this model only as 'probable')")
    for hole in rmap.holes:
        fc = f"FC{hole.function:02d} " if hole.function else ""
        head.append(f"hole: {fc}registers {hole.start}-{hole.end} (never read across)")
    text = "\n".join(head) + "\n\n" + render_table(MAP_HEADERS, map_rows(rmap))
    unverified = [f for f in rmap.fields if not f.verified]
    if unverified:
        text += "\n\nunverified:\n" + "\n".join(
            f"  {f.name}: {f.note or 'unconfirmed'}" for f in unverified
        )
    return text


def map_json(rmap: RegisterMap) -> dict[str, Any]:
    """The whole validated map for scripts (fields with resolved function and word order)."""
    data = rmap.spec.model_dump(mode="json")
    data["source"] = rmap.source
    return data


# ------------------------------------------------------------------------------ readings


def value_text(reading: Reading) -> str:
    """A decoded value for people: labels for enums, comma-joined bits, units, ``—`` if missing."""
    value = reading.value
    if reading.missing or value is None:
        return MISSING
    if isinstance(value, frozenset):
        return ", ".join(sorted(value)) if value else "(none)"
    if isinstance(value, str):
        return value
    unit = f" {reading.unit}" if reading.unit and reading.unit != "1" else ""
    return f"{format_number(value)}{unit}"


def readings_rows(rmap: RegisterMap, readings: Mapping[str, Reading]) -> list[list[str]]:
    """One row per reading: field, value with unit, raw number."""
    rows = []
    for name, reading in readings.items():
        raw = "" if reading.raw is None else format_number(reading.raw)
        rows.append([name, value_text(reading), raw])
    return rows


READINGS_HEADERS = ("field", "value", "raw")


def json_value(reading: Reading) -> int | float | str | list[str] | None:
    """A decoded value for scripts: numbers as numbers, bits as a sorted list, None if missing."""
    value = reading.value
    if reading.missing:
        return None
    if isinstance(value, frozenset):
        return sorted(value)
    return value


def readings_json(readings: Mapping[str, Reading]) -> dict[str, dict[str, Any]]:
    """Per field: value, raw, unit, missing, unknown."""
    return {
        name: {
            "value": json_value(r),
            "raw": r.raw,
            "unit": r.unit,
            "missing": r.missing,
            "unknown": r.unknown,
        }
        for name, r in readings.items()
    }
