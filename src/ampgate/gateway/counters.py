"""Energy counters that never go backwards: a smaller reading is a glitch, not the counter.

A meter or charger that answers with 0 or a smaller value of a lifetime counter (a glitch, a
reset, a swapped unit) must not make the published counter jump back (a Prometheus counter
would read it as a reset and count the whole total again). The reading is not taken, the
counter stays at its highest value, and ``energy_counter_backwards`` is reported once until the
reading is back at or above it. Only lifetime counters go through here (a meter's
``energy_import`` and ``energy_export``, a charger's ``lifetime_energy``); a session's energy
starts again at 0 with each session. A meter really replaced by a new one starts a new counter
when ampgate restarts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ampgate.gateway.events import EventLog
from ampgate.gateway.runtime import DeviceRuntime


def record_counters(
    rt: DeviceRuntime, readings: Mapping[str, float | None], events: EventLog
) -> None:
    """Take lifetime counter readings (kWh by field name; None = not read) into
    ``rt.counters``, keeping out any below the highest value seen or not finite."""
    for name, value in readings.items():
        if value is None or not math.isfinite(value):  # NaN or infinity: not a reading
            continue
        published = rt.counters.get(name)
        if published is not None and value < published:
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
