"""``/healthz``: is the control loop alive?

200 ``{"status": "ok", ...}`` while the loop's last iteration is younger than the stall limit,
503 with ``"stalled"`` when it is older and 503 with ``"starting"`` before the first iteration.
The stall limit defaults to 3 × cycle + 5 s (the cycle taken from the snapshot's
:attr:`~ampgate.interfaces.snapshot.LoopHealth.cycle_seconds`, 10 s when unknown).
"""

from __future__ import annotations

from typing import Any

from ampgate.interfaces.snapshot import DaemonSnapshot

DEFAULT_CYCLE_SECONDS = 10.0


def default_stall_limit(cycle_seconds: float | None) -> float:
    """The stall limit for a loop cycle: 3 × cycle + 5 s (10 s cycle when unknown)."""
    cycle = cycle_seconds if cycle_seconds and cycle_seconds > 0 else DEFAULT_CYCLE_SECONDS
    return 3.0 * cycle + 5.0


def health(
    snapshot: DaemonSnapshot, now_monotonic: float, stall_limit_seconds: float | None = None
) -> tuple[int, dict[str, Any]]:
    """Return the HTTP status and JSON body of ``/healthz`` for a snapshot at a moment."""
    limit = (
        stall_limit_seconds
        if stall_limit_seconds is not None
        else default_stall_limit(snapshot.loop.cycle_seconds)
    )
    last = snapshot.loop.last_iteration_monotonic
    body: dict[str, Any] = {
        "version": snapshot.build.version,
        "stall_limit_seconds": limit,
        "cycles": snapshot.dlm.cycles_total,
        "devices_up": sum(1 for d in snapshot.devices if d.up),
        "devices": len(snapshot.devices),
    }
    if last is None:
        return 503, {"status": "starting", "last_iteration_age_seconds": None, **body}
    age = max(0.0, now_monotonic - last)
    status = "ok" if age <= limit else "stalled"
    return (200 if status == "ok" else 503), {
        "status": status,
        "last_iteration_age_seconds": round(age, 3),
        **body,
    }
