"""The site file: examples are valid, every problem is reported with its key path, all at once."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ampgate.cli import daemon_commands as commands
from ampgate.config import check_config, check_config_text, load_config
from ampgate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))

BASE = """
[buses.rs485]
kind = "serial"
port = "/dev/ttyUSB0"

[groups.main]
limit = 32
fallback_load = 10

[chargers.c1]
bus = "rs485"
unit_id = 2
group = "main"
failsafe_current = 6
"""


def problems_of(text: str) -> list[str]:
    site, problems = check_config_text(text, "test.toml")
    assert site is None, "expected the file to be rejected"
    return problems


def test_every_example_is_valid():
    assert len(EXAMPLES) >= 3
    for path in EXAMPLES:
        site, problems = check_config(path)
        assert problems == [], f"{path.name}: {problems}"
        assert site is not None and site.chargers


def test_base_file_is_valid():
    site, problems = check_config_text(BASE, "base.toml")
    assert problems == []
    assert site.chargers["c1"].unit_id == 2
    assert site.groups["main"].limit == (32, 32, 32)


def test_unknown_model_lists_the_models():
    from ampgate.codec import list_models

    (problem,) = problems_of(BASE + 'model = "teltocharge-evc9"\n')
    assert problem.startswith("chargers.c1.model: 'teltocharge-evc9' is not a known model")
    assert "teltocharge-evc2" in problem
    meters = [m for m in list_models() if m != "teltocharge-evc2"]
    assert not any(m in problem for m in meters), "a meter is no model for a charger"


def test_meter_map_is_refused_as_a_charger():
    from ampgate.codec import list_models

    meter = next(m for m in list_models() if m != "teltocharge-evc2")
    (problem,) = problems_of(BASE + f'model = "{meter}"\n')
    assert problem.startswith("chargers.c1.model:") and "not a charger" in problem


def test_unit_id_out_of_range_names_the_range():
    (problem,) = problems_of(BASE.replace("unit_id = 2", "unit_id = 248"))
    assert problem == "chargers.c1.unit_id: 248 is out of range; allowed: 1–247"
    (problem,) = problems_of(BASE.replace("unit_id = 2", "unit_id = 0"))
    assert problem == "chargers.c1.unit_id: 0 is out of range; allowed: 1–247"


def test_two_devices_at_the_same_bus_and_unit_id():
    text = (
        BASE
        + '\n[meters.grid]\nmodel = "eastron-sdm630"\nbus = "rs485"\nunit_id = 2\ngroup = "main"\n'
    )
    (problem,) = problems_of(text)
    assert problem.startswith(
        "chargers.c1.unit_id: 2 on bus 'rs485' is already used by meters.grid"
    )


def test_charger_in_no_group_or_unknown_group():
    (missing,) = problems_of(BASE.replace('group = "main"\n', ""))
    assert missing == "chargers.c1.group: required key is missing"
    (unknown,) = problems_of(BASE.replace('group = "main"', 'group = "garage"'))
    assert unknown == "chargers.c1.group: 'garage' is not a group; allowed: main"


def test_limit_below_six_amps():
    text = BASE.replace("limit = 32", "limit = [32, 5, 32]").replace("load = 10", "load = 0")
    (problem,) = problems_of(text)
    assert problem.startswith("groups.main.limit: L2 5 A below the 6 A a charger needs")


def test_watchdog_shorter_than_three_cycles():
    text = BASE + "\n[dlm]\ncycle_seconds = 2\nwatchdog_seconds = 5\n"
    (problem,) = problems_of(text)
    assert problem == (
        "dlm.watchdog_seconds: 5 s is shorter than 3 cycles of 2.0 s; allowed: >= 6 s"
    )


def test_failsafe_overload_with_rotations_applied():
    # Two 1-phase chargers whose L1 sits on site L2 (one by rotation) plus the fallback load
    # overload L2 only; a third on site L1 does not.
    text = """
[buses.b]
kind = "tcp"
host = "127.0.0.1"
[groups.main]
limit = 25
fallback_load = 12
[chargers.a]
bus = "b"
unit_id = 1
group = "main"
phases = 1
rotation = "L2L3L1"
failsafe_current = 8
[chargers.b]
bus = "b"
unit_id = 2
group = "main"
phases = 1
rotation = "L2L3L1"
failsafe_current = 8
[chargers.c]
bus = "b"
unit_id = 3
group = "main"
phases = 1
failsafe_current = 10
[dlm]
failsafe_policy = "fixed"
"""
    (problem,) = problems_of(text)
    assert problem.startswith("groups.main.limit: L2 25 A would be overloaded")
    assert "a=8, b=8" in problem and "= 28 A" in problem
    # Without the rotation the same currents land on L1 (8 + 8 + 10 + 12 = 38 A).
    (problem,) = problems_of(text.replace('rotation = "L2L3L1"', 'rotation = "L1L2L3"'))
    assert problem.startswith("groups.main.limit: L1 25 A would be overloaded")


def test_fallback_load_alone_above_the_fuse_is_reported():
    problems = problems_of(BASE.replace("fallback_load = 10", "fallback_load = [10, 40, 10]"))
    assert problems == [
        "groups.main.fallback_load: L2 40 A alone exceeds the limit 32 A; allowed: <= limit"
    ]


def test_failsafe_overload_of_a_sub_distribution_under_the_main_fuse():
    text = (
        BASE.replace("failsafe_current = 6", "failsafe_current = 16")
        + """
[groups.sub]
parent = "main"
limit = 20
[chargers.c2]
bus = "rs485"
unit_id = 3
group = "sub"
failsafe_current = 16
[chargers.c3]
bus = "rs485"
unit_id = 4
group = "sub"
failsafe_current = 6
[dlm]
failsafe_policy = "fixed"
"""
    )
    problems = problems_of(text)
    assert any(p.startswith("groups.sub.limit: L1 20 A would be overloaded") for p in problems)
    assert any(p.startswith("groups.main.limit: L1 32 A would be overloaded") for p in problems)
    assert len(problems) == 6  # 2 groups x 3 phases


def test_unknown_keys_are_named_with_the_allowed_keys():
    problems = problems_of(BASE + "colour = 'red'\n\n[dlmm]\ncycle_seconds = 1\n")
    sections = "buses, chargers, dlm, ems, groups, http, log, meters, mqtt, site"
    assert f"dlmm: unknown section; allowed sections: {sections}" in problems
    assert any(
        p.startswith("chargers.c1.colour: unknown key; allowed keys: model, bus, unit_id")
        for p in problems
    )


def test_bad_toml_reports_line_and_column():
    (problem,) = problems_of(BASE + "\n[dlm]\ncycle_seconds = = 1\n")
    assert problem.startswith("test.toml: not valid TOML:")
    assert "line 17" in problem and "column" in problem


def test_several_problems_are_reported_at_once():
    text = """
[buses.rs485]
kind = "serial"
port = "/dev/ttyUSB0"
baudrate = 9601
[groups.main]
limit = 4
[chargers.c1]
model = "nope"
bus = "rs485"
unit_id = 300
group = "main"
[chargers.c2]
bus = "rs486"
unit_id = 5
group = "elsewhere"
rotation = "L1L3L2"
[chargers.c3]
bus = "rs485"
unit_id = 5
group = "main"
[dlm]
cycle_seconds = 5
watchdog_seconds = 10
"""
    problems = problems_of(text)
    wanted = [
        "buses.rs485.baudrate: 9601 is not allowed",
        "chargers.c1.model: 'nope' is not a known model",
        "chargers.c1.unit_id: 300 is out of range; allowed: 1–247",
        "chargers.c2.rotation: 'L1L3L2' is not allowed; allowed: 'L1L2L3', 'L2L3L1' or 'L3L1L2'",
        "chargers.c2.bus: 'rs486' is not a bus; allowed: rs485",
        "chargers.c2.group: 'elsewhere' is not a group; allowed: main",
        "groups.main.limit: L1 4 A, L2 4 A, L3 4 A below the 6 A a charger needs",
        "dlm.watchdog_seconds: 10 s is shorter than 3 cycles of 5.0 s",
    ]
    for start in wanted:
        assert any(p.startswith(start) for p in problems), f"missing {start!r} in {problems}"


def test_load_config_raises_config_error_with_every_problem(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(BASE.replace("unit_id = 2", "unit_id = 999").replace("limit = 32", "limit = 3"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 2
    assert str(path) in str(info.value)


def test_missing_file_is_one_problem(tmp_path):
    site, problems = check_config(tmp_path / "absent.toml")
    assert site is None and len(problems) == 1 and "cannot read the file" in problems[0]


def _ampgate(capsys, *args: str) -> tuple[int, str, str]:
    """Run one of the daemon's subcommands as the CLI would; return (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="ampgate")
    commands.register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(list(args))
    code = parsed.func(parsed)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_command_prints_problems_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace("unit_id = 2", "unit_id = 300") + "colour = 1\n")
    code, _, err = _ampgate(capsys, "check-config", str(path))
    assert code == 2
    assert "2 problem(s)" in err
    assert "chargers.c1.unit_id: 300 is out of range; allowed: 1–247" in err
    assert "chargers.c1.colour: unknown key" in err


def test_check_config_command_summarises_a_valid_site(capsys):
    example = ROOT / "examples" / "six-chargers-siemens-tcp.toml"
    code, out, err = _ampgate(capsys, "check-config", str(example))
    assert code == 0, err
    assert "valid" in out and "carpark" in out and "siemens-7km2200" in out
    assert "failsafe plan" in out
    assert out.index("main:") < out.index("carpark:")  # the tree: sub-distribution under main


def test_daemon_refuses_to_start_on_an_invalid_file(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace("unit_id = 2", "unit_id = 300"))
    path.write_text(BASE.replace("unit_id = 2", "unit_id = 300") + "colour = 1\n")
    code, out, err = _ampgate(capsys, "run", "--config", str(path))
    assert code == 2
    assert "refusing to start" in err
    assert "chargers.c1.unit_id: 300 is out of range" in err
    assert "chargers.c1.colour: unknown key" in err
    assert "daemon_started" not in out + err


def test_dlm_dynamics_keys_reach_the_engine_and_are_range_checked():
    from ampgate.config.to_engine import engine_settings

    text = BASE + (
        "\n[dlm]\nphase_switch_timeout_seconds = 45\nphase_switch_retry_seconds = 600\n"
        "overdraw_margin_amps = 3\noverdraw_pause_seconds = 20\nmeter_frozen_change_amps = 8\n"
    )
    site, problems = check_config_text(text, "dyn.toml")
    assert problems == []
    settings = engine_settings(site)
    assert (settings.phase_switch_timeout_s, settings.phase_switch_retry_s) == (45, 600)
    assert (settings.overdraw_margin_a, settings.overdraw_pause_s) == (3, 20)
    assert settings.meter_frozen_change_a == 8
    (problem,) = problems_of(BASE + "\n[dlm]\noverdraw_margin_amps = 0.1\n")
    assert problem.startswith("dlm.overdraw_margin_amps") and "0.5" in problem


def test_every_engine_setting_and_group_feature_has_a_site_file_key():
    from dataclasses import fields

    from ampgate.config.to_engine import build_site, engine_settings
    from ampgate.dlm import EngineSettings

    site, problems = check_config_text(BASE, "base.toml")
    assert problems == []
    defaults = engine_settings(site)
    # the site file's defaults are the engine's defaults, for every knob
    assert defaults == EngineSettings(), [
        f.name
        for f in fields(EngineSettings)
        if getattr(defaults, f.name) != getattr(EngineSettings(), f.name)
    ]
    changed = {
        "increase_margin_amps": ("increase_margin_a", 1.0),
        "restart_margin_amps": ("restart_margin_a", 2.0),
        "underdraw_margin_amps": ("underdraw_margin_a", 3.0),
        "underdraw_settle_seconds": ("underdraw_settle_s", 45.0),
        "phase_switch_interval_seconds": ("phase_switch_interval_s", 600.0),
        "fairness_rotation_seconds": ("fairness_rotation_s", 900.0),
        "failsafe_rotation_seconds": ("failsafe_rotation_s", 7200.0),
        "phase_use_threshold_amps": ("phase_use_threshold_a", 2.0),
        "reading_skew_seconds": ("reading_skew_s", 0.2),
        "estimate_tolerance_amps": ("estimate_tolerance_a", 1.0),
    }
    text = BASE + "\n[dlm]\n" + "".join(f"{k} = {v}\n" for k, (_, v) in changed.items())
    site, problems = check_config_text(text, "knobs.toml")
    assert problems == []
    settings = engine_settings(site)
    assert {name: getattr(settings, name) for name, _ in changed.values()} == dict(changed.values())
    grouped = BASE.replace(
        "[groups.main]\n",
        "[groups.main]\npower_cap_kw = 11\nnominal_voltage = 220\nmax_imbalance = 16\n",
    )
    site, problems = check_config_text(grouped, "caps.toml")
    assert problems == []
    (group,) = build_site(site).groups
    assert (group.power_cap_kw, group.nominal_voltage, group.max_imbalance) == (11, 220, 16)
    (problem,) = problems_of(BASE + "\n[dlm]\nincrease_margin_amps = 9\n")
    assert problem.startswith("dlm.increase_margin_amps") and "5" in problem


def test_phase_switching_off_keeps_a_switchable_charger_on_its_phases():
    from ampgate.codec import Reading
    from ampgate.devices.charger import charger_slow_from
    from ampgate.gateway.inputs import charger_reading
    from ampgate.gateway.runtime import ChargerRuntime

    text = BASE.replace("unit_id = 2\n", 'unit_id = 2\nphase_switching = "off"\n', 1)
    site, problems = check_config_text(text, "off.toml")
    assert problems == [], problems
    (name,) = [n for n, c in site.chargers.items() if c.phase_switching == "off"]

    rt = ChargerRuntime(name=name, device=None, config=site.chargers[name])
    rt.slow = charger_slow_from(
        {"phase_change_possible": Reading("phase_change_possible", 1, 1, None)}
    )
    assert rt.slow.phase_change_possible is True  # the charger says it can switch
    assert charger_reading(rt, site, 0.0).phase_change_possible is False
    (problem,) = problems_of(
        BASE.replace("unit_id = 2\n", 'unit_id = 2\nphase_switching = "never"\n', 1)
    )
    assert "phase_switching" in problem and "'auto'" in problem


def test_check_config_prints_every_effective_dlm_value(capsys, tmp_path):
    example = ROOT / "examples" / "six-chargers-siemens-tcp.toml"
    code, out, _ = _ampgate(capsys, "check-config", str(example))
    assert code == 0
    from ampgate.config import DlmConfig

    for key in DlmConfig.model_fields:
        assert f"  {key} = " in out, key
    capped = tmp_path / "capped.toml"
    capped.write_text(
        BASE.replace("[groups.main]\n", "[groups.main]\npower_cap_kw = 11\nmax_imbalance = 16\n")
    )
    code, out, err = _ampgate(capsys, "check-config", str(capped))
    assert code == 0, err
    assert "power cap 11 kW at 230 V, max imbalance 16 A" in out


def test_check_config_prints_the_control_inputs(capsys, tmp_path):
    text = BASE.replace(
        "fallback_load = 10\n",
        'fallback_load = 10\nexternal_limits = ["ems"]\non_limit_expiry = 8\npeak_kw = 9\n',
    )
    text += '[meters.grid]\nmodel = "eastron-sdm630"\nbus = "rs485"\nunit_id = 1\ngroup = "main"\n'
    text += '[ems]\nlisten = "127.0.0.1:1502"\n'
    site = tmp_path / "control.toml"
    site.write_text(text)
    code, out, err = _ampgate(capsys, "check-config", str(site))
    assert code == 0, err
    assert "external limits from ems (on expiry: 8 A)" in out
    assert "quarter-hour peak 9 kW (aligned)" in out
    assert "EMS Modbus server on 127.0.0.1:1502, unit id 1" in out
