"""The shipped Datadog dashboard and monitors (datadog/*.json) query only metrics and tags we emit.

What we emit is observed, not listed: a batch with a small-model success, a fallback to the frontier
and an error goes through ingest and the real mirror (billing/datadog.py) to a UDP socket, and every
metric name, tag key and filtered tag value the JSON uses must have arrived there.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from tests.billing import test_datadog
from tests.billing.conftest import make_record
from tests.billing.test_datadog import ingest_and_mirror, received

agent = test_datadog.agent  # the fake DogStatsD agent fixture

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2] / "docs" / "datadog"
METRIC = re.compile(
    r"\b(?:sum|avg|min|max|count|p50|p75|p90|p95|p99):(?P<metric>[\w.]+)\{(?P<filter>[^}]*)\}"
    r"(?:\s*by\s*\{(?P<by>[^}]*)\})?"
)


def _queries() -> list[str]:
    dashboard = json.loads((ROOT / "dashboard.json").read_text())
    monitors = json.loads((ROOT / "monitors.json").read_text())
    found = [
        q["query"]
        for widget in dashboard["widgets"]
        for request in widget["definition"].get("requests", [])
        for q in request.get("queries", [])
    ]
    return found + [m["query"] for m in monitors]


def _references() -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """(metric names, tag keys, (key, value) filters) the dashboard and monitors use."""
    dashboard = json.loads((ROOT / "dashboard.json").read_text())
    variables = {v["name"]: v["prefix"] for v in dashboard["template_variables"]}
    metrics, keys, filters = set(), set(), set()
    for query in _queries():
        matches = list(METRIC.finditer(query))
        assert matches, f"no metric query recognised in {query!r}"
        for m in matches:
            metrics.add(m["metric"])
            for part in filter(None, (p.strip() for p in m["filter"].split(","))):
                if part == "*":
                    continue
                if part.startswith("$"):
                    keys.add(variables[part[1:]])
                else:
                    key, value = part.split(":", 1)
                    keys.add(key)
                    filters.add((key, value))
            keys.update(p.strip() for p in (m["by"] or "").split(",") if p.strip())
    return metrics, keys, filters


def test_dashboard_and_monitors_cover_what_the_issue_asks_for():
    metrics, keys, filters = _references()
    text = (ROOT / "dashboard.json").read_text()
    assert {"finops.spend.cost_usd", "finops.spend.savings_usd", "finops.spend.fallbacks"} <= metrics
    assert {"finops.spend.requests", "finops.spend.latency_ms"} <= metrics
    assert {"team", "feature", "model", "route"} <= keys and ("route", "small") in filters
    assert '"value": "y = 20"' in text  # the 20 % fallback line
    monitors = json.loads((ROOT / "monitors.json").read_text())
    assert any("> 20" in m["query"] and "by {feature}" in m["query"] for m in monitors)
    assert any("anomalies(" in m["query"] and "cost_usd" in m["query"] for m in monitors)


def test_every_metric_and_tag_referenced_is_emitted(
    client,
    proxy,
    feature,
    agent,
    django_capture_on_commit_callbacks,
):
    records = [
        make_record(cost_usd=Decimal("0.001"), baseline_cost_usd=Decimal("0.01")),
        make_record(call_id="fb", status="error", cost_usd=Decimal("0")),
        make_record(
            call_id="fb",
            attempt=2,
            route="small",
            model_group="frontier",
            deployment="openai/gpt-4o",
            fallback=True,
            fallback_reason="timeout",
            cost_usd=Decimal("0.02"),
            baseline_cost_usd=Decimal("0.02"),
        ),
    ]
    ingest_and_mirror(client, records, django_capture_on_commit_callbacks)
    lines = received(agent)
    emitted_metrics = {name for name, _, _, _ in lines}
    emitted_tags = {tag.split(":", 1)[0] for _, _, _, tags in lines for tag in tags}
    emitted_pairs = {tuple(tag.split(":", 1)) for _, _, _, tags in lines for tag in tags}
    metrics, keys, filters = _references()
    assert metrics <= emitted_metrics, f"referenced but never emitted: {sorted(metrics - emitted_metrics)}"
    assert keys <= emitted_tags, f"tags referenced but never emitted: {sorted(keys - emitted_tags)}"
    assert filters <= emitted_pairs, (
        f"tag values referenced but never emitted: {sorted(filters - emitted_pairs)}"
    )
