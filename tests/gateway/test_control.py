"""External limits and peak budgets applied to the engine's site (ampgate.gateway.control)."""

from __future__ import annotations

import pytest

from ampgate.config import check_config_text
from ampgate.config.to_engine import build_site
from ampgate.gateway.control import ControlInputs
from ampgate.gateway.events import EventLog
from ampgate.interfaces.control import ControlChannel, LimitRejected, limit_request

SITE = """
[buses.line]
kind = "serial"
port = "/dev/ttyUSB0"
[groups.main]
limit = [40, 40, 40]
external_limits = ["http", "ems"]
on_limit_expiry = {expiry}
[groups.sub]
limit = [32, 32, 32]
parent = "main"
[chargers.c1]
model = "teltocharge-evc2"
bus = "line"
unit_id = 2
group = "sub"
[ems]
listen = "127.0.0.1:0"
[http]
token_file = "api.token"
"""


def inputs(expiry: str = '"fuse"'):
    config, problems = check_config_text(SITE.format(expiry=expiry), "site.toml")
    assert problems == [], problems
    channel, events = ControlChannel(), EventLog()
    return config, channel, events, ControlInputs(config, build_site(config), events, channel)


def group(site, name):
    return next(g for g in site.groups if g.id == name)


def test_a_limit_lowers_the_group_until_it_expires_then_the_fuse_is_back():
    config, channel, events, control = inputs()
    assert control.site_for_cycle(0.0, 0.0) is control.site  # nothing applies: the same site
    channel.submit(limit_request(config, "main", "ems", amps=[20, 25, 40], valid_for=60))
    site = control.site_for_cycle(1.0, 1.0)
    assert group(site, "main").operator_limit == (20.0, 25.0, 40.0)
    assert group(site, "main").limit == (40.0, 40.0, 40.0)  # the fuse itself is untouched
    assert group(site, "sub") is group(control.site, "sub")
    assert events.counts["external_limit_set"] == 1
    assert control.site_for_cycle(60.9, 60.9) is site  # still live: the same derived site
    assert control.site_for_cycle(61.0, 61.0) is control.site  # expired: back to the file
    assert events.counts["external_limit_expired"] == 1


def test_the_lowest_live_limit_wins_and_never_lifts_above_the_fuse_or_operator():
    config, channel, _, control = inputs()
    channel.submit(limit_request(config, "main", "ems", amps=30, valid_for=60))
    channel.submit(limit_request(config, "main", "http", amps=[35, 10, 35], valid_for=60))
    site = control.site_for_cycle(0.0, 0.0)
    assert group(site, "main").operator_limit == (30.0, 10.0, 30.0)
    channel.submit(limit_request(config, "main", "http", clear=True))
    assert group(control.site_for_cycle(1.0, 1.0), "main").operator_limit == (30.0,) * 3


def test_a_kw_limit_becomes_the_groups_power_cap():
    config, channel, _, control = inputs()
    channel.submit(limit_request(config, "main", "http", kw=11, valid_for=30))
    assert group(control.site_for_cycle(0.0, 0.0), "main").power_cap_kw == 11.0


def test_an_expired_limit_holds_the_expiry_fallback_until_the_source_sets_a_new_one():
    config, channel, _, control = inputs("8")
    channel.submit(limit_request(config, "main", "ems", amps=20, valid_for=10))
    control.site_for_cycle(0.0, 0.0)
    held = control.site_for_cycle(11.0, 11.0)
    assert group(held, "main").operator_limit == (8.0, 8.0, 8.0)
    assert control.status(11.0)["main"].expiry_fallback
    channel.submit(limit_request(config, "main", "ems", amps=25, valid_for=10))
    assert group(control.site_for_cycle(12.0, 12.0), "main").operator_limit == (25.0,) * 3


def test_the_failsafe_plan_is_not_made_from_a_temporary_limit():
    """The gateway replaces the allocation's failsafe plan with the fuse's (loop.py): the
    derived site must differ from the file's, or that replacement would never happen."""
    config, channel, _, control = inputs()
    channel.submit(limit_request(config, "main", "ems", amps=0, valid_for=60))
    assert control.site_for_cycle(0.0, 0.0) is not control.site


@pytest.mark.parametrize(
    ("kwargs", "status", "field", "allowed"),
    [
        ({"group": "sub", "amps": 10, "valid_for": 5}, 403, "group", "external_limits"),
        ({"group": "nope", "amps": 10, "valid_for": 5}, 422, "group", "allowed: main, sub"),
        ({"amps": 41, "valid_for": 5}, 422, "amps", "0 or 6..40 A"),
        ({"amps": 3, "valid_for": 5}, 422, "amps", "0 or 6..40 A"),
        ({"amps": [10, 10], "valid_for": 5}, 422, "amps", "one, or L1, L2, L3"),
        ({"amps": "ten", "valid_for": 5}, 422, "amps", "not a number"),
        ({"amps": 10, "valid_for": 0}, 422, "valid_for", "1..86400 s"),
        ({"amps": 10, "kw": 5, "valid_for": 5}, 422, "amps", "exactly one"),
        ({"kw": 1000, "valid_for": 5}, 422, "kw", "0..27.6 kW"),
        ({"kw": float("nan"), "valid_for": 5}, 422, "kw", "not a number"),
    ],
)
def test_a_bad_request_names_the_field_and_the_allowed_range(kwargs, status, field, allowed):
    config, *_ = inputs()
    group_name = kwargs.pop("group", "main")
    with pytest.raises(LimitRejected) as caught:
        limit_request(config, group_name, "http", **kwargs)
    assert (caught.value.status, caught.value.field) == (status, field)
    assert allowed in str(caught.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            "on_limit_expiry = 3\n",
            "on_limit_expiry: 3 A is not allowed; allowed: 'fuse', 0, or 6..40",
        ),
        ("peak_kw = 10\n", "peak_kw: the group has no meter"),
        ('external_limits = ["ems", "ems"]\n', "names a source twice"),
    ],
)
def test_control_keys_are_checked_against_the_rest_of_the_site(change, problem):
    text = SITE.format(expiry='"fuse"').replace(
        'external_limits = ["http", "ems"]\non_limit_expiry = "fuse"\n', change
    )
    if "external_limits" not in change:
        text = text.replace("[groups.sub]", 'external_limits = ["http"]\n[groups.sub]', 1)
    _, problems = check_config_text(text, "site.toml")
    assert any(problem in p for p in problems), problems


def test_http_as_a_source_needs_a_write_token():
    text = SITE.format(expiry='"fuse"').replace('token_file = "api.token"\n', "")
    _, problems = check_config_text(text, "site.toml")
    assert any("'http' needs http.token_file" in p for p in problems), problems


def test_ems_as_a_source_needs_the_ems_section():
    text = SITE.format(expiry='"fuse"').replace('[ems]\nlisten = "127.0.0.1:0"\n', "")
    _, problems = check_config_text(text, "site.toml")
    assert any("'ems' needs the [ems] section" in p for p in problems), problems
