"""Prometheus metrics: a collector that turns the latest :class:`DaemonSnapshot` into families.

A scrape only reads :meth:`SnapshotStore.latest` — it never talks Modbus. ampgate polls a slow
shared bus on its own schedule, so every value is the latest poll; ``ampgate_device_last_success
_timestamp_seconds`` says how old it is. Names follow the Prometheus conventions: prefix
``ampgate_``, base units (volts, amperes, watts, joules, celsius, seconds, hertz), ``_total`` on
counters only, ``_timestamp_seconds`` for times. State sets (EVSE status, IEC state, charge point
state, limit cause) are one gauge with a ``state`` label: 1 for the active state, 0 for every other
documented one. Label values are bounded: device and group names from the configuration, phases,
documented enum labels and bits, request result kinds and Modbus exception codes.

Sign convention: power and current are positive for import (drawn from the grid); a meter
exporting shows negative power.

Longer than 400 lines on purpose: the metric table is one list an operator reads (names,
help texts, labels); split, it would be harder to see that every name is unique and stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ampgate.interfaces.snapshot import (
    PHASES,
    REQUEST_RESULTS,
    BitState,
    ChargerReadings,
    DaemonSnapshot,
    DeviceSnapshot,
    EnumState,
    GroupSnapshot,
    MeterReadings,
    PhaseValues,
    firmware_dotted,
)
from ampgate.interfaces.store import SnapshotStore

JOULES_PER_KWH = 3.6e6
LATEST = "Latest poll: "


def _fmt(value: float) -> str:
    return repr(float(value))


_F = TypeVar("_F", GaugeMetricFamily, CounterMetricFamily, HistogramMetricFamily)


class _Families:
    """Creates families on first use and keeps their order, so empty families are not emitted."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def _get(self, kind: type[_F], name: str, doc: str, labels: Iterable[str]) -> _F:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = kind(name, doc, labels=list(labels))
        assert isinstance(family, kind)
        return family

    def gauge(self, name: str, doc: str, labels: Iterable[str]) -> GaugeMetricFamily:
        return self._get(GaugeMetricFamily, name, doc, labels)

    def counter(self, name: str, doc: str, labels: Iterable[str]) -> CounterMetricFamily:
        return self._get(CounterMetricFamily, name, doc, labels)

    def histogram(self, name: str, doc: str, labels: Iterable[str]) -> HistogramMetricFamily:
        return self._get(HistogramMetricFamily, name, doc, labels)

    def add(self, family: Metric) -> None:
        self._families[family.name] = family

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


def _phase_gauge(out: _Families, name: str, doc: str, device: str, values: PhaseValues) -> None:
    family = out.gauge(name, doc, ["device", "phase"])
    for phase, value in values.items():
        if value is not None:
            family.add_metric([device, phase], value)


def _scalar(out: _Families, name: str, doc: str, device: str, value: float | None) -> None:
    family = out.gauge(name, doc, ["device"])
    if value is not None:
        family.add_metric([device], value)


def _state_set(out: _Families, name: str, doc: str, device: str, state: EnumState) -> None:
    family = out.gauge(name, doc, ["device", "state"])
    if state.active is None:
        return
    choices = list(state.choices)
    if state.active not in choices:
        choices.append(state.active)  # e.g. "unknown (8)": shown, not dropped
    for choice in choices:
        family.add_metric([device, choice], 1.0 if choice == state.active else 0.0)


def _bits(out: _Families, name: str, doc: str, device: str, bits: Iterable[BitState]) -> None:
    with_ocpp = name.endswith("error_active")
    labels = ["device", "bit", "name"] + (["ocpp_error_code"] if with_ocpp else [])
    family = out.gauge(name, doc, labels)
    for b in bits:
        values = [device, str(b.bit), b.label]
        if with_ocpp:
            values.append(b.ocpp_error_code or "OtherError")
        family.add_metric(values, 1.0 if b.active else 0.0)


def _charger(out: _Families, device: str, r: ChargerReadings) -> None:
    p = "ampgate_charger_"
    _phase_gauge(
        out, p + "voltage_volts", LATEST + "charger voltage per phase.", device, r.voltage_volts
    )
    _phase_gauge(
        out,
        p + "current_amperes",
        LATEST + "charger current drawn per phase.",
        device,
        r.current_amperes,
    )
    _scalar(
        out,
        p + "active_power_watts",
        LATEST + "charger instant active power.",
        device,
        r.active_power_watts,
    )
    _scalar(
        out,
        p + "session_energy_joules",
        LATEST + "energy delivered in the current session (resets per session).",
        device,
        None if r.session_energy_kwh is None else r.session_energy_kwh * JOULES_PER_KWH,
    )
    if r.lifetime_energy_kwh is not None:
        out.counter(
            p + "energy_delivered_joules",
            LATEST + "charger lifetime energy delivered (device counter).",
            ["device"],
        ).add_metric([device], r.lifetime_energy_kwh * JOULES_PER_KWH)
    _scalar(
        out,
        p + "temperature_celsius",
        LATEST + "charger internal temperature.",
        device,
        r.temperature_celsius,
    )
    _scalar(
        out,
        p + "setpoint_amperes",
        "Current limit the gateway last wrote to the charger (Amps to use, 0 = paused).",
        device,
        r.setpoint_amperes,
    )
    _scalar(
        out,
        p + "allowed_max_amperes",
        LATEST + "most current this charger may be given (amp limit, user max, config).",
        device,
        r.allowed_max_amperes,
    )
    _scalar(
        out,
        p + "watchdog_timeout_seconds",
        LATEST + "communication timeout (watchdog) as read back; 0 = watchdog off.",
        device,
        r.watchdog_seconds,
    )
    _scalar(
        out,
        p + "failsafe_current_amperes",
        LATEST + "failsafe current as read back, drawn when the gateway falls silent.",
        device,
        r.failsafe_amperes,
    )
    _state_set(
        out,
        p + "evse_status",
        LATEST + "EVSE status; 1 for the active state.",
        device,
        r.evse_status,
    )
    _state_set(
        out,
        p + "iec_state",
        LATEST + "IEC 61851 state; 1 for the active state.",
        device,
        r.iec_state,
    )
    _state_set(
        out,
        p + "charge_point_state",
        LATEST + "charge point state; 1 for the active state.",
        device,
        r.charge_point_state,
    )
    _state_set(
        out,
        p + "current_limit_cause",
        LATEST + "why the charger limits its current; 1 for the active cause.",
        device,
        r.current_limit_cause,
    )
    _bits(
        out,
        p + "warning_active",
        LATEST + "charger warning bit; 1 when active.",
        device,
        r.warnings,
    )
    _bits(
        out,
        p + "error_active",
        LATEST + "charger error bit with its OCPP 1.6 errorCode; 1 when active.",
        device,
        r.errors,
    )
    version = firmware_dotted(r.firmware_version)
    if version is not None:
        out.gauge(
            p + "firmware_info",
            LATEST + "charger firmware; version is derived from raw (unconfirmed encoding).",
            ["device", "version", "raw"],
        ).add_metric([device, version, str(r.firmware_version)], 1.0)


def _meter(out: _Families, device: str, r: MeterReadings) -> None:
    p = "ampgate_meter_"
    _phase_gauge(
        out, p + "voltage_volts", LATEST + "meter voltage per phase.", device, r.voltage_volts
    )
    _phase_gauge(
        out,
        p + "current_amperes",
        LATEST + "meter current per phase, import positive.",
        device,
        r.current_amperes,
    )
    _phase_gauge(
        out,
        p + "power_watts",
        LATEST + "meter active power per phase, import positive.",
        device,
        r.power_watts,
    )
    _scalar(
        out,
        p + "total_power_watts",
        LATEST + "meter total active power, import positive.",
        device,
        r.total_power_watts,
    )
    _scalar(out, p + "frequency_hertz", LATEST + "grid frequency.", device, r.frequency_hertz)
    for direction, kwh in (("imported", r.energy_import_kwh), ("exported", r.energy_export_kwh)):
        if kwh is not None:
            out.counter(
                p + f"energy_{direction}_joules",
                LATEST + f"meter energy {direction} (device counter).",
                ["device"],
            ).add_metric([device], kwh * JOULES_PER_KWH)


def _device(out: _Families, d: DeviceSnapshot) -> None:
    out.gauge(
        "ampgate_device_info",
        "Configured device: model, kind, bus and unit id.",
        ["device", "model", "kind", "bus", "unit_id"],
    ).add_metric([d.name, d.model, d.kind, d.bus, str(d.unit_id)], 1.0)
    out.gauge(
        "ampgate_device_up",
        "1 when the device answered its latest poll within its staleness limit, else 0.",
        ["device"],
    ).add_metric([d.name], 1.0 if d.up else 0.0)
    last = out.gauge(
        "ampgate_device_last_success_timestamp_seconds",
        "Unix time of the device's latest successful poll.",
        ["device"],
    )
    if d.last_success_unix is not None:
        last.add_metric([d.name], d.last_success_unix)
    requests = out.counter(
        "ampgate_modbus_requests",
        "Modbus requests to the device by result: ok, timeout, exception "
        "(exception response), crc, connection.",
        ["device", "result"],
    )
    for result in REQUEST_RESULTS:
        requests.add_metric([d.name, result], d.requests.by_result.get(result, 0))
    codes = out.counter(
        "ampgate_modbus_exception_responses",
        "Modbus exception responses by exception code.",
        ["device", "code"],
    )
    for code, count in sorted(d.requests.by_exception_code.items()):
        codes.add_metric([d.name, str(code)], count)
    rtt = d.requests.rtt
    buckets = [(_fmt(b), c) for b, c in zip(rtt.bounds, rtt.cumulative_counts, strict=True)]
    buckets.append(("+Inf", rtt.count))
    out.histogram(
        "ampgate_modbus_request_duration_seconds",
        "Round-trip time of answered Modbus requests.",
        ["device"],
    ).add_metric([d.name], buckets, rtt.sum_seconds)
    if d.charger is not None:
        _charger(out, d.name, d.charger)
    if d.meter is not None:
        _meter(out, d.name, d.meter)


def _dlm(out: _Families, snap: DaemonSnapshot) -> None:
    dlm = snap.dlm
    per_phase = (
        ("limit_amperes", "DLM limit of the fuse group per site phase.", "limit_amperes"),
        (
            "non_ev_load_amperes",
            "Non-EV load the DLM used per group and phase (meter or fallback), import positive.",
            "non_ev_load_amperes",
        ),
        (
            "allocated_amperes",
            "Current allocated to chargers per group and phase.",
            "allocated_amperes",
        ),
        (
            "available_amperes",
            "Current still available per group and phase after allocation.",
            "available_amperes",
        ),
        (
            "headroom_amperes",
            "Headroom kept free below the limit per group and phase.",
            "headroom_amperes",
        ),
    )
    for suffix, doc, attr in per_phase:
        family = out.gauge("ampgate_dlm_" + suffix, "Latest DLM cycle: " + doc, ["group", "phase"])
        for group in dlm.groups:
            for alloc in group.phases:
                family.add_metric([group.name, alloc.phase], getattr(alloc, attr))
    measured = out.gauge(
        "ampgate_dlm_measured_amperes",
        "Latest DLM cycle: current through the fuse per the live meter, chargers included.",
        ["group", "phase"],
    )
    uncertainty = out.gauge(
        "ampgate_dlm_non_ev_uncertainty_amperes",
        "Latest DLM cycle: how far the building-load estimate may be off while cars change "
        "their draw.",
        ["group", "phase"],
    )
    overload = out.counter(
        "ampgate_dlm_overload_measured",
        "Cycles in which the meter showed the fuse phase over limit − headroom (should stay 0).",
        ["group", "phase"],
    )
    for group in dlm.groups:
        for alloc in group.phases:
            labels = [group.name, alloc.phase]
            if alloc.measured_amperes is not None:
                measured.add_metric(labels, alloc.measured_amperes)
            uncertainty.add_metric(labels, alloc.non_ev_uncertainty_amperes)
            overload.add_metric(labels, alloc.overload_measured_total)
    stale = out.gauge(
        "ampgate_dlm_meter_stale",
        "1 when the group's meter is stale and the fallback load is used.",
        ["group"],
    )
    for group in dlm.groups:
        stale.add_metric([group.name], 1.0 if group.meter_stale else 0.0)
    _control(out, dlm.groups)
    reasons = out.counter(
        "ampgate_dlm_decisions", "DLM setpoint decisions by engine reason.", ["reason"]
    )
    for reason, count in sorted(dlm.reason_counts.items()):
        reasons.add_metric([reason], count)
    out.counter("ampgate_dlm_cycles", "DLM cycles completed.", []).add_metric([], dlm.cycles_total)
    out.counter(
        "ampgate_dlm_overload_detected",
        "DLM cycles in which a meter showed a fuse phase over limit − headroom (should stay 0).",
        [],
    ).add_metric([], dlm.overload_detected_total)
    duration = out.gauge(
        "ampgate_dlm_last_cycle_duration_seconds",
        "Wall time of the latest poll-allocate-write cycle.",
        [],
    )
    if dlm.last_cycle_duration_seconds is not None:
        duration.add_metric([], dlm.last_cycle_duration_seconds)
    last = out.gauge(
        "ampgate_loop_last_iteration_timestamp_seconds",
        "Unix time the daemon loop last completed an iteration.",
        [],
    )
    if snap.loop.last_iteration_unix is not None:
        last.add_metric([], snap.loop.last_iteration_unix)


def _control(out: _Families, groups: Iterable[GroupSnapshot]) -> None:
    """Limits beyond the fuse: the effective limit, live external limits, the peak budget."""
    effective = out.gauge(
        "ampgate_group_effective_limit_amperes",
        "Latest DLM cycle: the lowest of fuse, operator and external limits per group and phase.",
        ["group", "phase"],
    )
    external = out.gauge(
        "ampgate_group_external_limit_amperes",
        "Live external limit per group, source and phase (absent: none from that source).",
        ["group", "source", "phase"],
    )
    external_power = out.gauge(
        "ampgate_group_external_limit_watts",
        "Live external power limit per group and source.",
        ["group", "source"],
    )
    fallback = out.gauge(
        "ampgate_group_limit_expiry_fallback",
        "1 while an external limit expired and the group holds on_limit_expiry.",
        ["group"],
    )
    peak = out.gauge("ampgate_group_peak_watts", "The quarter-hour peak kept (peak_kw).", ["group"])
    average = out.gauge(
        "ampgate_group_quarter_average_import_watts",
        "This quarter's average import so far (aligned: energy so far over 15 minutes).",
        ["group"],
    )
    month = out.gauge(
        "ampgate_group_month_peak_import_watts",
        "The highest quarter-hour average import this month since ampgate started.",
        ["group"],
    )
    allowed = out.gauge(
        "ampgate_group_peak_allowed_watts",
        "The power the quarter-hour budget allows until the end of the quarter.",
        ["group"],
    )
    for group in groups:
        control = group.control
        if control is None:
            continue
        for phase, amps in zip(PHASES, control.effective_limit_amperes, strict=True):
            effective.add_metric([group.name, phase], amps)
        for limit in control.external_limits:
            if limit.amperes is not None:
                for phase, amps in zip(PHASES, limit.amperes, strict=True):
                    external.add_metric([group.name, limit.source, phase], amps)
            if limit.kw is not None:
                external_power.add_metric([group.name, limit.source], limit.kw * 1000.0)
        fallback.add_metric([group.name], 1.0 if control.expiry_fallback else 0.0)
        if control.peak_kw is None:
            continue
        peak.add_metric([group.name], control.peak_kw * 1000.0)
        for family, kw in (
            (average, control.quarter_average_kw),
            (month, control.month_peak_kw),
            (allowed, control.peak_allowed_kw),
        ):
            if kw is not None:
                family.add_metric([group.name], kw * 1000.0)


class SnapshotCollector(Collector):
    """Yields ampgate's metric families from the store's latest snapshot; nothing else."""

    def __init__(self, store: SnapshotStore) -> None:
        """Collect from ``store``."""
        self._store = store

    def collect(self) -> Iterator[Metric]:
        """Build every family from one :meth:`SnapshotStore.latest` call."""
        return iter(families_from_snapshot(self._store.latest()))

    def describe(self) -> Iterator[Metric]:
        """Nothing to describe up front (families depend on the configured devices)."""
        return iter(())


def families_from_snapshot(snap: DaemonSnapshot) -> list[Metric]:
    """Every ampgate metric family for one snapshot (pure: no I/O)."""
    out = _Families()
    info = InfoMetricFamily(
        "ampgate_build", "ampgate build: versions of ampgate, Python, pymodbus."
    )
    info.add_metric(
        [],
        {
            "version": snap.build.version,
            "python_version": snap.build.python_version,
            "pymodbus_version": snap.build.pymodbus_version,
        },
    )
    out.add(info)
    for device in snap.devices:
        _device(out, device)
    _dlm(out, snap)
    return [family for family in out if family.samples]


def build_registry(store: SnapshotStore) -> CollectorRegistry:
    """A fresh registry (not the global one) holding only the ampgate collector for ``store``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(store))
    return registry
