"""Energy counters that never go backwards: a smaller reading is a glitch, not the counter.

A meter or charger that answers with 0 or a smaller value of a lifetime counter (a glitch, a
reset, a swapped unit) must not make the published counter jump back (a Prometheus counter
would read it as a reset and count the whole total again). The reading is kept out of the
device's values, the counter stays at its highest value, and ``energy_counter_backwards`` is
reported once until the reading is back at or above it. A meter really replaced by a new one
starts a new counter when ampgate restarts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ampgate.gateway.events import EventLog
from ampgate.gateway.runtime import DeviceRuntime, number_of

LIFETIME_COUNTERS = ("energy_import", "energy_export", "lifetime_energy")
"""Fields that only ever grow (a session's energy starts again at 0 with each session)."""


def monotonic_readings(
    rt: DeviceRuntime, readings: Mapping[str, Any], events: EventLog
) -> Mapping[str, Any]:
    """``readings`` without any lifetime counter below the highest value seen for ``rt``
    (the same mapping when nothing is dropped: this runs on every poll)."""
    dropped: list[str] = []
    for name in LIFETIME_COUNTERS:
        value = number_of(readings, name)
        if value is None:
            continue
        if not math.isfinite(value):  # NaN or infinity from a float register: not a reading
            dropped.append(name)
            continue
        published = rt.counters.get(name)
        if published is not None and value < published:
            dropped.append(name)
            if name not in rt.counters_backwards:
                rt.counters_backwards.add(name)
                events.emit(
                    "energy_counter_backwards",
                    "warning",
                    device=rt.name,
                    field=name,
                    published=published,
                    read=value,
                )
            continue
        rt.counters[name] = value
        rt.counters_backwards.discard(name)
    if not dropped:
        return readings
    return {k: v for k, v in readings.items() if k not in dropped}
