"""Closed-loop DLM benchmark: the engine, as the daemon runs it, against two baselines.

Run: ``.venv/bin/python benchmarks/bench_closed_loop.py [--only NAME] [--label LABEL]``.
Writes ``benchmarks/results/closed_loop.json`` and ``closed_loop.md`` (``--label`` writes
``closed_loop-LABEL.*`` instead, e.g. to keep a before/after pair).

Every scenario in ``benchmarks/scenarios/`` is simulated with :mod:`ampgate.sim.closed_loop`:
the EVC2 and meter simulators on a manual clock, the daemon's read plans, decoding and engine
input, the engine configured from the scenario's site file exactly as the daemon configures
it, and the transport's timing modelled (TCP, or one RS485 line at its baud rate). Scores are
those of :mod:`ampgate.sim.scoring`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ampgate.sim.closed_loop import engine_allocator, simulate  # noqa: E402
from ampgate.sim.scenario import load_scenario  # noqa: E402
from dlm_baselines import equal_split, first_come_first_served  # noqa: E402

ALLOCATORS = {
    "engine": engine_allocator,
    "equal split": equal_split,
    "first come first served": first_come_first_served,
}
GOALS = (
    "overload beyond reaction 0 A·s; plugged-car time waiting with room < 2 %; delivered "
    "energy ≥ 95 % of the oracle while the meter is live"
)


def run_one(job: tuple[str, str]) -> dict:
    """Simulate one (scenario file, allocator name) pair; return its scores as a dict."""
    path, name = job
    scenario = load_scenario(path)
    t0 = time.perf_counter()
    score = simulate(scenario, ALLOCATORS[name], name)
    row = asdict(score)
    row["file"] = Path(path).name
    row["transport"] = scenario.transport
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    row["peak_kw"] = {
        g: c.peak_kw for g, c in scenario.config.groups.items() if c.peak_kw is not None
    }
    return row


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def markdown(rows: list[dict], meta: dict) -> str:
    """The results as a markdown table."""
    lines = [
        "# Closed-loop DLM benchmark",
        "",
        f"`{meta['command']}` — {meta['date']}, Python {meta['python']}. Each scenario is "
        "simulated with `ampgate.sim.closed_loop` (the EVC2 and meter simulators, the daemon's "
        "read plans and engine input, the transport's timing modelled); the engine runs as "
        "the daemon configures it from the scenario's site file.",
        "",
        f"Goals: {GOALS}.",
        "",
        "| scenario | allocator | overload A·s | beyond reaction A·s (window s) | max over A |"
        " waiting with room | restart delay cost s | energy / oracle | live | Jain (equal) |"
        " changes /charger/h |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        jain = "—" if r["jain_equal_need"] is None else f"{r['jain_equal_need']:.3f}"
        lines.append(
            f"| {r['scenario']} | {r['allocator']} | {r['overload_amp_s']:.1f} | "
            f"{r['overload_beyond_reaction_amp_s']:.1f} ({r['reaction_window_s']:.1f}) | "
            f"{r['max_overload_a']:.1f} | {_pct(r['waiting_with_room_share'])} | "
            f"{r['restart_delay_cost_s']:.0f} | {_pct(r['energy_ratio'])} | "
            f"{_pct(r['energy_ratio_live'])} | {jain} | "
            f"{r['setpoint_changes_per_charger_hour']:.0f} |"
        )
    budgeted = [r for r in rows if r.get("max_quarter_kw")]
    if budgeted:
        lines += [
            "",
            "Quarter-hour peak budgets (`peak_kw`): the highest aligned 15-minute average of the"
            " true import through the group (goal: at most the peak).",
            "",
            "| scenario | allocator | group | peak kW | highest quarter kW |",
            "|---|---|---|---:|---:|",
        ]
        for r in budgeted:
            for group, kw in r["max_quarter_kw"].items():
                lines.append(
                    f"| {r['scenario']} | {r['allocator']} | {group} | "
                    f"{r['peak_kw'][group]:g} | {kw:.2f} |"
                )
    lines += ["", *meta.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run every allocator on every scenario; write JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run scenarios whose file name contains this")
    parser.add_argument("--label", help="write closed_loop-LABEL.json/md")
    parser.add_argument("--engine-only", action="store_true", help="skip the baselines")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    paths = sorted((HERE / "scenarios").glob("*.toml"))
    if args.only:
        paths = [p for p in paths if args.only in p.name]
    names = ["engine"] if args.engine_only else list(ALLOCATORS)
    jobs = [(str(p), n) for p in paths for n in names]
    started = time.perf_counter()
    with multiprocessing.Pool(args.jobs) as pool:
        rows = []
        for row in pool.imap(run_one, jobs):
            rows.append(row)
            print(
                f"{row['scenario'][:52]:52s} {row['allocator'][:12]:12s} "
                f"beyond {row['overload_beyond_reaction_amp_s']:6.1f} A·s  "
                f"waiting {_pct(row['waiting_with_room_share']):>7s}  "
                f"energy {_pct(row['energy_ratio_live']):>7s}  ({row['wall_s']} s)",
                flush=True,
            )
    suffix = f"-{args.label}" if args.label else ""
    meta = {
        "command": "python benchmarks/bench_closed_loop.py"
        + (f" --label {args.label}" if args.label else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"closed_loop{suffix}.json").write_text(
        json.dumps({"meta": meta, "runs": rows}, indent=1)
    )
    (out / f"closed_loop{suffix}.md").write_text(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
