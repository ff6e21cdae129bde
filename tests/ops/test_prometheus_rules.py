"""The example Prometheus config and alerts: promtool check, promtool rule unit tests, and every
metric they use is one the collector exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import exposed_metric_names

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "examples" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus)"
)
METRIC = re.compile(r"\bampgate_[a-z0-9_]+")


def _promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_rules_and_config_pass_promtool():
    rules = _promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = _promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_expressions_use_only_exposed_metrics():
    exposed = exposed_metric_names()
    # No YAML parser in the dependencies: every ampgate_* token in the file is a metric name.
    text = (PROM / "alerts.yml").read_text()
    assert text.count("- alert:") >= 6
    used = set(METRIC.findall(text))
    assert used, "no ampgate metric referenced"
    assert used <= exposed, f"not exposed by the collector: {sorted(used - exposed)}"


RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ampgate_device_up{{job="ampgate",instance="gw",device="c1"}}'
        values: '1 1 0 0 0 0 0'
      - series: 'ampgate_dlm_meter_stale{{job="ampgate",instance="gw",group="main"}}'
        values: '0 1 1 1 1 1 1'
      - series: 'ampgate_charger_error_active{{job="ampgate",instance="gw",device="c1",bit="4",
          name="overcurrent",ocpp_error_code="OverCurrentFailure"}}'
        values: '0 0 1 1 1 1 1'
      - series: 'ampgate_dlm_overload_detected_total{{job="ampgate",instance="gw"}}'
        values: '0 0 0 1 1 1 1'
      - series: 'ampgate_loop_last_iteration_timestamp_seconds{{job="ampgate",instance="gw"}}'
        values: '0 60 120 120 120 120 120'
      - series: 'up{{job="ampgate",instance="gw"}}'
        values: '1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 5m
        alertname: AmpgateDeviceDown
        exp_alerts:
          - exp_labels: {{severity: warning, job: ampgate, instance: gw, device: c1}}
      - eval_time: 1m
        alertname: AmpgateDeviceDown
        exp_alerts: []
      - eval_time: 4m
        alertname: AmpgateMeterStaleFallback
        exp_alerts:
          - exp_labels: {{severity: warning, job: ampgate, instance: gw, group: main}}
      - eval_time: 5m
        alertname: AmpgateChargerErrorActive
        exp_alerts:
          - exp_labels: {{severity: critical, job: ampgate, instance: gw, device: c1, bit: "4",
                         name: overcurrent, ocpp_error_code: OverCurrentFailure}}
      - eval_time: 4m
        alertname: AmpgateOverloadDetected
        exp_alerts:
          - exp_labels: {{severity: critical, job: ampgate, instance: gw}}
      - eval_time: 6m
        alertname: AmpgateLoopStalled
        exp_alerts:
          - exp_labels: {{severity: critical, job: ampgate, instance: gw}}
      - eval_time: 6m
        alertname: AmpgateScrapeAbsent
        exp_alerts: []
"""


def _without_annotations(rules_text: str) -> str:
    """promtool compares annotations too; the tests check when and with which labels alerts fire."""
    return re.sub(r"\n        annotations:\n(?:(?: {10,}.*)?\n)*", "\n", rules_text)


def _alert_tests(tmp_path: Path, rules_text: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "alerts.yml").write_text(_without_annotations(rules_text))
    (tmp_path / "tests.yml").write_text(RULE_TESTS.format(rules="alerts.yml"))
    return _promtool("test", "rules", "tests.yml", cwd=tmp_path)


@needs_promtool
def test_alerts_fire_on_the_conditions_they_describe(tmp_path):
    text = (PROM / "alerts.yml").read_text()
    stripped = _without_annotations(text)
    assert stripped.count("- alert:") == text.count("- alert:")
    assert "annotations" not in stripped and stripped.count("expr:") == text.count("expr:")
    result = _alert_tests(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rule_tests_catch_a_broken_alert(tmp_path):
    broken = (
        (PROM / "alerts.yml")
        .read_text()
        .replace("ampgate_device_up == 0", "ampgate_device_up == 2")
    )
    assert _alert_tests(tmp_path, broken).returncode != 0
