"""TeltoCharge EVC2 charger: the reads and writes the daemon needs, typed.

Setpoint writes that lower the current (or whose previous value is unknown) use the bus's
priority lane, so they overtake queued reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ampgate.codec import Reading
from ampgate.codec.encode import encode_field
from ampgate.devices.device import (
    ModbusDevice,
    WriteOutcome,
    kwh,
    label,
    number,
    per_phase,
    raw_int,
    value,
)
from ampgate.devices.evc2 import phase_mode_code, phases_of_code, vehicle_state_from
from ampgate.dlm import VehicleState

PHASES = ("l1", "l2", "l3")
FAST_FIELDS: tuple[str, ...] = (
    *(f"voltage_{p}" for p in PHASES),
    *(f"current_{p}" for p in PHASES),
    "evse_status",
    "charge_point_state",
    "iec_state",
    "warning_code",
    "error_code",
    "current_limit_cause",
    "amps_to_use",
    "active_power",
    "evse_id",
    "phase_connected",
    "phase_to_use",
)
"""Read every cycle, in one request (regs 0–38): with the identity (reg 9) and the phases
connected and commanded (regs 13, 14) a charger is identified by its first poll, and a
commanded phase switch is confirmed (or not) from what it reports."""
FAST_GAP = 16
"""Unused registers a fast read may span: 16 makes it one request for the EVC2 (regs 0-38)
instead of two (0-15, 27-38); on RS485 a request's overhead (both frames' headers, the
turnaround, the silent intervals) outweighs 11 more registers."""
SLOW_FIELDS: tuple[str, ...] = (
    "evse_id",
    "product_code",
    "serial_number",
    "firmware_version",
    "three_phase_possible",
    "phase_change_possible",
    "amp_limit",
    "phase_connected",
    "phase_to_use",
    "socket_lock_mode",
    "communication_timeout",
    "failsafe_current",
    "require_authorization",
    "max_power_from_grid",
    "user_max_current",
    "lock_status",
    "internal_temperature",
    "ocpp_connected",
    "max_supported_power",
    "session_energy",
    "session_duration",
    "lifetime_energy",
)


Triple = tuple[float | None, float | None, float | None]


@dataclass(frozen=True, slots=True)
class ChargerFast:
    """The fast-poll values of a charger (engineering units; None when missing)."""

    voltages: Triple
    currents: Triple
    vehicle: VehicleState
    """The car as the engine plans with it (from the EVSE status, else the IEC state)."""
    evse_status: str | None
    charge_point_state: str | None
    iec_state: str | None
    warnings: frozenset[str]
    errors: frozenset[str]
    warning_code: int | None
    """The warning bit field as read (bit n set = warning n)."""
    error_code: int | None
    """The error bit field as read."""
    current_limit_cause: str | None
    amps_to_use: int | None
    """The setpoint the charger holds (A; 0 = no charging)."""
    active_power: float | None
    phases_connected: frozenset[int] | None
    """The charger terminals its contactor has connected (0 = its L1), None when unknown."""
    phase_to_use: int | None
    """The commanded phase mode as the charger holds it (EVC2 code, see ``PHASE_TO_USE``)."""
    readings: Mapping[str, Reading]


@dataclass(frozen=True, slots=True)
class ChargerSlow:
    """Settings, identity and energy counters (read rarely; the user can change settings)."""

    firmware_version: int | None
    serial_number: int | None
    product_code: int | None
    communication_timeout: float | None
    failsafe_current: float | None
    amp_limit: float | None
    """The most the charger's own settings allow (its DIP/installer limit)."""
    user_max_current: float | None
    """The most its user allows (the mobile app)."""
    phase_change_possible: bool | None
    internal_temperature: float | None
    session_energy_kwh: float | None
    lifetime_energy_kwh: float | None
    readings: Mapping[str, Reading]


def _set(value: object) -> frozenset[str]:
    return value if isinstance(value, frozenset) else frozenset()


def charger_fast_from(readings: Mapping[str, Reading]) -> ChargerFast:
    """The fast-poll values from decoded readings (a field absent or missing gives None)."""
    r = readings
    setpoint = raw_int(r, "amps_to_use")
    return ChargerFast(
        voltages=per_phase(r, "voltage"),
        currents=per_phase(r, "current"),
        vehicle=vehicle_state_from(raw_int(r, "evse_status"), raw_int(r, "iec_state")),
        evse_status=label(r, "evse_status"),
        charge_point_state=label(r, "charge_point_state"),
        iec_state=label(r, "iec_state"),
        warnings=_set(value(r, "warning_code")),
        errors=_set(value(r, "error_code")),
        warning_code=raw_int(r, "warning_code"),
        error_code=raw_int(r, "error_code"),
        current_limit_cause=label(r, "current_limit_cause"),
        amps_to_use=setpoint,
        active_power=number(r, "active_power"),
        phases_connected=phases_of_code(raw_int(r, "phase_connected")),
        phase_to_use=raw_int(r, "phase_to_use"),
        readings=r,
    )


def charger_slow_from(readings: Mapping[str, Reading]) -> ChargerSlow:
    """The slow-read values from decoded readings (a field absent or missing gives None)."""
    r = readings
    change = raw_int(r, "phase_change_possible")
    return ChargerSlow(
        firmware_version=raw_int(r, "firmware_version"),
        serial_number=raw_int(r, "serial_number"),
        product_code=raw_int(r, "product_code"),
        communication_timeout=number(r, "communication_timeout"),
        failsafe_current=number(r, "failsafe_current"),
        amp_limit=number(r, "amp_limit"),
        user_max_current=number(r, "user_max_current"),
        phase_change_possible=None if change is None else bool(change),
        internal_temperature=number(r, "internal_temperature"),
        session_energy_kwh=kwh(r, "session_energy"),
        lifetime_energy_kwh=kwh(r, "lifetime_energy"),
        readings=r,
    )


class Charger(ModbusDevice):
    """An EVC2 charger (map ``teltocharge-evc2`` or a compatible one)."""

    last_setpoint: float | None = None

    async def read_fast(self, *, gap: int = FAST_GAP) -> ChargerFast:
        """Currents, voltages, statuses, errors, warnings, setpoint, phases and active power."""
        fast = charger_fast_from(await self.read_fields(FAST_FIELDS, gap=gap))
        self.last_setpoint = fast.amps_to_use
        return fast

    async def read_slow(self) -> ChargerSlow:
        """Settings, identity, firmware and energy counters."""
        return charger_slow_from(await self.read_fields(SLOW_FIELDS, gap=8))

    async def set_current(self, amps: float, *, verify: bool = True) -> WriteOutcome:
        """Write the DLM setpoint ``amps_to_use`` (0 or 6–32 A on the EVC2).

        Lowering (or an unknown previous setpoint) goes through the priority lane.
        """
        lowering = self.last_setpoint is None or amps < self.last_setpoint
        outcome = await self.write_field("amps_to_use", amps, verify=verify, priority=lowering)
        self.last_setpoint = amps
        return outcome

    async def set_phases(self, phases: int) -> WriteOutcome:
        """Switch to 1 or 3 phases (reg 14), verified, on the priority lane."""
        return await self.write_field("phase_to_use", phase_mode_code(phases), priority=True)

    async def program_watchdog(
        self, timeout_s: float, failsafe_a: float
    ) -> tuple[WriteOutcome, WriteOutcome]:
        """Set the failsafe current, then the communication timeout, each verified.

        Both values are encoded before anything is written, so a bad value writes nothing.
        """
        encode_field(self.map, "failsafe_current", failsafe_a)
        encode_field(self.map, "communication_timeout", timeout_s)
        failsafe = await self.write_field("failsafe_current", failsafe_a, priority=True)
        timeout = await self.write_field("communication_timeout", timeout_s, priority=True)
        return failsafe, timeout
