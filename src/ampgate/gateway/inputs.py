"""The engine's input, built from what the loop last read from each device (pure functions,
and :func:`take_meter_measurement`, which keeps a meter's answer only when it is a reading)."""

from __future__ import annotations

from collections.abc import Mapping

from ampgate.config import SiteConfig
from ampgate.devices.charger import Triple
from ampgate.devices.meter import MeterMeasurement, invalid_currents
from ampgate.dlm import ChargerReading, Measurements, MeterReading, VehicleState
from ampgate.gateway.counters import record_counters
from ampgate.gateway.events import EventLog
from ampgate.gateway.runtime import ChargerRuntime, MeterRuntime


def first_measurement_complete(
    chargers: Mapping[str, ChargerRuntime],
    meters: Mapping[str, MeterRuntime],
    config: SiteConfig,
    started_at: float | None,
    now: float,
) -> bool:
    """True once every charger was polled and every meter read (or is stale past its limit).

    No setpoint is written before: the engine would otherwise decide on the fallback load and
    unknown chargers at every start-up.
    """
    if not all(rt.polled or rt.refused for rt in chargers.values()):
        return False
    waited = now - (started_at if started_at is not None else now)
    return all(
        rt.last_ok is not None or rt.refused or waited >= config.dlm.meter_stale_seconds
        for rt in meters.values()
    )


def charger_reading(rt: ChargerRuntime, config: SiteConfig, now: float) -> ChargerReading:
    """One charger as the engine sees it: offline when refused or silent past its limit."""
    fast, slow = rt.fast, rt.slow
    stale = rt.last_ok is None or now - rt.last_ok > config.dlm.device_stale_seconds
    online = rt.online and not rt.refused and not stale
    limits = () if slow is None else (slow.amp_limit, slow.user_max_current)
    known = [int(x) for x in limits if x is not None and x > 0]
    change = None if slow is None else slow.phase_change_possible
    if config.chargers[rt.name].phase_switching == "off":
        change = False
    return ChargerReading(
        online=online,
        currents=_amperes(fast.currents) if fast else (0.0, 0.0, 0.0),
        vehicle=fast.vehicle if fast else VehicleState.UNKNOWN,
        timestamp=rt.measured_at or now,
        last_setpoint=rt.setpoint,
        max_current=min(known) if known else None,
        phase_change_possible=change,
        phases_reported=fast.phases_connected if fast else None,
    )


def _amperes(currents: Triple) -> tuple[float, float, float]:
    """A charger's phase currents with an unread phase as 0 A (it measures every terminal)."""
    l1, l2, l3 = (0.0 if a is None else a for a in currents)
    return (l1, l2, l3)


def measurements(
    chargers: Mapping[str, ChargerRuntime],
    meters: Mapping[str, MeterRuntime],
    config: SiteConfig,
    now: float,
) -> Measurements:
    """Everything observed, as the engine's Measurements (a meter never read is left out)."""
    meter_readings = {
        name: MeterReading(currents=rt.measurement.currents, timestamp=rt.measured_at)
        for name, rt in meters.items()
        if rt.measurement is not None and rt.measured_at is not None
    }
    return Measurements(
        meters=meter_readings,
        chargers={name: charger_reading(rt, config, now) for name, rt in chargers.items()},
    )


def take_meter_measurement(
    rt: MeterRuntime, measurement: MeterMeasurement, events: EventLog
) -> None:
    """Keep what a meter answered: its energy counters (guarded), and its currents as the new
    reading unless they are NaN or infinite (``meter_reading_invalid`` once, when that starts;
    the last good reading then ages until the meter is stale)."""
    record_counters(
        rt,
        {
            "energy_import": measurement.energy_import_kwh,
            "energy_export": measurement.energy_export_kwh,
        },
        events,
    )
    invalid = invalid_currents(measurement, rt.device.map.model.phases)
    if invalid is not None and invalid != rt.invalid:
        events.emit("meter_reading_invalid", "warning", device=rt.name, problem=invalid)
    rt.invalid = invalid
    if invalid is None:
        rt.measurement = measurement
        rt.measured_at = rt.last_ok
