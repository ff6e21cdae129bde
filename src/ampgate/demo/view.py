"""A terminal view of the gateway: per-phase bars against each fuse, and every charger's state.

:func:`render_view` returns the full screen (plain text plus optional ANSI colour) for a TTY;
:func:`render_line` one plain line per cycle for logs and pipes. Both only read the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ampgate.config import PHASES
from ampgate.daemon.runtime import number_of, value_of

if TYPE_CHECKING:
    from ampgate.daemon.loop import Gateway

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


def _draw(gateway: Gateway, name: str) -> str:
    values = gateway.chargers[name].values
    amps = [number_of(values, f"current_l{i}") for i in (1, 2, 3)]
    return "/".join("-" if a is None else f"{a:4.1f}" for a in amps)


def render_view(gateway: Gateway, header: str = "", *, colour: bool = False) -> str:
    """Return the live view: header, legend, fuse bars per group and phase, charger table."""
    lines = [header] if header else []
    lines += [*LEGEND, ""]
    allocation = gateway.allocation
    stale = {rt.config.group for rt in gateway.meters.values() if rt.stale and rt.config}
    if allocation is None:
        lines.append(f"cycle {gateway.cycles}: waiting for a complete first measurement ...")
    else:
        by_group: dict[str, list] = {}
        for acc in allocation.accounts:
            by_group.setdefault(acc.group, []).append(acc)
        for group, accounts in by_group.items():
            meter = " (meter STALE: fallback load)" if group in stale else ""
            lines.append(f"fuse {group}{meter}")
            for acc in sorted(accounts, key=lambda a: a.phase):
                used = acc.non_ev_load + acc.allocated
                bar = _bar(acc.non_ev_load, acc.allocated, acc.limit, colour)
                lines.append(
                    f"  {PHASES[acc.phase]} {bar}"
                    f" {used:5.1f} / {acc.limit:g} A (building est. {acc.non_ev_load:4.1f}, "
                    f"cars {acc.allocated:4.1f}; "
                    f"{SOURCES.get(acc.non_ev_source, acc.non_ev_source)})"
                )
    lines.append("")
    lines.append(
        f"{'charger':<10} {'online':<7} {'vehicle':<34} {'set':>4} {'draw L1/L2/L3':<16} reason"
    )
    for name, rt in gateway.chargers.items():
        status = value_of(rt.values, "evse_status") or "-"
        online = "REFUSED" if rt.refused else ("yes" if rt.online else "NO")
        setpoint = "-" if rt.setpoint is None else f"{rt.setpoint}"
        draw = _draw(gateway, name)
        lines.append(
            f"{name:<10} {online:<7} {str(status)[:34]:<34} {setpoint:>4} {draw:<16}"
            f" {rt.reason or rt.reason_code or '-'}"[:160]
        )
    recent = list(gateway.events.recent)[-5:]
    if recent:
        lines.append("")
        lines.append("recent events:")
        for event in recent:
            ctx = " ".join(f"{k}={v}" for k, v in event.context.items() if k != "hint")
            lines.append(f"  {event.name} {event.device or ''} {ctx}"[:160])
    return "\n".join(lines)


def render_line(gateway: Gateway) -> str:
    """Return one plain line summarising the cycle (for a pipe or a log file)."""
    parts = [f"cycle={gateway.cycles}"]
    allocation = gateway.allocation
    if allocation is not None:
        for acc in allocation.accounts:
            used = acc.non_ev_load + acc.allocated
            parts.append(f"{acc.group}.{PHASES[acc.phase]}={used:.1f}/{acc.limit:g}A")
    for name, rt in gateway.chargers.items():
        setpoint = "-" if rt.setpoint is None else rt.setpoint
        parts.append(f"{name}={setpoint}A({rt.reason_code or '-'})")
    return " ".join(parts)
