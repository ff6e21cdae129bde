"""Energy meters (every meter map shares the field names): one measurement, normalised."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ampgate.codec import Reading
from ampgate.devices.device import ModbusDevice, kwh, number, per_phase

PHASES = ("l1", "l2", "l3")
MEASUREMENT_FIELDS: tuple[str, ...] = (
    *(f"{q}_{p}" for q in ("voltage", "current", "power") for p in PHASES),
    "power_total",
    "frequency",
    "energy_import",
    "energy_export",
)
Triple = tuple[float | None, float | None, float | None]


@dataclass(frozen=True, slots=True)
class MeterMeasurement:
    """Per-phase values (None for phases a single-phase meter lacks), totals, energies in kWh."""

    voltages: Triple
    currents: Triple
    powers: Triple
    power_total: float | None
    """Total active power in W, import positive. On a single-phase map without a
    ``power_total`` field (Eastron SDM120: its one active-power register is ``power_l1``) this
    is ``power_l1``; ``readings`` then has no ``power_total`` entry."""
    frequency: float | None
    energy_import_kwh: float | None
    energy_export_kwh: float | None
    readings: Mapping[str, Reading]


class Meter(ModbusDevice):
    """A meter read through its map (Eastron, Siemens, Phoenix, ABB …)."""

    def measurement_fields(self) -> tuple[str, ...]:
        """The measurement fields this meter's map has."""
        return tuple(n for n in MEASUREMENT_FIELDS if self.map.has_field(n))

    async def read_measurement(self, *, gap: int = 16) -> MeterMeasurement:
        """Read every measurement field in as few requests as the map allows.

        ``power_total`` is the map's ``power_total`` field; a single-phase map without one (the
        SDM120 has a single active-power register, mapped as ``power_l1``, and the codec refuses
        a second field on the same register) reports ``power_l1`` as the total, since on one
        phase the phase power is the total power. A three-phase map without ``power_total``
        reports None (no shipped map is like that; summing phases is not assumed).
        """
        readings = await self.read_fields(self.measurement_fields(), gap=gap)
        return meter_measurement_from(readings, self.map.model.phases, self.name)


def meter_measurement_from(
    readings: Mapping[str, Reading], phases: int = 3, device: str = ""
) -> MeterMeasurement:
    """A measurement from decoded readings of a meter with ``phases`` phases (a field absent or
    missing gives None; ``device`` names the meter in a unit error)."""
    r = readings
    power_total = number(r, "power_total")
    if phases == 1 and "power_total" not in r:
        power_total = number(r, "power_l1")
    return MeterMeasurement(
        voltages=per_phase(r, "voltage"),
        currents=per_phase(r, "current"),
        powers=per_phase(r, "power"),
        power_total=power_total,
        frequency=number(r, "frequency"),
        energy_import_kwh=kwh(r, "energy_import", device),
        energy_export_kwh=kwh(r, "energy_export", device),
        readings=r,
    )


def invalid_currents(measurement: MeterMeasurement, phases: int = 3) -> str | None:
    """Why the phase currents of ``measurement`` cannot be a reading, or None.

    Every phase the meter has must give a finite current: NaN (a float register holding it, or
    a ``missing`` sentinel) and ±infinity are a glitch of the meter, not a current through the
    fuse. A reading that fails is not used at all (the meter goes stale if it keeps failing).
    """
    for phase, amps in enumerate(measurement.currents[:phases], start=1):
        if amps is None:
            return f"current_l{phase} is missing (NaN or a no-value sentinel)"
        if not math.isfinite(amps):
            return f"current_l{phase} is {amps}"
    return None
