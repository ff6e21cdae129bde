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
                f"util {result.utilisation:5.3f} jain {result.jain:5.3f}",
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
        "| scenario | allocator | overload A·s | longest overload s | utilisation | Jain | "
        "setpoint changes /charger/h |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['allocator']} | {r['overload_amp_s']:.1f} | "
            f"{r['longest_overload_s']:.1f} | {r['utilisation']:.3f} | {r['jain']:.3f} | "
            f"{r['setpoint_changes_per_charger_hour']:.1f} |"
        )
    lines += [
        "",
        "Reading the table:",
        "",
        "- Overload in *building load step*, *mixed* and *hierarchical* comes from building-load",
        "  steps up (no headroom configured): no allocator can see a step before its meter does,",
        "  and cars take up to 5 s to follow a lowered pilot, so overload ≈ step size × (time to",
        "  the next cycle + car reaction). The baselines overload less there only because they",
        "  leave current unused (see utilisation). Scenarios without steps (*steady overload*,",
        "  *many cars few amps*) have zero overload. Configure headroom to absorb steps.",
        "- Jain's index is over all cars with unlimited need; in *mixed* and *hierarchical* the",
        "  cars have different maxima/phase counts, so 1.0 is not the fair outcome there.",
        "- *meter lag* runs the engine with `meter_lag_allowance_s = 3`; at a 1 s cycle it still",
        "  adjusts setpoints often (lagging non-EV estimate), see setpoint changes.",
    ]
    (out / "closed_loop.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
