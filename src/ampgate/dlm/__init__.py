"""Dynamic load management: a pure allocator from (site, measurements, state, now) to setpoints.

No I/O, no clock, no asyncio, no pymodbus: time is an input, so the engine can be property-tested
and simulated faster than real time. See :mod:`ampgate.dlm.model` for the values.
"""

from ampgate.dlm.engine import allocate
from ampgate.dlm.failsafe import plan_failsafe
from ampgate.dlm.model import (
    MAX_CHARGING_CURRENT,
    MIN_CHARGING_CURRENT,
    PHASE_NAMES,
    Allocation,
    ChargerMemory,
    ChargerReading,
    ChargerSpec,
    EngineSettings,
    EngineState,
    Group,
    Measurements,
    MeterLocation,
    MeterMemory,
    MeterReading,
    MeterSpec,
    PhaseAccount,
    Rotation,
    Setpoint,
    Site,
    VehicleState,
)
from ampgate.dlm.peak import QUARTER_S, PeakBudget
from ampgate.dlm.topology import check_site

__all__ = [
    "MAX_CHARGING_CURRENT",
    "MIN_CHARGING_CURRENT",
    "PHASE_NAMES",
    "QUARTER_S",
    "Allocation",
    "ChargerMemory",
    "ChargerReading",
    "ChargerSpec",
    "EngineSettings",
    "EngineState",
    "Group",
    "Measurements",
    "MeterLocation",
    "MeterMemory",
    "MeterReading",
    "MeterSpec",
    "PeakBudget",
    "PhaseAccount",
    "Rotation",
    "Setpoint",
    "Site",
    "VehicleState",
    "allocate",
    "check_site",
    "plan_failsafe",
]
