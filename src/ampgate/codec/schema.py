"""The register map schema: what a TOML file in ``register_maps/`` may say, validated with pydantic.

A map describes one device model: its fields (address, function code, type, word order, scale,
unit, enum or bit names, sentinels, writable range), the holes a block read must not span, the
maximum registers per request, how to identify the model, and default serial settings.

Maps are data. Every rule a map must keep is checked here, at load, so the decoder and the block
planner can trust what they are given.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FieldType = Literal["u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"]
WordOrder = Literal["ABCD", "CDAB"]
"""ABCD: high word first (Modbus default, big-endian words). CDAB: low word first."""
FunctionCode = Literal[3, 4]
"""3: read holding registers, 4: read input registers."""
Access = Literal["R", "RW"]

#: Number of 16-bit registers each type occupies.
TYPE_WORDS: dict[str, int] = {
    "u16": 1,
    "i16": 1,
    "u32": 2,
    "i32": 2,
    "u64": 4,
    "i64": 4,
    "f32": 2,
    "f64": 4,
}


def type_raw_range(type_: str) -> tuple[float, float]:
    """Return the (min, max) raw value a register type can hold."""
    bits = TYPE_WORDS[type_] * 16
    if type_.startswith("u"):
        return 0, 2**bits - 1
    if type_.startswith("i"):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if type_ == "f32":
        return -3.4028234663852886e38, 3.4028234663852886e38
    return -1.7976931348623157e308, 1.7976931348623157e308


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Strict):
    """An inclusive interval of allowed engineering values, written ``[lo, hi]`` in TOML."""

    lo: float
    hi: float

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.lo > self.hi:
            raise ValueError(f"interval [{self.lo}, {self.hi}] is empty (allowed: lo <= hi)")
        return self

    def contains(self, value: float) -> bool:
        """True when ``lo <= value <= hi``."""
        return self.lo <= value <= self.hi


class FieldSpec(_Strict):
    """One value of a device: a single register or several registers read as one."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    address: int = Field(ge=0, le=0xFFFF)
    function: FunctionCode | None = None
    """Function code used to read the field; ``None`` means the map's ``default_function``."""
    type: FieldType
    word_order: WordOrder = "ABCD"
    scale: float = 1.0
    """Engineering value = raw × scale (0.1 for a register holding tenths)."""
    unit: str | None = None
    """Unit of the scaled value (``V``, ``A``, ``W``, ``kWh``, ``s``, ``°C``; ``1`` =
    dimensionless). Required unless the field is an enum or a bit field."""
    access: Access = "R"
    description: str = ""
    enum: str | None = None
    """Name of a table in ``[enums]``: raw value → label."""
    bits: str | None = None
    """Name of a table in ``[bits]``: bit number → label."""
    missing: tuple[int, ...] = ()
    """Raw values that mean "no value" (ABB: all bits set). They decode as missing."""
    allowed: tuple[Interval, ...] = ()
    """Writable values (engineering units), a union of inclusive intervals. Required when RW."""
    default: float | None = None
    """Factory default, as documented."""
    integer: bool = False
    """Writable values must be whole numbers in engineering units (amps, seconds)."""
    verified: bool = True
    """False when a source disagrees or the fact is unconfirmed; ``note`` says why."""
    note: str = ""
    source: str = ""

    @field_validator("allowed", mode="before")
    @classmethod
    def _pairs_to_intervals(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            out = []
            for item in value:
                if isinstance(item, list | tuple):
                    if len(item) != 2:
                        raise ValueError(
                            f"allowed interval {item!r} is not a pair (allowed: [lo, hi])"
                        )
                    out.append({"lo": item[0], "hi": item[1]})
                else:
                    out.append(item)
            return out
        return value

    @property
    def words(self) -> int:
        """Number of registers the field occupies."""
        return TYPE_WORDS[self.type]

    @property
    def writable(self) -> bool:
        """True for read/write fields."""
        return self.access == "RW"


class Hole(_Strict):
    """Registers that do not exist: a block read spanning any of them fails on the device."""

    function: FunctionCode | None = None
    """``None``: the hole applies to every function code."""
    start: int = Field(ge=0, le=0xFFFF)
    end: int = Field(ge=0, le=0xFFFF)
    """Inclusive."""
    note: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Hole:
        if self.start > self.end:
            raise ValueError(f"hole {self.start}-{self.end} is empty (allowed: start <= end)")
        return self

    def overlaps(self, function: int, start: int, count: int) -> bool:
        """True when registers ``start .. start+count-1`` of ``function`` touch this hole."""
        if self.function is not None and self.function != function:
            return False
        return start <= self.end and self.start <= start + count - 1


class IdentityCheck(_Strict):
    """A field whose raw value identifies the model (EVC2: reg 9 == 21571)."""

    field: str
    equals: tuple[int, ...]
    """Accepted raw values (any of them)."""
    note: str = ""

    @field_validator("equals", mode="before")
    @classmethod
    def _scalar_to_tuple(cls, value: object) -> object:
        return (value,) if isinstance(value, int) else value


class SerialDefaults(_Strict):
    """Factory serial settings, as documented (confidence in ``note``)."""

    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(default=1, ge=1, le=247)
    note: str = ""


class ModelInfo(_Strict):
    """Who the map is for and how to talk to it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    vendor: str
    kind: Literal["charger", "meter"]
    phases: Literal[1, 3] = 3
    default_function: FunctionCode = 3
    word_order: WordOrder = "ABCD"
    """Default word order of multi-word fields; a field may override it."""
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    source: str = ""
    note: str = ""
    variant_of: str | None = None
    """For a variant file: the model it derives from (documentation only)."""


class RegisterMapSpec(_Strict):
    """A whole TOML map file, as validated at load."""

    model: ModelInfo
    serial: SerialDefaults = SerialDefaults()
    holes: tuple[Hole, ...] = ()
    identification: tuple[IdentityCheck, ...] = ()
    fields: tuple[FieldSpec, ...]
    enums: dict[str, dict[int, str]] = {}
    bits: dict[str, dict[int, str]] = {}
