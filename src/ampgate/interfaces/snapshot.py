"""The daemon's latest state as frozen values: the only thing the outside world reads.

The gateway builds a new :class:`DaemonSnapshot` after every cycle and hands it to
:meth:`ampgate.interfaces.store.SnapshotStore.publish`; the metrics collector, the API and the
health endpoint read :meth:`~ampgate.interfaces.store.SnapshotStore.latest`. A scrape therefore
never causes Modbus traffic and never sees a half-updated state.

How the daemon fills it (units are those in the attribute names; ``None`` = not known yet):

* one :class:`DeviceSnapshot` per configured device, with ``charger=`` or ``meter=`` readings from
  the latest successful poll (``None`` until the first one);
* request statistics are cumulative since start, counted by the transport per unit
  (:class:`ampgate.transport.DeviceHealth`) and converted into :class:`RequestStatsSnapshot` by
  :func:`ampgate.gateway.publish.request_stats`;
* enum registers (EVSE status, IEC state, charge point state, current limit cause) become an
  :class:`EnumState` via :func:`enum_state` from the decoded label and the map's enum
  (``RegisterMap.enum_of(field)``), so every documented state is exported, 1 for the active one;
* bit fields (warning/error codes) become :class:`BitState` tuples via :func:`bit_states` from the
  raw register value and the map's bits (``RegisterMap.bits_of(field)``); for EVC2 error bits pass
  ``ocpp_codes=ampgate.devices.evc2.evc2_error_ocpp_codes(voltages)`` to attach the OCPP 1.6
  errorCode;
* energies are kWh (convert a meter's Wh by its ``Reading.unit``); currents A; import positive.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ampgate import __version__

RequestResult = Literal["ok", "timeout", "exception", "crc", "connection"]
"""How a Modbus request ended: answered, no answer, exception response, bad CRC, no connection."""

REQUEST_RESULTS: tuple[RequestResult, ...] = ("ok", "timeout", "exception", "crc", "connection")

DEFAULT_RTT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""Upper bounds (s) of the round-trip histogram; an RS485 read at 9600 Bd takes 20–100 ms."""

PHASES: tuple[str, ...] = ("L1", "L2", "L3")


def _frozen_mapping(items: Mapping) -> Mapping:
    return MappingProxyType(dict(items))


# --------------------------------------------------------------------------------------------
# Request statistics


@dataclass(frozen=True, slots=True)
class RttHistogramSnapshot:
    """Round-trip times of answered requests: cumulative bucket counts as Prometheus wants them.

    ``cumulative_counts[i]`` counts observations ``<= bounds[i]``; observations above the last
    bound are only in ``count`` (the ``+Inf`` bucket).
    """

    bounds: tuple[float, ...] = DEFAULT_RTT_BUCKETS
    cumulative_counts: tuple[int, ...] = (0,) * len(DEFAULT_RTT_BUCKETS)
    sum_seconds: float = 0.0
    count: int = 0


@dataclass(frozen=True, slots=True)
class RequestStatsSnapshot:
    """Cumulative request counts for one device since the daemon started."""

    by_result: Mapping[str, int] = field(
        default_factory=lambda: _frozen_mapping(dict.fromkeys(REQUEST_RESULTS, 0))
    )
    """Count per :data:`REQUEST_RESULTS` kind; every kind present."""
    by_exception_code: Mapping[int, int] = field(default_factory=lambda: _frozen_mapping({}))
    """Exception responses per Modbus exception code (1 illegal function, 2 address, ...)."""
    rtt: RttHistogramSnapshot = field(default_factory=RttHistogramSnapshot)


# --------------------------------------------------------------------------------------------
# Enum states and bit fields


@dataclass(frozen=True, slots=True)
class EnumState:
    """A decoded enum register: the active label and every documented label (for a state set)."""

    active: str | None
    """The decoded label (``"unknown (N)"`` for undocumented values), ``None`` if not read."""
    choices: tuple[str, ...] = ()
    """Every documented label in register order; exported as 0 unless active."""


def enum_state(active: object, choices: Mapping[int, str] | Iterable[str] | None) -> EnumState:
    """Build an :class:`EnumState` from a decoded label and the map's enum (``enum_of``)."""
    if choices is None:
        labels: tuple[str, ...] = ()
    elif isinstance(choices, Mapping):
        labels = tuple(choices[k] for k in sorted(choices))
    else:
        labels = tuple(choices)
    return EnumState(None if active is None else str(active), labels)


@dataclass(frozen=True, slots=True)
class BitState:
    """One bit of a warning/error register."""

    bit: int
    label: str
    active: bool
    ocpp_error_code: str | None = None
    """OCPP 1.6 StatusNotification errorCode for this bit, where one applies (error bits)."""


def bit_states(
    raw: int | None,
    documented: Mapping[int, str] | None,
    ocpp_codes: Mapping[int, str] | None = None,
) -> tuple[BitState, ...]:
    """Every documented bit (active or not) plus any active undocumented bit as ``unknown bit N``.

    ``raw`` is the register value (``Reading.raw``); ``None`` (not read) gives every bit inactive.
    """
    documented = documented or {}
    ocpp_codes = ocpp_codes or {}
    value = int(raw) if raw is not None else 0
    bits = set(documented)
    bits.update(b for b in range(value.bit_length()) if value >> b & 1)
    return tuple(
        BitState(
            bit=b,
            label=documented.get(b, f"unknown bit {b}"),
            active=bool(value >> b & 1),
            ocpp_error_code=ocpp_codes.get(b),
        )
        for b in sorted(bits)
    )


# --------------------------------------------------------------------------------------------
# Readings


@dataclass(frozen=True, slots=True)
class PhaseValues:
    """One value per phase L1..L3 in the device's own phase order; ``None`` = not available."""

    l1: float | None = None
    l2: float | None = None
    l3: float | None = None

    def items(self) -> tuple[tuple[str, float | None], ...]:
        """``(("L1", l1), ("L2", l2), ("L3", l3))``."""
        return (("L1", self.l1), ("L2", self.l2), ("L3", self.l3))


@dataclass(frozen=True, slots=True)
class ChargerReadings:
    """An EVC2 charger's values from the latest successful poll (and the gateway's setpoint)."""

    voltage_volts: PhaseValues = field(default_factory=PhaseValues)
    current_amperes: PhaseValues = field(default_factory=PhaseValues)
    active_power_watts: float | None = None
    session_energy_kwh: float | None = None
    lifetime_energy_kwh: float | None = None
    temperature_celsius: float | None = None
    setpoint_amperes: float | None = None
    """What the gateway last wrote to *Amps to use* (reg 15)."""
    allowed_max_amperes: float | None = None
    """The most this charger may get: min(amp limit reg 12, user max reg 29, configured max)."""
    evse_status: EnumState = field(default_factory=lambda: EnumState(None))
    iec_state: EnumState = field(default_factory=lambda: EnumState(None))
    charge_point_state: EnumState = field(default_factory=lambda: EnumState(None))
    current_limit_cause: EnumState = field(default_factory=lambda: EnumState(None))
    warnings: tuple[BitState, ...] = ()
    errors: tuple[BitState, ...] = ()
    watchdog_seconds: float | None = None
    """Communication timeout (reg 19) as read back from the charger."""
    failsafe_amperes: float | None = None
    """Failsafe current (reg 20) as read back from the charger."""
    firmware_version: int | None = None
    """Raw FW version register (reg 26), e.g. 20206."""
    vehicle_state: str = "unknown"
    """The car as the engine plans with it: not_connected, connected, charging,
    suspended_by_ev, not_authorised, error or unknown (``ampgate.dlm.VehicleState``)."""


def firmware_dotted(raw: int | None) -> str | None:
    """Render a raw EVC2 firmware number as major.minor.patch (20206 → "2.2.6").

    The encoding major×10000 + minor×100 + patch is inferred from release names, not confirmed
    by Teltonika; always keep the raw number next to it.
    """
    if raw is None:
        return None
    raw = int(raw)
    return f"{raw // 10000}.{raw // 100 % 100}.{raw % 100}"


@dataclass(frozen=True, slots=True)
class MeterReadings:
    """An energy meter's values from the latest successful poll; import positive."""

    voltage_volts: PhaseValues = field(default_factory=PhaseValues)
    current_amperes: PhaseValues = field(default_factory=PhaseValues)
    power_watts: PhaseValues = field(default_factory=PhaseValues)
    total_power_watts: float | None = None
    frequency_hertz: float | None = None
    energy_import_kwh: float | None = None
    energy_export_kwh: float | None = None


DeviceKind = Literal["charger", "meter"]


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """One configured device: identity, health, request statistics and latest readings."""

    name: str
    model: str
    kind: DeviceKind
    bus: str
    unit_id: int
    up: bool = False
    last_success_unix: float | None = None
    requests: RequestStatsSnapshot = field(default_factory=RequestStatsSnapshot)
    charger: ChargerReadings | None = None
    meter: MeterReadings | None = None
    refused: str | None = None
    """Why the gateway refuses to control this device (it answered as another model)."""
    reason: str = ""
    """A charger's latest DLM decision in words ("limited by group 'main' L2")."""
    reason_code: str = ""
    """The same as a stable code (``limited_by_group``)."""
    group: str = ""
    """The fuse group the device is at (a charger's group, the group a meter measures)."""
    stale: bool = False
    """A meter whose latest measurement is older than ``[dlm] meter_stale_seconds``."""


# --------------------------------------------------------------------------------------------
# DLM, loop, build


@dataclass(frozen=True, slots=True)
class PhaseAllocation:
    """One phase of one fuse group in the latest DLM cycle (amperes, site phase order)."""

    phase: str
    limit_amperes: float
    non_ev_load_amperes: float
    allocated_amperes: float
    available_amperes: float
    headroom_amperes: float
    measured_amperes: float | None = None
    """What the meter shows through the fuse, chargers included (None: no live meter)."""
    non_ev_uncertainty_amperes: float = 0.0
    """How far the building-load estimate may be off while cars change their draw."""
    non_ev_source: str = "static"
    """Where the building load came from: meter, held, fallback or static (no meter)."""
    overload_measured_total: int = 0
    """Cycles in which the meter showed this phase over limit − headroom."""


@dataclass(frozen=True, slots=True)
class ExternalLimitSnapshot:
    """One source's live external limit on a group (amperes per phase or total kW)."""

    source: str
    """``http``, ``mqtt`` or ``ems``."""
    amperes: tuple[float, float, float] | None = None
    kw: float | None = None
    valid_for_seconds: float = 0.0
    expires_unix: float | None = None


@dataclass(frozen=True, slots=True)
class GroupControlSnapshot:
    """What limits a group this cycle beyond its fuse: operator, external limits, peak budget."""

    effective_limit_amperes: tuple[float, float, float]
    """The lowest of fuse, operator limit, live external limits and the expiry fallback."""
    power_cap_kw: float | None = None
    """The lowest of ``power_cap_kw``, live external kW limits and the peak budget's power."""
    external_limits: tuple[ExternalLimitSnapshot, ...] = ()
    expiry_fallback: bool = False
    """A source's limit expired: the group holds ``on_limit_expiry`` until it sets a new one."""
    peak_kw: float | None = None
    """The quarter-hour peak the budget keeps (None: no budget)."""
    quarter_average_kw: float | None = None
    """The current quarter's average import so far (aligned: energy so far over 15 min)."""
    month_peak_kw: float | None = None
    """The highest quarter average of this month since ampgate started."""
    peak_allowed_kw: float | None = None
    """The power the budget allows from now to the end of the quarter."""


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A fuse group in the latest DLM cycle."""

    name: str
    phases: tuple[PhaseAllocation, ...] = ()
    meter_stale: bool = False
    """True when this group's meter is stale and the fallback load is used."""
    control: GroupControlSnapshot | None = None
    """Limits beyond the fuse (None before the first cycle)."""


@dataclass(frozen=True, slots=True)
class DlmSnapshot:
    """Engine totals since start and the latest cycle's allocation per group."""

    groups: tuple[GroupSnapshot, ...] = ()
    reason_counts: Mapping[str, int] = field(default_factory=lambda: _frozen_mapping({}))
    """Cumulative count of setpoint decisions per engine reason (a small fixed set)."""
    cycles_total: int = 0
    last_cycle_duration_seconds: float | None = None
    overload_detected_total: int = 0
    """Cycles where a meter showed a fuse phase over limit − headroom; should stay zero."""


@dataclass(frozen=True, slots=True)
class LoopHealth:
    """When the poll → allocate → write loop last completed an iteration."""

    last_iteration_monotonic: float | None = None
    """``time.monotonic()`` at the end of the last iteration; drives /healthz."""
    last_iteration_unix: float | None = None
    """``time.time()`` at the same moment; exported as a timestamp."""
    cycle_seconds: float | None = None
    """Configured cycle interval."""


def _pymodbus_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pymodbus")
    except PackageNotFoundError:  # pragma: no cover - pymodbus is a dependency
        return "unknown"


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """Versions exported as ``ampgate_build_info``."""

    version: str = __version__
    python_version: str = field(default_factory=platform.python_version)
    pymodbus_version: str = field(default_factory=_pymodbus_version)


@dataclass(frozen=True, slots=True)
class Event:
    """One gateway event as kept in the recent-events ring (the log record has the same fields)."""

    time: float
    """``time.monotonic()`` when it was emitted."""
    name: str
    device: str | None
    context: Mapping[str, Any] = field(default_factory=dict)
    unix_time: float | None = None
    """``time.time()`` when it was emitted (what the API and MQTT show)."""
    level: str = "info"
    """The log level it was logged at: info, warning or error."""


@dataclass(frozen=True, slots=True)
class DaemonSnapshot:
    """Everything the outside world knows about the daemon at one moment."""

    devices: tuple[DeviceSnapshot, ...] = ()
    dlm: DlmSnapshot = field(default_factory=DlmSnapshot)
    loop: LoopHealth = field(default_factory=LoopHealth)
    build: BuildInfo = field(default_factory=BuildInfo)
    recent_events: tuple[Event, ...] = ()
    """The latest events, oldest first."""
    site: str = ""
    """The site's name (``[site] name``)."""
