"""Closed-loop comparison of allocators on every scenario in benchmarks/scenarios/.

Run: .venv/bin/python benchmarks/bench_closed_loop.py [--duration SECONDS]
Writes benchmarks/results/closed_loop.json and closed_loop.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ampgate.sim.closed_loop import engine_allocator, load_scenario, simulate  # noqa: E402
from dlm_baselines import equal_split, first_come_first_served  # noqa: E402

ALLOCATORS = [
    ("engine 1 s", engine_allocator, 1.0),
    ("engine 10 s", engine_allocator, 10.0),
    ("engine 30 s", engine_allocator, 30.0),
    ("equal split, worst phase (1 s)", equal_split, 1.0),
    ("first come first served (1 s)", first_come_first_served, 1.0),
]


NOTES = [
    "",
    "Reading the table:",
    "",
    "- *overload A·s* is everything over a fuse/operator limit. *Overload beyond reaction* is",
    "  the part that lasts longer than the *reaction window* after the last building-load",
    "  change: meter lag + meter update interval + one allocator period + the slowest car's",
    "  reaction delay. Inside the window the step itself overloads the fuse (no allocator can",
    "  act on a step its meter has not shown yet, and cars take 1–5 s to follow a lowered",
    "  pilot); past it, overload is the allocator's fault.",
    "- *building load step* (no headroom): its raw overload ≈ step size × (time to the next",
    "  cycle + car reaction) is unavoidable; *building load step, headroom* is the same site",
    "  with the headroom an installer would configure (the largest step up per phase) and has",
    "  no overload at all. The baselines overload less in some rows only because they leave",
    "  current unused (see utilisation).",
    "- *meter lag* has the same steps seen through a meter lagging 3 s and updating every 2 s;",
    "  the steps fall 1–2 s before a 10 s/30 s cycle, so the lag costs a whole extra cycle at",
    "  every period (compare with *building load step*). The engine runs with",
    "  `meter_lag_allowance_s = 3`: it subtracts each charger's draw as it was when the meter",
    "  measured, so the cars' own changes do not show up as phantom non-EV load. (The first",
    "  version subtracted the smallest recent draw instead and, at a 1 s cycle, changed",
    "  setpoints 139 times per charger-hour here against 15.7 without lag; now 15.7 with it.)",
    "  Its overload beyond reaction is 0: all of the extra raw overload over *building load",
    "  step* is the lag delaying when the step can be seen.",
    "- Jain (equal needs) is the minimum of Jain's index over groups of cars with the same",
    "  effective maximum, phase count, energy need and presence (— when no two cars match);",
    "  Jain (all) is over every car with unlimited need, equal or not (so below 1 is expected",
    "  in *mixed* and *hierarchical*).",
]


def main() -> None:
    """Run every allocator on every scenario and write JSON + a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=None, help="override scenario length")
    args = parser.parse_args()
    rows = []
    started = time.perf_counter()
    for path in sorted((HERE / "scenarios").glob("*.toml")):
        scenario = load_scenario(path)
        if args.duration:
            scenario = replace(scenario, duration_s=args.duration)
        for name, allocator, period in ALLOCATORS:
            t0 = time.perf_counter()
            result = simulate(scenario, allocator, period, name)
            row = asdict(result)
            row["meter_lag_s"] = scenario.meter_lag_s
            row["wall_s"] = round(time.perf_counter() - t0, 2)
            rows.append(row)
            print(
                f"{scenario.name:32s} {name:31s} overload {result.overload_amp_s:8.1f} A·s "
                f"beyond reaction {result.overload_beyond_reaction_amp_s:7.1f} A·s "
                f"util {result.utilisation:5.3f} changes "
                f"{result.setpoint_changes_per_charger_hour:6.1f}",
                flush=True,
            )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    meta = {"command": "benchmarks/bench_closed_loop.py", "wall_s": time.perf_counter() - started}
    (out / "closed_loop.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    lines = [
        "# Closed-loop DLM comparison",
        "",
        "`.venv/bin/python benchmarks/bench_closed_loop.py` — simulated with "
        "`ampgate.sim.closed_loop` (0.5 s steps, cars react in 1–5 s).",
        "",
        "| scenario | meter lag s | allocator | overload A·s | overload beyond reaction A·s | "
        "reaction window s | longest overload s | utilisation | Jain (equal needs) | "
        "Jain (all) | setpoint changes /charger/h |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        equal = "—" if r["jain_equal_need"] is None else f"{r['jain_equal_need']:.3f}"
        lines.append(
            f"| {r['scenario']} | {r['meter_lag_s']:g} | {r['allocator']} | "
            f"{r['overload_amp_s']:.1f} | {r['overload_beyond_reaction_amp_s']:.1f} | "
            f"{r['reaction_window_s']:g} | {r['longest_overload_s']:.1f} | "
            f"{r['utilisation']:.3f} | {equal} | {r['jain']:.3f} | "
            f"{r['setpoint_changes_per_charger_hour']:.1f} |"
        )
    lines += NOTES
    (out / "closed_loop.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
