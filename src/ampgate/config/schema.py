"""The site file's sections as pydantic models: types, ranges and per-field rules.

A site file has these sections (see ``examples/*.toml`` for annotated files)::

    [site]        name
    [buses.NAME]  kind = "serial" (port, baudrate, parity, stopbits, timeout, retries, gap)
                  kind = "tcp"    (host, port, timeout, retries, framing)
    [groups.NAME] limit = [L1, L2, L3] (fuse, A), operator_limit, parent, headroom, fallback_load,
                  power_cap_kw, nominal_voltage, max_imbalance, external_limits,
                  on_limit_expiry, peak_kw, peak_window
    [meters.NAME] model, bus, unit_id, location ("including" | "excluding"), group (metered group)
    [chargers.NAME] model, bus, unit_id, group, rotation, phases, priority, min/max current,
                  failsafe_current, phase_switching
    [dlm]         cycle_seconds, ramp_up_amps_per_second, hysteresis_amps, restart_delay_seconds,
                  meter_stale_seconds, meter_hold_seconds, meter_lag_seconds,
                  device_stale_seconds, watchdog_seconds, failsafe_policy, shutdown,
                  slow_poll_every, and the engine's finer knobs (phase switching, over- and
                  under-draw, margins, rotation periods): every field of DlmConfig below
    [http]        listen, enabled, token_file (``[metrics] listen`` is read as ``[http] listen``)
    [log]         format, level
    [ems]         listen, unit_id (the Modbus TCP server for energy managers; absent = off)
    [mqtt]        host, port, username, password_file, tls, ca_file, topic_prefix, qos,
                  homeassistant_discovery, discovery_prefix, client_id,
                  measurement_interval_seconds (the MQTT publisher; absent = off)

The models check one value or one table at a time; what spans sections (references, unique
addresses, the fuse tree, the failsafe plan) is checked by :mod:`ampgate.config.validate`.

Longer than 400 lines on purpose: every section of the site file, with each key's type, range
and meaning, is on this one page (the README's site-file table is written from it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Phase = Literal["L1", "L2", "L3"]
PHASES: tuple[Phase, Phase, Phase] = ("L1", "L2", "L3")
Rotation = Literal["L1L2L3", "L2L3L1", "L3L1L2"]
_PHASE_ORDER: dict[str, tuple[Phase, Phase, Phase]] = {
    "L1L2L3": ("L1", "L2", "L3"),
    "L2L3L1": ("L2", "L3", "L1"),
    "L3L1L2": ("L3", "L1", "L2"),
}
ROTATIONS: tuple[str, ...] = tuple(_PHASE_ORDER)
MIN_CHARGING_CURRENT = 6
"""EVC2 setpoints are 0 or 6–32 A; 1–5 A are rejected by the charger."""
MAX_CHARGING_CURRENT = 32
WATCHDOG_MIN_CYCLES = 3
"""The watchdog must outlast at least this many cycles, so one slow cycle never trips it."""
EVC2_WATCHDOG_RANGE = (1, 600)
"""Reg 19 accepts 0–600 s; 0 disables the watchdog, which ampgate never does."""


def site_phases(rotation: str) -> tuple[Phase, Phase, Phase]:
    """Return the site phases a charger's own L1, L2, L3 sit on for a rotation (RST/STR/TRS)."""
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation {rotation!r} unknown; allowed: {', '.join(ROTATIONS)}")
    return _PHASE_ORDER[rotation]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SerialBusConfig(_Section):
    """An RS485 line: one serial port shared by every device on it."""

    kind: Literal["serial"]
    port: str = Field(min_length=1)
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout: float = Field(default=0.5, gt=0, le=10)
    """Seconds to wait for one answer."""
    retries: int = Field(default=0, ge=0, le=5)
    gap: float = Field(default=0.005, ge=0, le=1)
    """Silent seconds between requests (on top of the 3.5-character frame gap)."""


class TcpBusConfig(_Section):
    """A Modbus TCP endpoint (a device, or a serial-to-TCP gateway with ``framing = "rtu"``)."""

    kind: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    timeout: float = Field(default=1.0, gt=0, le=10)
    retries: int = Field(default=0, ge=0, le=5)
    framing: Literal["socket", "rtu"] = "socket"
    """``socket``: Modbus TCP (MBAP). ``rtu``: raw RTU frames tunnelled over TCP."""


PhaseAmps = tuple[float, float, float]


def _per_phase(value: object) -> object:
    """Accept one number for all three phases, or a list of three."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (value, value, value)
    return value


class GroupConfig(_Section):
    """A fuse (main distribution or sub-distribution) with per-phase limits in amperes."""

    limit: PhaseAmps
    """Fuse rating per site phase L1, L2, L3 (A)."""
    operator_limit: PhaseAmps | None = None
    """Optional operator cap, at most the fuse rating (A)."""
    parent: str | None = None
    """The upstream fuse this one sits under; ``None`` for the main fuse."""
    headroom: PhaseAmps = (0.0, 0.0, 0.0)
    """Margin kept free below the limit (A)."""
    fallback_load: PhaseAmps = (0.0, 0.0, 0.0)
    """Non-EV load assumed on this fuse when its meter is stale or absent (A)."""
    power_cap_kw: float | None = Field(default=None, gt=0, le=10000)
    """Optional cap on the total power through this fuse (kW), e.g. a contracted supply."""
    nominal_voltage: float = Field(default=230.0, ge=100, le=300)
    """Phase-to-neutral voltage that turns ``power_cap_kw`` into amperes (V)."""
    max_imbalance: float | None = Field(default=None, ge=0, le=1000)
    """Optional largest difference between the phases' EV + building load (A), e.g. a grid
    operator's unbalanced-load rule; only 1- and 2-phase chargers are lowered for it."""
    external_limits: list[Literal["http", "mqtt", "ems"]] = []
    """Who may lower this fuse's limit for a while (an energy manager, a grid operator's
    dimming): the HTTP API, MQTT, the EMS Modbus server. None by default."""
    on_limit_expiry: Literal["fuse"] | float = "fuse"
    """When an external limit is not refreshed in time: back to the site file's limits
    (``"fuse"``), or hold this many amperes per phase until the source sets a new limit."""
    peak_kw: float | None = Field(default=None, gt=0, le=10000)
    """Capacity tariff: keep the 15-minute average import through this fuse under this (kW);
    the group needs a meter."""
    peak_window: Literal["aligned", "rolling"] = "aligned"
    """``aligned``: the tariff's quarters (:00, :15, :30, :45); ``rolling``: any 15 minutes."""

    _norm = field_validator("limit", "operator_limit", "headroom", "fallback_load", mode="before")(
        classmethod(lambda cls, v: _per_phase(v))
    )

    @field_validator("limit", "operator_limit", "headroom", "fallback_load")
    @classmethod
    def _non_negative(cls, value: PhaseAmps | None) -> PhaseAmps | None:
        if value is not None and any(v < 0 for v in value):
            raise ValueError(f"{list(value)} has a negative phase; allowed: amperes >= 0")
        return value

    def effective_limit(self) -> PhaseAmps:
        """Per-phase limit the allocator keeps: the lower of the fuse and the operator cap."""
        if self.operator_limit is None:
            return self.limit
        (l1, l2, l3), (o1, o2, o3) = self.limit, self.operator_limit
        return (min(l1, o1), min(l2, o2), min(l3, o3))


class MeterConfig(_Section):
    """An energy meter at a fuse: it measures the load through that fuse."""

    model: str
    bus: str
    unit_id: int = Field(ge=1, le=247)
    group: str
    """The fuse whose load this meter measures (the metered group)."""
    location: Literal["including", "excluding"] = "including"
    """``including``: the meter sees building + chargers. ``excluding``: building only."""


class ChargerConfig(_Section):
    """One EVC2 charger under a fuse."""

    model: str = "teltocharge-evc2"
    bus: str
    unit_id: int = Field(ge=1, le=247)
    group: str
    rotation: Rotation = "L1L2L3"
    """Site phases of the charger's L1, L2, L3 (RST = L1L2L3, STR = L2L3L1, TRS = L3L1L2)."""
    phases: Literal[1, 3] = 3
    """Phases the charger is wired with (1: only its L1, mapped through ``rotation``)."""
    priority: int = Field(default=0, ge=0, le=100)
    """Higher is served first when current is short."""
    min_current: int = Field(default=MIN_CHARGING_CURRENT, ge=6, le=32)
    max_current: int = Field(default=MAX_CHARGING_CURRENT, ge=6, le=32)
    failsafe_current: int | None = None
    """Current the charger falls back to when the gateway is silent (0 or 6–32 A); ``None``: the
    engine's failsafe plan decides."""
    phase_switching: Literal["auto", "off"] = "auto"
    """``auto``: switch between 3 and 1 phase when the charger reports it can (reg 11);
    ``off``: never switch it (reg 14 is not written)."""

    @field_validator("failsafe_current")
    @classmethod
    def _failsafe_allowed(cls, value: int | None) -> int | None:
        if value is not None and not (value == 0 or 6 <= value <= 32):
            raise ValueError(f"{value} A is not allowed; allowed: 0 or 6–32 A")
        return value


class DlmConfig(_Section):
    """How the allocator runs."""

    cycle_seconds: float = Field(default=1.0, ge=0.05, le=60)
    ramp_up_amps_per_second: float = Field(default=2.0, gt=0, le=100)
    """Largest increase of one setpoint per second (A/s). Reductions are never rate-limited."""
    hysteresis_amps: int = Field(default=1, ge=0, le=10)
    """An increase smaller than this is not made (A)."""
    restart_delay_seconds: float = Field(default=60.0, ge=0, le=3600)
    """A charger paused for lack of current is not restarted before this many seconds."""
    meter_stale_seconds: float = Field(default=5.0, gt=0, le=600)
    """A meter reading older than this is stale (the last good non-EV load is held)."""
    meter_hold_seconds: float = Field(default=10.0, ge=0, le=600)
    """After the last good reading, hold the last non-EV load this long, then use the fallback."""
    meter_lag_seconds: float = Field(default=1.0, ge=0, le=10)
    """How late a meter's reading may be against the moment it is read (its averaging or
    register refresh), s. With a meter ``including`` the chargers the engine takes each
    charger's draw over that range, so neither a car's change nor a lagging meter is taken for
    building load or for free capacity. 1 s covers meters that refresh their registers once a
    second (assumption; the reference gives no meter refresh times)."""
    phase_switch_timeout_seconds: float = Field(default=30.0, ge=5, le=600)
    """A phase switch (reg 14) that reg 13 and the currents have not confirmed after this long
    is not followed (event ``phase_switch_not_followed``); the charger keeps its phases."""
    phase_switch_retry_seconds: float = Field(default=1800.0, ge=0, le=86400)
    """After a switch that was not followed, the charger is not switched again for this long."""
    overdraw_margin_amps: float = Field(default=2.0, ge=0.5, le=16)
    """A car drawing more than anything it was told + this margin is over-drawing (event
    ``charger_overdraw``): it is budgeted at what it draws, and others get less."""
    overdraw_pause_seconds: float = Field(default=30.0, ge=1, le=3600)
    """A car that keeps drawing beyond its budget this long is paused (0 A)."""
    meter_frozen_change_amps: float = Field(default=6.0, ge=1, le=100)
    """A meter that includes the chargers and does not move while their draw on a phase changed
    by this much is implausible (event ``meter_implausible``)."""
    device_stale_seconds: float = Field(default=10.0, gt=0, le=600)
    """A charger that has not answered for this long is offline."""
    watchdog_seconds: int = Field(default=30, ge=1, le=600)
    """Programmed into every charger's reg 19 (communication timeout)."""
    failsafe_policy: Literal["share", "fixed"] = "share"
    """``share``: the engine's plan (:func:`ampgate.dlm.plan_failsafe`): each charger gets its
    ``failsafe_current`` (6 A when unset) while it fits every fuse phase with the fallback load,
    else 0, by priority and in rotation. ``fixed``: every charger's ``failsafe_current`` as set,
    and the file is refused when they would overload a fuse."""
    shutdown: Literal["failsafe", "zero", "keep"] = "failsafe"
    """Setpoint written on SIGTERM/SIGINT: each charger's failsafe current, 0 A, or unchanged."""
    slow_poll_every: int = Field(default=10, ge=1, le=3600)
    """Settings, identity and energy are read every N cycles."""
    increase_margin_amps: float = Field(default=0.25, ge=0, le=5)
    """An increase is granted only with this much left free above it on a metered fuse (a dead
    band against the meter's noise at a whole-amp boundary), A."""
    restart_margin_amps: float = Field(default=1.0, ge=0, le=10)
    """A paused charger restarts only when its minimum plus this much fits (A)."""
    underdraw_margin_amps: float = Field(default=2.0, ge=0.5, le=10)
    """A car drawing less than its setpoint is capped at what it draws plus this margin (A)."""
    underdraw_settle_seconds: float = Field(default=30.0, ge=1, le=600)
    """How long a car must under-draw before it is capped (s)."""
    phase_switch_interval_seconds: float = Field(default=300.0, ge=10, le=86400)
    """Least time between two phase switches of one charger (s)."""
    fairness_rotation_seconds: float = Field(default=300.0, ge=10, le=86400)
    """When current is short, a charging car keeps this much credit over a waiting one before
    they swap (s)."""
    failsafe_rotation_seconds: float = Field(default=3600.0, ge=60, le=86400)
    """How often the failsafe plan rotates which chargers keep a failsafe current (s)."""
    phase_use_threshold_amps: float = Field(default=1.0, ge=0.1, le=6)
    """A terminal drawing at least this much counts as a phase the car uses (A)."""
    reading_skew_seconds: float = Field(default=0.1, ge=0, le=2)
    """How far a reading's time stamp may be off the moment the device measured (s)."""
    estimate_tolerance_amps: float = Field(default=0.5, ge=0, le=5)
    """How far the building-load estimate may be off before the measured-overload guard acts
    on the difference (A)."""


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[::1]:9740`` for IPv6: the brackets are dropped);
    ``HOST`` alone takes ``default_port`` when there is one. ValueError saying what is allowed."""
    host, sep, port = text.rpartition(":")
    if not sep and default_port is not None:
        host, port = text, str(default_port)
    host = host.strip("[]") if host.startswith("[") else host
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"{text!r} is not HOST:PORT; allowed: a host and a port 0-65535, e.g. '127.0.0.1:9740'"
        )
    return host, int(port)


class _Listening(_Section):
    """A server's section: ``listen`` is ``HOST:PORT`` (``[::1]:9740`` for IPv6), port 0–65535
    (0 picks a free one)."""

    listen: str

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_host_port(value)
        return value

    def host_port(self) -> tuple[str, int]:
        """Return ``(host, port)`` of ``listen``."""
        return split_host_port(self.listen)


class HttpConfig(_Listening):
    """The one HTTP server: /metrics, /healthz, the read API under /api/v1, the status page."""

    listen: str = "127.0.0.1:9740"
    """``HOST:PORT`` to serve on; loopback by default (port 0 picks a free one)."""
    enabled: bool = True
    token_file: str | None = Field(default=None, min_length=1)
    """A file holding the bearer token that write requests must carry; without it every write
    endpoint answers 403. A relative path is taken from the site file's folder."""


DEPRECATED_METRICS_KEYS: tuple[str, ...] = ("listen", "enabled")
"""Keys of the old ``[metrics]`` section, read as the same keys of ``[http]``."""


class LogConfig(_Section):
    """Log output."""

    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: JSON lines when stderr is not a TTY, a console layout when it is."""
    level: Literal["debug", "info", "warning", "error"] = "info"


class EmsConfig(_Listening):
    """The Modbus TCP server for energy managers (``docs/integration.md`` has its map)."""

    listen: str = "127.0.0.1:1502"
    unit_id: int = Field(default=1, ge=1, le=247)


MQTT_PORT = 1883
MQTTS_PORT = 8883


def topic_problem(value: str) -> str | None:
    """Why ``value`` cannot be a topic prefix (wildcards, empty levels), or None if it can."""
    if not value:
        return "is empty; allowed: levels separated by '/', e.g. 'ampgate/depot'"
    if "+" in value or "#" in value:
        return f"{value!r} has a wildcard ('+' or '#'); allowed: a topic without wildcards"
    if "\x00" in value:
        return f"{value!r} has a NUL character; allowed: printable text"
    if "" in value.split("/"):
        return (
            f"{value!r} has an empty level (a leading, trailing or doubled '/'); "
            "allowed: levels separated by single '/', e.g. 'ampgate/depot'"
        )
    return None


def topic_slug(name: str) -> str:
    """``name`` as one topic level and Home Assistant id: every character outside letters,
    digits, ``-`` and ``_`` becomes ``_`` ("Depot North" -> "Depot_North")."""
    slug = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in name)
    return slug or "site"


class MqttConfig(_Section):
    """The MQTT publisher: state, events and Home Assistant discovery (``docs/integration.md``)."""

    host: str = Field(min_length=1)
    """The broker's host name or address."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The broker's port; default 1883, or 8883 with ``tls``."""
    username: str | None = Field(default=None, min_length=1)
    password_file: str | None = Field(default=None, min_length=1)
    """A file whose first line is the password (needs ``username``). A relative path is taken
    from the site file's folder."""
    tls: bool = False
    ca_file: str | None = Field(default=None, min_length=1)
    """The CA certificate(s) that sign the broker's certificate (PEM; needs ``tls``); default:
    the system's CAs."""
    topic_prefix: str | None = None
    """Where ampgate publishes; default ``ampgate/<[site] name>``."""
    qos: Literal[0, 1, 2] = 1
    homeassistant_discovery: bool = True
    discovery_prefix: str = "homeassistant"
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    """The MQTT client identifier; default ``ampgate-<[site] name>``."""
    measurement_interval_seconds: float = Field(default=5.0, ge=0, le=3600)
    """Measurements (currents, power, energy) are published when they change, at most this
    often per device; states (online, vehicle, setpoint) the cycle they change."""

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and (problem := topic_problem(value)) is not None:
            raise ValueError(problem)
        return value

    def effective_port(self) -> int:
        """``port``, or the MQTT default for ``tls`` (8883) or plain TCP (1883)."""
        if self.port is not None:
            return self.port
        return MQTTS_PORT if self.tls else MQTT_PORT

    def effective_topic_prefix(self, site_name: str) -> str:
        """``topic_prefix``, or ``ampgate/<site name>`` (the name as one topic level)."""
        return self.topic_prefix or f"ampgate/{topic_slug(site_name)}"

    def effective_client_id(self, site_name: str) -> str:
        """``client_id``, or ``ampgate-<site name>``."""
        return self.client_id or f"ampgate-{topic_slug(site_name)}"


class SiteInfo(_Section):
    """Site metadata."""

    name: str = "site"


class SiteConfig(_Section):
    """A whole validated site file."""

    site: SiteInfo = SiteInfo()
    buses: dict[str, SerialBusConfig | TcpBusConfig]
    groups: dict[str, GroupConfig]
    meters: dict[str, MeterConfig] = {}
    chargers: dict[str, ChargerConfig]
    dlm: DlmConfig = DlmConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    ems: EmsConfig | None = None
    """The EMS Modbus server; absent = off."""
    mqtt: MqttConfig | None = None
    """The MQTT publisher; absent = off."""
    source: str = ""
    """Path of the file this was read from."""
    deprecations: tuple[str, ...] = ()
    """One line per deprecated key the file uses (``metrics.listen``), for check-config and the
    daemon to warn about."""

    def ancestors(self, group: str) -> list[str]:
        """Return ``group`` and every fuse above it, nearest first."""
        chain: list[str] = []
        current: str | None = group
        while current is not None and current not in chain:
            chain.append(current)
            current = self.groups[current].parent
        return chain

    def children(self, group: str) -> list[str]:
        """Return the groups whose parent is ``group``, sorted."""
        return sorted(n for n, g in self.groups.items() if g.parent == group)
