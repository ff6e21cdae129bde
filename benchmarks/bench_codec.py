"""Codec decode throughput against pymodbus's own register conversion.

For each map (the full TeltoCharge EVC2 map and full meter maps) it measures whole-map decodes per
second three ways, on the same words:

* ``decode_request``: ampgate's compiled, cached per-request decoder over the planned requests
  (what the daemon's poll loop does), producing a `Reading` per field with scale, enum and bit
  labels and sentinels applied;
* ``decode_field``: ampgate, field by field;
* baseline: ``ModbusClientMixin.convert_from_registers`` field by field (the pymodbus way), with
  the field's scale multiplied in; no enum/bit labels, sentinels or Reading objects.

Run: ``.venv/bin/python benchmarks/bench_codec.py [--quick]``. Writes
``benchmarks/results/codec.json`` and ``benchmarks/results/codec.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pymodbus
from pymodbus.client.mixin import ModbusClientMixin

from ampgate.codec import RegisterMap, decode_field, decode_request, load_map, plan_reads

MAPS = ("teltocharge-evc2", "siemens-7km2200", "eastron-sdm630")
RESULTS = Path(__file__).parent / "results"
DATATYPE = ModbusClientMixin.DATATYPE
PYMODBUS_TYPE = {
    "u16": DATATYPE.UINT16,
    "i16": DATATYPE.INT16,
    "u32": DATATYPE.UINT32,
    "i32": DATATYPE.INT32,
    "u64": DATATYPE.UINT64,
    "i64": DATATYPE.INT64,
    "f32": DATATYPE.FLOAT32,
    "f64": DATATYPE.FLOAT64,
}


def sample_words(rmap: RegisterMap, seed: int) -> dict[tuple[int, int], list[int]]:
    """Plausible register contents per planned request (random, deterministic per seed)."""
    rng = random.Random(seed)
    return {
        (r.function, r.address): [rng.randrange(0, 0x4000) for _ in range(r.count)]
        for r in plan_reads(rmap)
    }


def codec_request_decoder(rmap: RegisterMap, words: dict) -> Callable[[], int]:
    plan = [(r, words[(r.function, r.address)]) for r in plan_reads(rmap)]

    def run() -> int:
        n = 0
        for request, regs in plan:
            n += len(decode_request(rmap, request, regs))
        return n

    return run


def _field_slices(rmap: RegisterMap, words: dict) -> list:
    out = []
    for request in plan_reads(rmap):
        regs = words[(request.function, request.address)]
        for name in request.fields:
            f = rmap.field(name)
            offset = f.address - request.address
            out.append((f, regs[offset : offset + f.words]))
    return out


def codec_field_decoder(rmap: RegisterMap, words: dict) -> Callable[[], int]:
    slices = _field_slices(rmap, words)

    def run() -> int:
        for f, regs in slices:
            decode_field(rmap, f, regs)
        return len(slices)

    return run


def pymodbus_decoder(rmap: RegisterMap, words: dict) -> Callable[[], int]:
    convert = ModbusClientMixin.convert_from_registers
    # the caller slices the words per field, as a field-by-field pymodbus user must
    plan = []
    for request in plan_reads(rmap):
        key = (request.function, request.address)
        for name in request.fields:
            f = rmap.field(name)
            order = "little" if f.word_order == "CDAB" and f.words > 1 else "big"
            offset = f.address - request.address
            plan.append((key, offset, offset + f.words, PYMODBUS_TYPE[f.type], order, f.scale))

    def run() -> int:
        values = {}
        for key, start, end, dtype, order, scale in plan:
            values[start] = convert(words[key][start:end], dtype, word_order=order) * scale
        return len(plan)

    return run


def best_rate(run: Callable[[], int], iterations: int, repeats: int) -> float:
    """Best-of-``repeats`` whole-map decodes per second over ``iterations`` calls."""
    run()  # warm-up: compiles and caches the decoders
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            run()
        best = min(best, time.perf_counter() - start)
    return iterations / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = parser.parse_args()
    iterations, repeats = (300, 3) if args.quick else (3000, 5)
    rows = []
    for model_id in MAPS:
        rmap = load_map(model_id)
        words = sample_words(rmap, seed=1)
        decoders = {
            "codec_decode_request": codec_request_decoder(rmap, words),
            "codec_decode_field": codec_field_decoder(rmap, words),
            "pymodbus_convert_from_registers": pymodbus_decoder(rmap, words),
        }
        rates = {name: best_rate(run, iterations, repeats) for name, run in decoders.items()}
        rows.append(
            {
                "map": model_id,
                "fields": len(rmap.fields),
                "requests": len(plan_reads(rmap)),
                "decodes_per_second": {k: round(v, 1) for k, v in rates.items()},
                "speedup_decode_request_vs_pymodbus": round(
                    rates["codec_decode_request"] / rates["pymodbus_convert_from_registers"], 2
                ),
            }
        )
        print(f"{model_id}: {rows[-1]['decodes_per_second']}", file=sys.stderr)
    report = {
        "benchmark": "codec whole-map decode throughput",
        "command": "python benchmarks/bench_codec.py" + (" --quick" if args.quick else ""),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "pymodbus": pymodbus.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "iterations": iterations,
        "repeats": repeats,
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "codec.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "codec.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    """The report as a markdown table."""
    lines = [
        "# Codec decode throughput",
        "",
        f"`{report['command']}` — {report['when']}, Python {report['python']}, "
        f"pymodbus {report['pymodbus']}, {report['machine']}; best of {report['repeats']} "
        f"runs of {report['iterations']} whole-map decodes. Shared 2-core machine: expect noise.",
        "",
        "Whole-map decodes per second (higher is better). `decode_request` builds a `Reading` per "
        "field with scale, enum/bit labels and sentinels; the pymodbus baseline only converts and "
        "multiplies by the scale.",
        "",
        "| map | fields | requests | decode_request | decode_field | pymodbus convert | speedup |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        rates = row["decodes_per_second"]
        lines.append(
            f"| {row['map']} | {row['fields']} | {row['requests']} "
            f"| {rates['codec_decode_request']:,.0f} | {rates['codec_decode_field']:,.0f} "
            f"| {rates['pymodbus_convert_from_registers']:,.0f} "
            f"| {row['speedup_decode_request_vs_pymodbus']}× |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
