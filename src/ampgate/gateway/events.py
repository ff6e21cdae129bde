"""Gateway events: structured log records with snake_case names and key/value context.

Each event is logged once, when its condition changes (a device goes offline, a bit is set), not
every cycle. :class:`EventLog` keeps the state needed for that (who is online, which bits are
set, recent online/offline changes for flapping) and a short ring of recent events for the demo
view. Event names are stable: ``device_online``, ``device_offline``, ``device_flapping``,
``meter_stale``, ``meter_fresh``, ``charger_warning_set``, ``charger_warning_cleared``,
``charger_error_set``, ``charger_error_cleared``, ``setpoint_changed``, ``config_mismatch``,
``device_identity_mismatch``, ``watchdog_programmed``, ``meter_reading_invalid`` (a meter
answered NaN or infinite currents: not used), ``energy_counter_backwards``
(:mod:`ampgate.gateway.counters`), and what the engine notices
(:meth:`EventLog.engine_notice`): ``overload_measured``, ``phase_switch_not_followed``,
``charger_overdraw``, ``meter_implausible``, ``meter_plausible``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ampgate.devices.evc2 import EVC2_WARNING_OCPP_CODES, evc2_error_ocpp_codes
from ampgate.interfaces.snapshot import Event
from ampgate.logging import get_logger

FLAP_WINDOW_SECONDS = 600.0
"""Reconnect storm window (operator fault dictionary F-0302: > 5 reconnects in 10 min)."""
FLAP_LIMIT = 5
"""More than this many online↔offline changes in the window is flapping."""

_NOTICE_LEVELS = {
    "overload_measured": "error",
    "phase_switch_not_followed": "warning",
    "charger_overdraw": "warning",
    "meter_implausible": "warning",
    "meter_plausible": "info",
}

_HINTS = {
    "device_offline": "check power, wiring, termination, unit id and baud rate",
    "device_flapping": "intermittent link: check wiring, termination, bias and baud rate",
    "meter_stale": "the engine uses the configured fallback load until the meter answers",
    "config_mismatch": "changed outside ampgate (e.g. the TeltoCharge app); ampgate re-applies it",
    "device_identity_mismatch": "wrong device at this unit id or wrong model in the site file",
    "overload_measured": "the meter shows the fuse over its limit: ampgate lowered the chargers "
    "on that phase; if it repeats, check headroom, meter lag and cars ignoring their setpoint",
    "phase_switch_not_followed": "the charger kept its phases after a write of reg 14: check its "
    "firmware and phase-switching settings; ampgate stops switching it for a while",
    "charger_overdraw": "the car draws more than its setpoint allows: ampgate budgets what it "
    "draws; check the car and the charger's current measurement",
    "energy_counter_backwards": "a glitch or a swapped unit: the published counter keeps its "
    "highest value; after a real meter swap restart ampgate",
    "meter_reading_invalid": "the meter answered NaN or infinite currents: the answer is not "
    "used and the meter goes stale if it repeats (then the fallback load); check the meter",
    "meter_implausible": "the meter answers but its values contradict the chargers' readings: "
    "ampgate holds the last building load, then uses the fallback load; check the meter",
}


def active_bits(raw: int | None) -> frozenset[int]:
    """Return the set bit numbers of a register value (empty for None)."""
    if raw is None:
        return frozenset()
    value = int(raw)
    return frozenset(b for b in range(value.bit_length()) if value >> b & 1)


class EventLog:
    """Turns observed state into events, each logged once when its condition changes."""

    def __init__(
        self,
        logger: Any | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        keep: int = 50,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        """Log through ``logger`` (default: structlog ``ampgate.daemon``); keep ``keep`` events.

        ``on_event`` receives each event as it is emitted (the snapshot store's
        ``publish_event``, so streams see it before the cycle's snapshot).
        """
        self._log = logger if logger is not None else get_logger("ampgate.daemon")
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_event = on_event
        self.recent: deque[Event] = deque(maxlen=keep)
        self._online: dict[str, bool] = {}
        self._changes: dict[str, deque[float]] = {}
        self._flapping: set[str] = set()
        self._stale: dict[str, bool] = {}
        self._bits: dict[tuple[str, str], frozenset[int]] = {}
        self.counts: dict[str, int] = {}

    def emit(
        self, name: str, level: str = "info", device: str | None = None, **context: Any
    ) -> None:
        """Log one event and keep it in the ring."""
        self.counts[name] = self.counts.get(name, 0) + 1
        event = Event(
            self._clock(), name, device, MappingProxyType(dict(context)), self._wall_clock(), level
        )
        self.recent.append(event)
        if self._on_event is not None:
            self._on_event(event)
        if name in _HINTS and "hint" not in context:
            context["hint"] = _HINTS[name]
        if device is not None:
            context["device"] = device
        getattr(self._log, level)(name, **context)

    def engine_notice(self, kind: str, subject: str, detail: Mapping[str, Any]) -> None:
        """Log what the engine noticed this cycle (``ampgate.dlm.Notice``) as its event.

        The subject is a group for ``overload_measured`` and a device otherwise; a kind this
        module does not know is logged as a warning under its own name.
        """
        level = _NOTICE_LEVELS.get(kind, "warning")
        key = "group" if kind == "overload_measured" else "device"
        self.emit(kind, level, **{key: subject}, **dict(detail))

    # -- availability -----------------------------------------------------------------------

    def device_seen(self, device: str, online: bool, **context: Any) -> None:
        """Record whether ``device`` answered this time; log online/offline/flapping changes."""
        before = self._online.get(device)
        self._online[device] = online
        if before is online:
            return
        if before is None and online:
            self.emit("device_online", device=device, first=True, **context)
            return
        if before is None:
            self.emit("device_offline", "warning", device=device, first=True, **context)
            return
        self.emit(
            "device_online" if online else "device_offline",
            "info" if online else "warning",
            device=device,
            **context,
        )
        now = self._clock()
        changes = self._changes.setdefault(device, deque())
        changes.append(now)
        while changes and changes[0] < now - FLAP_WINDOW_SECONDS:
            changes.popleft()
        if len(changes) > FLAP_LIMIT and device not in self._flapping:
            self._flapping.add(device)
            self.emit(
                "device_flapping",
                "warning",
                device=device,
                changes=len(changes),
                window_seconds=FLAP_WINDOW_SECONDS,
            )
        elif len(changes) <= FLAP_LIMIT:
            self._flapping.discard(device)

    def is_online(self, device: str) -> bool | None:
        """Last known availability (None before the first poll)."""
        return self._online.get(device)

    def is_flapping(self, device: str) -> bool:
        """True while ``device`` has changed state more than the limit within the window."""
        return device in self._flapping

    def meter_freshness(self, meter: str, stale: bool, **context: Any) -> None:
        """Log ``meter_stale`` / ``meter_fresh`` when a meter's freshness changes."""
        before = self._stale.get(meter)
        self._stale[meter] = stale
        if before is stale or (before is None and not stale):
            return
        if stale:
            self.emit("meter_stale", "warning", device=meter, **context)
        else:
            self.emit("meter_fresh", device=meter, **context)

    # -- charger diagnostics ----------------------------------------------------------------

    def charger_bits(
        self,
        charger: str,
        *,
        warning_raw: int | None,
        error_raw: int | None,
        warning_labels: Mapping[int, str] | None,
        error_labels: Mapping[int, str] | None,
        voltages: Iterable[float | None] = (),
    ) -> None:
        """Log each warning/error bit that was set or cleared since the last poll.

        Error bits carry the OCPP 1.6 errorCode (bit 0 OverVoltage/UnderVoltage decided from the
        voltages vs 230 V nominal); undocumented bits are named ``unknown bit N``.
        """
        error_codes = evc2_error_ocpp_codes(voltages)
        for kind, raw, labels, codes in (
            ("warning", warning_raw, warning_labels, EVC2_WARNING_OCPP_CODES),
            ("error", error_raw, error_labels, error_codes),
        ):
            if raw is None:
                continue
            now = active_bits(raw)
            before = self._bits.get((charger, kind), frozenset())
            self._bits[(charger, kind)] = now
            labels = labels or {}
            for bit in sorted(now - before):
                self.emit(
                    f"charger_{kind}_set",
                    "error" if kind == "error" else "warning",
                    device=charger,
                    bit=bit,
                    label=labels.get(bit, f"unknown bit {bit}"),
                    ocpp_error_code=codes.get(bit),
                    raw=int(raw),
                )
            for bit in sorted(before - now):
                self.emit(
                    f"charger_{kind}_cleared",
                    device=charger,
                    bit=bit,
                    label=labels.get(bit, f"unknown bit {bit}"),
                    ocpp_error_code=codes.get(bit),
                    raw=int(raw),
                )
