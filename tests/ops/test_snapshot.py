"""The snapshot helpers the daemon uses to fill the state metrics read."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from ampgate.devices.evc2 import evc2_error_ocpp_codes
from ampgate.interfaces.snapshot import DaemonSnapshot, bit_states, enum_state, firmware_dotted
from ampgate.interfaces.store import SnapshotStore


def test_bit_states_list_documented_bits_and_name_unknown_ones():
    states = bit_states(0b1000_0001_0000, {4: "overcurrent", 5: "temperature"}, {4: "OverCurrent"})
    assert [(s.bit, s.label, s.active, s.ocpp_error_code) for s in states] == [
        (4, "overcurrent", True, "OverCurrent"),
        (5, "temperature", False, None),
        (11, "unknown bit 11", True, None),
    ]
    assert all(not s.active for s in bit_states(None, {0: "a"}))


def test_input_voltage_error_maps_to_over_or_under_voltage():
    assert evc2_error_ocpp_codes([260.0, 230.0, 230.0])[0] == "OverVoltage"
    assert evc2_error_ocpp_codes([230.0, 190.0, 0.0])[0] == "UnderVoltage"
    assert evc2_error_ocpp_codes([230.0, 231.0, 0.0])[0] == "OtherError"
    assert evc2_error_ocpp_codes()[9] == "ConnectorLockFailure"


def test_enum_state_orders_choices_by_register_value():
    state = enum_state("B", {1: "B", 0: "A"})
    assert state.active == "B" and state.choices == ("A", "B")
    assert enum_state(None, None).active is None


def test_firmware_dotted_keeps_the_inferred_encoding():
    assert firmware_dotted(20206) == "2.2.6"
    assert firmware_dotted(11504) == "1.15.4"
    assert firmware_dotted(None) is None


def test_snapshot_values_are_frozen_and_store_replaces_atomically():
    store = SnapshotStore()
    with pytest.raises(dataclasses.FrozenInstanceError):
        store.latest().devices = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        store.publish({"devices": ()})  # type: ignore[arg-type]
    snaps = [DaemonSnapshot() for _ in range(50)]
    seen: list[DaemonSnapshot] = []
    reader = threading.Thread(target=lambda: [seen.append(store.latest()) for _ in range(500)])
    reader.start()
    for snap in snaps:
        store.publish(snap)
    reader.join()
    assert all(isinstance(s, DaemonSnapshot) for s in seen)
    assert store.latest() is snaps[-1]
