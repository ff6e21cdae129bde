"""Events are logged once per change, as snake_case names with key/value context."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from ampgate.codec import load_map
from ampgate.gateway.events import FLAP_LIMIT, EventLog

EVC2 = load_map("teltocharge-evc2")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _log(clock: Clock) -> EventLog:
    return EventLog(structlog.get_logger("test"), clock=clock)


def test_offline_and_online_are_logged_once_per_change():
    clock = Clock()
    events = _log(clock)
    with capture_logs() as logs:
        events.device_seen("c1", True)
        events.device_seen("c1", True)
        events.device_seen("c1", False, problem="timeout")
        events.device_seen("c1", False, problem="timeout")
        events.device_seen("c1", True)
    assert [e["event"] for e in logs] == ["device_online", "device_offline", "device_online"]
    assert logs[1]["device"] == "c1" and logs[1]["problem"] == "timeout"
    assert logs[1]["log_level"] == "warning" and "hint" in logs[1]


def test_more_than_five_changes_in_ten_minutes_is_flapping():
    clock = Clock()
    events = _log(clock)
    with capture_logs() as logs:
        events.device_seen("c1", True)
        for i in range(FLAP_LIMIT + 1):
            clock.now += 30
            events.device_seen("c1", i % 2 == 1)
    flapping = [e for e in logs if e["event"] == "device_flapping"]
    assert len(flapping) == 1
    assert flapping[0]["changes"] == FLAP_LIMIT + 1 and flapping[0]["device"] == "c1"
    assert events.is_flapping("c1")


def test_five_changes_spread_over_more_than_ten_minutes_are_not_flapping():
    clock = Clock()
    events = _log(clock)
    with capture_logs() as logs:
        events.device_seen("c1", True)
        for i in range(12):
            clock.now += 200  # 3 changes per 10 min
            events.device_seen("c1", i % 2 == 1)
    assert not [e for e in logs if e["event"] == "device_flapping"]


def test_error_bits_carry_the_ocpp_code_and_bit_0_is_decided_from_voltages():
    events = _log(Clock())
    labels = EVC2.bits_of("error_code")
    with capture_logs() as logs:
        events.charger_bits(
            "c1",
            warning_raw=0,
            error_raw=0b1_0000_0001,  # bit 0 input voltage, bit 8 current leakage
            warning_labels=EVC2.bits_of("warning_code"),
            error_labels=labels,
            voltages=[262.0, 230.0, 231.0],
        )
        events.charger_bits(
            "c1",
            warning_raw=0,
            error_raw=0b1_0000_0000,
            warning_labels=None,
            error_labels=labels,
            voltages=[230.0, 230.0, 230.0],
        )
    assert [(e["event"], e["bit"], e["ocpp_error_code"]) for e in logs] == [
        ("charger_error_set", 0, "OverVoltage"),
        ("charger_error_set", 8, "GroundFailure"),
        ("charger_error_cleared", 0, "OtherError"),
    ]
    assert logs[0]["label"] == labels[0]


def test_undervoltage_and_undocumented_bits():
    events = _log(Clock())
    with capture_logs() as logs:
        events.charger_bits(
            "c1",
            warning_raw=1 << 13,
            error_raw=1,
            warning_labels=EVC2.bits_of("warning_code"),
            error_labels=EVC2.bits_of("error_code"),
            voltages=[190.0, 230.0, 0.0],
        )
    by_event = {e["event"]: e for e in logs}
    assert by_event["charger_error_set"]["ocpp_error_code"] == "UnderVoltage"
    assert by_event["charger_warning_set"]["label"] == "unknown bit 13"


def test_meter_stale_and_fresh_are_logged_on_change_only():
    events = _log(Clock())
    with capture_logs() as logs:
        events.meter_freshness("grid", False)
        events.meter_freshness("grid", True, non_ev_source="fallback")
        events.meter_freshness("grid", True)
        events.meter_freshness("grid", False)
    assert [e["event"] for e in logs] == ["meter_stale", "meter_fresh"]
    assert logs[0]["non_ev_source"] == "fallback"


def test_engine_notices_are_logged_with_their_level_subject_and_hint():
    clock = Clock()
    events = _log(clock)
    with capture_logs() as logs:
        events.engine_notice("overload_measured", "main", {"phase": "L2", "amps": 43.5})
        events.engine_notice("phase_switch_not_followed", "c1", {"wanted_phases": 1})
        events.engine_notice("charger_overdraw", "c2", {"amps": 22.0, "setpoint": 16})
        events.engine_notice("meter_implausible", "grid", {"group": "main", "reason": "x"})
        events.engine_notice("meter_plausible", "grid", {"group": "main"})
    got = [(e["event"], e["log_level"], e.get("device", e.get("group"))) for e in logs]
    assert got == [
        ("overload_measured", "error", "main"),
        ("phase_switch_not_followed", "warning", "c1"),
        ("charger_overdraw", "warning", "c2"),
        ("meter_implausible", "warning", "grid"),
        ("meter_plausible", "info", "grid"),
    ]
    assert logs[0]["phase"] == "L2" and "hint" in logs[0] and "hint" in logs[3]
    assert events.counts["charger_overdraw"] == 1
