"""A Teltonika TeltoCharge EVC2 in external-control (secondary) mode, with a simple car.

Behaviour follows docs reference teltocharge-evc2.md ("Behaviour the seed states"); the
register layout comes only from the ``teltocharge-evc2`` map. What the seed does not say, the
simulator has to choose; each choice is marked "assumption" below so a field test can correct it.

Time is event-exact: between two requests the model integrates energy piecewise and applies the
car's reaction and the watchdog expiry at the moment they happen, not at the next poll.

Longer than 400 lines on purpose: one device's behaviour (registers, the car, the watchdog,
phase switching, faults) is simulated as one event-exact model.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ampgate.codec import RegisterMap, load_map
from ampgate.devices.evc2 import PHASE_SETS
from ampgate.sim.device import Clock, ModbusExceptionCode, ReadAnswer, WriteAnswer
from ampgate.sim.registers import RegisterImage, energy_in_unit

EVC2_MODEL = "teltocharge-evc2"
MIN_CHARGING_CURRENT = 6.0
"""IEC 61851: below 6 A the charger cannot offer a charging current."""

_PHASE_CODES = {phases: code for code, phases in PHASE_SETS.items()}

# Enum a (EVSE status), b (charge point state), c (IEC 61851 state) values used below.
_A_CHARGING, _A_WAITING_EV, _A_NO_POWER_WAS, _A_NO_POWER_WASNT = 0, 1, 2, 3
_A_STOPPED_BY_EV, _A_NO_AUTH, _A_NOT_CONNECTED, _A_ERROR = 4, 5, 7, 8
_B_NO_EV, _B_AWAITING, _B_AUTHORISED, _B_CHARGING, _B_PAUSED = 0, 1, 2, 3, 4
_B_STOPPED_BY_USER, _B_ERROR = 6, 7
_C_A, _C_B1, _C_B2, _C_C2, _C_F = 0, 1, 2, 4, 8
# Enum f (current limit cause).
_F_HARDWARE, _F_USER, _F_LOAD_BALANCE = 0, 2, 6


@dataclass(frozen=True, slots=True)
class ElectricVehicle:
    """A car: how many phases it charges on, its maximum current and how fast it reacts."""

    phases: Literal[1, 3] = 3
    max_current: float = 16.0
    reaction_delay: float = 2.0
    """Seconds between a change of the offered current and the car drawing the new current
    (IEC 61851-1 allows up to 5 s; real cars take 1–3 s)."""
    overdraw: float = 0.0
    """Amps the car draws above the offered current (a misbehaving car; 0 for a good one)."""
    need_kwh: float = math.inf
    """Energy after which the car stops drawing by itself (battery full: EVSE status D1)."""

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"car phases {self.phases} is not allowed (allowed: 1 or 3)")
        if not self.max_current > 0:
            raise ValueError(f"car max current {self.max_current} A must be > 0")
        if self.reaction_delay < 0:
            raise ValueError(f"car reaction delay {self.reaction_delay} s must be >= 0")
        if not 0 <= self.overdraw <= 32:
            raise ValueError(f"car overdraw {self.overdraw} A is not allowed (allowed: 0–32)")
        if not self.need_kwh > 0:
            raise ValueError(f"car energy need {self.need_kwh} kWh must be > 0")


@dataclass(frozen=True, slots=True)
class _Pending:
    current: float
    phases: tuple[int, ...]
    at: float


class Evc2Simulator:
    """One EVC2 charger. Serve it with `serve_tcp` / `serve_rtu`, or call read/write directly."""

    def __init__(
        self,
        clock: Clock,
        *,
        serial_number: int = 123456789,
        amp_limit: int = 32,
        user_max_current: int = 32,
        amps_to_use: int | None = None,
        voltages: tuple[float, float, float] = (230.0, 230.0, 230.0),
        rotation: tuple[int, int, int] = (1, 2, 3),
        firmware_version: int = 20206,
        max_supported_power: int = 2,
        lifetime_energy_kwh: float = 0.0,
        ignore_phase_switch: bool = False,
        rmap: RegisterMap | None = None,
    ) -> None:
        """Power the charger on at ``clock()``.

        ``rotation`` names the site phase (1–3) each charger phase L1, L2, L3 is wired to, so a
        site meter sees the draw where it really is. ``user_max_current`` defaults to 32 A
        (factory default is 10 A per the reference) so the gateway's setpoint is the limit in
        demos; pass 10 to model an untouched charger. ``amps_to_use`` is the setpoint before the
        gateway writes one (assumption: 0, as the seed gives no default; pass 32 for a charger
        found at its factory maximum). ``ignore_phase_switch`` models a charger that accepts
        writes to reg 14 (phase to use) but keeps charging on the phases it had (reg 13 and the
        currents show the truth).
        """
        if sorted(rotation) != [1, 2, 3]:
            raise ValueError(
                f"rotation {rotation} is not allowed (allowed: a permutation of 1,2,3)"
            )
        self.clock = clock
        self.map = rmap if rmap is not None else load_map(EVC2_MODEL)
        self._image = RegisterImage(self.map)
        self._dirty = True
        self.voltages = voltages
        self.rotation = rotation
        self.amp_limit = amp_limit
        self.user_max_current = user_max_current
        self.ev: ElectricVehicle | None = None
        self.ignore_phase_switch = ignore_phase_switch
        self.warning_bits = 0
        self.error_bits = 0
        self.requests = 0
        image = self._image
        image.set_raw("serial_number", serial_number)
        image.set_raw("amp_limit", amp_limit)
        image.set_raw("user_max_current", user_max_current)
        image.set_raw("firmware_version", firmware_version)
        image.set_raw("max_supported_power", max_supported_power)
        image.set_raw("three_phase_possible", 1)
        image.set_raw("phase_change_possible", 1)
        image.set("internal_temperature", 25.0)
        if self.map.field("phase_to_use").default is None:
            image.set_raw("phase_to_use", 6)
        if amps_to_use is not None:
            image.set_raw("amps_to_use", amps_to_use)
        self._phase_code = int(image.raw("phase_to_use"))
        """Reg 14 as the charger acts on it (stays put when it ignores phase switches)."""
        now = clock()
        self._now = now
        self._last_request = now
        self._draw = 0.0
        self._draw_phases: tuple[int, ...] = ()
        self._pending: deque[_Pending] = deque()
        """Changes of the offered current the car has yet to follow, each after its own
        reaction delay (a car told twice within its delay follows both, in turn)."""
        self._stopped = False
        self._charged_this_session = False
        self._session_start = now
        self._session_wh = 0.0
        self._lifetime_wh = lifetime_energy_kwh * 1000.0
        self._status = (_A_NOT_CONNECTED, _B_NO_EV, _C_A)
        self._status_since = now
        self._dirty = True

    @property
    def image(self) -> RegisterImage:
        """The register image, brought up to the model's present state."""
        if self._dirty:
            self._dirty = False
            self._publish()
        return self._image

    # ----------------------------------------------------------------- Modbus side
    def read(self, function: int, address: int, count: int) -> ReadAnswer:
        """Answer a read as the charger would; a valid read feeds the watchdog."""
        self.advance()
        problem = self._image.check_read(function, address, count)
        if problem is not None:
            return problem
        self._valid_request()
        return self.image.read(function, address, count)

    def write(self, address: int, values: Sequence[int]) -> WriteAnswer:
        """Write holding registers: read-only → exception 2, outside `allowed` → exception 3."""
        self.advance()
        changes = self._image.check_write(address, values)
        if isinstance(changes, ModbusExceptionCode):
            return changes
        self._image.store_words(3, address, values)
        if "phase_to_use" in changes and not self.ignore_phase_switch:
            self._phase_code = int(self._image.raw("phase_to_use"))
        stop = changes.get("request_stop_charging")
        if stop == 1:
            self._stopped = True
        elif stop == 2 and self._stopped:
            self._stopped = False
        # Assumption: register 16 reads back what was written (the seed does not say whether
        # the charger resets it to 0 after acting on it).
        self._valid_request()
        return None

    # ----------------------------------------------------------------- test/demo API
    def plug_in(self, ev: ElectricVehicle | None = None, *, charging: bool = False) -> None:
        """Connect a car (default: 3-phase, 16 A, 2 s reaction); starts a new session.

        ``charging``: the car already draws what the charger offers (a charger found charging
        when the gateway starts), instead of starting after its reaction delay.
        """
        self.advance()
        self.ev = ev if ev is not None else ElectricVehicle()
        self._stopped = False
        self._charged_this_session = False
        self._session_start = self._now
        self._session_wh = 0.0
        if charging:
            self._draw, self._draw_phases = self._target()
            self._charged_this_session = self._draw > 0
        self._reevaluate()
        self._dirty = True

    def unplug(self) -> None:
        """Disconnect the car: the draw stops at once."""
        self.advance()
        self.ev = None
        self._draw, self._draw_phases = 0.0, ()
        self._pending.clear()
        # Reg 18 = 2 "force unlock in auto mode (resets on state A)": unplugging reaches A.
        # Assumption: a 2 written while already in state A stays until the next unplug.
        if self._image.raw("socket_lock_mode") == 2:
            self._image.set_raw("socket_lock_mode", 0)
        self._reevaluate()
        self._dirty = True

    def reboot(self) -> None:
        """Power-cycle the charger: its settings are back to their defaults (watchdog 30 s,
        failsafe 6 A, setpoint 32 A, phase mode 3-phase), its watchdog timer restarts; a car
        stays plugged in and follows the new setpoint after its reaction delay.

        Assumption: the reference gives 30 s and 6 A as the defaults of regs 19 and 20; a
        rebooted charger offers its factory 32 A until told otherwise (the worst case).
        """
        self.advance()
        image = self._image
        for name in ("communication_timeout", "failsafe_current", "phase_to_use"):
            default = self.map.field(name).default
            if default is not None:
                image.set(name, default)
        if self.map.field("phase_to_use").default is None:
            image.set_raw("phase_to_use", 6)
        image.set_raw("amps_to_use", 32)
        image.set_raw("request_stop_charging", 0)
        self._phase_code = int(image.raw("phase_to_use"))
        self._stopped = False
        self._last_request = self._now
        self._reevaluate()
        self._dirty = True

    def set_warning_bits(self, bits: int | Iterable[str]) -> None:
        """Set register 34 (a mask, or labels from the map's bit table)."""
        self.advance()
        self.warning_bits = self._mask("warning_code", bits)
        self._reevaluate()
        self._dirty = True

    def set_error_bits(self, bits: int | Iterable[str]) -> None:
        """Set register 35 (a mask or labels); any error stops charging (EVSE status F)."""
        self.advance()
        self.error_bits = self._mask("error_code", bits)
        self._reevaluate()
        self._dirty = True

    # Queries bring the model to clock() first, so they always describe "now".
    @property
    def current(self) -> float:
        """Amps the car draws now on each of its active phases."""
        self.advance()
        return self._draw

    @property
    def phases_in_use(self) -> tuple[int, ...]:
        """Charger phases (1–3) the car draws on now."""
        self.advance()
        return tuple(p + 1 for p in self._draw_phases)

    @property
    def allowed_current(self) -> float:
        """Amps the charger offers now: the setpoint, or the failsafe current after a timeout."""
        self.advance()
        return self._allowed()

    @property
    def acting_phase_code(self) -> int:
        """Reg 14 as the charger acts on it (unchanged by writes when it ignores them)."""
        return self._phase_code

    @property
    def battery_full(self) -> bool:
        """True when the plugged-in car has taken the energy it needs."""
        self.advance()
        return self._full()

    @property
    def watchdog_expired(self) -> bool:
        """True when reg 19 > 0 and no valid request arrived for that many seconds."""
        self.advance()
        return self._expired()

    @property
    def session_energy_kwh(self) -> float:
        """Energy of the current session, kWh (unrounded)."""
        self.advance()
        return self._session_wh / 1000.0

    @property
    def lifetime_energy_kwh(self) -> float:
        """Energy over the charger's life, kWh (unrounded)."""
        self.advance()
        return self._lifetime_wh / 1000.0

    def phase_currents(self) -> tuple[float, float, float]:
        """Current on charger phases L1, L2, L3 now."""
        self.advance()
        return self._phase_currents()

    def site_currents(self, now: float | None = None) -> tuple[float, float, float]:
        """Current on site phases 1, 2, 3 (after ``rotation``), advancing the model to ``now``."""
        self.advance(now)
        out = [0.0, 0.0, 0.0]
        for charger_phase, amps in enumerate(self._phase_currents()):
            out[self.rotation[charger_phase] - 1] += amps
        return out[0], out[1], out[2]

    def advance(self, now: float | None = None) -> None:
        """Run the model up to ``now`` (default ``clock()``); earlier times are ignored."""
        now = self.clock() if now is None else now
        while True:
            event = self._next_event()
            if event is None or event > now:
                break
            self._integrate(event)
            if self._full() and self._draw > 0:  # the car stops by itself, at once
                self._draw, self._draw_phases = 0.0, ()
                self._pending.clear()
            followed = False
            while self._pending and self._pending[0].at <= event:
                change = self._pending.popleft()
                self._draw, self._draw_phases = change.current, change.phases
                followed = True
            if followed and self._draw > 0:
                self._charged_this_session = True
            self._reevaluate()
        if now > self._now:
            self._integrate(now)
            self._reevaluate()
        self._dirty = True

    # ----------------------------------------------------------------- model internals
    def _valid_request(self) -> None:
        self.requests += 1
        self._last_request = self._now
        self._reevaluate()
        self._dirty = True

    def _allowed(self) -> float:
        if self._expired():
            return float(self._image.raw("failsafe_current"))
        return float(self._image.raw("amps_to_use"))

    def _expired(self) -> bool:
        timeout = self._image.raw("communication_timeout")
        return bool(timeout) and self._now >= self._last_request + timeout

    def _phase_currents(self) -> tuple[float, float, float]:
        d = self._draw
        on = self._draw_phases
        return (d if 0 in on else 0.0, d if 1 in on else 0.0, d if 2 in on else 0.0)

    def _mask(self, name: str, bits: int | Iterable[str]) -> int:
        if isinstance(bits, int):
            if not 0 <= bits <= 0xFFFF:
                raise ValueError(f"{name}: mask {bits} is not allowed (allowed: 0–65535)")
            return bits
        table = self.map.bits_of(name) or {}
        by_label = {label: bit for bit, label in table.items()}
        mask = 0
        for label in bits:
            if label not in by_label:
                raise ValueError(f"{name}: unknown bit {label!r} (known: {sorted(by_label)})")
            mask |= 1 << by_label[label]
        return mask

    def _next_event(self) -> float | None:
        events = []
        if self._pending:
            events.append(max(self._pending[0].at, self._now))
        timeout = self._image.raw("communication_timeout")
        expiry = self._last_request + timeout
        if timeout and expiry > self._now:
            events.append(expiry)
        full = self._full_at()
        if full is not None:
            events.append(full)
        return min(events) if events else None

    def _full(self) -> bool:
        return self.ev is not None and self._session_wh >= self.ev.need_kwh * 1000.0 - 1e-9

    def _full_at(self) -> float | None:
        """When the car's battery is full at the present draw (None: not drawing, no need)."""
        ev = self.ev
        if ev is None or math.isinf(ev.need_kwh) or self._draw <= 0 or self._full():
            return None
        watts = sum(self.voltages[p] * self._draw for p in self._draw_phases)
        return self._now + (ev.need_kwh * 1000.0 - self._session_wh) * 3600.0 / watts

    def _integrate(self, until: float) -> None:
        dt = until - self._now
        if dt <= 0:
            return
        watts = sum(self.voltages[p] * self._draw for p in self._draw_phases)
        wh = watts * dt / 3600.0
        self._session_wh += wh
        self._lifetime_wh += wh
        self._now = until

    def _target(self) -> tuple[float, tuple[int, ...]]:
        """What the car would draw with the present settings: (amps per phase, charger phases)."""
        ev = self.ev
        if ev is None or self._stopped or self.error_bits or not self._authorised() or self._full():
            return 0.0, ()
        limit = min(self._allowed(), self.amp_limit, self.user_max_current, ev.max_current)
        if limit < MIN_CHARGING_CURRENT:
            return 0.0, ()
        limit += ev.overdraw
        phases = PHASE_SETS.get(self._phase_code, (0, 1, 2))
        if not phases:
            return 0.0, ()
        if ev.phases == 1:
            phases = phases[:1]
        return float(limit), phases

    def _connected_phases(self) -> tuple[int, ...]:
        """Charger phases the car is connected on in the present phase mode."""
        if self.ev is None:
            return ()
        phases = PHASE_SETS.get(self._phase_code, (0, 1, 2))
        return phases[:1] if self.ev.phases == 1 else phases

    def _authorised(self) -> bool:
        # Assumption: with require_authorization = 1 a write of 1 to request_authorize authorises.
        return (
            not self._image.raw("require_authorization")
            or self._image.raw("request_authorize") == 1
        )

    def _reevaluate(self) -> None:
        if self.ev is None:
            self._pending.clear()
        else:
            current, phases = self._target()
            last = self._pending[-1] if self._pending else None
            goal = (last.current, last.phases) if last else (self._draw, self._draw_phases)
            if (current, phases) != goal:
                self._pending.append(_Pending(current, phases, self._now + self.ev.reaction_delay))
        status = self._compute_status()
        if status[0] != self._status[0]:
            self._status_since = self._now
        self._status = status

    def _compute_status(self) -> tuple[int, int, int]:
        """(EVSE status a, charge point state b, IEC state c), kept consistent with each other."""
        if self.error_bits:
            return _A_ERROR, _B_ERROR, _C_F
        if self.ev is None:
            return _A_NOT_CONNECTED, _B_NO_EV, _C_A
        if self._draw > 0:
            return _A_CHARGING, _B_CHARGING, _C_C2
        if self._full():
            # Assumption: a full car shows EVSE status D1 "charging stopped by EV", charge point
            # state "paused" and IEC state B2 (pilot offered, car not drawing).
            return _A_STOPPED_BY_EV, _B_PAUSED, _C_B2
        no_power = _A_NO_POWER_WAS if self._charged_this_session else _A_NO_POWER_WASNT
        if self._stopped:
            # Assumption: a session stopped over Modbus shows "not enough power" (no closer
            # EVSE status exists) and charge point state "charge stopped by user".
            return no_power, _B_STOPPED_BY_USER, _C_B1
        if not self._authorised():
            return _A_NO_AUTH, _B_AWAITING, _C_B1
        if self._target()[0] > 0:
            return _A_WAITING_EV, _B_AUTHORISED, _C_B2
        paused = _B_PAUSED if self._charged_this_session else _B_AUTHORISED
        return no_power, paused, _C_B1

    def _limit_cause(self) -> int:
        limits = [
            (self._allowed(), _F_LOAD_BALANCE),
            (float(self.amp_limit), _F_HARDWARE),
            (float(self.user_max_current), _F_USER),
        ]
        return min(limits, key=lambda item: item[0])[1]

    def _publish(self) -> None:
        """Write the model state into the register image."""
        image = self._image
        currents = self._phase_currents()
        for i in range(3):
            image.set(f"voltage_l{i + 1}", self.voltages[i])
            image.set(f"current_l{i + 1}", currents[i])
        a, b, c = self._status
        image.set_raw("evse_status", a)
        image.set_raw("charge_point_state", b)
        image.set_raw("iec_state", c)
        image.set("evse_status_time", int(self._now - self._status_since))
        # Assumption: with a car connected, reg 13 shows the phases the charger connects it on
        # (its phase mode, one phase for a 1-phase car) even while it offers no current; the
        # reference does not say what it shows then.
        shown = self._draw_phases or self._connected_phases()
        image.set_raw("phase_connected", _PHASE_CODES[shown] if self.ev else 7)
        # Reg 18: 0 auto lock (locked while a car is connected), 1 always lock, 2 force unlock.
        lock_mode = image.raw("socket_lock_mode")
        image.set_raw("lock_status", 1 if lock_mode == 1 or (self.ev and lock_mode == 0) else 0)
        image.set_raw("warning_code", self.warning_bits)
        image.set_raw("error_code", self.error_bits)
        image.set_raw("current_limit_cause", self._limit_cause())
        image.set("active_power", sum(self.voltages[i] * currents[i] for i in range(3)))
        image.set(
            "session_energy", energy_in_unit(image.map.field("session_energy"), self._session_wh)
        )
        duration = self._now - self._session_start if self.ev else 0.0
        image.set("session_duration", int(duration))
        image.set(
            "lifetime_energy", energy_in_unit(image.map.field("lifetime_energy"), self._lifetime_wh)
        )
