"""Each feature learns from its own outcomes: labels from ingested spend and feedback, a scheduled fit saved as a
proposal, approval into the feature's policy, and the compiled bundle the proxies validate."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.utils import timezone

from controlplane.models import AuditEntry
from routing import compiler, tasks
from routing.engine.adjustment import ScoreAdjustment
from routing.engine.bundle import Bundle as EngineBundle
from routing.models import AdjustmentProposal, AdjustmentStatus, Feedback, RoutingPolicy
from routing.schedule import BEAT_SCHEDULE
from routing.services import adjustments, policy_update
from tests.billing.conftest import PROXY_TOKEN, issue_key, make_record, post_batch
from tests.factories import ProxyFactory
from tests.routing.fleet_support import make_routing

QUANT = {"quantitative_task": 0.6931, "lookup_question": 1.0}
ROUTINE = {"transform_task": 1.0}
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def routing(feature, users):
    small, frontier, default = make_routing(actor=users["admin"])
    policy_update(actor=users["admin"], policy=default, threshold=Decimal("0.5"))
    issue_key(feature)
    ProxyFactory(token=PROXY_TOKEN, name="proxy-a")
    return default


def _compiled() -> dict:
    result = compiler.compile_bundle(version="v-test", created_at="2026-11-20T12:00:00+00:00")
    assert result.errors == []
    return result.document


def _outcomes(client, feature, calls: int, *, seed: int = 1) -> dict[str, int]:
    """A feature whose small model fails on most quantitative asks and handles routine ones; all scored 0.3."""
    rng = random.Random(seed)
    records, ratings, counts = [], [], {"fell": 0, "bad": 0, "good": 0}
    start = NOW - timedelta(days=1)
    for i in range(calls):
        quantitative = i % 2 == 0
        call_id = uuid.uuid4().hex
        at = start + timedelta(seconds=30 * i)
        first = {"call_id": call_id, "start_time": at, "score": 0.3, "threshold": 0.5, "bundle_version": ""}
        signals = QUANT if quantitative else ROUTINE
        if quantitative and rng.random() < 0.6:
            records.append(make_record(**first, signals=signals, status="error", error_class="Timeout"))
            records.append(
                make_record(
                    **{**first, "start_time": at + timedelta(seconds=1)},
                    attempt=2,
                    route="small",
                    model_group="frontier",
                    fallback=True,
                    fallback_reason="timeout",
                    signals=signals,
                )
            )
            counts["fell"] += 1
            continue
        records.append(make_record(**first, signals=signals))
        if quantitative:
            ratings.append((call_id, 1))
            counts["bad"] += 1
        elif rng.random() < 0.8:
            ratings.append((call_id, 5))
            counts["good"] += 1
    for offset in range(0, len(records), 500):
        response = post_batch(client, records[offset : offset + 500])
        assert response.status_code == 200 and not response.json()["rejected"], response.json()
    Feedback.objects.bulk_create(Feedback(feature=feature, call_id=c, score=s) for c, s in ratings)
    return counts


@pytest.mark.django_db
def test_labels_come_from_failures_escalations_and_feedback():
    def call(route="small", fell=False, status="success", score=0.3, threshold=0.5, reason="score"):
        return SimpleNamespace(
            route=route,
            small_model_fallback=fell,
            status=status,
            score=score,
            threshold=threshold,
            decision_reason=reason,
        )

    assert adjustments.call_label(call(fell=True), None) == 1  # timeout, error or low confidence
    assert adjustments.call_label(call(), 1) == 1 and adjustments.call_label(call(), 2) == 1
    assert adjustments.call_label(call(), 5) == 0 and adjustments.call_label(call(), 4) == 0
    assert adjustments.call_label(call(), 3) is None and adjustments.call_label(call(), None) is None
    # a frontier answer rated well on an ask the small model would have got (scored under the threshold)
    assert adjustments.call_label(call(route="frontier"), 5) == 0
    assert adjustments.call_label(call(route="frontier", score=0.7), 5) is None
    # ... unless an open breaker sent it up: an outage says nothing about the ask
    assert adjustments.call_label(call(route="frontier", reason="slm_unavailable"), 5) is None
    assert adjustments.call_label(call(route="frontier"), 1) is None


def test_the_fit_is_scheduled_daily_with_an_expiry():
    entry = BEAT_SCHEDULE["routing-adjustments-propose"]
    assert entry["task"] == "routing.tasks.adjustments_propose"
    assert entry["options"]["expires"] > 0


@pytest.mark.django_db
def test_the_scheduled_fit_proposes_an_adjustment_that_sends_the_failing_kind_to_the_frontier(
    client, routing, feature, time_machine
):
    time_machine.move_to(NOW, tick=False)
    counts = _outcomes(client, feature, 160)
    outcomes = adjustments.feature_outcomes(feature=feature)
    assert outcomes.labelled == counts["fell"] + counts["bad"] + counts["good"]
    assert len(outcomes.calls) == 160

    tasks.adjustments_propose()  # what beat runs
    proposal = AdjustmentProposal.objects.get(feature=feature, status=AdjustmentStatus.PROPOSED)
    assert proposal.labels == outcomes.labelled and proposal.needed_labels == counts["fell"] + counts["bad"]
    adjustment = ScoreAdjustment.from_dict(proposal.adjustment)
    weights = {s.name: s.weight for s in adjustment.signals}
    assert weights["quantitative_task"] > 0 > weights["transform_task"]
    # never applied by the job: the policy is untouched until MLOps approves
    assert not RoutingPolicy.objects.filter(feature=feature).exists()

    scored = adjustments.adjusted_scores(outcomes, adjustment)
    quantitative = [
        s for s, c in zip(scored, outcomes.calls, strict=True) if "quantitative_task" in c.signals
    ]
    routine = [s for s, c in zip(scored, outcomes.calls, strict=True) if "transform_task" in c.signals]
    assert min(quantitative) >= 0.5 > max(routine)

    whatif = proposal.whatif
    assert whatif["threshold"] == 0.5 and whatif["calls"] == 160
    current, proposed = whatif["current"], whatif["proposed"]
    assert current["small_share"] == 1.0 and proposed["small_share"] == 0.5
    assert proposed["fallback_rate"] < current["fallback_rate"]
    assert current["needed_kept_small"] == 1.0 and proposed["needed_kept_small"] == 0.0
    assert Decimal(proposed["savings_usd"]) > 0

    # the next fit replaces the open proposal: one open proposal per feature
    tasks.adjustments_propose()
    assert AdjustmentProposal.objects.filter(feature=feature, status=AdjustmentStatus.PROPOSED).count() == 1
    assert AdjustmentProposal.objects.get(pk=proposal.pk).status == AdjustmentStatus.SUPERSEDED


@pytest.mark.django_db
def test_too_few_labels_propose_nothing(client, routing, feature, time_machine):
    time_machine.move_to(NOW, tick=False)
    _outcomes(client, feature, 40)
    assert adjustments.feature_outcomes(feature=feature).labelled < adjustments.MIN_LABELS
    assert adjustments.adjustment_propose(feature=feature) is None
    assert not AdjustmentProposal.objects.exists()


@pytest.mark.django_db
def test_approval_writes_the_policy_draft_and_only_a_compiled_bundle_carries_it(
    client, routing, feature, users, time_machine
):
    time_machine.move_to(NOW, tick=False)
    _outcomes(client, feature, 160)
    proposal = adjustments.adjustment_propose(feature=feature)
    before = _compiled()
    assert "scorer_adjustment" not in str(before)

    policy = adjustments.adjustment_approve(actor=users["mlops"], proposal=proposal)
    assert policy.feature == feature and policy.scorer_adjustment == proposal.adjustment
    assert policy.threshold is None  # an inheriting override: the default's threshold still applies
    proposal.refresh_from_db()
    assert proposal.status == AdjustmentStatus.APPROVED and proposal.decided_by == users["mlops"]
    entry = AuditEntry.objects.filter(object_type__icontains="routingpolicy").latest("pk")
    assert (
        entry.changes["scorer_adjustment"] == [None, proposal.adjustment] and entry.team_id == feature.team_id
    )
    with pytest.raises(ValueError, match="only an open proposal"):
        adjustments.adjustment_approve(actor=users["mlops"], proposal=proposal)
    # the next day's fit on the same outcomes routes nothing differently: no new proposal to decide on
    assert adjustments.adjustment_propose(feature=feature) is None

    document = _compiled()
    assert document["policies"][feature.slug]["scorer_adjustment"] == proposal.adjustment
    # the publish preview shows the reviewer what ships
    changes = compiler.bundle_diff(before, document)
    assert [(c.path, c.kind) for c in changes] == [(f"$.policies.{feature.slug}", "added")]
    assert changes[0].after == {"scorer_adjustment": proposal.adjustment}
    bundle = EngineBundle.from_json(document)  # what a proxy validates on load
    assert bundle.policy_for(feature.slug).scorer_adjustment == ScoreAdjustment.from_dict(proposal.adjustment)
    assert bundle.policy_for(feature.slug).threshold == 0.5
    assert bundle.policy_for("default").scorer_adjustment is None


@pytest.mark.django_db
def test_a_rejected_proposal_changes_nothing(client, routing, feature, users, time_machine):
    time_machine.move_to(NOW, tick=False)
    _outcomes(client, feature, 160)
    proposal = adjustments.adjustment_propose(feature=feature)
    adjustments.adjustment_reject(actor=users["mlops"], proposal=proposal)
    assert AdjustmentProposal.objects.get(pk=proposal.pk).status == AdjustmentStatus.REJECTED
    assert not RoutingPolicy.objects.filter(feature=feature).exists()


@pytest.mark.django_db
def test_the_adjustment_in_force_is_taken_out_before_refitting(client, routing, feature, users, time_machine):
    """Calls scored with an approved adjustment record the adjusted score; the refit starts from the shared one."""
    time_machine.move_to(NOW, tick=False)
    _outcomes(client, feature, 160)
    first = adjustments.adjustment_propose(feature=feature)
    shared = adjustments.feature_outcomes(feature=feature).shared_logits
    adjustments.adjustment_approve(actor=users["mlops"], proposal=first)
    from routing.models import Bundle

    document = _compiled()
    Bundle.objects.create(
        number=99,
        version="v-adjusted",
        content_hash="c" * 64,
        source_hash="s" * 64,
        document=document,
        config_yaml="",
    )
    adjustment = ScoreAdjustment.from_dict(first.adjustment)
    outcomes = adjustments.feature_outcomes(feature=feature)
    scored = adjustments.adjusted_scores(outcomes, adjustment)
    # the same calls, now recorded as scored under the approved adjustment by bundle v-adjusted
    from billing.models import SpendEvent

    for call, score in zip(outcomes.calls, scored, strict=True):
        SpendEvent.objects.filter(call_id=call.call_id).update(score=score, bundle_version="v-adjusted")
    again = adjustments.feature_outcomes(feature=feature)
    order = {c.call_id: logit for c, logit in zip(again.calls, again.shared_logits, strict=True)}
    for call, logit in zip(outcomes.calls, shared, strict=True):
        assert order[call.call_id] == pytest.approx(logit, abs=1e-3)
    assert timezone.now() == NOW
