"""``ampgate demo``: a whole simulated site controlled by the real daemon loop, no hardware.

N simulated EVC2 chargers share a simulated RS485 line (Modbus RTU over a socat pty pair; over
Modbus TCP when socat is missing, and the view says so), an Eastron SDM630 at the main fuse
answers over Modbus TCP, the building load rises and falls, and cars with different phase counts
plug in and out. The gateway is the same :class:`~ampgate.daemon.run.Daemon` as ``ampgate run``,
serving the status page (its address is the first line printed), the API and /metrics; a live
view (or plain lines when stdout is not a terminal) shows each cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ampgate.config import SiteConfig, check_config_text
from ampgate.daemon.run import Daemon
from ampgate.demo.view import render_line, render_view
from ampgate.errors import ConfigError
from ampgate.gateway.loop import Gateway
from ampgate.logging import configure_logging
from ampgate.sim import (
    ElectricVehicle,
    Evc2Simulator,
    LoadProfile,
    MeterSimulator,
    serve_rtu,
    serve_tcp,
)
from ampgate.sim.pty import VirtualLineError, virtual_serial_line

METER_UNIT_ID = 100
ROTATIONS = (("L1L2L3", (1, 2, 3)), ("L2L3L1", (2, 3, 1)), ("L3L1L2", (3, 1, 2)))
#: Cars that arrive in turn: (phases, max current per phase, reaction delay s).
CARS = (
    ElectricVehicle(phases=3, max_current=16.0, reaction_delay=1.0),
    ElectricVehicle(phases=1, max_current=32.0, reaction_delay=1.5),
    ElectricVehicle(phases=3, max_current=11.0, reaction_delay=1.0),
    ElectricVehicle(phases=1, max_current=16.0, reaction_delay=2.0),
)
FUSE_AMPS = 40.0
FALLBACK_AMPS = 15.0


def building_load(started: float, fuse: float = FUSE_AMPS) -> LoadProfile:
    """Building load per phase: a 60 s wave plus an 8 A step for 30 s of every 90 s (<= fuse/2)."""

    def profile(now: float) -> tuple[float, float, float]:
        t = now - started
        wave = 4.0 * math.sin(2 * math.pi * t / 60.0)
        step = 8.0 if (t % 90.0) >= 60.0 else 0.0
        l1, l2, l3 = (
            max(0.0, min(fuse / 2, b))
            for b in (9.0 + wave + step, 6.0 - wave / 2, 11.0 + wave / 2 + step / 2)
        )
        return (l1, l2, l3)

    return profile


@contextlib.contextmanager
def pty_pair() -> Iterator[tuple[str, str] | None]:
    """The simulated RS485 line: ``(simulator end, gateway end)``, or ``None`` without socat."""
    try:
        with virtual_serial_line(names=("sim", "gateway")) as ends:
            yield ends
    except VirtualLineError:
        yield None


@dataclass
class DemoSite:
    """The running simulators and the transport description shown in the view."""

    chargers: dict[str, Evc2Simulator]
    meter: MeterSimulator
    servers: list = field(default_factory=list)
    transport: str = ""
    next_event: float = 0.0
    arrivals: int = 0

    def plug_and_unplug(self, now: float, every: float) -> None:
        """Every ``every`` seconds a car leaves one charger or arrives at an empty one."""
        if now < self.next_event:
            return
        self.next_event = now + every
        names = list(self.chargers)
        target = self.chargers[names[self.arrivals % len(names)]]
        if target.ev is None:
            target.plug_in(CARS[self.arrivals % len(CARS)])
        else:
            target.unplug()
        self.arrivals += 1

    async def stop(self) -> None:
        """Stop every server."""
        for server in self.servers:
            await server.stop()


def site_text(
    chargers: int,
    charger_bus: str,
    meter_port: int,
    cycle: float,
    listen: str,
    mqtt: str | None = None,
) -> str:
    """The demo's site file (what ``ampgate check-config`` would accept); ``mqtt``
    (``HOST:PORT``) adds an ``[mqtt]`` section publishing to that broker."""
    lines = [
        '[site]\nname = "demo"',
        charger_bus,
        f'[buses.meter]\nkind = "tcp"\nhost = "127.0.0.1"\nport = {meter_port}\ntimeout = 0.5',
        f"[groups.main]\nlimit = {FUSE_AMPS}\nheadroom = 1\nfallback_load = {FALLBACK_AMPS}",
        '[meters.grid]\nmodel = "eastron-sdm630"\nbus = "meter"\n'
        f'unit_id = {METER_UNIT_ID}\ngroup = "main"\nlocation = "including"',
    ]
    for i in range(1, chargers + 1):
        rotation = ROTATIONS[(i - 1) % 3][0]
        lines.append(
            f'[chargers.c{i}]\nbus = "rs485"\nunit_id = {i}\ngroup = "main"\n'
            f'rotation = "{rotation}"\nfailsafe_current = 6'
        )
    lines.append(
        f"[dlm]\ncycle_seconds = {cycle}\nwatchdog_seconds = {max(10, math.ceil(cycle * 10))}\n"
        "ramp_up_amps_per_second = 4\nrestart_delay_seconds = 10\nslow_poll_every = 10\n"
        'failsafe_policy = "share"'
    )
    lines.append(f'[http]\nlisten = "{listen}"')
    if mqtt is not None:
        host, port = broker_address(mqtt)
        lines.append(f'[mqtt]\nhost = "{host}"\nport = {port}')
    return "\n\n".join(lines) + "\n"


def broker_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of ``--mqtt`` (port 1883 when left out); ConfigError naming the option."""
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = text, "1883"
    allowed = "allowed: HOST:PORT of an MQTT broker, port 1-65535"
    if not host or any(c in host for c in ' "[]\\'):
        raise ConfigError(f"--mqtt {text!r} is not allowed; {allowed}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--mqtt {text!r}: port {port!r} is not allowed; {allowed}")
    return host, int(port)


async def start_demo_site(chargers: int, ptys: tuple[str, str] | None) -> tuple[DemoSite, str]:
    """Start the simulators; return them and the ``[buses.rs485]`` section for the gateway."""
    clock = time.monotonic
    sims = {}
    for i in range(1, chargers + 1):
        sim = Evc2Simulator(clock, rotation=ROTATIONS[(i - 1) % 3][1])
        if i % 4 != 0:  # most bays start with a car
            sim.plug_in(CARS[(i - 1) % len(CARS)])
        sims[f"c{i}"] = sim
    meter = MeterSimulator(
        "eastron-sdm630",
        building_load(clock()),
        clock,
        chargers=list(sims.values()),
        noise_a=0.05,  # a real meter's currents never repeat exactly
    )
    units = {i: sims[f"c{i}"] for i in range(1, chargers + 1)}
    site = DemoSite(sims, meter, next_event=clock() + 8.0)
    meter_server = await serve_tcp({METER_UNIT_ID: meter}, host="127.0.0.1", port=0)
    site.servers.append(meter_server)
    if ptys is not None:
        site.servers.append(await serve_rtu(units, ptys[0], baudrate=9600))
        bus = f'[buses.rs485]\nkind = "serial"\nport = "{ptys[1]}"\nbaudrate = 9600\ntimeout = 0.3'
        site.transport = f"chargers: Modbus RTU 9600 8N1 over a socat pty pair ({ptys[1]})"
    else:
        server = await serve_tcp(units, host="127.0.0.1", port=0)
        site.servers.append(server)
        bus = f'[buses.rs485]\nkind = "tcp"\nhost = "127.0.0.1"\nport = {server.port}'
        site.transport = (
            f"chargers: Modbus TCP 127.0.0.1:{server.port} (socat not installed: no pty for RTU)"
        )
    site.transport += f"\nmeter: Eastron SDM630, Modbus TCP 127.0.0.1:{meter_server.port}"
    return site, bus


class DemoScreen:
    """Draws the live view on a terminal, or prints one plain line per cycle otherwise."""

    def __init__(self, out: TextIO, header: str, live: bool) -> None:
        """Write to ``out``; ``live`` redraws the screen each cycle (a TTY)."""
        self.out, self.header, self.live = out, header, live

    def __call__(self, gateway: Gateway) -> None:
        """Show one cycle."""
        if self.live:
            self.out.write(
                "\033[H\033[2J"
                + render_view(gateway.store.latest(), self.header, colour=True)
                + "\n"
            )
        else:
            self.out.write(render_line(gateway.store.latest()) + "\n")
        self.out.flush()


async def run_demo(
    duration: float | None,
    chargers: int = 4,
    cycle: float = 1.0,
    listen: str = "127.0.0.1:9740",
    out: TextIO = sys.stdout,
    mqtt: str | None = None,
) -> int:
    """Run the demo for ``duration`` seconds (until Ctrl-C when None); return the exit code.

    ``mqtt`` (``HOST:PORT``): also publish the site to that broker, Home Assistant discovery
    included."""
    live = out.isatty()
    configure_logging("console" if live else "json", "error" if live else "warning")
    with pty_pair() as ptys:
        site, bus = await start_demo_site(chargers, ptys)
        try:
            config = _config(chargers, bus, site, cycle, listen, mqtt)
            header = (
                f"ampgate demo: {chargers} simulated EVC2 chargers under a 3 x {FUSE_AMPS:g} A "
                f"fuse\n{site.transport}"
            )
            daemon = Daemon(config, on_cycle=None)
            daemon.open_http()  # bound now, so its address can be the first line
            pages = ""
            if daemon.http_port is not None:
                host = daemon.http.host
                base = f"http://{host}:{daemon.http_port}"
                out.write(f"status page: {base}/\n")
                out.flush()
                pages = f"\nstatus page: {base}/ (API {base}/api/v1/site, metrics {base}/metrics)"
            if config.mqtt is not None:
                prefix = config.mqtt.effective_topic_prefix(config.site.name)
                broker = f"{config.mqtt.host}:{config.mqtt.effective_port()}"
                out.write(f"mqtt: publishing to {broker} under {prefix}/\n")
                out.flush()
                pages += f"\nmqtt: {broker} under {prefix}/"
            screen = DemoScreen(out, "", live)

            def on_cycle(gateway: Gateway) -> None:
                site.plug_and_unplug(time.monotonic(), every=max(6.0, 12 * cycle))
                screen.header = header + pages + " (Ctrl-C stops)"
                screen(gateway)

            daemon.on_cycle = on_cycle
            if duration is not None:
                asyncio.get_running_loop().call_later(duration, daemon.request_stop)
            if not live:
                out.write(header + "\n")
            return await daemon.run()
        finally:
            await site.stop()


def free_listen(listen: str) -> str:
    """Return ``listen`` if its port can be bound now, else the same host with port 0 (any)."""
    host, _, port = listen.rpartition(":")
    try:
        with socket.socket() as probe:
            probe.bind((host, int(port)))
    except OSError:
        return f"{host}:0"
    return listen


def _config(
    chargers: int, bus: str, site: DemoSite, cycle: float, listen: str, mqtt: str | None
) -> SiteConfig:
    meter_port = site.servers[0].port
    listen = free_listen(listen)
    text = site_text(chargers, bus, meter_port, cycle, listen, mqtt)
    config, problems = check_config_text(text, "<demo>")
    if config is None:
        raise ConfigError("the demo site is invalid: " + "; ".join(problems), problems)
    return config


def demo_main(
    duration: float | None, chargers: int, cycle: float, listen: str, mqtt: str | None = None
) -> int:
    """Entry point of ``ampgate demo``."""
    if not 1 <= chargers <= 32:
        raise ConfigError(f"--chargers {chargers} is not allowed; allowed: 1–32")
    if duration is not None and duration <= 0:
        raise ConfigError(f"--duration {duration} is not allowed; allowed: > 0 seconds")
    if not 0.2 <= cycle <= 10:
        raise ConfigError(f"--cycle {cycle} is not allowed; allowed: 0.2–10 seconds")
    if mqtt is not None:
        broker_address(mqtt)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(run_demo(duration, chargers, cycle, listen, mqtt=mqtt))
