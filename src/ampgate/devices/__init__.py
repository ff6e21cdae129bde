"""Device objects over the codec and the transport: ModbusDevice, Charger (EVC2), Meter."""

from ampgate.devices.charger import FAST_FIELDS, SLOW_FIELDS, Charger, ChargerFast, ChargerSlow
from ampgate.devices.device import (
    DeviceRequestError,
    IdentityCheckResult,
    IdentityResult,
    ModbusDevice,
    WriteOutcome,
)
from ampgate.devices.meter import MEASUREMENT_FIELDS, Meter, MeterMeasurement

__all__ = [
    "FAST_FIELDS",
    "MEASUREMENT_FIELDS",
    "SLOW_FIELDS",
    "Charger",
    "ChargerFast",
    "ChargerSlow",
    "DeviceRequestError",
    "IdentityCheckResult",
    "IdentityResult",
    "Meter",
    "MeterMeasurement",
    "ModbusDevice",
    "WriteOutcome",
]
