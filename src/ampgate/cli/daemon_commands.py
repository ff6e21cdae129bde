"""The daemon's subcommands: ``run --config FILE``, ``check-config FILE`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ampgate.config import PHASES, SiteConfig, check_config

EXIT_OK = 0
EXIT_INVALID = 2


def _amps(values: tuple[float, float, float] | None) -> str:
    if values is None:
        return "-"
    if len(set(values)) == 1:
        return f"3 x {values[0]:g} A"
    return " / ".join(f"{p} {v:g} A" for p, v in zip(PHASES, values, strict=True))


def describe_mqtt(site: SiteConfig, out: TextIO) -> None:
    """Print the effective ``[mqtt]`` settings, defaults included (never the password)."""
    mqtt = site.mqtt
    if mqtt is None:
        return
    name = site.site.name
    tls = "tls on" if mqtt.tls else "tls off"
    if mqtt.tls:
        tls += f", CA {mqtt.ca_file}" if mqtt.ca_file else ", system CAs"
    login = "anonymous"
    if mqtt.username is not None:
        login = f"user {mqtt.username}"
        if mqtt.password_file is not None:
            login += f" (password from {mqtt.password_file})"
    print(
        f"mqtt to {mqtt.host}:{mqtt.effective_port()} ({tls}), {login}, client id "
        f"{mqtt.effective_client_id(name)}, qos {mqtt.qos}",
        file=out,
    )
    print(
        f"  topics under {mqtt.effective_topic_prefix(name)} (status, events, charger/*, meter/*, "
        f"group/*); measurements at most every {mqtt.measurement_interval_seconds:g} s",
        file=out,
    )
    discovery = f"under {mqtt.discovery_prefix}" if mqtt.homeassistant_discovery else "off"
    print(f"  Home Assistant discovery {discovery}", file=out)


def describe_site(site: SiteConfig, out: TextIO) -> None:
    """Print a summary of a valid site: buses, devices, the group tree and the failsafe plan."""
    from ampgate.config.to_engine import failsafe_plan, phase_loads

    print(
        f"site {site.site.name!r}: {len(site.buses)} bus(es), {len(site.meters)} meter(s), "
        f"{len(site.chargers)} charger(s)",
        file=out,
    )
    print("buses:", file=out)
    for name, bus in site.buses.items():
        if bus.kind == "serial":
            line = f"serial {bus.port} {bus.baudrate} 8{bus.parity}{bus.stopbits}"
        else:
            line = f"tcp {bus.host}:{bus.port} ({bus.framing})"
        print(f"  {name}: {line}, timeout {bus.timeout:g} s, retries {bus.retries}", file=out)
    plan = failsafe_plan(site)
    loads = phase_loads(site, plan)
    print("groups (limit / operator limit / headroom / fallback load):", file=out)

    def tree(group: str, depth: int) -> None:
        g = site.groups[group]
        pad = "  " * depth
        extra = ""
        if g.power_cap_kw is not None:
            extra += f", power cap {g.power_cap_kw:g} kW at {g.nominal_voltage:g} V"
        if g.max_imbalance is not None:
            extra += f", max imbalance {g.max_imbalance:g} A"
        if g.external_limits:
            expiry = g.on_limit_expiry
            after = "the fuse" if isinstance(expiry, str) else f"{expiry:g} A"
            extra += f", external limits from {', '.join(g.external_limits)} (on expiry: {after})"
        if g.peak_kw is not None:
            extra += f", quarter-hour peak {g.peak_kw:g} kW ({g.peak_window})"
        print(
            f"  {pad}{group}: {_amps(g.limit)} / {_amps(g.operator_limit)} / "
            f"{_amps(g.headroom)} / {_amps(g.fallback_load)}{extra}",
            file=out,
        )
        for m_name, meter in site.meters.items():
            if meter.group == group:
                print(
                    f"  {pad}  meter {m_name}: {meter.model} on {meter.bus} unit "
                    f"{meter.unit_id} ({meter.location})",
                    file=out,
                )
        for c_name, c in site.chargers.items():
            if c.group == group:
                print(
                    f"  {pad}  charger {c_name}: {c.model} on {c.bus} unit {c.unit_id}, "
                    f"{c.phases}-phase {c.rotation}, {c.min_current}–{c.max_current} A, "
                    f"priority {c.priority}"
                    + (", phase switching off" if c.phase_switching == "off" else ""),
                    file=out,
                )
        for child in site.children(group):
            tree(child, depth + 1)

    for root in [n for n, g in site.groups.items() if g.parent is None]:
        tree(root, 0)
    print(
        f"failsafe plan ({site.dlm.failsafe_policy}; watchdog {site.dlm.watchdog_seconds} s):",
        file=out,
    )
    for name in site.chargers:
        print(f"  {name}: {plan[name]} A", file=out)
    for name, g in site.groups.items():
        worst = ", ".join(
            f"{p} {loads[name][i] + g.fallback_load[i]:g}/{g.limit[i]:g} A"
            for i, p in enumerate(PHASES)
        )
        print(f"  if ampgate stops, {name} carries (failsafe + fallback / fuse): {worst}", file=out)
    if site.http.enabled:
        writes = (
            "writes need the token in " + site.http.token_file
            if site.http.token_file
            else "writes off"
        )
        served = "status page /, API /api/v1, /metrics, /healthz"
        print(f"http on {site.http.listen}: {served} ({writes})", file=out)
    else:
        print("http off (no status page, API or /metrics)", file=out)
    if site.ems is not None:
        print(f"EMS Modbus server on {site.ems.listen}, unit id {site.ems.unit_id}", file=out)
    if site.mqtt is not None:
        describe_mqtt(site, out)
    print("dlm (effective values, defaults included):", file=out)
    for key, value in site.dlm.model_dump().items():
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        print(f"  {key} = {shown}", file=out)


def cmd_check_config(args: argparse.Namespace) -> int:
    """``ampgate check-config FILE``: print every problem (exit 2) or a summary (exit 0)."""
    site, problems = check_config(args.file)
    if site is None:
        print(f"{args.file}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    for deprecation in site.deprecations:
        print(f"{args.file}: warning: {deprecation}", file=sys.stderr)
    print(f"{args.file}: valid")
    describe_site(site, sys.stdout)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``ampgate run --config FILE``: refuse an invalid file naming each problem, else run."""
    site, problems = check_config(args.config)
    if site is None:
        print(f"{args.config}: refusing to start: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    from ampgate.daemon.run import run_daemon

    return run_daemon(args.config)


def cmd_demo(args: argparse.Namespace) -> int:
    """``ampgate demo``: a simulated site under the real gateway loop, no hardware needed."""
    from ampgate.demo.run import demo_main

    return demo_main(args.duration, args.chargers, args.cycle, args.listen, args.mqtt)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the daemon's subcommands to the ``ampgate`` parser."""
    p = subparsers.add_parser(
        "demo",
        help="run a simulated site (chargers, meter, building, cars) under the real gateway",
        description="Simulated EVC2 chargers on an RS485 line and a grid meter, controlled by "
        "the real gateway loop, with a live view. No hardware and no config needed.",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("--chargers", type=int, default=4, help="simulated chargers (default 4)")
    p.add_argument("--cycle", type=float, default=1.0, help="control cycle in seconds (1)")
    p.add_argument(
        "--listen",
        "--metrics-listen",
        dest="listen",
        default="127.0.0.1:9740",
        help="HOST:PORT of the status page, the API and /metrics (a busy port falls back to "
        "any free one)",
    )
    p.add_argument(
        "--mqtt",
        metavar="HOST:PORT",
        help="also publish the site to this MQTT broker (topics under ampgate/demo, Home "
        "Assistant discovery on)",
    )
    p.set_defaults(func=cmd_demo)
    p = subparsers.add_parser("run", help="run the gateway for a site file")
    p.add_argument("--config", required=True, help="site configuration (TOML)")
    p.set_defaults(func=cmd_run)
    p = subparsers.add_parser(
        "check-config",
        help="validate a site file and print every problem, or a summary of the site",
    )
    p.add_argument("file", help="site configuration (TOML)")
    p.set_defaults(func=cmd_check_config)
