"""The example Grafana dashboard: valid JSON; its PromQL uses only metrics the collector exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from .conftest import exposed_metric_names

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "ampgate-dashboard.json"
METRIC = re.compile(r"\bampgate_[a-z0-9_]+")


def _promql(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, expression) for every Prometheus query: panel targets, variables, annotations."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == "prometheus":
                yield panel["title"], target["expr"]
    for var in dashboard["templating"]["list"]:
        yield f"variable {var['name']}", var["definition"]
    for annotation in dashboard["annotations"]["list"]:
        yield f"annotation {annotation['name']}", annotation["expr"]


def test_dashboard_queries_reference_only_exposed_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = exposed_metric_names()
    queries = list(_promql(dashboard))
    assert len(queries) >= 15
    for where, expr in queries:
        used = set(METRIC.findall(expr))
        assert used, f"{where}: {expr!r} uses no ampgate metric"
        assert used <= exposed, f"{where}: {sorted(used - exposed)} not exposed"


def test_dashboard_has_the_promised_views_and_unique_ids():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for needed in ("vs limit", "Setpoint and draw", "Device up", "Events"):
        assert needed in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(e for _, e in _promql(dashboard))
    assert "ampgate_dlm_limit_amperes" in exprs and "ampgate_charger_setpoint_amperes" in exprs
