"""Transport benchmark: ampgate's bus vs a bare pymodbus loop over TCP, and RTU poll cycles.

Run: ``.venv/bin/python benchmarks/bench_transport.py [--quick]``; writes
``benchmarks/results/transport.json`` and ``transport.md``.

1. Loopback TCP: read requests per second through ``TcpBus`` vs a bare
   ``AsyncModbusTcpClient`` loop doing the same reads against the same pymodbus server,
   interleaved in rounds so both see the same machine load. Goal: overhead <= 10 %.
2. RTU through a socat pty pair at 9600 and 19200 baud, polling 8 EVC2 chargers (the full map,
   45 registers, one request each): the achieved poll-cycle time vs the wire-time bound
   (11 bits per character, 3.5-character silent intervals), and the number of requests that
   arrived inside a silent interval (must be 0). A pty moves bytes at memory speed, so the line is
   emulated here: the responder holds each answer until request + turnaround + answer would have
   crossed the wire, and timestamps requests against the end of the previous answer.
   NOTE: ampgate.sim's RTU line emulation had not landed when this was written; switch to it
   once it exposes a line emulator (the counting rule is the same).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ampgate.codec import load_map, plan_reads
from ampgate.transport import SerialBus, TcpBus
from ampgate.transport.timing import (
    char_time,
    rtu_read_request_bytes,
    rtu_read_response_bytes,
    rtu_read_wire_time,
    silent_interval,
)

RESULTS = Path(__file__).parent / "results"
BITS = 11


def crc16(data: bytes) -> bytes:
    """Modbus CRC-16, low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


# ----------------------------------------------------------------------------- part 1: TCP
async def tcp_rates(requests: int, rounds: int, count: int) -> dict[str, object]:
    """Requests/s for ampgate TcpBus and a bare pymodbus client, interleaved per round."""
    values = list(range(200))
    server = ModbusTcpServer(
        [SimDevice(1, simdata=[SimData(0, values=values, datatype=DataType.REGISTERS)])],
        address=("127.0.0.1", 0),
    )
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    bare = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
    await bare.connect()
    bus = TcpBus("127.0.0.1", port, timeout=1.0, retries=0)
    ours, theirs = [], []
    try:
        for _ in range(3):  # warm-up
            await bus.read_registers(1, 3, 0, count)
            await bare.read_holding_registers(0, count=count, device_id=1)
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(requests):
                result = await bus.read_registers(1, 3, 0, count)
                assert result.ok, result.describe()
            ours.append(requests / (time.perf_counter() - start))
            start = time.perf_counter()
            for _ in range(requests):
                response = await bare.read_holding_registers(0, count=count, device_id=1)
                assert not response.isError()
            theirs.append(requests / (time.perf_counter() - start))
    finally:
        await bus.close()
        bare.close()
        await server.shutdown()
    ours_rps, bare_rps = statistics.median(ours), statistics.median(theirs)
    return {
        "registers_per_request": count,
        "requests_per_round": requests,
        "rounds": rounds,
        "ampgate_rps_median": round(ours_rps, 1),
        "bare_pymodbus_rps_median": round(bare_rps, 1),
        "overhead_percent": round((bare_rps / ours_rps - 1) * 100, 1),
        "goal_overhead_percent_max": 10,
    }


# ----------------------------------------------------------------------------- part 2: RTU
class PacedRtuLine:
    """RTU responder on a pty end that paces answers as a real line at ``baudrate`` would."""

    def __init__(self, path: str, baudrate: int, units: dict[int, list[int]]) -> None:
        self.path, self.baudrate, self.units = path, baudrate, units
        self.char = char_time(baudrate, BITS)
        self.t35 = silent_interval(baudrate, BITS)
        self.line_free_at = 0.0  # monotonic time the last answer finished on the wire
        self.requests = 0
        self.inside_silent_interval = 0
        self.min_idle = float("inf")
        self._buffer = b""
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._fd = -1
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)
        self._task = asyncio.get_running_loop().create_task(self._answer())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)

    def _readable(self) -> None:
        self._buffer += os.read(self._fd, 512)
        while len(self._buffer) >= 8:
            frame, self._buffer = self._buffer[:8], self._buffer[8:]
            # The pty delivers at memory speed: "now" is when the client started sending.
            now = time.monotonic()
            idle = now - self.line_free_at
            self.requests += 1
            self.min_idle = min(self.min_idle, idle)
            if idle < self.t35:
                self.inside_silent_interval += 1
            self._queue.put_nowait((now, frame))

    async def _answer(self) -> None:
        while True:
            arrived, frame = await self._queue.get()
            unit, function = frame[0], frame[1]
            address, count = struct.unpack(">HH", frame[2:6])
            words = self.units[unit][address : address + count]
            pdu = bytes([unit, function, 2 * count]) + struct.pack(f">{count}H", *words)
            answer = pdu + crc16(pdu)
            # The request's characters, the turnaround (3.5 chars), the answer's characters.
            done = arrived + (len(frame) + len(answer)) * self.char + self.t35
            await asyncio.sleep(max(0.0, done - time.monotonic()))
            self.line_free_at = time.monotonic()
            os.write(self._fd, answer)


async def rtu_cycle(baudrate: int, cycles: int, chargers: int = 8) -> dict[str, object]:
    """Poll ``chargers`` EVC2 full maps ``cycles`` times at ``baudrate`` over a paced pty line."""
    evc2 = load_map("teltocharge-evc2")
    plan = plan_reads(evc2)
    tmp = Path(tempfile.mkdtemp(prefix="ampgate-bench-"))
    a, b = tmp / "a", tmp / "b"
    socat = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not (a.exists() and b.exists()):
        await asyncio.sleep(0.01)
    units = {u: [u * 100 + i for i in range(45)] for u in range(1, chargers + 1)}
    line = PacedRtuLine(str(b), baudrate, units)
    await line.start()
    # 8N2: 11 bits per character like 8E1 (a pty refuses parity settings).
    bus = SerialBus(str(a), baudrate=baudrate, stopbits=2, timeout=1.0, retries=0)
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
            assert all(r.ok for r in results), [r.describe() for r in results if not r.ok]
    finally:
        await bus.close()
        await line.stop()
        socat.terminate()
        socat.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)
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
        "over_bound_percent": round((achieved / bound - 1) * 100, 1),
        "goal_over_bound_percent_max": 15,
        "requests_inside_silent_interval": line.inside_silent_interval,
        "min_idle_before_request_ms": round(line.min_idle * 1000, 3),
        "silent_interval_ms": round(line.t35 * 1000, 3),
    }


def markdown(report: dict[str, object]) -> str:
    """Human summary of the JSON report."""
    tcp = report["tcp"]
    lines = [
        "# Transport benchmark",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}",
        "",
        "## Loopback TCP: ampgate TcpBus vs bare pymodbus client",
        "",
        "| registers/request | ampgate req/s | bare pymodbus req/s | overhead | goal |",
        "|---|---|---|---|---|",
        f"| {tcp['registers_per_request']} | {tcp['ampgate_rps_median']} | "
        f"{tcp['bare_pymodbus_rps_median']} | {tcp['overhead_percent']} % | <= 10 % |",
        "",
        "## RTU over a pty with line emulation: 8 EVC2 chargers, full map",
        "",
        "| baud | requests/cycle | wire bound (s) | achieved cycle (s) | over bound | "
        "requests inside silent interval |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rtu"]:  # type: ignore[union-attr]
        lines.append(
            f"| {r['baudrate']} | {r['requests_per_cycle']} | {r['wire_bound_s']} | "
            f"{r['achieved_cycle_s_median']} | {r['over_bound_percent']} % | "
            f"{r['requests_inside_silent_interval']} |"
        )
    lines += ["", "Medians over rounds; see transport.json for every parameter.", ""]
    return "\n".join(lines)


async def main(quick: bool) -> dict[str, object]:
    """Run both parts and return the report."""
    tcp = await tcp_rates(requests=300 if quick else 2000, rounds=3 if quick else 7, count=45)
    rtu = [await rtu_cycle(baud, cycles=3 if quick else 8) for baud in (9600, 19200)]
    return {
        "command": "python benchmarks/bench_transport.py" + (" --quick" if quick else ""),
        "machine": f"{platform.machine()} {os.cpu_count()} CPU, Python {sys.version.split()[0]}",
        "tcp": tcp,
        "rtu": rtu,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 10 s)")
    args = parser.parse_args()
    report = asyncio.run(main(args.quick))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transport.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "transport.md").write_text(markdown(report))
    print(markdown(report))
