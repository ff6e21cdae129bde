"""Soak: the daemon's gateway for minutes under randomised faults; nothing over, nothing leaked.

Run: ``.venv/bin/python benchmarks/bench_soak.py [--duration 600] [--seed 1] [--out DIR]``;
writes ``DIR/soak.json`` and ``soak.md`` (default ``benchmarks/results``). The test suite runs
the same command for 60 s (``tests/soak/test_soak.py``).

The site: 32 simulated EVC2 chargers on Modbus TCP (each its own port, as on a LAN), one RS485
line of 8 more (a socat pty pair at 9600 baud, the simulator's line emulation on), an Eastron
SDM630 on TCP at the main fuse, cars plugged in everywhere, and more demand than the fuse
carries. The simulators run in a child process; the gateway (``ampgate.gateway.loop.Gateway``,
1 s cycle) runs here, so the memory, tasks and descriptors measured are the gateway's alone.

Every few seconds the child injects a fault drawn from the fault table (``docs/reliability.md``):
a charger silent for a while (TCP or RS485), a charger rebooting to its defaults (watchdog 30 s,
failsafe 6 A, setpoint 32 A), its settings changed as from the mobile app, a charger's TCP
connection dropped, the meter frozen, silent or answering with an exception, a building-load
step, a car leaving or arriving. It samples the truth (building plus every charger's draw on
each site phase) every 0.1 s and records every write a simulator receives.

Reported, with the goals of issue 14: overload of the fuse beyond the reaction window after a
disturbance (A·s; goal 0), writes out of range or to registers ampgate has no business writing
(goal 0), resident memory growth between the end of the warm-up and the end (goal < 5 MB),
asyncio tasks, file descriptors and sockets left over after the faults are cleared and the site
recovered (goal 0), and cycles late (a cycle ending more than half a period after its slot;
goal < 1 %).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ampgate.gateway.loop import Gateway

RESULTS = Path(__file__).parent / "results"
TCP_CHARGERS = 32
RTU_CHARGERS = 8
METER_UNIT = 100
LIMIT_A = 250.0
"""Per phase: 40 cars at 16 A would want 640 A."""
BUILDING = (20.0, 25.0, 15.0)
CYCLE_S = 1.0
SAMPLE_S = 0.1
REACTION_WINDOW_S = 8.0
"""After a disturbance, the fuse may be over for this long: the next meter read (one cycle), the
RS485 round and the write on the line (up to about 2 s at 9600 baud for 8 chargers), a car's
reaction (2 s), and a charger back from a reboot at 32 A polled again (one cycle) — with a
margin of one more cycle and a second."""
INTENDED_WRITES = {"amps_to_use", "phase_to_use", "communication_timeout", "failsafe_current"}
WARMUP_FRACTION = 0.15
GOALS = {
    "overload_beyond_reaction_amp_s": 0.0,
    "writes_out_of_range": 0,
    "writes_unintended": 0,
    "rss_growth_mb": 5.0,
    "tasks_leaked": 0,
    "fds_leaked": 0,
    "sockets_leaked": 0,
    "cycles_late_share": 0.01,
}


# --------------------------------------------------------------------------- simulator child


class _Recorder:
    """A charger simulator that records every write (address, words) it receives."""

    def __init__(self, name: str, sim, writes: list) -> None:
        self.name, self.sim, self.writes = name, sim, writes

    def read(self, function: int, address: int, count: int):
        return self.sim.read(function, address, count)

    def write(self, address: int, values: Sequence[int]):
        self.writes.append((self.name, address, [int(v) for v in values]))
        return self.sim.write(address, values)


def _check_write(rmap, address: int, words: list[int]) -> tuple[bool, bool]:
    """(intended, in range) of one write as the charger received it."""
    from ampgate.codec import ReadRequest, decode_request

    field = next((f for f in rmap.fields if f.address == address), None)
    if field is None or field.name not in INTENDED_WRITES or len(words) != field.words:
        return False, True
    request = ReadRequest(rmap.function_of(field), address, field.words, (field.name,))
    value = decode_request(rmap, request, words)[field.name].value
    if isinstance(value, str):  # an enum label: written by code, in range by construction
        return True, True
    return True, isinstance(value, int | float) and any(i.contains(value) for i in field.allowed)


async def serve(pty: str, duration: float, seed: int) -> None:
    """Child process: serve the site, inject faults, sample the truth; report on ``quit``."""
    from ampgate.logging import configure_logging
    from ampgate.sim import (
        ElectricVehicle,
        Evc2Simulator,
        Faults,
        FaultyDevice,
        MeterSimulator,
        serve_rtu,
        serve_tcp,
    )
    from ampgate.sim.device import ModbusExceptionCode

    configure_logging("json", "error", stream=sys.stderr)
    rng = random.Random(seed)
    clock = time.monotonic
    load = list(BUILDING)
    writes: list = []
    sims: dict[str, Evc2Simulator] = {}
    faults: dict[str, Faults] = {}
    rotations = [(1, 2, 3), (2, 3, 1), (3, 1, 2)]
    for i in range(TCP_CHARGERS + RTU_CHARGERS):
        name = f"c{i + 1}"
        sim = Evc2Simulator(clock, rotation=rotations[i % 3])
        sim.plug_in(ElectricVehicle(phases=3, max_current=16, reaction_delay=2.0))
        sims[name], faults[name] = sim, Faults()
    meter = MeterSimulator(
        "eastron-sdm630", lambda _t: tuple(load), clock, chargers=[*sims.values()], noise_a=0.05
    )
    faults["grid"] = Faults()

    def device(name: str):
        return FaultyDevice(_Recorder(name, sims[name], writes), faults[name])

    servers = [await serve_tcp({METER_UNIT: FaultyDevice(meter, faults["grid"])}, port=0)]
    ports: dict[str, object] = {"meter": servers[0].port}
    tcp_names = [f"c{i + 1}" for i in range(TCP_CHARGERS)]
    rtu_names = [f"c{i + 1}" for i in range(TCP_CHARGERS, TCP_CHARGERS + RTU_CHARGERS)]
    for name in tcp_names:
        servers.append(await serve_tcp({1: device(name)}, port=0))
    ports["chargers"] = [s.port for s in servers[1:]]
    rtu = await serve_rtu(
        {i + 1: device(n) for i, n in enumerate(rtu_names)}, pty, baudrate=9600, line_emulation=True
    )
    print(json.dumps(ports), flush=True)

    state = {"overload": 0.0, "beyond": 0.0, "max_over": 0.0, "last_event": clock()}
    injected: dict[str, int] = {}
    restore: list[tuple[float, Callable[[], object]]] = []  # (when, action)
    calm = asyncio.Event()

    def event(kind: str) -> None:
        injected[kind] = injected.get(kind, 0) + 1
        state["last_event"] = clock()

    def later(seconds: float, action: Callable[[], object]) -> None:
        restore.append((clock() + seconds, action))

    def inject() -> None:
        kind = rng.choice(
            [
                "charger_silent",
                "charger_reboot",
                "app_changed_settings",
                "tcp_connection_dropped",
                "meter_frozen",
                "meter_silent",
                "meter_exception",
                "building_step",
                "car_leaves_or_arrives",
            ]
        )
        name = rng.choice(tcp_names + rtu_names)
        sim, f = sims[name], faults[name]
        if kind == "charger_silent":
            f.silent = True
            later(rng.uniform(3, 12), lambda: (setattr(f, "silent", False), event("recovered")))
        elif kind == "charger_reboot":
            f.silent = True

            def back() -> None:
                for address, value in ((19, 30), (20, 6), (15, 32)):
                    sim.write(address, [value])
                f.silent = False
                event("recovered")

            later(3.0, back)
        elif kind == "app_changed_settings":
            sim.write(19, [120])
            sim.write(20, [16])
        elif kind == "tcp_connection_dropped":
            server = servers[1 + tcp_names.index(rng.choice(tcp_names))]
            server.drop_connections()
        elif kind == "meter_frozen":
            meter.freeze(True)
            later(rng.uniform(5, 15), lambda: (meter.freeze(False), event("recovered")))
        elif kind == "meter_silent":
            faults["grid"].silent = True
            grid = faults["grid"]
            later(rng.uniform(5, 15), lambda: (setattr(grid, "silent", False), event("recovered")))
        elif kind == "meter_exception":
            faults["grid"].exception = ModbusExceptionCode(4)
            grid = faults["grid"]
            later(rng.uniform(3, 8), lambda: (setattr(grid, "exception", None), event("recovered")))
        elif kind == "building_step":
            load[:] = [rng.uniform(5, 60) for _ in range(3)]
        elif kind == "car_leaves_or_arrives":
            if sim.ev is not None:
                sim.unplug()
            else:
                sim.plug_in(ElectricVehicle(phases=3, max_current=16, reaction_delay=2.0))
        event(kind)

    async def faults_loop() -> None:
        await asyncio.sleep(min(20.0, duration * WARMUP_FRACTION))
        while not calm.is_set():
            inject()
            with_gap = rng.uniform(2.0, 6.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(calm.wait(), with_gap)

    async def sample_loop() -> None:
        last = clock()
        while True:
            await asyncio.sleep(SAMPLE_S)
            now = clock()
            dt, last = now - last, now
            for due in [r for r in restore if r[0] <= now]:
                restore.remove(due)
                due[1]()
            totals = [load[p] for p in range(3)]
            for sim in sims.values():
                for p, amps in enumerate(sim.site_currents(now)):
                    totals[p] += amps
            over = sum(max(0.0, t - LIMIT_A) for t in totals)
            state["max_over"] = max(state["max_over"], max(t - LIMIT_A for t in totals))
            state["overload"] += over * dt
            if now - state["last_event"] > REACTION_WINDOW_S:
                state["beyond"] += over * dt

    tasks = [asyncio.create_task(faults_loop()), asyncio.create_task(sample_loop())]
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "calm":  # clear every fault and let the site recover
            calm.set()
            for _when, action in list(restore):
                action()
            restore.clear()
            print(json.dumps({"calm": True}), flush=True)
        elif line == "quit":
            break
    for task in tasks:
        task.cancel()
    rmap = next(iter(sims.values())).map
    checked = [_check_write(rmap, address, words) for _name, address, words in writes]
    print(
        json.dumps(
            {
                "overload_amp_s": state["overload"],
                "overload_beyond_reaction_amp_s": state["beyond"],
                "max_overload_a": max(0.0, state["max_over"]),
                "writes": len(writes),
                "writes_unintended": sum(1 for intended, _ in checked if not intended),
                "writes_out_of_range": sum(1 for _, ok in checked if not ok),
                "faults_injected": injected,
            }
        ),
        flush=True,
    )
    await rtu.stop()
    for server in servers:
        await server.stop()


# --------------------------------------------------------------------------- the gateway


def site_text(ports: dict, pty: str) -> str:
    """The site file: every TCP charger on its bus, the RS485 line, the meter, one fuse."""
    lines = [
        f'[buses.meter]\nkind = "tcp"\nhost = "127.0.0.1"\nport = {ports["meter"]}\ntimeout = 0.3',
        f'[buses.rs485]\nkind = "serial"\nport = "{pty}"\nbaudrate = 9600\ntimeout = 0.3',
        f"[groups.main]\nlimit = {LIMIT_A}\nfallback_load = 60",
        '[meters.grid]\nmodel = "eastron-sdm630"\nbus = "meter"\n'
        f'unit_id = {METER_UNIT}\ngroup = "main"',
    ]
    rotations = ["L1L2L3", "L2L3L1", "L3L1L2"]
    for i in range(TCP_CHARGERS + RTU_CHARGERS):
        if i < TCP_CHARGERS:
            port = ports["chargers"][i]
            lines.append(
                f'[buses.b{i + 1}]\nkind = "tcp"\nhost = "127.0.0.1"\nport = {port}\ntimeout = 0.3'
            )
            bus, unit = f"b{i + 1}", 1
        else:
            bus, unit = "rs485", i - TCP_CHARGERS + 1
        lines.append(
            f'[chargers.c{i + 1}]\nbus = "{bus}"\nunit_id = {unit}\ngroup = "main"\n'
            f'rotation = "{rotations[i % 3]}"\nfailsafe_current = 6'
        )
    lines.append(
        f"[dlm]\ncycle_seconds = {CYCLE_S}\nwatchdog_seconds = 30\nramp_up_amps_per_second = 5\n"
        "restart_delay_seconds = 10\nslow_poll_every = 10"
    )
    lines.append('[log]\nlevel = "error"\nformat = "json"')
    return "\n\n".join(lines) + "\n"


def resources(gateway: Gateway) -> dict[str, Any]:
    """This process: resident memory (MB), asyncio tasks (besides the gateway's per-device work
    in flight, which comes and goes with the cycle), open descriptors and sockets."""
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        with contextlib.suppress(OSError):  # the descriptor listdir itself used is gone
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return {
        "rss_mb": rss,
        "tasks": len(asyncio.all_tasks()) - len(gateway.in_flight()),
        "task_names": sorted(
            getattr(t.get_coro(), "__qualname__", t.get_name())
            for t in asyncio.all_tasks() - set(gateway.in_flight())
        ),
        "fds": len(fds),
        "sockets": sockets,
    }


async def soak(duration: float, seed: int) -> dict:
    """Run the site for ``duration`` seconds under faults; return the measurements."""
    from ampgate.config import check_config_text
    from ampgate.gateway.loop import Gateway
    from ampgate.logging import configure_logging

    configure_logging("json", "error")
    folder = Path(tempfile.mkdtemp(prefix="ampgate-soak-"))
    sim_end, gw_end = folder / "sim", folder / "gw"
    socat = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={sim_end}", f"pty,raw,echo=0,link={gw_end}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    child = None
    try:
        while not (sim_end.exists() and gw_end.exists()):
            await asyncio.sleep(0.01)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            str(sim_end),
            "--duration",
            str(duration),
            "--seed",
            str(seed),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        ports = json.loads(await child.stdout.readline())
        config, problems = check_config_text(site_text(ports, str(gw_end)), "soak.toml")
        assert config is not None, problems
        gateway = Gateway(config)
        await gateway.start()
        stop = asyncio.Event()
        ends: list[float] = []
        wanted: list[asyncio.Future[dict[str, Any]]] = []

        def on_cycle(gw: Gateway) -> None:
            # measured between cycles (the cycle's own task is done), so counts compare
            ends.append(time.monotonic())
            while wanted:
                wanted.pop().set_result(resources(gw))

        async def measure() -> dict[str, Any]:
            wanted.append(asyncio.get_running_loop().create_future())
            return await wanted[-1]

        runner = asyncio.create_task(gateway.run(stop, on_cycle))
        warmup = min(20.0, duration * WARMUP_FRACTION)
        await asyncio.sleep(warmup)
        before = await measure()
        await asyncio.sleep(max(0.0, duration - warmup))
        child.stdin.write(b"calm\n")
        await child.stdin.drain()
        await child.stdout.readline()
        await asyncio.sleep(15.0)  # every fault cleared: reconnect, re-identify, settle
        after = await measure()
        stop.set()
        await runner
        await gateway.shutdown(write=False)
        child.stdin.write(b"quit\n")
        await child.stdin.drain()
        report = json.loads(await child.stdout.readline())
        await child.wait()
    finally:
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
        socat.terminate()
        socat.wait()
        shutil.rmtree(folder, ignore_errors=True)
    slots = [ends[0] + i * CYCLE_S for i in range(len(ends))]
    late = sum(1 for end, slot in zip(ends, slots, strict=True) if end - slot > CYCLE_S / 2)
    online = sum(1 for rt in gateway.chargers.values() if rt.online)
    return {
        "duration_s": duration,
        "seed": seed,
        "chargers": TCP_CHARGERS + RTU_CHARGERS,
        "chargers_online_at_end": online,
        "cycles": len(ends),
        "cycles_late": late,
        "cycles_late_share": late / len(ends) if ends else 1.0,
        "rss_before_mb": before["rss_mb"],
        "rss_after_mb": after["rss_mb"],
        "rss_growth_mb": after["rss_mb"] - before["rss_mb"],
        "tasks_leaked": max(0, int(after["tasks"] - before["tasks"])),
        "fds_leaked": max(0, int(after["fds"] - before["fds"])),
        "sockets_leaked": max(0, int(after["sockets"] - before["sockets"])),
        "events": dict(gateway.events.counts),
        "tasks_new": sorted(set(after["task_names"]) - set(before["task_names"])),
        **report,
    }


def goals_met(result: dict) -> dict[str, bool]:
    """Each goal of issue 14 against the result."""
    return {
        key: result[key] < limit
        if key in ("rss_growth_mb", "cycles_late_share")
        else result[key] <= limit
        for key, limit in GOALS.items()
    }


def markdown(result: dict, meta: dict) -> str:
    """The result as markdown."""
    met = goals_met(result)
    lines = [
        "# Soak benchmark",
        "",
        f"`{meta['command']}` on {meta['machine']} ({meta['cpus']} CPUs, Python "
        f"{meta['python']}), {meta['date']}. {result['chargers']} chargers ({TCP_CHARGERS} on "
        f"TCP, {RTU_CHARGERS} on one RS485 line at 9600 baud), an SDM630, cycle {CYCLE_S:g} s, "
        f"{result['duration_s']:g} s of randomised faults (seed {result['seed']}).",
        "",
        "| measure | value | goal | met |",
        "|---|---:|---:|---|",
    ]
    for key, limit in GOALS.items():
        value = result[key]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} | {limit:g} | {'yes' if met[key] else '**no**'} |")
    lines += [
        "",
        f"Cycles: {result['cycles']}; chargers online at the end: "
        f"{result['chargers_online_at_end']}/{result['chargers']}; writes received: "
        f"{result['writes']}; overload in total (inside reaction windows included): "
        f"{result['overload_amp_s']:.1f} A·s, at most {result['max_overload_a']:.1f} A over.",
        f"Memory {result['rss_before_mb']:.1f} -> {result['rss_after_mb']:.1f} MB.",
        "",
        "Faults injected: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["faults_injected"].items())),
        "",
        "Gateway events: " + ", ".join(f"{k} {v}" for k, v in sorted(result["events"].items())),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the soak; write JSON and markdown; exit 1 when a goal is not met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.duration, args.seed))
        return 0
    if shutil.which("socat") is None:
        print("bench_soak: socat is missing (scripts/setup installs it)", file=sys.stderr)
        return 2
    result = asyncio.run(soak(args.duration, args.seed))
    meta = {
        "command": " ".join(["python", "benchmarks/bench_soak.py", *sys.argv[1:]]),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps({"meta": meta, "result": result}, indent=1))
    (args.out / "soak.md").write_text(markdown(result, meta))
    met = goals_met(result)
    print(markdown(result, meta))
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
