"""Each feature learns from its own outcomes: labels from its calls, a fitted adjustment proposed, approved into
the feature's policy (the draft), shipped only by a publish.

Labels (1: the frontier model was needed, 0: it was not), one per call at most:
- 1: the call went to the small model and fell back (timeout, error, or a low-confidence escalation);
- 1: its small-model answer got a thumbs-down or a rating of 2 or less from the feedback API;
- 0: its small-model answer got a thumbs-up or a rating of 4 or more;
- 0: a frontier answer rated 4 or more on a call scored under its threshold, which the small model would
  have got (an experiment arm sent it up), as `routing.engine.tooling.adjust` documents the labels. Calls
  the breaker or a budget sent to the frontier are left out: an outage says nothing about the asks.
Calls without a failure or a rating are not labels: silence is not evidence either way.

The fit is on the calibrated logit the proxy used. Each call records its score (with the adjustment then in
force) and its task-type signals, so the shared scorer's logit is the recorded one minus that adjustment's
change (read from the bundle the call names). The new adjustment replaces the old one; it moves only past
`MIN_LABELS` labels and its Gaussian prior keeps it near no change (`routing.engine.tooling.adjust`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from controlplane.models import AuditAction, Feature
from controlplane.services import audit_record
from routing import providers
from routing.engine.adjustment import RECORDED_SIGNALS, AdjustedSignal, ScoreAdjustment
from routing.engine.bundle import UNPINNED_SCORER_WEIGHTS
from routing.engine.scorer import ComplexityScorer
from routing.engine.spend import SLM_UNAVAILABLE
from routing.engine.tooling.adjust import MIN_LABELS, fit_feature_adjustment, standardise
from routing.models import AdjustmentProposal, AdjustmentStatus, Bundle, Feedback, RoutingPolicy
from routing.services import whatif

WINDOW = timedelta(days=30)
MAX_CALLS = 50_000
BAD_RATING = 2
GOOD_RATING = 4
SCORE_EDGE = 1e-6  # a recorded score of exactly 0 or 1 has no finite logit
MIN_WEIGHT = 0.01
NOT_BY_SCORE = (
    SLM_UNAVAILABLE,
    "budget_degrade",
)  # sent up by an open breaker or a budget, not by the score  # smaller fitted weights are dropped: they change no decision


def _logit(score: float) -> float:
    p = min(1.0 - SCORE_EDGE, max(SCORE_EDGE, score))
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def call_label(call: Any, rating: int | None) -> int | None:
    """The call's label (see the module docstring), or None when it says nothing."""
    if call.route == "small" and call.small_model_fallback:
        return 1
    if rating is None:
        return None
    if call.route == "small" and call.status == "success":
        return 1 if rating <= BAD_RATING else 0 if rating >= GOOD_RATING else None
    under = call.threshold is not None and call.score < call.threshold
    by_score = call.decision_reason not in NOT_BY_SCORE
    if call.route == "frontier" and call.status == "success" and under and by_score and rating >= GOOD_RATING:
        return 0
    return None


@dataclass(frozen=True)
class FeatureOutcomes:
    """A feature's scored calls in a window, with the shared logit and the label of each."""

    feature: Feature
    scorer_weights: str
    slope: float  # the scorer's calibration slope: the runtime adjustment is on the logit before it
    calls: list[Any]
    shared_logits: list[float]  # calibrated logit of the shared scorer, the feature's old adjustment removed
    labels: list[int | None]
    ratings: list[int | None]
    start: datetime
    end: datetime

    @property
    def labelled(self) -> int:
        return sum(label is not None for label in self.labels)


def _bundle_adjustments(
    versions: set[str], feature: Feature
) -> dict[str, tuple[str, ScoreAdjustment | None]]:
    """bundle version -> (its scorer weights, the feature's adjustment in it)."""
    out: dict[str, tuple[str, ScoreAdjustment | None]] = {}
    for version, document in Bundle.objects.filter(version__in=versions).values_list("version", "document"):
        policy = (document.get("policies") or {}).get(feature.slug) or {}
        raw = policy.get("scorer_adjustment")
        out[version] = (
            document.get("scorer_weights") or UNPINNED_SCORER_WEIGHTS,
            ScoreAdjustment.from_dict(raw) if raw else None,
        )
    return out


def current_scorer_weights() -> str:
    default = RoutingPolicy.objects.filter(feature__isnull=True).first()
    return (default.scorer_weights if default else "") or ComplexityScorer.default().version


def feature_outcomes(
    *, feature: Feature, now: datetime | None = None, window: timedelta = WINDOW
) -> FeatureOutcomes:
    """The feature's scored calls of the last `window` on the current scorer weights, labelled."""
    end = now or timezone.now()
    start = end - window
    weights = current_scorer_weights()
    slope = ComplexityScorer.for_version(weights).calibration[0]
    calls = providers.spend_reader().outcome_calls(feature=feature, start=start, end=end, limit=MAX_CALLS)
    in_force = _bundle_adjustments({c.bundle_version for c in calls if c.bundle_version}, feature)
    kept, logits = [], []
    for call in calls:
        version_weights, adjustment = in_force.get(call.bundle_version, (weights, None))
        if version_weights != weights:
            continue  # scored on another scale: its logit does not mix with these
        change = adjustment.logit_change(call.signals) if adjustment else 0.0
        kept.append(call)
        logits.append(_logit(call.score) - slope * change)
    ratings = dict(
        Feedback.objects.filter(feature=feature, call_id__in=[c.call_id for c in kept]).values_list(
            "call_id", "score"
        )
    )
    rated = [ratings.get(c.call_id) for c in kept]
    return FeatureOutcomes(
        feature=feature,
        scorer_weights=weights,
        slope=slope,
        calls=kept,
        shared_logits=logits,
        labels=[call_label(c, r) for c, r in zip(kept, rated, strict=True)],
        ratings=rated,
        start=start,
        end=end,
    )


def fit_outcomes(outcomes: FeatureOutcomes, *, min_labels: int = MIN_LABELS) -> ScoreAdjustment | None:
    """The adjustment the feature's labels support, or None below `min_labels` labels."""
    rows = [i for i, label in enumerate(outcomes.labels) if label is not None]
    if len(rows) < min_labels:
        return None
    names = [n for n in RECORDED_SIGNALS if any(n in outcomes.calls[i].signals for i in rows)]
    raw = np.array([[outcomes.calls[i].signals.get(n, 0.0) for n in names] for i in rows], dtype=float)
    raw = raw.reshape(len(rows), len(names))
    x, mean, scale = standardise(raw, names) if names else (raw, {}, {})
    fitted = fit_feature_adjustment(
        [outcomes.shared_logits[i] for i in rows],
        x,
        names,
        [float(outcomes.labels[i]) for i in rows],  # type: ignore[arg-type]
        min_labels=min_labels,
    )
    runtime = fitted.runtime(mean, scale)
    # fitted on the calibrated logit; the scorer adds the adjustment before its calibration slope
    return ScoreAdjustment(
        round(runtime.offset / outcomes.slope, 6),
        tuple(
            AdjustedSignal(s.name, round(s.weight / outcomes.slope, 6), round(s.mean, 6), round(s.scale, 6))
            for s in runtime.signals
            if abs(s.weight / outcomes.slope) >= MIN_WEIGHT
        ),
        runtime.labels,
    )


def adjusted_scores(outcomes: FeatureOutcomes, adjustment: ScoreAdjustment | None) -> list[float]:
    """Each call's score under `adjustment` (None: the shared scorer's)."""
    return [
        _sigmoid(logit + (outcomes.slope * adjustment.logit_change(call.signals) if adjustment else 0.0))
        for call, logit in zip(outcomes.calls, outcomes.shared_logits, strict=True)
    ]


def _samples(outcomes: FeatureOutcomes, scores: Sequence[float]) -> list[whatif.CallSample]:
    samples = []
    for call, score in zip(outcomes.calls, scores, strict=True):
        served_small = call.route == "small" and call.status == "success" and not call.small_model_fallback
        samples.append(
            whatif.CallSample(
                score=float(score),
                tokens=int(call.input_tokens) + int(call.output_tokens),
                baseline_cost=call.baseline_cost_usd,
                route=call.route,
                small_cost=call.cost_usd if served_small else None,
                fell_back=call.small_model_fallback and call.route == "small",
            )
        )
    return samples


def _side(
    outcomes: FeatureOutcomes, scores: list[float], threshold: float, ratio: Decimal | None
) -> dict[str, Any]:
    point = whatif.replay(_samples(outcomes, scores), thresholds=[threshold], price_ratio=ratio).at(threshold)
    kept_small = [score < threshold for score in scores]
    labelled = [
        (label, small) for label, small in zip(outcomes.labels, kept_small, strict=True) if label is not None
    ]
    bad_kept = sum(1 for label, small in labelled if label == 1 and small)
    bad_rated = [
        small
        for small, rating in zip(kept_small, outcomes.ratings, strict=True)
        if rating is not None and rating <= BAD_RATING
    ]
    return {
        "small_share": round(point.small_share, 4),
        "cost_usd": str(point.cost_usd),
        "savings_usd": str(point.savings_usd),
        "fallback_rate": round(point.fallback_rate, 4),
        "fallback_rate_low": round(point.fallback_rate_low, 4),
        "fallback_rate_high": round(point.fallback_rate_high, 4),
        # quality proxy: of the calls labelled "frontier needed", the share this routing keeps on the small model
        "needed_kept_small": round(bad_kept / max(1, sum(1 for label, _ in labelled if label == 1)), 4),
        "bad_rated_kept_small": sum(bad_rated),
    }


def _in_force(feature: Feature) -> ScoreAdjustment | None:
    """The adjustment on the feature's policy now (approved; live once published)."""
    policy = RoutingPolicy.objects.filter(feature=feature).first()
    return (
        ScoreAdjustment.from_dict(policy.scorer_adjustment) if policy and policy.scorer_adjustment else None
    )


def changes_a_decision(outcomes: FeatureOutcomes, adjustment: ScoreAdjustment) -> bool:
    """Would `adjustment` route any recorded call differently from the policy's adjustment at its threshold?"""
    before = adjusted_scores(outcomes, _in_force(outcomes.feature))
    threshold = whatif.current_threshold(feature=outcomes.feature, scores=before)
    if threshold is None:
        return True  # no threshold to judge by: let MLOps see it
    after = adjusted_scores(outcomes, adjustment)
    return any((b < threshold) != (a < threshold) for b, a in zip(before, after, strict=True))


def adjustment_whatif(outcomes: FeatureOutcomes, adjustment: ScoreAdjustment) -> dict[str, Any]:
    """The current policy against the adjusted scores on the same calls, at the feature's threshold."""
    before = adjusted_scores(outcomes, _in_force(outcomes.feature))
    threshold = whatif.current_threshold(feature=outcomes.feature, scores=before)
    if threshold is None:
        return {"error": "the feature has no threshold or target share: set one on its policy"}
    ratio = whatif.price_ratio(feature=outcomes.feature)
    try:
        return {
            "threshold": threshold,
            "calls": len(outcomes.calls),
            "current": _side(outcomes, before, threshold, ratio),
            "proposed": _side(outcomes, adjusted_scores(outcomes, adjustment), threshold, ratio),
        }
    except ValueError as unreplayable:
        return {"error": str(unreplayable)}


@transaction.atomic
def adjustment_propose(*, feature: Feature, now: datetime | None = None) -> AdjustmentProposal | None:
    """Fit the feature's adjustment from its outcomes and save it as the open proposal.

    None when there are too few labels, or when the fit would route no recorded call differently from the
    policy as it stands (nothing for MLOps to decide; e.g. the day after an approval)."""
    outcomes = feature_outcomes(feature=feature, now=now)
    adjustment = fit_outcomes(outcomes)
    if adjustment is None or not changes_a_decision(outcomes, adjustment):
        return None
    # lock the feature's open proposal, so two fits at once leave one proposal
    open_ = AdjustmentProposal.objects.select_for_update().filter(
        feature=feature, status=AdjustmentStatus.PROPOSED
    )
    open_.update(status=AdjustmentStatus.SUPERSEDED)
    return AdjustmentProposal.objects.create(
        feature=feature,
        adjustment=adjustment.to_dict(),
        scorer_weights=outcomes.scorer_weights,
        labels=outcomes.labelled,
        needed_labels=sum(1 for label in outcomes.labels if label == 1),
        window_start=outcomes.start,
        window_end=outcomes.end,
        whatif=adjustment_whatif(outcomes, adjustment),
    )


def adjustments_propose(*, now: datetime | None = None) -> list[AdjustmentProposal]:
    """The scheduled job: a proposal for every active feature with enough labelled outcomes."""
    return [
        proposal
        for feature in Feature.objects.filter(is_active=True).order_by("pk")
        if (proposal := adjustment_propose(feature=feature, now=now)) is not None
    ]


ADJUSTMENT_AUDIT_FIELDS = ("scorer_adjustment",)


def _decide(proposal: AdjustmentProposal, status: str, actor: Any) -> None:
    proposal.status = status
    proposal.decided_by = actor if getattr(actor, "pk", None) else None
    proposal.decided_at = timezone.now()
    proposal.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])


@transaction.atomic
def adjustment_approve(*, actor: Any, proposal: AdjustmentProposal) -> RoutingPolicy:
    """Write the proposal onto the feature's policy (creating an inheriting override if it has none), audited.

    It reaches the proxies with the next publish, through the same preview as every policy edit."""
    proposal = AdjustmentProposal.objects.select_for_update().get(pk=proposal.pk)
    if proposal.status != AdjustmentStatus.PROPOSED:
        raise ValueError(f"this proposal is {proposal.status}: only an open proposal can be approved")
    if proposal.scorer_weights != current_scorer_weights():
        raise ValueError(
            f"this proposal was fitted on {proposal.scorer_weights}, but the policy now scores with "
            f"{current_scorer_weights()}: wait for the next fit"
        )
    ScoreAdjustment.from_dict(proposal.adjustment)  # what a proxy will check on load
    policy = RoutingPolicy.objects.select_for_update().filter(feature=proposal.feature).first()
    before = {"scorer_adjustment": policy.scorer_adjustment} if policy else None
    if policy is None:
        policy = RoutingPolicy(feature=proposal.feature)
    policy.scorer_adjustment = proposal.adjustment
    policy.full_clean()
    policy.save()
    audit_record(
        actor=actor,
        action=AuditAction.CREATE if before is None else AuditAction.UPDATE,
        obj=policy,
        before=before,
        after={"scorer_adjustment": policy.scorer_adjustment},
        note=f"approved score adjustment fitted from {proposal.labels} labelled outcomes",
    )
    _decide(proposal, AdjustmentStatus.APPROVED, actor)
    return policy


@transaction.atomic
def adjustment_reject(*, actor: Any, proposal: AdjustmentProposal) -> AdjustmentProposal:
    proposal = AdjustmentProposal.objects.select_for_update().get(pk=proposal.pk)
    if proposal.status != AdjustmentStatus.PROPOSED:
        raise ValueError(f"this proposal is {proposal.status}: only an open proposal can be rejected")
    audit_record(actor=actor, action=AuditAction.OTHER, obj=proposal, note="rejected score adjustment")
    _decide(proposal, AdjustmentStatus.REJECTED, actor)
    return proposal


__all__ = [
    "adjustment_approve",
    "adjustment_propose",
    "adjustment_reject",
    "adjustment_whatif",
    "adjustments_propose",
    "call_label",
    "feature_outcomes",
    "fit_outcomes",
]
