"""Per-device state the loop keeps between cycles, and small helpers to read decoded values.

Mutable and owned by the loop task only; everything others see goes out as frozen snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ampgate.config import ChargerConfig, MeterConfig

Readings = Mapping[str, Any]
"""Decoded values by field name, as the devices return them (``ampgate.codec.Reading``)."""


def value_of(readings: Readings, name: str) -> Any:
    """Return the engineering value of ``name`` (None when absent or missing)."""
    reading = readings.get(name)
    if reading is None or getattr(reading, "missing", False):
        return None
    return getattr(reading, "value", reading)


def raw_of(readings: Readings, name: str) -> Any:
    """Return the raw register value of ``name`` (None when absent or missing)."""
    reading = readings.get(name)
    if reading is None or getattr(reading, "missing", False):
        return None
    return getattr(reading, "raw", reading)


def number_of(readings: Readings, name: str) -> float | None:
    """Return the numeric value of ``name`` as float (None when absent, missing or not numeric)."""
    value = value_of(readings, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(slots=True)
class DeviceRuntime:
    """What the loop knows about one device."""

    name: str
    device: Any
    """The ``ampgate.devices`` object talking to it."""
    values: dict[str, Any] = field(default_factory=dict)
    """Latest decoded values (fast and slow polls merged)."""
    polled: bool = False
    """At least one poll was attempted."""
    last_ok: float | None = None
    """Monotonic time of the last successful poll."""
    last_ok_unix: float | None = None
    measured_at: float | None = None
    """Monotonic time the values the engine uses (currents) arrived: a charger's fast poll, a
    meter's measurement. Not moved by other reads (settings, identity)."""
    online: bool = False
    refused: str | None = None
    """Why the device is not controlled (identity mismatch), or None."""
    last_error: str | None = None
    counters: dict[str, float] = field(default_factory=dict)
    """The highest value seen of each energy counter (what is published)."""
    counters_backwards: set[str] = field(default_factory=set)
    """Counters whose latest reading was below the published value (reported once)."""


@dataclass(slots=True)
class ChargerRuntime(DeviceRuntime):
    """A charger: the device state plus what the gateway programmed into it."""

    config: ChargerConfig | None = None
    setpoint: int | None = None
    """Amps to use (reg 15) as last written and verified."""
    last_write: float | None = None
    """Monotonic time of the last write of reg 15 (drives the watchdog refresh)."""
    reason: str = ""
    reason_code: str = ""
    target: int | None = None
    """The engine's latest setpoint for this charger."""
    watchdog: int | None = None
    """Communication timeout (reg 19) as programmed and verified."""
    failsafe: int | None = None
    """Failsafe current (reg 20) as programmed and verified."""
    phase_to_use: int | None = None
    bring_up_due: bool = False
    """Identified by its fast poll (first seen, or back after being offline): its settings are
    still to be read and its watchdog/failsafe checked, after this cycle's lowering writes."""


@dataclass(slots=True)
class MeterRuntime(DeviceRuntime):
    """A meter at a group's fuse."""

    config: MeterConfig | None = None
    stale: bool = False
    measurement: Any = None
    """The latest ``ampgate.devices.meter.MeterMeasurement`` (totals the map derives, such as
    a single-phase meter's total power), or None before the first good read."""
