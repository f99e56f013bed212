"""Requests rebuilt from attempts: a fallback is one request with its reason, total cost and latency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing import selectors
from tests.billing.conftest import issue_key, make_record, post_batch

pytestmark = pytest.mark.django_db

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _request(call_id: str, *, features=None):
    """The request with this call id as the request log lists it (None if it does not list it)."""
    now = datetime.now(UTC)
    listed = selectors.request_list(
        start=now - timedelta(days=1), end=now + timedelta(days=1), features=features
    )
    return next((r for r in listed if r.call_id == call_id), None)


def _timeout_then_frontier(call_id: str):
    slm = make_record(
        call_id=call_id,
        attempt=1,
        start_time=T0,
        latency_ms=1500,
        status="error",
        error_class="Timeout",
        output_tokens=0,
        cost_usd=Decimal("0"),
        baseline_cost_usd=Decimal("0.0003"),
    )
    frontier = make_record(
        call_id=call_id,
        attempt=2,
        start_time=T0 + timedelta(milliseconds=1502),
        latency_ms=900,
        model_group="frontier",
        deployment="anthropic/claude-sonnet-4-5",
        fallback=True,
        fallback_reason="timeout",
        cost_usd=Decimal("0.0006"),
        baseline_cost_usd=Decimal("0.0006"),
    )
    return slm, frontier


def test_slm_timeout_then_frontier_success_is_one_request_with_reason_timeout(client, proxy, feature):
    slm, frontier = _timeout_then_frontier("call-fallback-1")
    # the two attempts arrive in different batches, frontier first
    assert post_batch(client, [frontier]).json()["accepted"] == 1
    assert post_batch(client, [slm, make_record(call_id="call-plain")]).json()["accepted"] == 2

    request = _request("call-fallback-1")
    assert request is not None
    assert [a.attempt for a in request.attempts] == [1, 2]
    assert request.route == "small"
    assert request.served_model == "anthropic/claude-sonnet-4-5"
    assert request.status == "success"
    assert request.fallback is True
    assert request.fallback_reason == "timeout"
    assert request.cost_usd == Decimal("0.0006")
    assert request.baseline_cost_usd == Decimal("0.0006")  # the served attempt's estimate only
    assert request.latency_ms == 1500 + 2 + 900

    listed = selectors.request_list(start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1))
    assert [r.call_id for r in listed].count("call-fallback-1") == 1
    only_fallbacks = selectors.request_list(
        start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1), fallback_only=True
    )
    assert [r.call_id for r in only_fallbacks] == ["call-fallback-1"]


def test_request_scoped_to_features(client, proxy, feature, other_feature):
    issue_key(other_feature)
    post_batch(client, [make_record(call_id="growth-call", team="growth", feature="email-copy")])
    assert _request("growth-call", features=[feature]) is None
    assert _request("growth-call", features=[other_feature]).feature_id == other_feature.pk


def test_low_confidence_escalation_keeps_one_baseline(client, proxy, feature):
    slm = make_record(call_id="esc", attempt=1, confidence=-2.5, baseline_cost_usd=Decimal("0.0005"))
    escalated = make_record(
        call_id="esc",
        attempt=2,
        model_group="frontier",
        deployment="anthropic/claude-sonnet-4-5",
        fallback=True,
        fallback_reason="low_confidence",
        cost_usd=Decimal("0.0007"),
        baseline_cost_usd=Decimal("0.0007"),
    )
    post_batch(client, [slm, escalated])
    request = _request("esc")
    assert request.served_model == "anthropic/claude-sonnet-4-5"
    assert request.fallback_reason == "low_confidence"
    assert request.cost_usd == Decimal("0.0000120000") + Decimal("0.0007")
    assert request.baseline_cost_usd == Decimal("0.0005")
