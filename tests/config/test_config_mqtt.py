"""The ``[mqtt]`` section: absent = off, defaults that follow the site name and TLS, every
problem named by its key with what is allowed, and check-config printing the effective values
(never the password)."""

from __future__ import annotations

import argparse

import pytest

from ampgate.cli import daemon_commands as commands
from ampgate.config import check_config, check_config_text
from config.test_config import BASE as CONFIG_BASE

BASE = '[site]\nname = "Depot North"\n' + CONFIG_BASE


def mqtt_problems_of(section: str) -> list[str]:
    site, problems = check_config_text(BASE + "[mqtt]\n" + section, "test.toml")
    assert site is None, "expected the file to be rejected"
    return problems


def test_absent_is_off_and_the_defaults_follow_the_site_name_and_tls():
    site, problems = check_config_text(BASE, "test.toml")
    assert problems == [] and site is not None and site.mqtt is None
    site, problems = check_config_text(BASE + '[mqtt]\nhost = "broker.lan"\n', "test.toml")
    assert problems == [] and site is not None and site.mqtt is not None
    mqtt = site.mqtt
    assert mqtt.effective_port() == 1883 and mqtt.qos == 1
    assert mqtt.effective_topic_prefix(site.site.name) == "ampgate/Depot_North"
    assert mqtt.effective_client_id(site.site.name) == "ampgate-Depot_North"
    assert mqtt.homeassistant_discovery is True and mqtt.discovery_prefix == "homeassistant"
    site, _ = check_config_text(BASE + '[mqtt]\nhost = "b"\ntls = true\n', "test.toml")
    assert site is not None and site.mqtt is not None and site.mqtt.effective_port() == 8883
    text = BASE + '[mqtt]\nhost = "b"\ntls = true\nport = 1884\ntopic_prefix = "x/y"\n'
    site, _ = check_config_text(text, "test.toml")
    assert site is not None and site.mqtt is not None
    assert site.mqtt.effective_port() == 1884
    assert site.mqtt.effective_topic_prefix("Depot North") == "x/y"


@pytest.mark.parametrize("prefix", ["a/+/b", "a/#", "/a", "a/", "a//b", ""])
def test_a_topic_prefix_with_wildcards_or_empty_levels_is_refused(prefix):
    (problem,) = mqtt_problems_of(f'host = "b"\ntopic_prefix = "{prefix}"\n')
    assert problem.startswith("mqtt.topic_prefix: ") and "allowed" in problem, problem


def test_every_problem_of_the_section_at_once():
    problems = mqtt_problems_of('port = 0\nqos = 3\ncolour = "red"\ndiscovery_prefix = "h/#"\n')
    assert "mqtt.host: required key is missing" in problems
    assert "mqtt.port: 0 is out of range; allowed: 1–65535" in problems
    assert "mqtt.qos: 3 is not allowed; allowed: 0, 1 or 2" in problems
    assert any(
        p.startswith("mqtt.colour: unknown key; allowed keys: host, port,") for p in problems
    )
    assert any(p.startswith("mqtt.discovery_prefix: 'h/#' has a wildcard") for p in problems)
    assert len(problems) == 5, problems


def test_password_and_ca_files_must_be_readable_and_make_sense(tmp_path):
    missing = tmp_path / "absent.txt"
    (problem,) = mqtt_problems_of(f'host = "b"\nusername = "u"\npassword_file = "{missing}"\n')
    assert problem.startswith(f"mqtt.password_file: cannot read '{missing}' (No such file")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    (problem,) = mqtt_problems_of(f'host = "b"\nusername = "u"\npassword_file = "{empty}"\n')
    assert problem.startswith("mqtt.password_file: ") and "is empty" in problem
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    (problem,) = mqtt_problems_of(f'host = "b"\npassword_file = "{secret}"\n')
    assert problem.startswith("mqtt.password_file: set without mqtt.username")
    (problem,) = mqtt_problems_of(f'host = "b"\nca_file = "{secret}"\n')
    assert (
        problem == "mqtt.ca_file: set while mqtt.tls is false; allowed: tls = true, or no ca_file"
    )
    (problem,) = mqtt_problems_of(f'host = "b"\ntls = true\nca_file = "{missing}"\n')
    assert problem.startswith(f"mqtt.ca_file: cannot read '{missing}'")


def test_a_relative_password_file_is_taken_from_the_site_files_folder(tmp_path, monkeypatch):
    from ampgate.config.mqtt_rules import read_password

    (tmp_path / "mqtt.pass").write_text("s3cret\nignored second line\n")
    path = tmp_path / "site.toml"
    path.write_text(BASE + '[mqtt]\nhost = "b"\nusername = "u"\npassword_file = "mqtt.pass"\n')
    monkeypatch.chdir("/")
    site, problems = check_config(path)
    assert problems == [] and site is not None and site.mqtt is not None
    assert read_password(site.mqtt, site.source) == "s3cret"


def test_check_config_prints_the_effective_mqtt_settings_but_not_the_password(tmp_path, capsys):
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret-value\n")
    path = tmp_path / "site.toml"
    path.write_text(
        BASE + f'[mqtt]\nhost = "broker.lan"\nusername = "ampgate"\npassword_file = "{secret}"\n'
    )
    parser = argparse.ArgumentParser(prog="ampgate")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["check-config", str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "mqtt to broker.lan:1883 (tls off), user ampgate" in out
    assert f"(password from {secret})" in out and "s3cret-value" not in out
    assert "client id ampgate-Depot_North, qos 1" in out
    assert "topics under ampgate/Depot_North" in out and "at most every 5 s" in out
    assert "Home Assistant discovery under homeassistant" in out
