"""What the TeltoCharge EVC2's registers mean to the gateway, beyond their decoding.

The register map (``register_maps/teltocharge-evc2.toml``) says how each register is read and
written; this module holds what the gateway concludes from their values: the vehicle state the
engine plans with, from reg 6 (EVSE status) and reg 33 (IEC 61851 state), and the phase codes
of reg 13 (phases connected) and reg 14 (phases to use), and the OCPP 1.6 errorCode of each
warning (reg 34) and error (reg 35) bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ampgate.dlm import VehicleState

_EVSE_STATUS = {  # EVC2 reg 6, enum a (newest revision)
    0: VehicleState.CHARGING,  # C charging
    1: VehicleState.CONNECTED,  # B1 connected, authorised, waiting for EV to start
    2: VehicleState.CONNECTED,  # B2 authorised, was charging, not enough power
    3: VehicleState.CONNECTED,  # B3 authorised, wasn't charging, not enough power
    4: VehicleState.SUSPENDED_BY_EV,  # D1 charging stopped by EV
    5: VehicleState.NOT_AUTHORISED,  # D2 no authorisation
    6: VehicleState.NOT_AUTHORISED,  # D3 simplified CP / D state charging not allowed
    7: VehicleState.NOT_CONNECTED,  # A EV not connected
    8: VehicleState.ERROR,  # F error state
    9: VehicleState.UNKNOWN,  # E unknown state
}
_IEC_STATE = {  # EVC2 reg 33, enum c
    0: VehicleState.NOT_CONNECTED,  # A
    1: VehicleState.CONNECTED,  # B1 pending authorisation, no PWM
    2: VehicleState.CONNECTED,  # B2 ready, PWM active
    3: VehicleState.CONNECTED,  # C1 S2 closed, no PWM (car wants, we offer nothing)
    4: VehicleState.CHARGING,  # C2 charging
    5: VehicleState.CONNECTED,  # D1 ventilation required, no PWM
    6: VehicleState.CHARGING,  # D2 charging, ventilation required
    7: VehicleState.ERROR,  # E control pilot fault
    8: VehicleState.ERROR,  # F EVSE fault
}


def vehicle_state_from(evse_status: int | None, iec_state: int | None = None) -> VehicleState:
    """Derive the vehicle state from EVC2 reg 6 (EVSE status, enum a), else reg 33 (IEC state).

    Reg 6 wins when known because it separates "paused for power" (B2/B3) from "not authorised"
    (D2). Values outside the documented enums give ``UNKNOWN`` (the engine then offers nothing
    but still accounts for any measured draw).
    """
    if evse_status is not None and evse_status in _EVSE_STATUS:
        state = _EVSE_STATUS[evse_status]
        if state is not VehicleState.UNKNOWN or iec_state is None:
            return state
    if iec_state is not None and iec_state in _IEC_STATE:
        return _IEC_STATE[iec_state]
    return VehicleState.UNKNOWN


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
"""EVC2 enum ``phases`` (regs 13 and 14): code -> the charger's own terminals (0 = its L1)."""
PHASE_TO_USE = {1: 0, 3: 6}
"""Reg 14 value for a phase mode: 1 phase = its L1 only (0), 3 phases (6)."""


def phase_mode_code(phases: int) -> int:
    """The reg 14 code of a phase mode (1 or 3 phases); ValueError for another count."""
    if phases not in PHASE_TO_USE:
        raise ValueError(f"phase mode {phases} is not allowed (allowed: 1, 3)")
    return PHASE_TO_USE[phases]


def phases_of_code(code: int | None) -> frozenset[int] | None:
    """The charger terminals an EVC2 phase code names (None for an unknown code)."""
    if code is None or int(code) not in PHASE_SETS:
        return None
    return frozenset(PHASE_SETS[int(code)])


#: EVC2 error bits (reg 35) → OCPP 1.6 errorCode; the mapping proposed in the diagnostics
#: reference (data, not confirmed by Teltonika). Bit 0 is refined by :func:`evc2_error_ocpp_codes`.
EVC2_ERROR_OCPP_CODES: Mapping[int, str] = MappingProxyType(
    {
        0: "OtherError",
        1: "OtherError",
        2: "GroundFailure",
        3: "EVCommunicationError",
        4: "OverCurrentFailure",
        5: "HighTemperature",
        6: "GroundFailure",
        7: "OtherError",
        8: "GroundFailure",
        9: "ConnectorLockFailure",
        10: "InternalError",
    }
)


def evc2_error_ocpp_codes(
    voltages: Iterable[float | None] = (),
    *,
    nominal_volts: float = 230.0,
    tolerance: float = 0.10,
) -> Mapping[int, str]:
    """The EVC2 error-bit → OCPP mapping, with bit 0 (input voltage) decided from the voltages.

    Bit 0 is ``OverVoltage`` if a phase is above nominal × (1 + tolerance), ``UnderVoltage`` if
    a connected phase (> 0 V) is below nominal × (1 − tolerance), else ``OtherError``. The ±10 %
    band is EN 50160's supply tolerance; the reference only says "decide from regs 0–2 vs nominal".
    """
    present = [v for v in voltages if v is not None]
    code = "OtherError"
    if any(v > nominal_volts * (1 + tolerance) for v in present):
        code = "OverVoltage"
    elif any(0 < v < nominal_volts * (1 - tolerance) for v in present):
        code = "UnderVoltage"
    return MappingProxyType({**EVC2_ERROR_OCPP_CODES, 0: code})


#: EVC2 warning bits (reg 34) that have an OCPP 1.6 errorCode (diagnostics reference): only the
#: NFC module fault (ReaderFailure); the other warnings are not faults in OCPP terms.
EVC2_WARNING_OCPP_CODES: Mapping[int, str] = MappingProxyType({9: "ReaderFailure"})
