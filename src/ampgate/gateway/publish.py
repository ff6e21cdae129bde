"""Build the ops :class:`~ampgate.interfaces.snapshot.DaemonSnapshot` from the gateway's state."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ampgate.config import PHASES, SiteConfig
from ampgate.devices.evc2 import evc2_error_ocpp_codes
from ampgate.dlm import Allocation
from ampgate.gateway.runtime import ChargerRuntime, MeterRuntime
from ampgate.interfaces.snapshot import (
    ChargerReadings,
    DaemonSnapshot,
    DeviceKind,
    DeviceSnapshot,
    DlmSnapshot,
    EnumState,
    Event,
    GroupControlSnapshot,
    GroupSnapshot,
    LoopHealth,
    MeterReadings,
    PhaseAllocation,
    PhaseValues,
    RequestStatsSnapshot,
    RttHistogramSnapshot,
    bit_states,
    enum_state,
)


@dataclass(slots=True)
class LoopCounters:
    """What the gateway counts across cycles, published in every snapshot."""

    cycles: int = 0
    last_cycle_seconds: float | None = None
    reason_counts: dict[str, int] = field(default_factory=dict)
    """Cycles × chargers per reason code of the setpoint."""
    overloads: int = 0
    """Cycles in which a meter showed a fuse phase over limit − headroom."""
    overloads_by_phase: dict[tuple[str, int], int] = field(default_factory=dict)

    def count(self, allocation: Allocation) -> None:
        """Count one cycle's setpoint reasons and measured overloads."""
        for sp in allocation.setpoints.values():
            self.reason_counts[sp.reason_code] = self.reason_counts.get(sp.reason_code, 0) + 1
        if allocation.overloads:
            self.overloads += 1
        for overload in allocation.overloads:
            key = (overload.group, overload.phase)
            self.overloads_by_phase[key] = self.overloads_by_phase.get(key, 0) + 1


def request_stats(health: Any) -> RequestStatsSnapshot:
    """Convert a transport ``DeviceHealth`` into the snapshot's request statistics."""
    if health is None:
        return RequestStatsSnapshot()
    buckets = [(b, c) for b, c in health.rtt.buckets if b != float("inf")]
    rtt = RttHistogramSnapshot(
        bounds=tuple(b for b, _ in buckets),
        cumulative_counts=tuple(c for _, c in buckets),
        sum_seconds=float(health.rtt.sum),
        count=int(health.rtt.count),
    )
    counts = {k: 0 for k in ("ok", "timeout", "exception", "crc", "connection")}
    counts.update({str(k): int(v) for k, v in health.counts.items()})
    return RequestStatsSnapshot(
        by_result=counts, by_exception_code=dict(health.exception_counts), rtt=rtt
    )


def _health(rt: ChargerRuntime | MeterRuntime) -> Any:
    try:
        return rt.device.bus.health(rt.device.unit_id)
    except Exception:  # statistics must never break publishing
        return None


def charger_readings(rt: ChargerRuntime) -> ChargerReadings | None:
    """The charger's readings for metrics (None before its first successful poll)."""
    fast, slow = rt.fast, rt.slow
    if fast is None and slow is None:
        return None
    rmap = rt.device.map
    voltages = fast.voltages if fast else (None, None, None)
    limits = [slow.amp_limit, slow.user_max_current] if slow else []
    limits.append(float(rt.config.max_current) if rt.config else None)
    known = [x for x in limits if x is not None and x > 0]

    def enum(name: str, label: str | None) -> EnumState:
        return enum_state(label, rmap.enum_of(name))

    return ChargerReadings(
        voltage_volts=PhaseValues(*voltages),
        current_amperes=PhaseValues(*fast.currents) if fast else PhaseValues(),
        active_power_watts=fast.active_power if fast else None,
        session_energy_kwh=slow.session_energy_kwh if slow else None,
        lifetime_energy_kwh=rt.counters.get("lifetime_energy"),
        temperature_celsius=slow.internal_temperature if slow else None,
        setpoint_amperes=None if rt.setpoint is None else float(rt.setpoint),
        allowed_max_amperes=min(known) if known else None,
        evse_status=enum("evse_status", fast.evse_status if fast else None),
        iec_state=enum("iec_state", fast.iec_state if fast else None),
        charge_point_state=enum("charge_point_state", fast.charge_point_state if fast else None),
        current_limit_cause=enum("current_limit_cause", fast.current_limit_cause if fast else None),
        warnings=bit_states(fast.warning_code if fast else None, rmap.bits_of("warning_code")),
        errors=bit_states(
            fast.error_code if fast else None,
            rmap.bits_of("error_code"),
            ocpp_codes=evc2_error_ocpp_codes(list(voltages)),
        ),
        watchdog_seconds=slow.communication_timeout if slow else None,
        failsafe_amperes=slow.failsafe_current if slow else None,
        firmware_version=slow.firmware_version if slow else None,
        vehicle_state=fast.vehicle.value if fast else "unknown",
    )


def meter_readings(rt: MeterRuntime) -> MeterReadings | None:
    """The meter's readings for metrics (None before its first successful poll)."""
    m = rt.measurement
    if m is None:
        return None
    return MeterReadings(
        voltage_volts=PhaseValues(*m.voltages),
        current_amperes=PhaseValues(*m.currents),
        power_watts=PhaseValues(*m.powers),
        total_power_watts=m.power_total,
        frequency_hertz=m.frequency,
        energy_import_kwh=rt.counters.get("energy_import"),
        energy_export_kwh=rt.counters.get("energy_export"),
    )


def _device(rt: ChargerRuntime | MeterRuntime, kind: DeviceKind) -> DeviceSnapshot:
    cfg = rt.config
    return DeviceSnapshot(
        name=rt.name,
        model=cfg.model if cfg else "",
        kind=kind,
        bus=cfg.bus if cfg else "",
        unit_id=cfg.unit_id if cfg else 0,
        up=rt.online and not rt.refused,
        last_success_unix=rt.last_ok_unix,
        requests=request_stats(_health(rt)),
        charger=charger_readings(rt) if isinstance(rt, ChargerRuntime) else None,
        meter=meter_readings(rt) if isinstance(rt, MeterRuntime) else None,
        refused=rt.refused,
        reason=rt.reason if isinstance(rt, ChargerRuntime) else "",
        reason_code=rt.reason_code if isinstance(rt, ChargerRuntime) else "",
        group=cfg.group if cfg else "",
        stale=rt.stale if isinstance(rt, MeterRuntime) else False,
    )


def _groups(
    allocation: Allocation | None,
    meters: Mapping[str, MeterRuntime],
    counters: LoopCounters,
    control: Mapping[str, GroupControlSnapshot],
) -> tuple[GroupSnapshot, ...]:
    if allocation is None:
        return ()
    stale_groups = {rt.config.group for rt in meters.values() if rt.stale and rt.config is not None}
    by_group: dict[str, list[PhaseAllocation]] = {}
    for acc in allocation.accounts:
        by_group.setdefault(acc.group, []).append(
            PhaseAllocation(
                phase=PHASES[acc.phase],
                limit_amperes=acc.limit,
                non_ev_load_amperes=acc.non_ev_load,
                allocated_amperes=acc.allocated,
                available_amperes=acc.available,
                headroom_amperes=acc.headroom,
                measured_amperes=acc.measured,
                non_ev_uncertainty_amperes=acc.uncertainty,
                non_ev_source=acc.non_ev_source,
                overload_measured_total=counters.overloads_by_phase.get((acc.group, acc.phase), 0),
            )
        )
    return tuple(
        GroupSnapshot(
            name=g, phases=tuple(p), meter_stale=g in stale_groups, control=control.get(g)
        )
        for g, p in by_group.items()
    )


def build_snapshot(
    config: SiteConfig,
    chargers: Mapping[str, ChargerRuntime],
    meters: Mapping[str, MeterRuntime],
    allocation: Allocation | None,
    counters: LoopCounters,
    recent_events: Iterable[Event] = (),
    control: Mapping[str, GroupControlSnapshot] | None = None,
) -> DaemonSnapshot:
    """Return the frozen snapshot of a site after a cycle (or after start-up)."""
    devices = [_device(rt, "meter") for rt in meters.values()]
    devices += [_device(rt, "charger") for rt in chargers.values()]
    ran = counters.cycles > 0
    return DaemonSnapshot(
        devices=tuple(devices),
        dlm=DlmSnapshot(
            groups=_groups(allocation, meters, counters, control or {}),
            reason_counts=dict(counters.reason_counts),
            cycles_total=counters.cycles,
            last_cycle_duration_seconds=counters.last_cycle_seconds,
            overload_detected_total=counters.overloads,
        ),
        loop=LoopHealth(
            last_iteration_monotonic=time.monotonic() if ran else None,
            last_iteration_unix=time.time() if ran else None,
            cycle_seconds=config.dlm.cycle_seconds,
        ),
        recent_events=tuple(recent_events),
        site=config.site.name,
    )
