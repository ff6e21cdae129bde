"""The engine's input, built from what the loop last read from each device (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping

from ampgate.config import SiteConfig
from ampgate.devices.charger import phases_of_code
from ampgate.devices.evc2 import vehicle_state_from
from ampgate.dlm import ChargerReading, Measurements, MeterReading
from ampgate.gateway.runtime import ChargerRuntime, MeterRuntime, number_of, raw_of


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
    v = rt.values
    stale = rt.last_ok is None or now - rt.last_ok > config.dlm.device_stale_seconds
    online = rt.online and not rt.refused and not stale
    limits = [number_of(v, "amp_limit"), number_of(v, "user_max_current")]
    known = [int(x) for x in limits if x is not None and x > 0]
    change = raw_of(v, "phase_change_possible")
    return ChargerReading(
        online=online,
        currents=tuple(number_of(v, f"current_l{i}") or 0.0 for i in (1, 2, 3)),  # type: ignore[arg-type]
        vehicle=vehicle_state_from(raw_of(v, "evse_status"), raw_of(v, "iec_state")),
        timestamp=rt.measured_at or now,
        last_setpoint=rt.setpoint,
        max_current=min(known) if known else None,
        phase_change_possible=False
        if config.chargers[rt.name].phase_switching == "off"
        else (None if change is None else bool(change)),
        phases_reported=phases_of_code(raw_of(v, "phase_connected")),
    )


def measurements(
    chargers: Mapping[str, ChargerRuntime],
    meters: Mapping[str, MeterRuntime],
    config: SiteConfig,
    now: float,
) -> Measurements:
    """Everything observed, as the engine's Measurements (a meter never read is left out)."""
    meter_readings = {}
    for name, rt in meters.items():
        if rt.measured_at is None:
            continue
        currents = tuple(number_of(rt.values, f"current_l{i}") for i in (1, 2, 3))
        meter_readings[name] = MeterReading(currents=currents, timestamp=rt.measured_at)  # type: ignore[arg-type]
    return Measurements(
        meters=meter_readings,
        chargers={name: charger_reading(rt, config, now) for name, rt in chargers.items()},
    )
