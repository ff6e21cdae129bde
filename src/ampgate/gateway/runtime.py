"""Per-device state the loop keeps between cycles.

Mutable and owned by the loop task only; everything others see goes out as frozen snapshots.
Device values are the typed readings ``ampgate.devices`` builds (``ChargerFast``,
``ChargerSlow``, ``MeterMeasurement``), kept as the latest good one of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ampgate.config import ChargerConfig, MeterConfig
from ampgate.devices import ChargerFast, ChargerSlow, MeterMeasurement


@dataclass(slots=True)
class DeviceRuntime:
    """What the loop knows about one device."""

    name: str
    device: Any
    """The ``ampgate.devices`` object talking to it."""
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
    """The highest value seen of each lifetime energy counter in kWh (what is published;
    :mod:`ampgate.gateway.counters`)."""
    counters_backwards: set[str] = field(default_factory=set)
    """Counters whose latest reading was below the published value (reported once)."""


@dataclass(slots=True)
class ChargerRuntime(DeviceRuntime):
    """A charger: the device state plus what the gateway programmed into it."""

    config: ChargerConfig | None = None
    fast: ChargerFast | None = None
    """The latest good fast poll (currents, states, setpoint, phases)."""
    slow: ChargerSlow | None = None
    """The latest good slow read (settings, limits, identity, energy)."""
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
    """The phase mode the charger holds (its code): from the latest fast poll, or the verified
    read-back of the gateway's own write since."""
    bring_up_due: bool = False
    """Identified by its fast poll (first seen, or back after being offline): its settings are
    still to be read and its watchdog/failsafe checked, after this cycle's lowering writes."""


@dataclass(slots=True)
class MeterRuntime(DeviceRuntime):
    """A meter at a group's fuse."""

    config: MeterConfig | None = None
    stale: bool = False
    measurement: MeterMeasurement | None = None
    """The latest good measurement (None before the first one)."""
    invalid: str | None = None
    """Why the latest answer was not a reading (NaN or infinite currents), while it lasts."""
