"""Site-file rules of the control inputs that span sections: external limits, the fallback on
their expiry, quarter-hour peak budgets and the EMS server.

Each problem names its key and what is allowed, in the wording of :mod:`ampgate.config.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ampgate.config.schema import MIN_CHARGING_CURRENT, GroupConfig, MeterConfig

SOURCE_SECTIONS = {"ems": "ems", "mqtt": "mqtt"}
"""External-limit sources that need a section of their own to exist (the server they come
through)."""


def control_input_problems(valid: Mapping[str, Any]) -> list[str]:
    """Problems of the control-input keys among the sections that validated (``valid``)."""
    problems: list[str] = []
    groups: Mapping[str, GroupConfig] = valid.get("groups", {})
    meters: Mapping[str, MeterConfig] = valid.get("meters", {})
    metered = {m.group for m in meters.values()}
    for name, group in groups.items():
        where = f"groups.{name}"
        if len(set(group.external_limits)) != len(group.external_limits):
            problems.append(
                f"{where}.external_limits: {group.external_limits} names a source twice; "
                "allowed: each of 'http', 'mqtt', 'ems' once"
            )
        http = valid.get("http")
        if "http" in group.external_limits and http is not None:
            if not http.enabled:
                problems.append(
                    f"{where}.external_limits: 'http' needs the HTTP server, but http.enabled "
                    "is false; allowed: enable it or remove 'http'"
                )
            elif http.token_file is None:
                problems.append(
                    f"{where}.external_limits: 'http' needs http.token_file (HTTP writes are "
                    "off without a token); allowed: set it or remove 'http'"
                )
        for source in group.external_limits:
            section = SOURCE_SECTIONS.get(source)
            if section is not None and valid.get(section) is None:
                problems.append(
                    f"{where}.external_limits: {source!r} needs the [{section}] section "
                    f"(absent = off); allowed: add [{section}] or remove {source!r}"
                )
        expiry = group.on_limit_expiry
        if not isinstance(expiry, str):
            lowest = min(group.effective_limit())
            if not MIN_CHARGING_CURRENT <= expiry <= lowest and expiry != 0:
                problems.append(
                    f"{where}.on_limit_expiry: {expiry:g} A is not allowed; allowed: 'fuse', "
                    f"0, or {MIN_CHARGING_CURRENT}..{lowest:g} A (at most the group's limit)"
                )
            if not group.external_limits:
                problems.append(
                    f"{where}.on_limit_expiry: set but no external_limits; allowed: only with "
                    "external_limits"
                )
        if group.peak_kw is not None and name not in metered:
            problems.append(
                f"{where}.peak_kw: the group has no meter (the budget counts metered import); "
                f"allowed: a [meters.*] with group = {name!r}, or no peak_kw"
            )
    return problems
