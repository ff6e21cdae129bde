"""TeltoCharge EVC2 charger: the reads and writes the daemon needs, typed.

Setpoint writes that lower the current (or whose previous value is unknown) use the bus's
priority lane, so they overtake queued reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ampgate.codec import Reading
from ampgate.codec.encode import encode_field
from ampgate.devices.device import ModbusDevice, WriteOutcome, label, number, per_phase, raw_int

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


@dataclass(frozen=True, slots=True)
class ChargerFast:
    """The fast-poll values of a charger (engineering units; None when missing)."""

    voltages: tuple[float | None, float | None, float | None]
    currents: tuple[float | None, float | None, float | None]
    evse_status: str | None
    charge_point_state: str | None
    iec_state: str | None
    warnings: frozenset[str]
    errors: frozenset[str]
    current_limit_cause: str | None
    amps_to_use: float | None
    active_power: float | None
    readings: Mapping[str, Reading]


@dataclass(frozen=True, slots=True)
class ChargerSlow:
    """Settings, identity and energy counters (read rarely; the user can change settings)."""

    firmware_version: int | None
    serial_number: int | None
    product_code: int | None
    communication_timeout: float | None
    failsafe_current: float | None
    session_energy_kwh: float | None
    lifetime_energy_kwh: float | None
    readings: Mapping[str, Reading]


PHASE_SETS: dict[int, tuple[int, ...]] = {
    0: (0,),
    1: (1,),
    2: (2,),
    3: (0, 1),
    4: (0, 2),
    5: (1, 2),
    6: (0, 1, 2),
    7: (),
}
"""EVC2 enum ``phases`` (regs 13 and 14): code → the charger's own terminals (0 = its L1)."""
PHASE_TO_USE = {1: 0, 3: 6}
"""Reg 14 value for a phase mode: 1 phase = its L1 only (0), 3 phases (6)."""


def phases_of_code(code: int | None) -> frozenset[int] | None:
    """The charger terminals an EVC2 phase code names (None for an unknown code)."""
    if code is None or int(code) not in PHASE_SETS:
        return None
    return frozenset(PHASE_SETS[int(code)])


def _set(value: object) -> frozenset[str]:
    return value if isinstance(value, frozenset) else frozenset()


class Charger(ModbusDevice):
    """An EVC2 charger (map ``teltocharge-evc2`` or a compatible one)."""

    last_setpoint: float | None = None

    async def read_fast(self, *, gap: int = FAST_GAP) -> ChargerFast:
        """Currents, voltages, statuses, errors, warnings, setpoint and active power."""
        r = await self.read_fields(FAST_FIELDS, gap=gap)
        self.last_setpoint = number(r, "amps_to_use")
        return ChargerFast(
            voltages=per_phase(r, "voltage"),
            currents=per_phase(r, "current"),
            evse_status=label(r, "evse_status"),
            charge_point_state=label(r, "charge_point_state"),
            iec_state=label(r, "iec_state"),
            warnings=_set(r["warning_code"].value),
            errors=_set(r["error_code"].value),
            current_limit_cause=label(r, "current_limit_cause"),
            amps_to_use=self.last_setpoint,
            active_power=number(r, "active_power"),
            readings=r,
        )

    async def read_slow(self) -> ChargerSlow:
        """Settings, identity, firmware and energy counters."""
        r = await self.read_fields(SLOW_FIELDS, gap=8)
        return ChargerSlow(
            firmware_version=raw_int(r, "firmware_version"),
            serial_number=raw_int(r, "serial_number"),
            product_code=raw_int(r, "product_code"),
            communication_timeout=number(r, "communication_timeout"),
            failsafe_current=number(r, "failsafe_current"),
            session_energy_kwh=number(r, "session_energy"),
            lifetime_energy_kwh=number(r, "lifetime_energy"),
            readings=r,
        )

    async def set_current(self, amps: float, *, verify: bool = True) -> WriteOutcome:
        """Write the DLM setpoint ``amps_to_use`` (0 or 6–32 A on the EVC2).

        Lowering (or an unknown previous setpoint) goes through the priority lane.
        """
        lowering = self.last_setpoint is None or amps < self.last_setpoint
        outcome = await self.write_field("amps_to_use", amps, verify=verify, priority=lowering)
        self.last_setpoint = amps
        return outcome

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
