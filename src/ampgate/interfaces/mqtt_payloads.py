"""What ampgate publishes on MQTT, as pure functions of the snapshot: topics, payloads, retain.

Every charger, meter and fuse group is a *subject* with a flat set of named values. Under
``<prefix>/<kind>/<name>/`` each value has a retained topic of its own (plain text: a number, a
word, ``true``/``false``, or ``None`` when not known, the payload Home Assistant reads as
*unknown*), and ``state`` carries all of them as one retained JSON object.
:class:`~ampgate.interfaces.mqtt_changes.ChangeTracker` turns successive snapshots into only the
messages that changed. No I/O here; :mod:`ampgate.interfaces.mqtt` sends.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ampgate.dlm import VehicleState
from ampgate.interfaces.snapshot import (
    PHASES,
    DaemonSnapshot,
    DeviceSnapshot,
    Event,
    GroupSnapshot,
    PhaseAllocation,
    PhaseValues,
)

Value = bool | int | float | str | tuple[str, ...] | None
"""One published value: a number, a word, a flag, a list of labels, or not known."""

NONE_PAYLOAD = "None"
"""The text of a value that is not known (Home Assistant's MQTT payload for *unknown*)."""
ONLINE, OFFLINE = "online", "offline"
"""The payloads of the availability topic ``<prefix>/status``."""
VEHICLE_STATES: tuple[str, ...] = tuple(state.value for state in VehicleState)


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish: an empty ``payload`` with ``retain`` clears a retained topic."""

    topic: str
    payload: str
    retain: bool


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """One value of a subject: how it is read and how Home Assistant should show it."""

    key: str
    """Its topic level and JSON key (``current_l1``)."""
    name: str | None = None
    """The Home Assistant entity name ("Current L1"); None: not offered to Home Assistant."""
    measurement: bool = False
    """A measured quantity (published at most every measurement interval)."""
    component: str = "sensor"
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None
    options: tuple[str, ...] | None = None


def _gauge(key: str, name: str, device_class: str, unit: str, measured: bool = True) -> ValueSpec:
    return ValueSpec(key, name, measured, "sensor", device_class, "measurement", unit)


def _current(key: str, name: str) -> ValueSpec:
    return _gauge(key, name, "current", "A")


def _amps_decided(key: str, name: str) -> ValueSpec:
    """Amperes ampere decides or is told (a setpoint, a limit): published the cycle it changes."""
    return _gauge(key, name, "current", "A", measured=False)


def _voltage(key: str, name: str) -> ValueSpec:
    return _gauge(key, name, "voltage", "V")


def _power(key: str, name: str) -> ValueSpec:
    return _gauge(key, name, "power", "W")


def _energy(key: str, name: str) -> ValueSpec:
    return ValueSpec(key, name, True, "sensor", "energy", "total_increasing", "kWh")


def _text(key: str, name: str | None = None, measured: bool = False) -> ValueSpec:
    return ValueSpec(key, name, measured)


def _flag(key: str, name: str, device_class: str) -> ValueSpec:
    return ValueSpec(key, name, False, "binary_sensor", device_class)


def _phases(make: Callable[[str, str], ValueSpec], key: str, name: str) -> list[ValueSpec]:
    return [make(f"{key}_{p.lower()}", f"{name} {p}") for p in PHASES]


CHARGER_VALUES: tuple[ValueSpec, ...] = (
    _flag("online", "Online", "connectivity"),
    ValueSpec("vehicle_state", "Vehicle", False, "sensor", "enum", options=VEHICLE_STATES),
    _amps_decided("setpoint", "Setpoint"),
    _amps_decided("allowed_max", "Allowed maximum"),
    *_phases(_current, "current", "Current"),
    *_phases(_voltage, "voltage", "Voltage"),
    _power("power", "Power"),
    _energy("session_energy", "Session energy"),
    _energy("lifetime_energy", "Lifetime energy"),
    _gauge("temperature", "Temperature", "temperature", "°C"),
    _text("reason", "Reason"),
    _text("reason_code"),
    _text("evse_status", "EVSE status"),
    _text("warnings"),
    _text("errors"),
    _text("refused"),
    _text("last_seen", measured=True),
)
"""A charger's values, in the order of its state JSON."""

METER_VALUES: tuple[ValueSpec, ...] = (
    _flag("online", "Online", "connectivity"),
    _flag("stale", "Stale", "problem"),
    *_phases(_current, "current", "Current"),
    *_phases(_voltage, "voltage", "Voltage"),
    *_phases(_power, "power", "Power"),
    _power("power", "Power"),
    _gauge("frequency", "Frequency", "frequency", "Hz"),
    _energy("energy_import", "Energy import"),
    _energy("energy_export", "Energy export"),
    _text("last_seen", measured=True),
)
"""A meter's values (import positive)."""

GROUP_VALUES: tuple[ValueSpec, ...] = (
    *_phases(_amps_decided, "limit", "limit"),
    *_phases(_current, "measured", "measured"),
    *_phases(_current, "building_load", "building load"),
    *_phases(_text, "building_load_source", "building load source"),
    *_phases(_current, "allocated", "allocated"),
    *_phases(_current, "available", "available"),
    _flag("meter_stale", "meter stale", "problem"),
)
"""A fuse group's values (per site phase, A); Home Assistant shows them on the site device as
"main limit L1" and so on."""

SPECS: Mapping[str, tuple[ValueSpec, ...]] = {
    "charger": CHARGER_VALUES,
    "meter": METER_VALUES,
    "group": GROUP_VALUES,
}


@dataclass(frozen=True, slots=True)
class Subject:
    """A charger, meter or group as published: its identity and its values by key."""

    kind: str
    """``charger``, ``meter`` or ``group``."""
    name: str
    values: Mapping[str, Value]
    model: str = ""
    group: str = ""
    identity: Mapping[str, Value] = field(default_factory=dict)
    """What the state JSON says about who it is (model, group, bus, unit id)."""

    @property
    def specs(self) -> tuple[ValueSpec, ...]:
        """The values this kind of subject has."""
        return SPECS[self.kind]


def _labels(bits: Iterable[Any]) -> tuple[str, ...]:
    return tuple(bit.label for bit in bits if bit.active)


def _per_phase(key: str, values: PhaseValues) -> dict[str, Value]:
    return {f"{key}_{phase.lower()}": value for phase, value in values.items()}


def charger_values(device: DeviceSnapshot) -> dict[str, Value]:
    """A charger's values by key (every key of :data:`CHARGER_VALUES`)."""
    c = device.charger
    out: dict[str, Value] = dict.fromkeys(spec.key for spec in CHARGER_VALUES)
    out.update(
        online=device.up,
        reason=device.reason or None,
        reason_code=device.reason_code or None,
        refused=device.refused,
        last_seen=device.last_success_unix,
    )
    if c is not None:
        out.update(
            vehicle_state=c.vehicle_state,
            setpoint=c.setpoint_amperes,
            allowed_max=c.allowed_max_amperes,
            power=c.active_power_watts,
            session_energy=c.session_energy_kwh,
            lifetime_energy=c.lifetime_energy_kwh,
            temperature=c.temperature_celsius,
            evse_status=c.evse_status.active,
            warnings=_labels(c.warnings),
            errors=_labels(c.errors),
        )
        out.update(_per_phase("current", c.current_amperes))
        out.update(_per_phase("voltage", c.voltage_volts))
    else:
        out["vehicle_state"] = VehicleState.UNKNOWN.value
    return out


def meter_values(device: DeviceSnapshot) -> dict[str, Value]:
    """A meter's values by key (every key of :data:`METER_VALUES`)."""
    m = device.meter
    out: dict[str, Value] = dict.fromkeys(spec.key for spec in METER_VALUES)
    out.update(online=device.up, stale=device.stale, last_seen=device.last_success_unix)
    if m is not None:
        out.update(_per_phase("current", m.current_amperes))
        out.update(_per_phase("voltage", m.voltage_volts))
        out.update(_per_phase("power", m.power_watts))
        out.update(
            power=m.total_power_watts,
            frequency=m.frequency_hertz,
            energy_import=m.energy_import_kwh,
            energy_export=m.energy_export_kwh,
        )
    return out


def group_values(group: GroupSnapshot) -> dict[str, Value]:
    """A group's values by key (every key of :data:`GROUP_VALUES`)."""
    out: dict[str, Value] = dict.fromkeys(spec.key for spec in GROUP_VALUES)
    out["meter_stale"] = group.meter_stale
    by_phase: dict[str, PhaseAllocation] = {p.phase: p for p in group.phases}
    for phase, account in by_phase.items():
        level = phase.lower()
        out[f"limit_{level}"] = account.limit_amperes
        out[f"measured_{level}"] = account.measured_amperes
        out[f"building_load_{level}"] = account.non_ev_load_amperes
        out[f"building_load_source_{level}"] = account.non_ev_source
        out[f"allocated_{level}"] = account.allocated_amperes
        out[f"available_{level}"] = account.available_amperes
    return out


def subjects(snapshot: DaemonSnapshot) -> list[Subject]:
    """Every charger, meter and group of ``snapshot`` as a :class:`Subject`."""
    out = []
    for device in snapshot.devices:
        values = charger_values(device) if device.kind == "charger" else meter_values(device)
        identity: dict[str, Value] = {
            "model": device.model,
            "group": device.group or None,
            "bus": device.bus,
            "unit_id": device.unit_id,
        }
        out.append(Subject(device.kind, device.name, values, device.model, device.group, identity))
    out += [Subject("group", g.name, group_values(g)) for g in snapshot.dlm.groups]
    return out


def _finite(value: float) -> float | None:
    if not math.isfinite(value):
        return None
    rounded = round(value, 3)
    return int(rounded) if rounded == int(rounded) and abs(rounded) < 2**53 else rounded


def json_value(value: Value) -> Any:
    """``value`` as it appears in a state JSON (numbers rounded to 0.001, lists as arrays)."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def value_text(value: Value) -> str:
    """``value`` as the payload of its own topic: ``16``, ``6.5``, ``charging``, ``true``,
    ``["label"]`` for lists, ``None`` when not known."""
    value = json_value(value)
    if value is None:
        return NONE_PAYLOAD
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """``value`` made JSON-safe: non-finite floats become null, unknown objects their text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def status_topic(prefix: str) -> str:
    """The retained availability topic: ``online`` while connected, ``offline`` otherwise."""
    return f"{prefix}/status"


def events_topic(prefix: str) -> str:
    """Where each event is published as it happens (not retained)."""
    return f"{prefix}/events"


def subject_topic(prefix: str, kind: str, name: str, leaf: str) -> str:
    """``<prefix>/<kind>/<name>/<leaf>`` (``leaf`` is ``state`` or a value's key)."""
    return f"{prefix}/{kind}/{name}/{leaf}"


def event_message(prefix: str, event: Event) -> Message:
    """One event as a JSON object on ``<prefix>/events``, not retained."""
    payload = {
        "unix_time": event.unix_time,
        "level": event.level,
        "name": event.name,
        "device": event.device,
        "context": jsonable(dict(event.context)),
    }
    return Message(events_topic(prefix), json.dumps(payload, ensure_ascii=False), False)


def state_payload(subject: Subject) -> str:
    """The subject's retained state JSON: its name, identity and every value."""
    body: dict[str, Any] = {"name": subject.name, **jsonable(dict(subject.identity))}
    body.update({key: json_value(value) for key, value in subject.values.items()})
    return json.dumps(body, ensure_ascii=False)
