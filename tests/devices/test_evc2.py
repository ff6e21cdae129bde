"""What the gateway concludes from EVC2 register values (ampgate.devices.evc2)."""

from __future__ import annotations

from ampgate.devices.evc2 import vehicle_state_from
from ampgate.dlm import VehicleState


def test_evse_status_and_iec_state_map_to_vehicle_states():
    assert vehicle_state_from(0) is VehicleState.CHARGING
    assert vehicle_state_from(2) is VehicleState.CONNECTED  # B2: paused for power, still wants
    assert vehicle_state_from(7) is VehicleState.NOT_CONNECTED
    assert vehicle_state_from(None, 4) is VehicleState.CHARGING
    assert vehicle_state_from(9, 0) is VehicleState.NOT_CONNECTED  # E unknown: IEC decides
    assert vehicle_state_from(42) is VehicleState.UNKNOWN
