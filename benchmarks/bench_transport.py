"""Transport benchmark: ampgate's bus vs a bare pymodbus loop over TCP, and RTU poll cycles.

Run: ``.venv/bin/python benchmarks/bench_transport.py [--quick] [--part tcp|rtu|all]``; writes
``benchmarks/results/transport.json`` and ``transport.md`` (a partial run keeps the other part's
last results).

1. Loopback TCP: read requests per second through ``TcpBus`` vs a bare
   ``AsyncModbusTcpClient`` loop doing the same reads (FC 03, 45 registers, unit 1) against the
   same pymodbus server in the same event loop. Both clients have their own connection with the
   same settings (timeout 1 s, pymodbus retries 0, no reconnect task). After a warm-up of both,
   the two loops alternate in many short blocks (A-B, then B-A, ...) so both see the same machine
   load and neither always goes first; a GC pass precedes every block. The overhead is the median
   of the per-pair ratios (robust to load drifting between pairs); the medians of each side's
   rates are reported too. Goal: overhead <= 10 %.
2. RTU: 8 simulated EVC2 chargers (``ampgate.sim``) served on one end of a socat pty pair with
   line emulation on (answers leave only after their wire time at the baud rate; a request that
   starts inside the 3.5-character silent interval after the previous frame is refused and
   counted), polled through ``SerialBus`` at 9600 and 19200 baud: every charger's full map (45
   registers, one request each) per cycle. Reported: the achieved poll-cycle time vs the
   wire-time bound (11 bits per character, request + answer + a silent interval after each), and
   the simulator's count of requests received inside a silent interval (must be 0). As a control
   that the count can be non-zero, the same 8 reads are then sent once by a bare pymodbus
   ``AsyncModbusSerialClient`` (it sends the next request as soon as an answer is in, without a
   silent interval) and the simulator's count for those is reported as well.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ampgate.codec import ReadRequest, load_map, plan_reads
from ampgate.sim import Evc2Simulator, ManualClock, serve_rtu
from ampgate.sim.pty import virtual_serial_line
from ampgate.transport import SerialBus, TcpBus
from ampgate.transport.timing import (
    rtu_read_request_bytes,
    rtu_read_response_bytes,
    rtu_read_wire_time,
    silent_interval,
)

RESULTS = Path(__file__).parent / "results"
BITS = 11
TCP_REGISTERS = 45


# ----------------------------------------------------------------------------- part 1: TCP
async def tcp_rates(blocks: int, requests: int, warmup: int) -> dict[str, object]:
    """Requests/s of ampgate's TcpBus and a bare pymodbus client in alternating blocks."""
    values = list(range(200))
    expected = tuple(values[:TCP_REGISTERS])
    expected_list = list(expected)
    server = ModbusTcpServer(
        [SimDevice(1, simdata=[SimData(0, values=values, datatype=DataType.REGISTERS)])],
        address=("127.0.0.1", 0),
    )
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    bare = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
    await bare.connect()
    bus = TcpBus("127.0.0.1", port, timeout=1.0, retries=0)

    async def ours() -> None:
        for _ in range(requests):
            result = await bus.read_registers(1, 3, 0, TCP_REGISTERS)
            if result.words != expected:
                raise AssertionError(result.describe())

    async def theirs() -> None:
        for _ in range(requests):
            response = await bare.read_holding_registers(0, count=TCP_REGISTERS, device_id=1)
            if response.isError() or response.registers != expected_list:
                raise AssertionError(str(response))

    async def timed(loop_body) -> float:  # type: ignore[no-untyped-def]
        gc.collect()
        start = time.perf_counter()
        await loop_body()
        return requests / (time.perf_counter() - start)

    ours_rps: list[float] = []
    bare_rps: list[float] = []
    try:
        for _ in range(warmup):
            await bus.read_registers(1, 3, 0, TCP_REGISTERS)
            await bare.read_holding_registers(0, count=TCP_REGISTERS, device_id=1)
        for block in range(blocks):
            if block % 2 == 0:
                ours_rps.append(await timed(ours))
                bare_rps.append(await timed(theirs))
            else:
                bare_rps.append(await timed(theirs))
                ours_rps.append(await timed(ours))
    finally:
        await bus.close()
        bare.close()
        await server.shutdown()
    pair_overheads = sorted((b / o - 1) * 100 for o, b in zip(ours_rps, bare_rps, strict=True))
    ours_median, bare_median = statistics.median(ours_rps), statistics.median(bare_rps)
    quartiles = statistics.quantiles(pair_overheads, n=4) if blocks >= 4 else pair_overheads
    return {
        "registers_per_request": TCP_REGISTERS,
        "requests_per_block": requests,
        "blocks_per_side": blocks,
        "warmup_requests_per_side": warmup,
        "ampgate_rps_median": round(ours_median, 1),
        "bare_pymodbus_rps_median": round(bare_median, 1),
        "overhead_percent_median_of_pairs": round(statistics.median(pair_overheads), 1),
        "overhead_percent_of_medians": round((bare_median / ours_median - 1) * 100, 1),
        "overhead_percent_quartiles": [round(q, 1) for q in (quartiles[0], quartiles[-1])],
        "ampgate_us_per_request_median": round(1e6 / ours_median, 1),
        "bare_us_per_request_median": round(1e6 / bare_median, 1),
        "goal_overhead_percent_max": 10,
    }


# ----------------------------------------------------------------------------- part 2: RTU
async def rtu_cycle(baudrate: int, cycles: int, chargers: int = 8) -> dict[str, object]:
    """Poll ``chargers`` simulated EVC2 full maps ``cycles`` times at ``baudrate``."""
    evc2 = load_map("teltocharge-evc2")
    plan = plan_reads(evc2)
    clock = ManualClock()
    units = {u: Evc2Simulator(clock, serial_number=100_000 + u) for u in range(1, chargers + 1)}
    with virtual_serial_line() as (client_end, server_end):
        # 8N2: 11 bits per character like 8E1 (a pty refuses parity settings); the simulator
        # counts 11 bits per character whatever the settings.
        server = await serve_rtu(
            units, server_end, baudrate=baudrate, stopbits=2, line_emulation=True
        )
        bus = SerialBus(client_end, baudrate=baudrate, stopbits=2, timeout=1.0, retries=0)
        times = []
        try:
            for _ in range(cycles):
                start = time.monotonic()
                results = await asyncio.gather(
                    *(
                        bus.read_registers(u, r.function, r.address, r.count)
                        for u in units
                        for r in plan
                    )
                )
                times.append(time.monotonic() - start)
                bad = [r.describe() for r in results if not r.ok]
                if bad:
                    raise AssertionError(bad)
                serials = {r.unit_id: r.words[24] | r.words[25] << 16 for r in results}
                if serials != {u: 100_000 + u for u in units}:
                    raise AssertionError(f"answers from the wrong units: {serials}")
            await bus.close()  # the control client opens the same port next
            stats = server.stats
            ampgate_stats = dataclasses.replace(stats)  # a copy: the counters go on growing
            control_timeouts = await _bare_pymodbus_control(client_end, baudrate, units, plan)
            control_refused = (
                stats.refused_in_silent_interval - ampgate_stats.refused_in_silent_interval
            )
        finally:
            await bus.close()
            await server.stop()
    bound = sum(rtu_read_wire_time(r.count, baudrate, BITS) for r in plan) * chargers
    achieved = statistics.median(times[1:] if len(times) > 1 else times)
    return {
        "baudrate": baudrate,
        "chargers": chargers,
        "requests_per_cycle": len(plan) * chargers,
        "registers_per_request": [r.count for r in plan],
        "frame_bytes": [rtu_read_request_bytes(), rtu_read_response_bytes(plan[0].count)],
        "cycles": cycles,
        "wire_bound_s": round(bound, 4),
        "achieved_cycle_s_median": round(achieved, 4),
        "achieved_cycle_s_max": round(max(times), 4),
        "over_bound_percent": round((achieved / bound - 1) * 100, 1),
        "goal_over_bound_percent_max": 15,
        "sim_frames_received": ampgate_stats.frames_received,
        "sim_answered": ampgate_stats.answered,
        "requests_inside_silent_interval": ampgate_stats.refused_in_silent_interval,
        "sim_bad_frames": ampgate_stats.bad_frames,
        "sim_wire_time_per_cycle_s": round(ampgate_stats.wire_time_s / cycles, 4),
        "control_bare_pymodbus_requests": len(units) * len(plan),
        "control_bare_pymodbus_inside_silent_interval": control_refused,
        "control_bare_pymodbus_unanswered": control_timeouts,
        "silent_interval_ms": round(silent_interval(baudrate, BITS) * 1000, 3),
    }


async def _bare_pymodbus_control(
    port: str, baudrate: int, units: dict[int, Evc2Simulator], plan: list[ReadRequest]
) -> int:
    """Send one cycle of the same reads with a bare pymodbus serial client; count timeouts."""
    client = AsyncModbusSerialClient(
        port, baudrate=baudrate, stopbits=2, timeout=0.2, retries=0, reconnect_delay=0
    )
    unanswered = 0
    await client.connect()
    try:
        for unit in units:
            for r in plan:
                read = (
                    client.read_holding_registers
                    if r.function == 3
                    else client.read_input_registers
                )
                try:
                    await read(r.address, count=r.count, device_id=unit)
                except ModbusIOException:
                    unanswered += 1
    finally:
        client.close()
    return unanswered


def markdown(report: dict[str, object]) -> str:
    """Human summary of the JSON report."""
    lines = ["# Transport benchmark", "", f"Machine: {report['machine']}", ""]
    tcp = report.get("tcp")
    if tcp:
        lines += [
            "## Loopback TCP: ampgate TcpBus vs bare pymodbus client",
            "",
            f"Command: `{tcp['command']}`",
            "",
            "| registers/request | blocks × requests per side | ampgate req/s | "
            "bare pymodbus req/s | overhead (median of pairs) | interquartile | goal |",
            "|---|---|---|---|---|---|---|",
            f"| {tcp['registers_per_request']} | {tcp['blocks_per_side']} × "
            f"{tcp['requests_per_block']} | {tcp['ampgate_rps_median']} | "
            f"{tcp['bare_pymodbus_rps_median']} | {tcp['overhead_percent_median_of_pairs']} % | "
            f"{tcp['overhead_percent_quartiles'][0]} … {tcp['overhead_percent_quartiles'][1]} % "
            "| <= 10 % |",
            "",
        ]
    rtu = report.get("rtu")
    if rtu:
        lines += [
            "## RTU: 8 simulated EVC2 (ampgate.sim, line emulation on) over a socat pty pair",
            "",
            f"Command: `{rtu[0].get('command', 'unknown')}`",  # type: ignore[index]
            "",
            "| baud | requests/cycle | wire bound (s) | achieved cycle (s, median) | "
            "over bound | ampgate requests inside silent interval (sim count) | "
            "control: bare pymodbus serial client, same reads, inside silent interval |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rtu:  # type: ignore[union-attr]
            lines.append(
                f"| {r['baudrate']} | {r['requests_per_cycle']} | {r['wire_bound_s']} | "
                f"{r['achieved_cycle_s_median']} | {r['over_bound_percent']} % | "
                f"{r['requests_inside_silent_interval']} | "
                f"{r['control_bare_pymodbus_inside_silent_interval']} of "
                f"{r['control_bare_pymodbus_requests']} |"
            )
        lines.append("")
    lines += ["See transport.json for every parameter.", ""]
    return "\n".join(lines)


async def main(quick: bool, part: str) -> dict[str, object]:
    """Run the chosen parts; keep the last results of a part not run."""
    previous: dict[str, object] = {}
    if (RESULTS / "transport.json").exists():
        previous = json.loads((RESULTS / "transport.json").read_text())
    command = "python benchmarks/bench_transport.py" + (" --quick" if quick else "")
    if part != "all":
        command += f" --part {part}"
    report: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPU, Python {sys.version.split()[0]}",
        "tcp": previous.get("tcp"),
        "rtu": previous.get("rtu"),
    }
    if part in ("tcp", "all"):
        tcp = await tcp_rates(blocks=8 if quick else 30, requests=200 if quick else 500, warmup=300)
        report["tcp"] = {"command": command, **tcp}
    if part in ("rtu", "all"):
        report["rtu"] = [
            {"command": command, **await rtu_cycle(baud, 3 if quick else 8)}
            for baud in (9600, 19200)
        ]
    return report


if __name__ == "__main__":
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the control run's timeouts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer blocks and cycles")
    parser.add_argument("--part", choices=("tcp", "rtu", "all"), default="all")
    args = parser.parse_args()
    report = asyncio.run(main(args.quick, args.part))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transport.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "transport.md").write_text(markdown(report))
    print(markdown(report))
