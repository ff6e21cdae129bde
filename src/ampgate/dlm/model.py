"""Values the load-management engine takes and returns.

Everything here is a frozen, slotted value: the site (a tree of fuse groups and the chargers
hanging off them), the engine settings, one cycle's measurements, the engine's memory between
cycles, and the allocation it returns. The engine (:func:`ampgate.dlm.allocate`) is a pure
function of these values and ``now``; nothing here does I/O or reads a clock.

Phases: the site's phases are numbered 0, 1, 2 (L1, L2, L3 of the main connection). A charger's
own terminals are also numbered 0, 1, 2 (the charger's "L1".."L3", as it reports its
currents); its :class:`Rotation` says which site phase each terminal sits on.

Vocabulary (Bender DLM names in brackets):

- group limit [EVSE Sub-Distribution Limit / Main Distribution Limit] — fuse per site phase
- operator limit [Operator EVSE Sub-Distribution Limit] — optional cap ≤ fuse
- headroom [External Load Headroom] — margin kept free below the limit
- fallback load [External Load Fallback] — non-EV load assumed when the meter is stale, or the
  static non-EV load of a group without a meter (0 for a dedicated charging sub-distribution)
- meter location [External Meter Location] — *including* (meter sees building + chargers) or
  *excluding* the chargers (meter sees the building only)

Longer than 400 lines on purpose: the engine's whole data model (site, settings, readings,
memory, allocation) with each field's meaning, in one place an integrator reads.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import lru_cache
from typing import Literal

PhaseTriple = tuple[float, float, float]
"""One number per site phase (L1, L2, L3), in amps."""


def on_phases(amps: float, phases: Collection[int]) -> PhaseTriple:
    """``amps`` on each site phase in ``phases``, 0 on the others."""
    return (
        amps if 0 in phases else 0.0,
        amps if 1 in phases else 0.0,
        amps if 2 in phases else 0.0,
    )


PHASE_NAMES = ("L1", "L2", "L3")
MIN_CHARGING_CURRENT = 6
"""IEC 61851 minimum: a setpoint is 0 or at least this many amps (1–5 A are invalid)."""
MAX_CHARGING_CURRENT = 32
"""Largest setpoint the engine gives (a setpoint is 0 or 6–32 A)."""
CAR_REACTION_S = 5.0
"""Longest time a car takes to follow a changed pilot limit (IEC 61851-1: 5 s)."""
WRITE_S = 1.0
"""Longest time a decided setpoint takes to reach a charger (the bus queue, the write itself),
and a reading to arrive after the charger measured (its answer's wire time)."""


class Rotation(StrEnum):
    """Phase rotation of a charger: which site phases its terminals L1, L2, L3 sit on.

    ``L2L3L1`` (Bender "STR") means the charger's L1 is the site's L2, its L2 the site's L3 and
    its L3 the site's L1.
    """

    L1L2L3 = "L1L2L3"  # RST, standard
    L2L3L1 = "L2L3L1"  # STR
    L3L1L2 = "L3L1L2"  # TRS

    def site_phase(self, charger_phase: int) -> int:
        """Return the site phase (0..2) the charger's terminal ``charger_phase`` (0..2) sits on."""
        return _ROTATION_TABLE[self.value][charger_phase]


ROTATION_TABLE: dict[str, tuple[int, int, int]] = {
    "L1L2L3": (0, 1, 2),
    "L2L3L1": (1, 2, 0),
    "L3L1L2": (2, 0, 1),
}
"""Rotation value → site phase of the charger's terminals 0, 1, 2."""
_ROTATION_TABLE = ROTATION_TABLE


class MeterLocation(StrEnum):
    """Where a group's meter sits relative to the chargers under that group."""

    INCLUDING = "including"  # meter sees non-EV load + the chargers under the group
    EXCLUDING = "excluding"  # meter sees non-EV load only


class VehicleState(Enum):
    """What the engine needs to know about the car at a charger (the caller derives it from
    what the charger reports)."""

    NOT_CONNECTED = "not_connected"
    CONNECTED = "connected"  # connected and authorised, not drawing (waiting / paused by us)
    CHARGING = "charging"
    SUSPENDED_BY_EV = "suspended_by_ev"  # D1: car stopped drawing (full, schedule); may resume
    NOT_AUTHORISED = "not_authorised"
    ERROR = "error"
    UNKNOWN = "unknown"

    @property
    def wants_current(self) -> bool:
        """True when the engine should offer current to this car."""
        return self in (
            VehicleState.CONNECTED,
            VehicleState.CHARGING,
            VehicleState.SUSPENDED_BY_EV,
        )


# --------------------------------------------------------------------------- site


@dataclass(frozen=True, slots=True)
class Group:
    """A fuse (main connection, sub-distribution, dual-socket supply line) with its limits.

    ``parent`` names the group upstream of this one (None for the root). Every charger under this
    group (directly or through child groups) counts against every phase limit here.
    """

    id: str
    limit: PhaseTriple
    """Fuse rating per site phase, A."""
    parent: str | None = None
    operator_limit: PhaseTriple | None = None
    """Optional operator cap per phase, each ≤ the fuse limit."""
    headroom: PhaseTriple = (0.0, 0.0, 0.0)
    """Margin kept free below the limit, per phase, A."""
    fallback_load: PhaseTriple = (0.0, 0.0, 0.0)
    """Non-EV load assumed when this group's meter is stale (or the group has no meter), A."""
    power_cap_kw: float | None = None
    """Optional cap on the total power through this group (all phases, EV + non-EV), kW."""
    nominal_voltage: float = 230.0
    """Phase-to-neutral voltage used to turn the power cap into amps."""
    max_imbalance: float | None = None
    """Optional cap on the difference between the phases' EV allocations in this group, A.

    Applied to the EV allocation only (the building's own imbalance is not ours to control).
    """

    def effective_limit(self, phase: int) -> float:
        """Return the limit that applies on ``phase``: the operator cap if set, else the fuse."""
        if self.operator_limit is None:
            return self.limit[phase]
        return min(self.limit[phase], self.operator_limit[phase])


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """An energy meter measuring the current through a group's fuse."""

    id: str
    group: str
    location: MeterLocation = MeterLocation.INCLUDING


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    """A charge point as configured by the installer (what the charger reports at run time —
    its current limit, whether it can switch phases — refines it: :class:`ChargerReading`)."""

    id: str
    group: str
    rotation: Rotation = Rotation.L1L2L3
    wired_phases: tuple[int, ...] = (0, 1, 2)
    """The charger's own terminals that are wired (charger terms): (0,) for a 1-phase install."""
    min_current: int = MIN_CHARGING_CURRENT
    """Below this the car is paused, not throttled (Bender "Minimum Current Limit")."""
    max_current: int = MAX_CHARGING_CURRENT
    phase_change_possible: bool = False
    """The charger may be switched between 3-phase and 1-phase (unless it reports otherwise)."""
    priority: int = 0
    """Higher is served first; equal priorities share fairly."""
    failsafe_current: int = MIN_CHARGING_CURRENT
    """Current the charger falls back to when the gateway's watchdog times out, before
    planning."""

    def site_phases(self, charger_phases: tuple[int, ...] | frozenset[int]) -> tuple[int, ...]:
        """Map charger terminals to site phases through this charger's rotation, sorted."""
        return _site_phases(self.rotation.value, tuple(charger_phases))


@lru_cache(maxsize=256)
def _site_phases(rotation: str, charger_phases: tuple[int, ...]) -> tuple[int, ...]:
    table = _ROTATION_TABLE[rotation]
    return tuple(sorted({table[p] for p in charger_phases}))


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Tuning of the allocator. Defaults follow the Bender DLM and IEC 61851 reaction times."""

    cycle_period_s: float = 1.0
    ramp_up_a_per_s: float = 2.0
    """Largest setpoint increase per second of elapsed time (at least 1 A per cycle)."""
    hysteresis_a: int = 1
    """An increase smaller than this is not made (decreases are always made)."""
    increase_margin_a: float = 0.25
    """An increase is made only when this much current is left free above it, so the meter's
    noise at a whole-amp boundary does not make a setpoint go up and down every cycle."""
    restart_delay_s: float = 60.0
    """A charger paused by the engine is not restarted before this many seconds."""
    restart_margin_a: float = 1.0
    """A paused charger restarts only if its minimum plus this margin fits."""
    meter_stale_after_s: float = 5.0
    """A meter reading older than this is stale."""
    meter_hold_s: float = 10.0
    """After the last good reading, hold the last non-EV load this long, then use the fallback."""
    underdraw_margin_a: float = 2.0
    underdraw_settle_s: float = 30.0
    """A car drawing less than setpoint − margin for this long is lowered to draw + margin."""
    phase_switch_interval_s: float = 300.0
    """Never switch a charger between 1 and 3 phases more often than this."""
    fairness_rotation_s: float = 300.0
    """A running car keeps its slot over a waiting car of equal priority for this much more
    charging time; then they swap (the paused car rotates)."""
    failsafe_rotation_s: float = 3600.0
    """How often the choice of chargers given failsafe 0 (when not all fit) rotates."""
    phase_use_threshold_a: float = 1.0
    """A charging car drawing at least this on a phase uses that phase."""
    meter_lag_allowance_s: float = 1.0
    """How far a meter's reading may lag the chargers' own measurements (averaging, the
    refresh of its values), s. With a meter *including* the chargers, each charger's draw is
    taken over [reading time − this, reading time], so a lagging meter never turns a car's
    change into phantom building load or phantom capacity (see :mod:`ampgate.dlm.loads`)."""
    reading_skew_s: float = 0.1
    """A charger reading taken this close to the meter reading counts as simultaneous."""
    estimate_tolerance_a: float = 0.5
    """Readings of one charger within this many amps of each other are the same draw, and a
    building-load estimate whose uncertainty on a phase is at most this counts as measured."""
    phase_switch_timeout_s: float = 30.0
    """A commanded phase switch not confirmed (the phases the charger reports and its
    currents) within this long is not followed: the charger is reported and treated as not
    switchable for a while."""
    phase_switch_retry_s: float = 1800.0
    """How long a charger that did not follow a phase switch is treated as not switchable."""
    overdraw_margin_a: float = 2.0
    """A car drawing more than its setpoint + this, after it had time to follow, over-draws."""
    overdraw_pause_s: float = 30.0
    """A car over-drawing even the budget of its measured excess this long is paused."""
    meter_frozen_change_a: float = 6.0
    """An *including* meter whose phase reading does not move while the chargers' draw on that
    phase changed by at least this many amps is frozen (treated as stale)."""


@dataclass(frozen=True, slots=True)
class Site:
    """The whole installation: groups (a tree), meters, chargers and the engine settings.

    Build with :func:`ampgate.dlm.check_site` to validate; the engine assumes a valid site.
    """

    groups: tuple[Group, ...]
    chargers: tuple[ChargerSpec, ...]
    meters: tuple[MeterSpec, ...] = ()
    settings: EngineSettings = field(default_factory=EngineSettings)


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One meter's per-phase currents. A None phase is missing (never read as zero load)."""

    currents: tuple[float | None, float | None, float | None]
    timestamp: float


@dataclass(frozen=True, slots=True)
class ChargerReading:
    """One charger's state as polled this cycle (charger terms: its own L1..L3)."""

    online: bool
    """False when the gateway could not reach the charger this cycle."""
    currents: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Measured per-terminal currents, A."""
    vehicle: VehicleState = VehicleState.UNKNOWN
    timestamp: float = 0.0
    """When the charger measured (the caller's clock); 0 or a future time: as of ``now``."""
    last_setpoint: int | None = None
    """The setpoint as read back from the charger, if known."""
    max_current: int | None = None
    """The most the charger itself allows now (e.g. its hardware and its user's limit), if
    known."""
    phase_change_possible: bool | None = None
    """Whether the charger reports it can switch phases, overriding the configured value when
    known."""
    phases_reported: frozenset[int] | None = None
    """Charger terminals the charger reports it has connected to the car, or None when
    unknown. With the measured currents it confirms a commanded phase switch."""


@dataclass(frozen=True, slots=True)
class Measurements:
    """Everything observed this cycle; missing meters/chargers are treated as stale/offline."""

    meters: Mapping[str, MeterReading] = field(default_factory=dict)
    chargers: Mapping[str, ChargerReading] = field(default_factory=dict)


# --------------------------------------------------------------------------- engine memory


@dataclass(frozen=True, slots=True)
class ChargerMemory:
    """What the engine remembers about one charger between cycles."""

    setpoint: int = 0
    phases: Literal[1, 3] | None = None
    """Last phase mode decided (only for phase-switchable chargers)."""
    changed_at: float | None = None
    paused_at: float | None = None
    """When the engine last took this charger from > 0 to 0 while the car wanted current."""
    phase_switched_at: float | None = None
    served_s: float = 0.0
    """Seconds this session with a setpoint > 0 (the fairness key)."""
    phases_in_use: frozenset[int] | None = None
    """Charger terminals the car was seen drawing on this session (None until known)."""
    underdraw_since: float | None = None
    underdraw_cap: int | None = None
    session: bool = False
    """A car is connected (a session is under way)."""
    recent_draw: tuple[tuple[float, PhaseTriple], ...] = ()
    """(time measured, draw per site phase) of the last readings, oldest first."""
    recent_targets: tuple[tuple[float, PhaseTriple], ...] = ()
    """(time decided, draw per site phase the car would settle at) of recent setpoint and
    phase changes, oldest first: what the car may still be moving towards."""
    phase_pending_since: float | None = None
    """A commanded phase switch not yet confirmed by the charger (its reported phases and
    currents)."""
    phase_blocked_until: float | None = None
    """The charger did not follow a phase switch: not switchable before this time."""
    overdraw_a: float = 0.0
    """Amps the car draws above its setpoint (budgeted on its phases), 0 when it does not."""
    overdraw_since: float | None = None
    """When the car was first seen drawing above even that budget (pause after a while)."""
    stopped_at: float | None = None
    """When the car stopped drawing after the engine paused it (the restart delay counts
    from here; a car that never stopped drawing has not cycled its contactor)."""


@dataclass(frozen=True, slots=True)
class MeterMemory:
    """What the engine keeps about a meter: the last measured non-EV load and its checks.

    ``non_ev_load[p]`` is the last building load on site phase ``p`` known to within
    ``follow_tolerance_a`` and ``measured_at[p]`` the time of that meter reading. The other
    fields are the plausibility checks' memory (:mod:`ampgate.dlm.plausibility`).
    """

    non_ev_load: PhaseTriple
    timestamp: float
    """Time of the meter reading last used (the newest of ``measured_at``)."""
    measured_at: PhaseTriple = (float("-inf"), float("-inf"), float("-inf"))
    history: tuple[tuple[float, PhaseTriple], ...] = ()
    """(reading time, non-EV load) of recent measured estimates, oldest first."""
    last_currents: tuple[float | None, float | None, float | None] | None = None
    same_since: float | None = None
    """Since when the meter repeats exactly the same values."""
    below_since: float | None = None
    """Since when it reads less than the chargers' own draw."""
    moved: tuple[tuple[float, float, float, float], ...] = ()
    """Per phase: (time, reading, least and most draw of the chargers) when it last moved."""
    draws: tuple[tuple[float, PhaseTriple, PhaseTriple], ...] = ()
    """(reading time, least, most draw of the chargers per phase) of recent readings."""
    implausible: str | None = None
    """Why the meter is not believed now, or None."""
    suspect_since: float | None = None
    """Since when its readings are not believed (its held load is from before)."""


@dataclass(frozen=True, slots=True)
class EngineState:
    """The engine's memory; start with ``EngineState()`` and feed back ``Allocation.state``."""

    time: float | None = None
    chargers: Mapping[str, ChargerMemory] = field(default_factory=dict)
    meters: Mapping[str, MeterMemory] = field(default_factory=dict)
    failsafe_offset: int = 0
    failsafe_rotated_at: float | None = None
    overloaded: frozenset[tuple[str, int]] = frozenset()
    """Group phases measured over their limit in the last cycle (notices on entering)."""


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class Setpoint:
    """What to write to one charger this cycle.

    ``amps`` is 0 or in [max(6, min), max]; for an offline charger it is the current the engine
    assumed it draws (nothing can be written). ``phases`` is the phase mode for a switchable
    charger (1 means the charger's own L1; the device maps it to its phase setting), None
    otherwise.
    """

    amps: int
    reason: str
    reason_code: str
    phases: Literal[1, 3] | None = None


@dataclass(frozen=True, slots=True)
class PhaseAccount:
    """Accounting of one site phase of one group for this cycle (for metrics and logs).

    ``available`` = limit − headroom − non-EV load (what chargers may use, can be negative);
    ``allocated`` = Σ setpoints (and assumed draws of offline chargers) on this phase.
    """

    group: str
    phase: int
    limit: float
    non_ev_load: float
    non_ev_source: str
    """"meter", "held" (stale reading held), "fallback" (stale too long) or "static" (no meter)."""
    headroom: float
    allocated: float
    available: float
    measured: float | None = None
    """What the meter shows through the fuse (chargers included), when it is live."""
    uncertainty: float = 0.0
    """Width of the range of building loads consistent with the readings, A (0 when every
    charger's draw at the meter's instant is known; larger while cars change their draw)."""


@dataclass(frozen=True, slots=True)
class MeasuredOverload:
    """A group phase whose measured current is above its limit − headroom this cycle."""

    group: str
    phase: int
    amps: float
    limit: float


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the engine noticed this cycle, for the caller to log as an event.

    ``kind`` is one of ``overload_measured``, ``phase_switch_not_followed``,
    ``charger_overdraw``, ``meter_implausible`` and ``meter_plausible``; ``subject`` the group,
    charger or meter id; ``detail`` what else the event carries.
    """

    kind: str
    subject: str
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Allocation:
    """Result of one engine cycle."""

    setpoints: Mapping[str, Setpoint]
    state: EngineState
    accounts: tuple[PhaseAccount, ...]
    failsafe: Mapping[str, int]
    """Failsafe current to program per charger, see :func:`ampgate.dlm.plan_failsafe`."""
    overloads: tuple[MeasuredOverload, ...] = ()
    """Group phases the meters show over limit − headroom this cycle."""
    notices: tuple[Notice, ...] = ()
