"""The JSON shapes of the read API (``/api/v1``) as pydantic models, built from a snapshot.

:func:`site_view` turns a :class:`~ampgate.interfaces.snapshot.DaemonSnapshot` into a
:class:`SiteView` (``GET /api/v1/site`` and the stream's ``site`` events); :func:`event_view`
an :class:`~ampgate.interfaces.snapshot.Event` into an :class:`EventView`. Units are in the field
names (amperes, watts, kWh, seconds; unix times are seconds since 1970); ``null`` = not known yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ampgate.interfaces.health import health
from ampgate.interfaces.snapshot import (
    BitState,
    DaemonSnapshot,
    DeviceSnapshot,
    Event,
    GroupSnapshot,
    PhaseValues,
)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class PerPhase(_View):
    """One value per phase in the device's own phase order (``null`` = not available)."""

    l1: float | None = None
    l2: float | None = None
    l3: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_triple(cls, value: object) -> object:
        """Also take an (L1, L2, L3) tuple, as the snapshot holds them."""
        if isinstance(value, tuple | list) and len(value) == 3:
            return {"l1": value[0], "l2": value[1], "l3": value[2]}
        return value


class LoopView(_View):
    """The control loop's health, as ``/healthz`` judges it."""

    status: str = Field(description="ok, stalled or starting (before the first cycle)")
    last_iteration_unix: float | None
    last_iteration_age_seconds: float | None
    stall_limit_seconds: float
    cycle_seconds: float | None
    cycles: int


class GroupPhaseView(_View):
    """One phase of a fuse group in the latest cycle (site phase order)."""

    phase: str
    limit_amperes: float
    measured_amperes: float | None = Field(
        description="what the group's meter shows through the fuse, chargers included"
    )
    non_ev_load_amperes: float = Field(description="the building-load estimate")
    non_ev_source: str = Field(description="meter, held, fallback or static (no meter)")
    non_ev_uncertainty_amperes: float
    allocated_amperes: float = Field(description="what the chargers were given")
    available_amperes: float
    headroom_amperes: float


class ExternalLimitView(_View):
    """One source's live external limit on a group."""

    source: str = Field(description="http, mqtt or ems")
    amperes: PerPhase | None = Field(description="per site phase; null for a kW limit")
    kw: float | None = Field(description="total power; null for a per-phase limit")
    valid_for_seconds: float
    expires_unix: float | None


class GroupControlView(_View):
    """What limits a group beyond its fuse: operator limit, external limits, peak budget."""

    effective_limit_amperes: PerPhase = Field(
        description="the lowest of fuse, operator limit, live external limits and the expiry "
        "fallback"
    )
    power_cap_kw: float | None
    external_limits: list[ExternalLimitView]
    expiry_fallback: bool = Field(description="a limit expired: on_limit_expiry holds")
    peak_kw: float | None = Field(description="the quarter-hour budget (null: none)")
    quarter_average_kw: float | None
    month_peak_kw: float | None
    peak_allowed_kw: float | None = Field(
        description="what the budget allows until the quarter ends"
    )


class GroupView(_View):
    """A fuse group: per-phase limit, load estimate and allocation."""

    name: str
    meter_stale: bool
    phases: list[GroupPhaseView]
    control: GroupControlView | None = Field(description="null before the first cycle")


class LimitAccepted(_View):
    """An external limit taken for the group's next cycle (or cleared)."""

    group: str
    source: str
    amperes: PerPhase | None
    kw: float | None
    valid_for_seconds: float
    cleared: bool


class ChargerView(_View):
    """A charger as the gateway sees it: state, setpoint, draw, the engine's reason, energy."""

    name: str
    model: str
    group: str
    online: bool
    refused: str | None = Field(description="why the gateway refuses to control it, if it does")
    vehicle_state: str = Field(
        description="not_connected, connected, charging, suspended_by_ev, not_authorised, "
        "error or unknown"
    )
    evse_status: str | None
    setpoint_amperes: float | None
    allowed_max_amperes: float | None
    current_amperes: PerPhase
    voltage_volts: PerPhase
    power_watts: float | None
    reason: str
    reason_code: str
    session_energy_kwh: float | None
    lifetime_energy_kwh: float | None
    warnings: list[str] = Field(description="labels of the warning bits that are set")
    errors: list[str] = Field(description="labels of the error bits that are set")
    watchdog_seconds: float | None
    failsafe_amperes: float | None
    temperature_celsius: float | None
    last_success_unix: float | None


class MeterView(_View):
    """An energy meter's latest readings and their freshness (import positive)."""

    name: str
    model: str
    group: str
    online: bool
    stale: bool
    last_success_unix: float | None
    current_amperes: PerPhase
    voltage_volts: PerPhase
    power_watts: PerPhase
    total_power_watts: float | None
    frequency_hertz: float | None
    energy_import_kwh: float | None
    energy_export_kwh: float | None


class SiteView(_View):
    """``GET /api/v1/site``: the whole site at the latest published cycle."""

    site: str
    version: str
    loop: LoopView
    groups: list[GroupView]
    chargers: list[ChargerView]
    meters: list[MeterView]


class EventView(_View):
    """One gateway event (the same fields as its JSON log line)."""

    unix_time: float | None
    level: str
    name: str
    device: str | None
    context: dict[str, Any]


class EventsView(_View):
    """``GET /api/v1/events``: the recent events newer than ``since``, oldest first."""

    events: list[EventView]


def _phases(values: PhaseValues) -> PerPhase:
    return PerPhase(l1=values.l1, l2=values.l2, l3=values.l3)


def _active(bits: tuple[BitState, ...]) -> list[str]:
    return [bit.label for bit in bits if bit.active]


def _group(group: GroupSnapshot) -> GroupView:
    # The views name their fields as the snapshot does: read them by attribute.
    control = None if group.control is None else dataclasses.asdict(group.control)
    return GroupView(
        name=group.name,
        meter_stale=group.meter_stale,
        phases=[GroupPhaseView.model_validate(p, from_attributes=True) for p in group.phases],
        control=None if control is None else GroupControlView.model_validate(control),
    )


def _device(device: DeviceSnapshot) -> dict[str, Any]:
    """The fields every device view has."""
    return {
        "name": device.name,
        "model": device.model,
        "group": device.group,
        "online": device.up,
        "last_success_unix": device.last_success_unix,
    }


def _charger(device: DeviceSnapshot) -> ChargerView:
    r = device.charger
    empty = PerPhase()
    return ChargerView(
        **_device(device),
        refused=device.refused,
        vehicle_state=r.vehicle_state if r else "unknown",
        evse_status=r.evse_status.active if r else None,
        setpoint_amperes=r.setpoint_amperes if r else None,
        allowed_max_amperes=r.allowed_max_amperes if r else None,
        current_amperes=_phases(r.current_amperes) if r else empty,
        voltage_volts=_phases(r.voltage_volts) if r else empty,
        power_watts=r.active_power_watts if r else None,
        reason=device.reason,
        reason_code=device.reason_code,
        session_energy_kwh=r.session_energy_kwh if r else None,
        lifetime_energy_kwh=r.lifetime_energy_kwh if r else None,
        warnings=_active(r.warnings) if r else [],
        errors=_active(r.errors) if r else [],
        watchdog_seconds=r.watchdog_seconds if r else None,
        failsafe_amperes=r.failsafe_amperes if r else None,
        temperature_celsius=r.temperature_celsius if r else None,
    )


def _meter(device: DeviceSnapshot) -> MeterView:
    r = device.meter
    empty = PerPhase()
    return MeterView(
        **_device(device),
        stale=device.stale,
        current_amperes=_phases(r.current_amperes) if r else empty,
        voltage_volts=_phases(r.voltage_volts) if r else empty,
        power_watts=_phases(r.power_watts) if r else empty,
        total_power_watts=r.total_power_watts if r else None,
        frequency_hertz=r.frequency_hertz if r else None,
        energy_import_kwh=r.energy_import_kwh if r else None,
        energy_export_kwh=r.energy_export_kwh if r else None,
    )


def site_view(
    snapshot: DaemonSnapshot, now_monotonic: float, stall_limit_seconds: float | None = None
) -> SiteView:
    """The :class:`SiteView` of ``snapshot``; the loop's status judged at ``now_monotonic``."""
    _, body = health(snapshot, now_monotonic, stall_limit_seconds)
    loop = LoopView(
        status=body["status"],
        last_iteration_unix=snapshot.loop.last_iteration_unix,
        last_iteration_age_seconds=body["last_iteration_age_seconds"],
        stall_limit_seconds=body["stall_limit_seconds"],
        cycle_seconds=snapshot.loop.cycle_seconds,
        cycles=snapshot.dlm.cycles_total,
    )
    return SiteView(
        site=snapshot.site,
        version=snapshot.build.version,
        loop=loop,
        groups=[_group(g) for g in snapshot.dlm.groups],
        chargers=[_charger(d) for d in snapshot.devices if d.kind == "charger"],
        meters=[_meter(d) for d in snapshot.devices if d.kind == "meter"],
    )


def _jsonable(value: object) -> Any:
    """A JSON value for an event's context value (unknown types as their text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_jsonable(v) for v in items]
    return str(value)


def event_view(event: Event) -> EventView:
    """The :class:`EventView` of one event."""
    return EventView(
        unix_time=event.unix_time,
        level=event.level,
        name=event.name,
        device=event.device,
        context=_jsonable(event.context),
    )


def events_since(snapshot: DaemonSnapshot, since: float | None) -> EventsView:
    """The snapshot's recent events emitted after ``since`` (unix time; all when ``None``)."""
    events = [
        event_view(e)
        for e in snapshot.recent_events
        if since is None or (e.unix_time is not None and e.unix_time > since)
    ]
    return EventsView(events=events)
