"""What is drawing on each phase besides the chargers ampgate controls (the non-EV load).

Rules (Bender "External Meter Location", "External Load Fallback"):

- meter *including* the chargers: non-EV = meter − measured currents of the online chargers
  under the metered group (through their rotations); with ``meter_lag_allowance_s`` > 0 each
  charger's draw *as it was when the meter measured* (reading time − lag, from the draws the
  engine recorded, see :func:`draw_at`) is subtracted, so a lagging meter neither turns a
  car's ramp-up into phantom capacity nor a car's ramp-down into phantom load (the phantom
  load made the first version oscillate); with ``align_reading_times`` (a gateway whose charger
  readings are older or newer than the meter reading) each charger's draw at the meter's time
  is bounded from samples at their own times and the setpoints decided since
  (:func:`aligned_draw`), so a stale, higher charger reading never offsets a meter that already
  sees a lowering;
- meter *excluding* the chargers: non-EV = meter;
- reading stale or any phase missing: hold the last good non-EV load for ``meter_hold_s`` after
  that reading, then use the group's fallback load — never zero;
- group without a meter: its fallback load (the static non-EV load of that fuse).

Non-EV load is clamped at 0 per phase: a negative value (export, or a charger measured a moment
after the meter) must not create capacity that is not there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ampgate.dlm.model import (
    ChargerMemory,
    ChargerReading,
    EngineState,
    MeterLocation,
    MeterMemory,
    PhaseTriple,
    Site,
)
from ampgate.dlm.topology import SiteIndex


@dataclass(frozen=True, slots=True)
class GroupLoad:
    """Non-EV load of one group per site phase and where it came from."""

    non_ev: PhaseTriple
    source: str  # "meter" | "held" | "fallback" | "static"


def measured_site_currents(
    site_index: SiteIndex, charger_id: str, reading: ChargerReading
) -> PhaseTriple:
    """Map a charger's measured terminal currents onto site phases (negative read as 0)."""
    spec = site_index.chargers[charger_id]
    out = [0.0, 0.0, 0.0]
    for terminal, amps in enumerate(reading.currents):
        out[spec.rotation.site_phase(terminal)] += max(0.0, float(amps))
    return (out[0], out[1], out[2])


CAR_REACTION_S = 5.0
"""Longest time a car takes to follow a changed pilot limit (IEC 61851-1: 5 s)."""


def draw_at(
    history: tuple[tuple[float, PhaseTriple], ...],
    now: float,
    current: PhaseTriple,
    at: float,
) -> PhaseTriple:
    """A charger's draw per site phase at time ``at``, from its recorded draws.

    ``history`` holds (time, draw) samples of earlier cycles, oldest first; ``current`` is this
    cycle's draw at ``now``. The draw at ``at`` is taken from the samples on either side of it:
    when they agree (steady draw, or a sample exactly at ``at``) that is the answer; when the
    draw changed between them, the smaller of the two per phase, so the non-EV load derived
    from it can only be over-estimated, never hide load — except when the earlier sample is at
    least :data:`CAR_REACTION_S` before ``at`` (cycle longer than the lag): the car had then
    settled on the setpoint written at the earlier sample, and the later sample is its draw.
    With no sample at or before ``at`` (the history is too short) the smallest draw seen is
    used, for the same reason.

    Unsure: the meter's lag is a setting (``meter_lag_allowance_s``), not measured; if the real
    lag differs, a car changing its draw shows up in the non-EV estimate as a transient of at
    most that change, for at most the difference in lag.
    """
    before: PhaseTriple | None = None
    before_t = 0.0
    after = current
    for t, sample in history:
        if t <= at + 1e-9:
            before, before_t = sample, t
            if t >= at - 1e-9:
                return sample  # a sample exactly at `at`
        else:
            after = sample
            break
    if before is None:
        smallest = current
        for _, sample in history:
            smallest = _min3(smallest, sample)
        return smallest
    if at - before_t >= CAR_REACTION_S:
        # the car had followed the setpoint written at the earlier sample by `at`; the draw
        # did not change again before the later sample unless the car changed it by itself
        return after
    return _min3(before, after)


def aligned_draw(
    history: tuple[tuple[float, PhaseTriple], ...],
    measured_at: float,
    current: PhaseTriple,
    at: float,
    decided: tuple[tuple[float, int], ...],
) -> PhaseTriple:
    """The least a charger can have drawn at ``at``, from samples taken at their own times.

    For callers whose charger readings are timestamped when the charger measured
    (``EngineSettings.align_reading_times``): ``history`` holds earlier (time, draw) samples,
    oldest first, ``current`` is the latest reading taken at ``measured_at``, ``decided`` the
    (time, amps) setpoint changes the engine made recently, ``at`` the meter reading's time
    minus the lag allowance. A car draws at most its setpoint once it followed it, and follows a
    changed setpoint within :data:`CAR_REACTION_S`, so per phase:

    - ``before`` = the latest sample at or before ``at``; the targets in effect between it and
      ``at`` are any setpoint decided up to ``CAR_REACTION_S`` before that sample (the car may
      still have been following it) and every setpoint decided after it up to ``at``;
      the draw is at least min(``before``, those targets) — a lowering written after the
      latest charger reading counts as followed, so a meter that already sees the lower draw
      is never offset by the older, higher charger reading (that under-estimated the building
      load and over-allocated);
    - with a sample ``after`` ``at``: at least min(that, ``after``); but when targets changed
      and none was decided between ``at`` and ``after``, the car moved monotonically towards
      the last one, so where ``after`` is not below that target the car drew at least
      min(``before``, ``after``) at ``at`` (no phantom load from a lowering it had not yet
      followed);
    - no sample at or before ``at``: the smallest sample and target seen.

    The non-EV load derived from the result can only be over-estimated. Unsure: a car that
    lowers its own draw (battery full) between a charger reading and the meter reading is not
    known until the next charger reading; that transient is at most the car's own change.
    """
    samples = history
    if not samples or samples[-1][0] < measured_at:
        samples = (*samples, (measured_at, current))
    b = -1
    for i, (t, _) in enumerate(samples):
        if t <= at + 1e-9:
            b = i
        else:
            break
    if b < 0:
        least = samples[0][1]
        for _, sample in samples:
            least = _min3(least, sample)
        cap = min((amps for t, amps in decided if t <= at), default=None)
        return least if cap is None else _cap3(least, cap)
    before_t, before = samples[b]
    # the target in effect at `before` (if the car may still have been following it), then
    # every target decided after it up to `at`; older targets were superseded before `before`
    targets = [a for t, a in decided if before_t < t <= at]
    in_effect = [(t, a) for t, a in decided if t <= before_t]
    if in_effect and in_effect[-1][0] > before_t - CAR_REACTION_S:
        targets.insert(0, in_effect[-1][1])
    least = before if not targets else _cap3(before, min(targets))
    if b + 1 < len(samples):
        after_t, after = samples[b + 1]
        if targets and not any(at < t <= after_t for t, _ in decided):
            target = targets[-1]  # the last decided up to `at`
            floor = _min3(before, after)
            least = tuple(  # type: ignore[assignment]
                max(least[p], floor[p]) if after[p] >= target - 1e-9 else min(least[p], after[p])
                for p in range(3)
            )
        else:
            least = _min3(least, after)
    return least


def _draw_over_lag(
    memory: ChargerMemory,
    measured_at: float,
    current: PhaseTriple,
    meter_at: float,
    lag: float,
) -> PhaseTriple:
    """The least a charger drew while a meter read at ``meter_at`` with a lag of 0..``lag``.

    The lag of a real meter is not known exactly (``meter_lag_allowance_s`` is its bound), so
    the draw is bounded at both ends of the range and by every sample inside it.
    """
    history, decided = memory.recent_draw, memory.recent_setpoints
    least = aligned_draw(history, measured_at, current, meter_at, decided)
    if lag <= 0:
        return least
    least = _min3(least, aligned_draw(history, measured_at, current, meter_at - lag, decided))
    for t, sample in (*history, (measured_at, current)):
        if meter_at - lag < t < meter_at:
            least = _min3(least, sample)
    return least


def _cap3(a: PhaseTriple, cap: float) -> PhaseTriple:
    return (min(a[0], cap), min(a[1], cap), min(a[2], cap))


def _min3(a: PhaseTriple, b: PhaseTriple) -> PhaseTriple:
    return (min(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]))


def group_loads(
    site: Site,
    site_index: SiteIndex,
    readings: Mapping[str, ChargerReading],
    meter_readings: Mapping,
    state: EngineState,
    now: float,
    measured: Mapping[str, PhaseTriple] | None = None,
) -> tuple[dict[str, GroupLoad], dict[str, MeterMemory]]:
    """Return each group's non-EV load and the meters' memory for the next state.

    ``measured`` optionally gives each online charger's draw already mapped to site phases
    (the engine has it from :func:`ampgate.dlm.observe.observe_charger`); otherwise it is
    computed from ``readings``.
    """
    settings = site.settings
    loads: dict[str, GroupLoad] = {}
    memory: dict[str, MeterMemory] = {}
    for group in site.groups:
        meter = site_index.meter_of_group.get(group.id)
        if meter is None:
            loads[group.id] = GroupLoad(group.fallback_load, "static")
            continue
        reading = meter_readings.get(meter.id)
        fresh = (
            reading is not None
            and all(c is not None for c in reading.currents)
            and now - reading.timestamp <= settings.meter_stale_after_s
        )
        if fresh:
            raw = [float(c) for c in reading.currents]  # type: ignore[arg-type]
            if meter.location is MeterLocation.INCLUDING:
                window = settings.meter_lag_allowance_s
                for charger_id in site_index.members[group.id]:
                    r = readings.get(charger_id)
                    if r is None or not r.online:
                        continue
                    draw = (
                        measured[charger_id]
                        if measured is not None
                        else measured_site_currents(site_index, charger_id, r)
                    )
                    memory_of_charger = state.chargers.get(charger_id)
                    if settings.align_reading_times:
                        if memory_of_charger is not None:
                            draw = _draw_over_lag(
                                memory_of_charger,
                                r.timestamp if 0.0 < r.timestamp <= now else now,
                                draw,
                                reading.timestamp,
                                window,
                            )
                    elif window > 0 and memory_of_charger is not None:
                        draw = draw_at(
                            memory_of_charger.recent_draw, now, draw, reading.timestamp - window
                        )
                    for p in range(3):
                        raw[p] -= draw[p]
            non_ev = (max(0.0, raw[0]), max(0.0, raw[1]), max(0.0, raw[2]))
            memory[meter.id] = MeterMemory(non_ev, reading.timestamp)
            loads[group.id] = GroupLoad(non_ev, "meter")
            continue
        held = state.meters.get(meter.id)
        if held is not None and now - held.timestamp <= settings.meter_hold_s:
            memory[meter.id] = held
            loads[group.id] = GroupLoad(held.non_ev_load, "held")
        else:
            loads[group.id] = GroupLoad(group.fallback_load, "fallback")
    return loads, memory
