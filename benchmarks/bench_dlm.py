"""Allocation time of the DLM engine for 10, 100 and 1000 chargers in a 3-level tree.

Run: .venv/bin/python benchmarks/bench_dlm.py
Writes benchmarks/results/dlm.json and dlm.md. Goal: < 1 ms per cycle for 100 chargers.

Site: a main fuse, sub-distributions under it, dual-socket supply lines under those; chargers
rotated L1L2L3/L2L3L1/L3L1L2 in turn, one in five wired 1-phase, every car charging and drawing
its previous setpoint, a metered main (including the chargers) with a building load. Each
cycle feeds the previous state back, as the daemon does.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

from ampgate.dlm import (
    ChargerReading,
    ChargerSpec,
    EngineState,
    Group,
    Measurements,
    MeterReading,
    MeterSpec,
    Rotation,
    Site,
    VehicleState,
    allocate,
    check_site,
)

ROTATIONS = list(Rotation)


def build_site(n: int) -> Site:
    """A 3-level tree sized for ``n`` chargers at roughly 10 A each on average."""
    subs = max(1, n // 10)
    groups = [Group("main", (float(n * 10 + 40),) * 3)]
    for s in range(subs):
        groups.append(Group(f"sub{s}", (80.0,) * 3, parent="main"))
        groups.append(Group(f"sub{s}.line", (32.0,) * 3, parent=f"sub{s}"))
    chargers = []
    for i in range(n):
        s = i % subs
        group = f"sub{s}.line" if i % 4 == 0 else f"sub{s}"
        wired = (0,) if i % 5 == 0 else (0, 1, 2)
        chargers.append(ChargerSpec(f"c{i}", group, ROTATIONS[i % 3], wired_phases=wired))
    return check_site(Site(tuple(groups), tuple(chargers), (MeterSpec("m", "main"),)))


def measure(site: Site, previous, now: float) -> Measurements:
    """Every car draws its previous setpoint; the main meter sees building + chargers."""
    chargers, meter = {}, [40.0, 35.0, 30.0]
    for c in site.chargers:
        amps = float(previous.setpoints[c.id].amps) if previous else 0.0
        cur = tuple(amps if t in c.wired_phases else 0.0 for t in range(3))
        for t in range(3):
            meter[c.rotation.site_phase(t)] += cur[t]
        chargers[c.id] = ChargerReading(True, cur, VehicleState.CHARGING, now)
    return Measurements({"m": MeterReading(tuple(meter), now)}, chargers)


def bench(n: int, cycles: int) -> dict:
    """Time ``cycles`` allocations (after a warm-up that reaches steady state)."""
    site = build_site(n)
    state, alloc, now = EngineState(), None, 0.0
    for _ in range(30):  # warm-up: ramp to steady state
        now += 1.0
        alloc = allocate(site, measure(site, alloc, now), state, now)
        state = alloc.state
    times = []
    for _ in range(cycles):
        now += 1.0
        meas = measure(site, alloc, now)
        t0 = time.perf_counter()
        alloc = allocate(site, meas, state, now)
        times.append(time.perf_counter() - t0)
        state = alloc.state
    times.sort()
    return {
        "chargers": n,
        "groups": len(site.groups),
        "cycles": cycles,
        "min_ms": times[0] * 1000,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000,
        "max_ms": times[-1] * 1000,
    }


def main() -> None:
    """Run the sizes and write the results."""
    rows = [bench(10, 500), bench(100, 300), bench(1000, 30)]
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    meta = {
        "command": ".venv/bin/python benchmarks/bench_dlm.py",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "goal": "< 1 ms per cycle for 100 chargers",
    }
    (out / "dlm.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    lines = [
        "# DLM allocation time",
        "",
        f"`{meta['command']}` — Python {meta['python']} on {meta['machine']}; 3-level tree, "
        "steady state, time of one `allocate()` call. Goal: < 1 ms for 100 chargers.",
        "",
        "| chargers | groups | cycles | min ms | median ms | p95 ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['chargers']} | {r['groups']} | {r['cycles']} | {r['min_ms']:.2f} | "
            f"{r['median_ms']:.2f} | "
            f"{r['p95_ms']:.2f} | {r['max_ms']:.2f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "First version (commit 8934007, same command): median 0.55 / 5.86 / 61.49 ms for",
        "10 / 100 / 1000 chargers. What changed: the site's lookup tables are built once per",
        "`Site` object (identity cache; hashing a 100-charger site every cycle cost more than",
        "allocating) with capacities in a flat list indexed by resource number; water-filling",
        "keeps per-resource slope breakpoints updated as chargers freeze and a lazy heap of fill",
        "levels, and fills interchangeable chargers (same fuses and phases, same bounds) as one;",
        "each charger's memory is built once per cycle instead of through repeated",
        "`dataclasses.replace`; the failsafe plan and reason texts are cached. Allocations are",
        "identical to the first version's on every closed-loop scenario.",
        "",
        "The machine has 2 cores shared with other jobs: medians moved between 0.84 and 1.4 ms",
        "for 100 chargers across runs during development; an A/B run of both versions in the",
        "same minute gave 0.85 vs 5.8 ms.",
    ]
    (out / "dlm.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
