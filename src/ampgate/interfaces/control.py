"""External limits coming in: one validation for every source, and the channel to the gateway.

An energy manager or a grid operator lowers a group's current for a while through the HTTP
API, MQTT or the EMS Modbus server. Each source turns what it received into a
:class:`LimitRequest` with :func:`limit_request` (the same rules and the same error wording
everywhere: the field, the value, the allowed range) and hands it to the
:class:`ControlChannel`. The gateway takes the requests out at the start of each cycle
(:meth:`ControlChannel.take`) and applies them on its own clock; nothing here touches a device.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal

from ampgate.config import SiteConfig
from ampgate.errors import ConfigError

LimitSource = Literal["http", "mqtt", "ems"]
MAX_VALID_FOR_S = 86400
"""The longest an external limit may be valid without a refresh (one day)."""


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """Set (or clear) one source's external limit on one group.

    Exactly one of ``amps`` (per site phase) and ``kw`` (total) is set, unless ``clear``.
    """

    group: str
    source: LimitSource
    amps: tuple[float, float, float] | None = None
    kw: float | None = None
    valid_for: float = 0.0
    clear: bool = False


def takes_limits(config: SiteConfig, source: LimitSource) -> bool:
    """Whether any group of ``config`` lists ``source`` in its ``external_limits``."""
    return any(source in g.external_limits for g in config.groups.values())


class LimitRejected(ConfigError):
    """A limit request that is not allowed: ``status`` 403 (the group does not take limits from
    this source) or 422 (a value out of range); ``field`` names what is wrong."""

    def __init__(self, status: int, field: str, message: str) -> None:
        self.status, self.field = status, field
        super().__init__(f"{field}: {message}")


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LimitRejected(422, field, f"{value!r} is not a number")
    return float(value)


def limit_request(
    config: SiteConfig,
    group: str,
    source: LimitSource,
    *,
    amps: object = None,
    kw: object = None,
    valid_for: object = None,
    clear: bool = False,
) -> LimitRequest:
    """Validate one source's limit for ``group`` against the site file; LimitRejected if not
    allowed.

    ``amps``: one number for every phase or three (L1, L2, L3), each 0 or 6 A up to the fuse;
    ``kw``: 0 up to what the fuse carries at its nominal voltage; ``valid_for``: 1 to 86400 s.
    """
    if group not in config.groups:
        allowed = ", ".join(sorted(config.groups))
        raise LimitRejected(422, "group", f"{group!r} is not a group; allowed: {allowed}")
    g = config.groups[group]
    if source not in g.external_limits:
        raise LimitRejected(
            403,
            "group",
            f"group {group!r} does not take limits from {source!r} "
            f"(groups.{group}.external_limits = {g.external_limits})",
        )
    if clear:
        return LimitRequest(group, source, clear=True)
    if (amps is None) == (kw is None):
        raise LimitRejected(422, "amps", "give exactly one of amps and kw")
    seconds = _number("valid_for", valid_for)
    if not 1 <= seconds <= MAX_VALID_FOR_S:
        raise LimitRejected(
            422, "valid_for", f"{seconds:g} s is not allowed; allowed: 1..{MAX_VALID_FOR_S} s"
        )
    fuse = g.limit
    if kw is not None:
        most = sum(fuse) * g.nominal_voltage / 1000.0
        value = _number("kw", kw)
        if not 0 <= value <= most:
            raise LimitRejected(422, "kw", f"{value:g} kW is not allowed; allowed: 0..{most:g} kW")
        return LimitRequest(group, source, kw=value, valid_for=seconds)
    values = list(amps) if isinstance(amps, list | tuple) else [amps] * 3
    if len(values) != 3:
        raise LimitRejected(422, "amps", f"{len(values)} values; allowed: one, or L1, L2, L3")
    phases = tuple(_number("amps", a) for a in values)
    for phase, value, top in zip(("L1", "L2", "L3"), phases, fuse, strict=True):
        if not (value == 0 or 6 <= value <= top):
            raise LimitRejected(
                422, "amps", f"{phase} {value:g} A is not allowed; allowed: 0 or 6..{top:g} A"
            )
    l1, l2, l3 = phases
    return LimitRequest(group, source, amps=(l1, l2, l3), valid_for=seconds)


BODY_KEYS = ("amps", "kw", "valid_for")


def limit_from_body(
    config: SiteConfig, group: str, source: LimitSource, body: object
) -> LimitRequest:
    """A limit request from a JSON body (HTTP ``PUT``, an MQTT ``limit/set`` payload):
    ``{"amps": 20 | [L1, L2, L3], "valid_for": 60}`` or ``{"kw": 11, "valid_for": 60}``;
    ``{}`` or ``null`` clears the source's limit. LimitRejected names what is wrong."""
    if body is None or body == {}:
        return limit_request(config, group, source, clear=True)
    if not isinstance(body, dict):
        raise LimitRejected(422, "body", f"{body!r} is not a JSON object; allowed: " + _SHAPE)
    unknown = sorted(str(k) for k in body if k not in BODY_KEYS)
    if unknown:
        raise LimitRejected(
            422, unknown[0], f"unknown key; allowed keys: {', '.join(BODY_KEYS)} ({_SHAPE})"
        )
    if "valid_for" not in body:
        raise LimitRejected(422, "valid_for", f"missing; allowed: 1..{MAX_VALID_FOR_S} s")
    return limit_request(
        config, group, source, amps=body.get("amps"), kw=body.get("kw"), valid_for=body["valid_for"]
    )


_SHAPE = '{"amps": A or [L1, L2, L3], "valid_for": s} or {"kw": kW, "valid_for": s}'


class ControlChannel:
    """Limit requests from the servers (any thread) to the gateway (its loop), in order."""

    def __init__(self) -> None:
        """An empty channel."""
        self._lock = threading.Lock()
        self._pending: list[LimitRequest] = []

    def submit(self, request: LimitRequest) -> None:
        """Queue a validated request for the gateway's next cycle."""
        with self._lock:
            self._pending.append(request)

    def take(self) -> list[LimitRequest]:
        """Every request queued since the last call, oldest first."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending
