"""The codec's value types: a loaded register map, a decoded reading, a planned read request.

`RegisterMap` wraps a validated `RegisterMapSpec` whose per-field defaults have been resolved at
load (every field carries its function code and, for multi-word fields, its word order), so the
decoder and the planner never look at the model defaults again.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Any

from ampgate.codec.schema import FieldSpec, Hole, IdentityCheck, ModelInfo, RegisterMapSpec
from ampgate.errors import MapError


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded field.

    ``raw`` is the number assembled from the words (word order, sign) before scale; ``value`` is
    the engineering value (numeric: raw × scale; enum: label or ``"unknown (N)"``; bits: frozenset
    of labels, undocumented ones as ``"unknown bit N"``; ``None`` when missing).
    """

    field: str
    raw: int | float | None
    value: int | float | str | frozenset[str] | None
    unit: str | None
    missing: bool = False
    unknown: bool = False


_new = object.__new__
_slots = Reading.__dict__  # the slot descriptors: a Reading is built without __init__
_set_field = _slots["field"].__set__
_set_raw = _slots["raw"].__set__
_set_value = _slots["value"].__set__
_set_unit = _slots["unit"].__set__
_set_missing = _slots["missing"].__set__
_set_unknown = _slots["unknown"].__set__


def new_reading(
    field: str,
    raw: int | float | None,
    value: int | float | str | frozenset[str] | None,
    unit: str | None,
    missing: bool = False,
    unknown: bool = False,
) -> Reading:
    """Build a `Reading` about 3× faster than its frozen ``__init__`` (the decoder's hot path).

    It fills every slot through the slot descriptors, so the result is the same frozen value.
    """
    reading = _new(Reading)
    _set_field(reading, field)
    _set_raw(reading, raw)
    _set_value(reading, value)
    _set_unit(reading, unit)
    _set_missing(reading, missing)
    _set_unknown(reading, unknown)
    return reading


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: ``count`` registers from ``address`` with ``function`` (3 or 4).

    ``fields`` names the map fields it covers, in address order.
    """

    function: int
    address: int
    count: int
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class RegisterMap:
    """A validated register map with per-field defaults resolved. Build it with `load_map_file`.

    Equality is identity: a map is loaded once and shared (compiled decoders are cached on it).
    """

    spec: RegisterMapSpec
    source: str
    """Path of the TOML file the map was loaded from."""
    _by_name: Mapping[str, FieldSpec] = dc_field(repr=False)
    _cache: dict[Any, Any] = dc_field(default_factory=dict, repr=False)
    """Compiled decoders and plans, keyed by request/field; owned by the decode module."""

    @classmethod
    def from_spec(cls, spec: RegisterMapSpec, source: str) -> RegisterMap:
        """Wrap a spec whose fields are already resolved and cross-checked (see `load`)."""
        by_name = MappingProxyType({f.name: f for f in spec.fields})
        return cls(spec=spec, source=source, _by_name=by_name)

    @property
    def id(self) -> str:
        """The model id (``teltocharge-evc2``)."""
        return self.spec.model.id

    @property
    def model(self) -> ModelInfo:
        """Who the map is for and how to talk to it."""
        return self.spec.model

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """Every field, in file order."""
        return self.spec.fields

    @property
    def identification(self) -> tuple[IdentityCheck, ...]:
        """Fields whose raw values identify the model."""
        return self.spec.identification

    @property
    def holes(self) -> tuple[Hole, ...]:
        """Registers a block read must not span."""
        return self.spec.holes

    @property
    def max_registers_per_request(self) -> int:
        """Most registers the device answers in one read."""
        return self.spec.model.max_registers_per_request

    def field(self, name: str) -> FieldSpec:
        """Return the field called ``name``; MapError naming the model and close matches if none."""
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(name), self._by_name, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise MapError(f"{self.id}: no field {name!r}{hint}") from None

    def has_field(self, name: str) -> bool:
        """True when the map has a field called ``name``."""
        return name in self._by_name

    def function_of(self, field: FieldSpec | str) -> int:
        """Function code used to read the field (resolved at load)."""
        spec = self.field(field) if isinstance(field, str) else field
        return spec.function if spec.function is not None else self.model.default_function

    def word_order_of(self, field: FieldSpec | str) -> str:
        """Word order of the field (``ABCD`` or ``CDAB``; resolved at load)."""
        spec = self.field(field) if isinstance(field, str) else field
        return spec.word_order

    def enum_of(self, field: FieldSpec | str) -> dict[int, str] | None:
        """The enum table of the field (raw value → label), or None."""
        spec = self.field(field) if isinstance(field, str) else field
        return self.spec.enums[spec.enum] if spec.enum is not None else None

    def bits_of(self, field: FieldSpec | str) -> dict[int, str] | None:
        """The bit table of the field (bit number → label), or None."""
        spec = self.field(field) if isinstance(field, str) else field
        return self.spec.bits[spec.bits] if spec.bits is not None else None
