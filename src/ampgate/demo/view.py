"""A terminal view of the gateway: per-phase bars against each fuse, and every charger's state.

:func:`render_view` returns the full screen (plain text plus optional ANSI colour) for a TTY;
:func:`render_line` one plain line per cycle for logs and pipes. Both read only the
snapshot the gateway publishes.
"""

from __future__ import annotations

from ampgate.interfaces.snapshot import DaemonSnapshot, DeviceSnapshot

LEGEND = (
    "DLM: each cycle ampgate reads the grid meter, takes off the chargers' own draw to get the",
    "building load, and shares what the fuse leaves among the cars (0 or 6-32 A each).",
    "Bars: # building load (the meter minus what the chargers measured), = cars' setpoints,",
    "| fuse limit. Setpoints drop in the same cycle the load rises and ramp back up slowly.",
    "If ampgate dies, the chargers fall back to their failsafe current.",
)
SOURCES = {
    "meter": "metered",
    "held": "meter late: last reading held",
    "fallback": "meter STALE: fallback load",
    "static": "no meter: fixed load",
}
"""How the building load of a fuse phase was found (``PhaseAccount.non_ev_source``)."""
BAR_WIDTH = 40
_COLOURS = {"building": "\033[33m", "cars": "\033[36m", "over": "\033[31m", "reset": "\033[0m"}


def _bar(building: float, cars: float, limit: float, colour: bool) -> str:
    scale = BAR_WIDTH / max(limit * 1.25, 1.0)
    b = max(0, round(building * scale))
    c = max(0, round(cars * scale))
    mark = round(limit * scale)
    cells = ["#"] * b + ["="] * c
    cells += [" "] * max(0, BAR_WIDTH - len(cells))
    cells = cells[: max(BAR_WIDTH, mark + 1)]
    if mark < len(cells):
        cells[mark] = "|"
    text = "".join(cells)
    if not colour:
        return text
    over = building + cars > limit
    return (
        f"{_COLOURS['over' if over else 'building']}{text[:b]}{_COLOURS['cars']}{text[b : b + c]}"
        f"{_COLOURS['reset']}{text[b + c :]}"
    )


def _chargers(snapshot: DaemonSnapshot) -> list[DeviceSnapshot]:
    return [d for d in snapshot.devices if d.kind == "charger"]


def _draw(device: DeviceSnapshot) -> str:
    readings = device.charger
    if readings is None:
        return "-"
    amps = [a for _, a in readings.current_amperes.items()]
    return "/".join("-" if a is None else f"{a:4.1f}" for a in amps)


def _setpoint(device: DeviceSnapshot) -> str:
    readings = device.charger
    if readings is None or readings.setpoint_amperes is None:
        return "-"
    return f"{readings.setpoint_amperes:g}"


def render_view(snapshot: DaemonSnapshot, header: str = "", *, colour: bool = False) -> str:
    """Return the live view: header, legend, fuse bars per group and phase, charger table."""
    lines = [header] if header else []
    lines += [*LEGEND, ""]
    groups = snapshot.dlm.groups
    if not groups:
        lines.append(
            f"cycle {snapshot.dlm.cycles_total}: waiting for a complete first measurement ..."
        )
    for group in groups:
        meter = " (meter STALE: fallback load)" if group.meter_stale else ""
        lines.append(f"fuse {group.name}{meter}")
        for p in group.phases:
            building, cars, limit = p.non_ev_load_amperes, p.allocated_amperes, p.limit_amperes
            bar = _bar(building, cars, limit, colour)
            lines.append(
                f"  {p.phase} {bar} {building + cars:5.1f} / {limit:g} A "
                f"(building est. {building:4.1f}, cars {cars:4.1f}; "
                f"{SOURCES.get(p.non_ev_source, p.non_ev_source)})"
            )
    lines.append("")
    lines.append(
        f"{'charger':<10} {'online':<7} {'vehicle':<34} {'set':>4} {'draw L1/L2/L3':<16} reason"
    )
    for d in _chargers(snapshot):
        status = (d.charger.evse_status.active if d.charger else None) or "-"
        online = "REFUSED" if d.refused else ("yes" if d.up else "NO")
        lines.append(
            f"{d.name:<10} {online:<7} {status[:34]:<34} {_setpoint(d):>4} {_draw(d):<16}"
            f" {d.reason or d.reason_code or '-'}"[:160]
        )
    recent = snapshot.recent_events[-5:]
    if recent:
        lines.append("")
        lines.append("recent events:")
        for event in recent:
            ctx = " ".join(f"{k}={v}" for k, v in event.context.items() if k != "hint")
            lines.append(f"  {event.name} {event.device or ''} {ctx}"[:160])
    return "\n".join(lines)


def render_line(snapshot: DaemonSnapshot) -> str:
    """Return one plain line summarising the cycle (for a pipe or a log file)."""
    parts = [f"cycle={snapshot.dlm.cycles_total}"]
    for group in snapshot.dlm.groups:
        for p in group.phases:
            used = p.non_ev_load_amperes + p.allocated_amperes
            parts.append(f"{group.name}.{p.phase}={used:.1f}/{p.limit_amperes:g}A")
    for d in _chargers(snapshot):
        parts.append(f"{d.name}={_setpoint(d)}A({d.reason_code or '-'})")
    return " ".join(parts)
