"""The real daemon on the closed-loop scenarios, over Modbus, in real time.

Run: ``.venv/bin/python benchmarks/bench_daemon_scenarios.py [--only NAME] [--seconds S]``.
Writes ``benchmarks/results/daemon_scenarios.json`` and ``daemon_scenarios.md``.

Each scenario of ``benchmarks/scenarios/`` runs with :func:`ampgate.sim.live.run_live`: the
daemon's gateway against the EVC2 and meter simulators served over loopback Modbus TCP, or RTU
on a socat pty pair with line emulation at the scenario's baud rate, for at most ``--seconds``
of its script (real time, so a 600 s scenario is cut short). The scores are those of
``bench_closed_loop`` (:mod:`ampgate.sim.scoring`), plus the start-up: when the first and the
last charger found above its share got its lowered setpoint on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ampgate.sim.live import LiveRun, run_live
from ampgate.sim.scenario import Scenario, load_scenario

HERE = Path(__file__).resolve().parent


def lowering_times(run: LiveRun, scenario: Scenario) -> tuple[float | None, float | None]:
    """(first, last) time a charger found above its share was written a lower setpoint."""
    times = []
    for charger, plan in scenario.chargers.items():
        if plan.found_amps <= 0:
            continue
        lowered = [t for t, amps in run.setpoint_writes(charger) if amps < plan.found_amps]
        times.append(lowered[0] if lowered else float("inf"))
    if not times:
        return None, None
    return min(times), max(times)


def row_of(run: LiveRun, scenario: Scenario, seconds: float, wall_s: float) -> dict:
    """One result row."""
    first, last = lowering_times(run, scenario)
    score = asdict(run.score)
    score.pop("car_energy_kwh", None)
    return {
        **score,
        "scenario": scenario.name,
        "transport": scenario.transport,
        "chargers": len(scenario.config.chargers),
        "seconds": seconds,
        "first_lowering_s": first,
        "last_lowering_s": last,
        "stop_s": run.stop_s,
        "cycles": run.cycles,
        "events": dict(run.events),
        "wall_s": wall_s,
    }


_PREFIX = "python benchmarks/bench_daemon_scenarios.py "


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def markdown(rows: list[dict], meta: dict) -> str:
    """The results as a markdown table."""
    lines = [
        "# The daemon on the closed-loop scenarios, over Modbus",
        "",
        f"Python {meta['python']}. Each scenario runs in real time against the simulators over "
        "loopback Modbus (TCP, or RTU on a pty pair with line emulation), cut to the first "
        "*run s* seconds of its script. A run of some scenarios (`--only`) replaces their rows "
        "and keeps the others; each row names the command and the time it came from.",
        "",
        "| scenario | transport | chargers | run s | first / last lowering s | overload A·s "
        "| beyond reaction A·s | waiting with room | energy / oracle | stop s | run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['transport']} | {r['chargers']} | {r['seconds']:.0f} "
            f"| {_num(r['first_lowering_s'], '.2f')} / {_num(r['last_lowering_s'], '.2f')} "
            f"| {r['overload_amp_s']:.1f} | {r['overload_beyond_reaction_amp_s']:.1f} "
            f"| {100 * r['waiting_with_room_share']:.1f} % | {100 * r['energy_ratio']:.1f} % "
            f"| {r['stop_s']:.2f} | `{r['command'].removeprefix(_PREFIX)}` {r['date']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the scenarios and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="scenario file names containing this")
    parser.add_argument("--seconds", type=float, default=60.0, help="cap on each run, s")
    parser.add_argument(
        "--results",
        type=Path,
        default=HERE / "results",
        help="folder of daemon_scenarios.json/.md (runs in parallel each write their own)",
    )
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.WARNING)
    all_files = sorted((HERE / "scenarios").glob("*.toml"))
    files = all_files
    if args.only:
        files = [f for f in files if any(o in f.name for o in args.only)]
    rows = []
    for path in files:
        scenario = load_scenario(path)
        seconds = min(args.seconds, scenario.duration_s)
        began = time.monotonic()
        run = asyncio.run(run_live(scenario, duration_s=seconds))
        row = row_of(run, scenario, seconds, time.monotonic() - began)
        rows.append(row)
        print(
            f"{scenario.name[:50]:50} beyond {row['overload_beyond_reaction_amp_s']:6.1f} A·s "
            f"waiting {100 * row['waiting_with_room_share']:5.1f} % "
            f"energy {100 * row['energy_ratio']:5.1f} % "
            f"lowering {_num(row['last_lowering_s'], '.2f')} s",
            flush=True,
        )
    meta = {
        "command": "python benchmarks/bench_daemon_scenarios.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
    }
    for row in rows:
        row["command"], row["date"] = meta["command"], meta["date"]
    out = args.results
    out.mkdir(parents=True, exist_ok=True)
    path = out / "daemon_scenarios.json"
    rows = merged(_previous_rows(path), rows, [load_scenario(f).name for f in all_files])
    path.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    (out / "daemon_scenarios.md").write_text(markdown(rows, meta))
    return 0


def _previous_rows(path: Path) -> list[dict]:
    """The rows of an earlier results file (none if there is none, or it has no dates)."""
    try:
        runs = json.loads(path.read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return []
    return [r for r in runs if "date" in r and "command" in r]


def merged(previous: list[dict], new: list[dict], order: list[str]) -> list[dict]:
    """The new rows, and the previous ones of scenarios not run this time, in scenario order
    (a long run of one scenario does not erase the others' results)."""
    by_name = {r["scenario"]: r for r in previous}
    by_name.update((r["scenario"], r) for r in new)
    rank = {name: i for i, name in enumerate(order)}
    return sorted(by_name.values(), key=lambda r: rank.get(r["scenario"], len(rank)))


if __name__ == "__main__":
    sys.exit(main())
