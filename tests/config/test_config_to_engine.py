"""One validator: every site file the config validator accepts gives the engine a valid site.

``ampgate.dlm.check_site`` is the engine's own check; ``build_site`` runs it where the engine's
values are built. Random site files (fuse trees, chargers, settings, in and out of range) are
either refused by the site-file validator, each problem naming its key path and what is allowed,
or build without a ConfigError.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.config import check_config_data
from ampgate.config.to_engine import build_site

amps = st.one_of(st.integers(-5, 200), st.floats(-5, 200, allow_nan=False))
per_phase = st.one_of(amps, st.lists(amps, min_size=3, max_size=3))


@st.composite
def site_files(draw: st.DrawFn) -> dict:
    n_groups = draw(st.integers(1, 4))
    groups = {}
    for i in range(n_groups):
        group: dict = {"limit": draw(per_phase)}
        if i and draw(st.booleans()):
            group["parent"] = f"g{draw(st.integers(0, n_groups - 1))}"  # loops possible
        for key in ("headroom", "fallback_load", "operator_limit"):
            if draw(st.booleans()):
                group[key] = draw(per_phase)
        groups[f"g{i}"] = group
    chargers = {}
    for i in range(draw(st.integers(1, 5))):
        charger: dict = {
            "bus": "lan",
            "unit_id": draw(st.integers(0, 250)),
            "group": f"g{draw(st.integers(0, n_groups))}",
        }
        for key, values in (
            ("min_current", st.integers(0, 40)),
            ("max_current", st.integers(0, 40)),
            ("failsafe_current", st.integers(0, 40)),
            ("priority", st.integers(-1, 101)),
            ("phases", st.sampled_from([1, 2, 3])),
            ("rotation", st.sampled_from(["L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2"])),
        ):
            if draw(st.booleans()):
                charger[key] = draw(values)
        chargers[f"c{i}"] = charger
    dlm = {}
    for key, values in (
        ("cycle_seconds", st.floats(0, 70, allow_nan=False)),
        ("ramp_up_amps_per_second", st.floats(-1, 120, allow_nan=False)),
        ("hysteresis_amps", st.integers(-1, 12)),
        ("watchdog_seconds", st.integers(0, 700)),
        ("failsafe_policy", st.sampled_from(["share", "fixed"])),
    ):
        if draw(st.booleans()):
            dlm[key] = draw(values)
    data = {
        "buses": {"lan": {"kind": "tcp", "host": "127.0.0.1", "port": 502}},
        "groups": groups,
        "chargers": chargers,
        "dlm": dlm,
    }
    if draw(st.booleans()):
        meter_group = f"g{draw(st.integers(0, n_groups - 1))}"
        data["meters"] = {
            "m": {"model": "eastron-sdm630", "bus": "lan", "unit_id": 100, "group": meter_group}
        }
    return data


KEY_PATH = re.compile(r"^(site|buses|groups|meters|chargers|dlm|metrics|log)(\.[A-Za-z0-9_-]+)*: ")
CATALOGUE = {"teltocharge-evc2": "charger", "eastron-sdm630": "meter"}


@settings(max_examples=300, deadline=None)
@given(site_files())
def test_an_accepted_site_file_builds_a_valid_engine_site(data):
    config, problems = check_config_data(data, "site.toml", CATALOGUE)
    if config is None:
        assert problems
        for problem in problems:  # each names its key path and what is allowed
            assert KEY_PATH.match(problem), problem
            assert "allowed" in problem, problem
        return
    site = build_site(config)  # raises ConfigError if the engine's own check disagrees
    assert {c.id for c in site.chargers} == set(data["chargers"])
