"""What is drawing on each phase besides the chargers ampgate controls (the non-EV load).

Rules (Bender "External Meter Location", "External Load Fallback"):

- meter *including* the chargers: non-EV = meter − measured currents of the online chargers
  under the metered group (through their rotations); with ``meter_lag_allowance_s`` > 0 each
  charger's smallest draw over that window before the reading is used, so a lagging meter
  cannot turn a car's ramp-up into phantom capacity;
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
                    if window > 0 and memory_of_charger is not None:
                        # the meter reflects some draw from the last `window` before its
                        # reading; subtracting the smallest of them never hides load
                        for at, past in memory_of_charger.recent_draw:
                            if reading.timestamp - window - 1e-9 <= at <= reading.timestamp:
                                draw = tuple(min(a, b) for a, b in zip(draw, past, strict=True))
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
