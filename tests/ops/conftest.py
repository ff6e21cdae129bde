"""A realistic daemon snapshot (2 chargers, 1 meter, 2 fuse groups) for the ops tests."""

from __future__ import annotations

import time

import pytest

from ampgate.devices.evc2 import evc2_error_ocpp_codes
from ampgate.gateway.publish import request_stats
from ampgate.interfaces.snapshot import (
    ChargerReadings,
    DaemonSnapshot,
    DeviceSnapshot,
    DlmSnapshot,
    ExternalLimitSnapshot,
    GroupControlSnapshot,
    GroupSnapshot,
    LoopHealth,
    MeterReadings,
    PhaseAllocation,
    PhaseValues,
    RequestStatsSnapshot,
    bit_states,
    enum_state,
)
from ampgate.interfaces.store import SnapshotStore
from ampgate.transport.health import HealthTracker
from ampgate.transport.result import RequestResult, ResultKind, new_result

# The EVC2 enums and bits as the reference states them (teltocharge-evc2.md a, b, c, d, e, f).
EVSE_STATUS = {
    0: "C charging",
    1: "B1 waiting for EV",
    2: "B2 not enough power, was charging",
    3: "B3 not enough power, was not charging",
    4: "D1 stopped by EV",
    5: "D2 no authorisation",
    6: "D3 charging not allowed",
    7: "A EV not connected",
    8: "F error",
    9: "E unknown",
}
IEC_STATE = dict(enumerate(["A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F"]))
CHARGE_POINT_STATE = dict(
    enumerate(
        [
            "no EV",
            "awaiting permission",
            "authorised",
            "charging",
            "paused",
            "charge successful",
            "stopped by user",
            "error",
            "reserved",
            "other",
        ]
    )
)
LIMIT_CAUSE = dict(
    enumerate(
        [
            "hardware limits",
            "max power from grid",
            "user setting",
            "charging cable",
            "simple CP sequence",
            "EVSE default settings",
            "load balance",
            "temperature",
        ]
    )
)
WARNING_BITS = dict(
    enumerate(
        [
            "midplate open",
            "temperature warning",
            "current draw higher than allowed",
            "ventilation required",
            "real-time clock lost",
            "simplified CP denied",
            "simplified CP detected",
            "charging without ventilation denied",
            "PEN CT clamp not calibrated",
            "NFC module fault",
            "PEN fault detected",
        ]
    )
)
ERROR_BITS = dict(
    enumerate(
        [
            "input voltage not in range",
            "output voltage not in range",
            "leakage sensor test failed",
            "EV diode or CP line fault",
            "overcurrent",
            "temperature error",
            "PEN fault active",
            "proximity pilot error",
            "current leakage detected",
            "socket lock error",
            "internal error",
        ]
    )
)


def _stats(ok: int, timeouts: int, exc_code: int | None) -> RequestStatsSnapshot:
    """The request statistics the gateway publishes, counted the way the transport counts."""
    tracker = HealthTracker("rs485", 1)

    def result(kind: ResultKind, rtt: float | None, code: int | None = None) -> RequestResult:
        return new_result(kind, "rs485", 1, 3, 0, 1, (0,), code, None, rtt, 1, "")

    for i in range(ok):
        tracker.record(result(ResultKind.OK, 0.02 + 0.01 * (i % 7)))
    for _ in range(timeouts):
        tracker.record(result(ResultKind.TIMEOUT, None))
    if exc_code is not None:
        tracker.record(result(ResultKind.EXCEPTION, 0.03, exc_code))
    return request_stats(tracker.snapshot())


def _charger(voltages: tuple[float, float, float], amps: float, errors_raw: int, status: int):
    return ChargerReadings(
        voltage_volts=PhaseValues(*voltages),
        current_amperes=PhaseValues(amps, amps, amps),
        active_power_watts=round(sum(voltages) * amps),
        session_energy_kwh=4.21,
        lifetime_energy_kwh=1234.56,
        temperature_celsius=31.5,
        setpoint_amperes=16,
        allowed_max_amperes=32,
        evse_status=enum_state(EVSE_STATUS[status], EVSE_STATUS),
        iec_state=enum_state("C2", IEC_STATE),
        charge_point_state=enum_state("unknown (12)", CHARGE_POINT_STATE),
        current_limit_cause=enum_state("load balance", LIMIT_CAUSE),
        warnings=bit_states(0b100, WARNING_BITS),
        errors=bit_states(errors_raw, ERROR_BITS, evc2_error_ocpp_codes(voltages)),
        watchdog_seconds=30,
        failsafe_amperes=6,
        firmware_version=20206,
    )


def realistic_snapshot(now_monotonic: float | None = None) -> DaemonSnapshot:
    """Two chargers (one with error bits incl. an undocumented one), a meter, two groups."""
    now = time.monotonic() if now_monotonic is None else now_monotonic
    wall = time.time()
    devices = (
        DeviceSnapshot(
            name="c1",
            model="teltocharge-evc2",
            kind="charger",
            bus="rs485-a",
            unit_id=1,
            up=True,
            last_success_unix=wall - 1.5,
            requests=_stats(120, 2, None),
            charger=_charger((231.0, 229.5, 230.2), 15.8, 0, 0),
        ),
        DeviceSnapshot(
            name="c2",
            model="teltocharge-evc2",
            kind="charger",
            bus="rs485-a",
            unit_id=2,
            up=False,
            last_success_unix=wall - 95.0,
            requests=_stats(40, 17, 2),
            charger=_charger((262.0, 230.0, 231.0), 0.0, 0b1000_0000_0001 | 0b10000, 8),
        ),
        DeviceSnapshot(
            name="grid",
            model="eastron-sdm630",
            kind="meter",
            bus="tcp-gw",
            unit_id=10,
            up=True,
            last_success_unix=wall - 0.7,
            requests=_stats(300, 0, None),
            meter=MeterReadings(
                voltage_volts=PhaseValues(230.1, 229.8, 231.4),
                current_amperes=PhaseValues(42.5, 38.0, -3.5),
                power_watts=PhaseValues(9779.3, 8732.4, -810.0),
                total_power_watts=17701.7,
                frequency_hertz=49.98,
                energy_import_kwh=98765.4,
                energy_export_kwh=321.0,
            ),
        ),
    )
    groups = tuple(
        GroupSnapshot(
            name=name,
            meter_stale=stale,
            phases=tuple(
                PhaseAllocation(
                    phase=phase,
                    limit_amperes=limit,
                    non_ev_load_amperes=load,
                    allocated_amperes=alloc,
                    available_amperes=limit - load - alloc - 3.0,
                    headroom_amperes=3.0,
                )
                for phase, load, alloc in (("L1", 26.7, 16), ("L2", 22.2, 16), ("L3", 5.0, 16))
            ),
            control=control,
        )
        for name, limit, stale, control in (
            (
                "main",
                100.0,
                False,
                GroupControlSnapshot(
                    effective_limit_amperes=(80.0, 80.0, 100.0),
                    power_cap_kw=40.0,
                    external_limits=(
                        ExternalLimitSnapshot("ems", (80.0, 80.0, 100.0), None, 60.0, wall + 42),
                        ExternalLimitSnapshot("http", None, 45.0, 300.0, wall + 100),
                    ),
                    peak_kw=40.0,
                    quarter_average_kw=12.5,
                    month_peak_kw=38.2,
                    peak_allowed_kw=41.0,
                ),
            ),
            (
                "garage",
                63.0,
                True,
                GroupControlSnapshot(
                    effective_limit_amperes=(10.0, 10.0, 10.0), expiry_fallback=True
                ),
            ),
        )
    )
    return DaemonSnapshot(
        devices=devices,
        dlm=DlmSnapshot(
            groups=groups,
            reason_counts={"capacity": 12, "paused_below_minimum": 3, "ramp_up_limited": 7},
            cycles_total=420,
            last_cycle_duration_seconds=0.184,
            overload_detected_total=0,
        ),
        loop=LoopHealth(last_iteration_monotonic=now, last_iteration_unix=wall, cycle_seconds=5.0),
    )


@pytest.fixture
def store() -> SnapshotStore:
    """A store holding :func:`realistic_snapshot` taken now."""
    return SnapshotStore(realistic_snapshot())


def exposed_metric_names() -> set[str]:
    """Every sample name the collector exposes for :func:`realistic_snapshot` (with suffixes)."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from ampgate.interfaces.metrics import build_registry

    text = generate_latest(build_registry(SnapshotStore(realistic_snapshot()))).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}
