"""Experiment services: create, start, stop, evaluate and promote threshold experiments; threshold drafts; feedback.

A running experiment reaches the proxies through the bundle compiler, which reads the running ones
(`routing.compiler.bundle_experiments`): starting, stopping
and promoting publish a new bundle through `routing.services.bundle_publish`. Every change is
audited inside its transaction. Statistics live in `routing.services.experiment_stats` (docs/experiments.md).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from controlplane.models import AuditAction, Feature
from controlplane.permissions import Action, can
from controlplane.services import audit_record, snapshot
from routing import providers
from routing import services as routing_services
from routing.compiler import bundle_experiments
from routing.engine import signing
from routing.models import (
    Bundle,
    Experiment,
    ExperimentArm,
    ExperimentStatus,
    FeatureKey,
    Feedback,
    RoutingPolicy,
    ThresholdDraft,
    ThresholdDraftStatus,
)
from routing.services.experiment_stats import ArmData, evaluate_arms

log = logging.getLogger("finops.experiments")

EXPERIMENT_FIELDS = (
    "feature",
    "name",
    "slug",
    "hypothesis",
    "status",
    "sticky_by",
    "alpha",
    "max_fallback_rise",
    "max_error_rise",
    "min_feedback",
    "started_at",
    "stopped_at",
    "stop_reason",
    "winner",
)
MIN_ARMS, MAX_ARMS = 2, 4
MAX_CALLS = 500_000
THUMBS = {"up": 5, "down": 1}


def _arms_snapshot(experiment: Experiment) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "threshold": str(a.threshold), "weight": a.weight, "is_control": a.is_control}
        for a in experiment.arms.all()
    ]


def _snapshot(experiment: Experiment) -> dict[str, Any]:
    return {**snapshot(experiment, EXPERIMENT_FIELDS), "arms": _arms_snapshot(experiment)}


def validate_arms(arms: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Clean arm specs ({name, threshold, weight[, is_control]}); errors name the arm field and the fix."""
    errors: dict[str, list[str]] = defaultdict(list)
    if not MIN_ARMS <= len(arms) <= MAX_ARMS:
        raise ValidationError({"arms": f"Give between {MIN_ARMS} and {MAX_ARMS} arms (got {len(arms)})."})
    cleaned: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, raw in enumerate(arms):
        name = slugify(str(raw.get("name") or ""))
        if not name:
            errors[f"arms-{i}-name"].append(
                "Name the arm with letters, digits or '-', e.g. control or lower."
            )
        elif name in names:
            errors[f"arms-{i}-name"].append(f"Arm name {name!r} is used twice: arm names must differ.")
        names.add(name)
        try:
            threshold = Decimal(str(raw.get("threshold"))).quantize(Decimal("0.001"))
        except (InvalidOperation, ValueError):
            threshold = None
        if threshold is None or not Decimal("0") <= threshold <= Decimal("1"):
            errors[f"arms-{i}-threshold"].append("Give a threshold between 0 and 1, e.g. 0.55.")
        try:
            weight = int(raw.get("weight"))
        except (TypeError, ValueError):
            weight = 0
        if not 1 <= weight <= 99:
            errors[f"arms-{i}-weight"].append("Give a traffic weight between 1 and 99 (percent).")
        cleaned.append(
            {
                "name": name,
                "threshold": threshold,
                "weight": weight,
                "is_control": bool(raw.get("is_control")),
            }
        )
    if not errors and sum(a["weight"] for a in cleaned) != 100:
        errors["arms"].append(
            f"Arm weights must sum to 100 (they sum to {sum(a['weight'] for a in cleaned)}): adjust the weights."
        )
    if not errors and len({a["threshold"] for a in cleaned}) < len(cleaned):
        errors["arms"].append("Two arms share a threshold: give every arm a different threshold.")
    controls = [a for a in cleaned if a["is_control"]]
    if len(controls) > 1:
        errors["arms"].append("Mark one arm as control, not several.")
    if errors:
        raise ValidationError(dict(errors))
    if not controls:
        cleaned[0]["is_control"] = True
    return cleaned


def _unique_slug(base: str) -> str:
    root = (slugify(base) or "experiment")[:56]
    slug, n = root, 1
    while Experiment.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{root}-{n}"
    return slug


@transaction.atomic
def experiment_create(
    *,
    actor: Any,
    feature: Feature,
    name: str,
    arms: Sequence[Mapping[str, Any]],
    sticky_by: str = "end_user",
    hypothesis: str = "",
    alpha: Decimal = Decimal("0.050"),
    max_fallback_rise: Decimal = Decimal("0.050"),
    max_error_rise: Decimal = Decimal("0.010"),
    min_feedback: Decimal | None = None,
) -> Experiment:
    """A draft experiment with 2–4 arms whose weights sum to 100 (audited)."""
    cleaned = validate_arms(arms)
    experiment = Experiment(
        feature=feature,
        name=name,
        slug=_unique_slug(f"{feature.slug}-{name}"),
        hypothesis=hypothesis,
        sticky_by=sticky_by,
        alpha=alpha,
        max_fallback_rise=max_fallback_rise,
        max_error_rise=max_error_rise,
        min_feedback=min_feedback,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    experiment.full_clean()
    experiment.save()
    for position, arm in enumerate(cleaned):
        ExperimentArm.objects.create(experiment=experiment, position=position, **arm)
    audit_record(actor=actor, action=AuditAction.CREATE, obj=experiment, after=_snapshot(experiment))
    return experiment


WAITS_FOR_PUBLISHER = (
    "Saved, not published: publishing ships the whole organisation's staged changes, so it needs an "
    "org-wide MLOps engineer or admin. It reaches the proxies with their next publish."
)


def may_publish(actor: Any) -> bool:
    """The org-level publish right (None: the system itself, e.g. a guardrail stop)."""
    return actor is None or can(actor, Action.MANAGE_FLEET)


def _publish(*, actor: Any, note: str) -> Bundle | None:
    """Publish for a publisher; for a team-scoped user the change stays staged (None) for one."""
    if not may_publish(actor):
        return None
    return routing_services.bundle_publish(actor=actor, note=note)


@transaction.atomic
def experiment_start(*, actor: Any, experiment: Experiment, publish: bool = True) -> Experiment:
    """Start a draft: it joins the next bundle, which is published now (audited)."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != ExperimentStatus.DRAFT:
        raise ValidationError(
            f"Only a draft can start; this experiment is {experiment.get_status_display().lower()}."
        )
    other = Experiment.objects.filter(feature=experiment.feature, status=ExperimentStatus.RUNNING).first()
    if other is not None:
        raise ValidationError(
            f"{experiment.feature.slug} already runs experiment {other.name!r}: stop it first (one per feature)."
        )
    before = _snapshot(experiment)
    experiment.status = ExperimentStatus.RUNNING
    experiment.started_at = timezone.now()
    try:
        experiment.save(update_fields=["status", "started_at", "updated_at"])
    except IntegrityError as exc:  # a concurrent start won the one-running-per-feature constraint
        raise ValidationError(
            f"{experiment.feature.slug} already runs an experiment: stop it first."
        ) from exc
    audit_record(
        actor=actor,
        action=AuditAction.UPDATE,
        obj=experiment,
        before=before,
        after=_snapshot(experiment),
        note="start",
    )
    if publish:
        _publish(actor=actor, note=f"start experiment {experiment.slug}")
    return experiment


@transaction.atomic
def experiment_stop(
    *, actor: Any, experiment: Experiment, reason: str = "", publish: bool = True, guardrail: bool = False
) -> Experiment:
    """Stop a running experiment (its feature goes back to its policy threshold) and publish (audited).

    A guardrail stop (or any stop by the system, actor None) ships only the stop, on top of what the
    fleet runs: staged edits of others never ride along with an automatic publish."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != ExperimentStatus.RUNNING:
        raise ValidationError(
            f"Only a running experiment can stop; this one is {experiment.get_status_display().lower()}."
        )
    before = _snapshot(experiment)
    experiment.status = ExperimentStatus.STOPPED
    experiment.stopped_at = timezone.now()
    experiment.stop_reason = reason or "stopped by hand"
    experiment.save(update_fields=["status", "stopped_at", "stop_reason", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditAction.UPDATE,
        obj=experiment,
        before=before,
        after=_snapshot(experiment),
        note="stop",
    )
    if publish:
        note = f"stop experiment {experiment.slug}: {experiment.stop_reason}"[:400]
        if guardrail or actor is None:
            _publish_stops(actor=actor, note=note)
        else:
            _publish(actor=actor, note=note)
    return experiment


def _drop_stopped_experiments(doc: dict[str, Any]) -> str:
    """Patch for an automatic publish: remove experiments that no longer run, add nothing."""
    running = {e["id"] for e in bundle_experiments()}
    shipped = doc.get("experiments") or []
    kept = [e for e in shipped if isinstance(e, dict) and e.get("id") in running]
    if len(kept) == len(shipped):
        return ""
    doc["experiments"] = kept
    return "stop " + ", ".join(sorted(str(e.get("id")) for e in shipped if e not in kept))


def _publish_stops(*, actor: Any, note: str) -> Bundle | None:
    shipped = routing_services.bundle_publish_patch(actor=actor, patch=_drop_stopped_experiments, note=note)
    return shipped[-1] if shipped else None


def _feature_policy_set_threshold(*, actor: Any, feature: Feature, threshold: Decimal) -> RoutingPolicy:
    policy = RoutingPolicy.objects.filter(feature=feature).first()
    if policy is None:
        return routing_services.policy_create(actor=actor, feature=feature, threshold=threshold)
    return routing_services.policy_update(
        actor=actor, policy=policy, threshold=threshold, target_small_share=None
    )


@transaction.atomic
def experiment_promote(*, actor: Any, experiment: Experiment, arm: ExperimentArm) -> Bundle | None:
    """Ship an arm: the feature's policy takes its threshold, the experiment ends, a bundle is published."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if arm.experiment_id != experiment.pk:
        raise ValidationError({"arm": "That arm belongs to another experiment."})
    if experiment.status not in (ExperimentStatus.RUNNING, ExperimentStatus.STOPPED):
        raise ValidationError(
            f"Only a running or stopped experiment can ship a winner; this one is {experiment.get_status_display().lower()}."
        )
    before = _snapshot(experiment)
    _feature_policy_set_threshold(actor=actor, feature=experiment.feature, threshold=arm.threshold)
    experiment.status = ExperimentStatus.PROMOTED
    experiment.winner = arm
    experiment.stopped_at = experiment.stopped_at or timezone.now()
    experiment.stop_reason = experiment.stop_reason or f"shipped arm {arm.name}"
    experiment.save(update_fields=["status", "winner", "stopped_at", "stop_reason", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditAction.PUBLISH,
        obj=experiment,
        before=before,
        after=_snapshot(experiment),
        note=f"ship arm {arm.name} (threshold {arm.threshold})",
    )
    return _publish(actor=actor, note=f"ship {experiment.slug} arm {arm.name}: threshold {arm.threshold}")


# --- analysis -----------------------------------------------------------------------------------------------


def experiment_arm_data(*, experiment: Experiment, limit: int = MAX_CALLS) -> list[ArmData]:
    """Per-call observations of each arm from the raw spend events (one row per call) and feedback."""
    arms = list(experiment.arms.all())
    since = (experiment.started_at or experiment.created_at) - timedelta(minutes=5)
    rows = providers.spend_reader().experiment_calls(
        feature=experiment.feature, experiment=experiment.slug, since=since, limit=limit
    )
    by_arm: dict[str, list[Any]] = defaultdict(list)
    call_arm: dict[str, str] = {}
    for row in rows:
        by_arm[row.arm].append(row)
        call_arm[row.call_id] = row.arm
    feedback: dict[str, list[int]] = defaultdict(list)
    rated = Feedback.objects.filter(feature=experiment.feature, created_at__gte=since).values_list(
        "call_id", "score"
    )
    for call_id, score in rated:
        if call_id in call_arm:
            feedback[call_arm[call_id]].append(score)
    out = []
    for arm in arms:
        calls = by_arm.get(arm.name, [])
        out.append(
            ArmData(
                name=arm.name,
                threshold=float(arm.threshold),
                weight=float(arm.weight),
                is_control=arm.is_control,
                cost=np.array([float(c.cost_usd or 0) for c in calls], dtype=float),
                small=np.array([c.small for c in calls], dtype=float),
                fallback=np.array([c.small_model_fallback for c in calls], dtype=float),
                error=np.array([1 - c.success for c in calls], dtype=float),
                latency_ms=np.array([c.latency_ms or 0 for c in calls], dtype=float),
                feedback=np.array(feedback.get(arm.name, []), dtype=float),
            )
        )
    return out


def experiment_evaluate(
    *, experiment: Experiment, actor: Any = None, auto_stop: bool = True
) -> dict[str, Any]:
    """Analyse the arms, store the verdict, and stop a running experiment whose guardrail is breached."""
    data = experiment_arm_data(experiment=experiment)
    analysis = evaluate_arms(
        data,
        alpha=float(experiment.alpha),
        max_fallback_rise=float(experiment.max_fallback_rise),
        max_error_rise=float(experiment.max_error_rise),
        min_feedback=float(experiment.min_feedback) if experiment.min_feedback is not None else None,
    )
    now = timezone.now()
    analysis["evaluated_at"] = now.isoformat()
    Experiment.objects.filter(pk=experiment.pk).update(verdict=analysis, evaluated_at=now)
    experiment.verdict, experiment.evaluated_at = analysis, now
    if auto_stop and experiment.is_running and analysis["verdict"]["decision"] == "stop":
        log.warning("experiment %s stopped: %s", experiment.slug, analysis["verdict"]["reason"])
        try:
            stopped = experiment_stop(
                actor=actor, experiment=experiment, reason=str(analysis["verdict"]["reason"]), guardrail=True
            )
        except (
            ValidationError
        ) as exc:  # publishing failed: stop without a bundle rather than keep the harm running
            log.error("experiment %s: publish on guardrail stop failed: %s", experiment.slug, exc)
            stopped = experiment_stop(
                actor=actor, experiment=experiment, reason=str(analysis["verdict"]["reason"]), publish=False
            )
        experiment.status, experiment.stopped_at, experiment.stop_reason = (
            stopped.status,
            stopped.stopped_at,
            stopped.stop_reason,
        )
    return analysis


def experiments_bundle_sync() -> Bundle | None:
    """Publish when the newest bundle's experiments differ from the running ones (a stop whose publish failed).

    A guardrail stop that found a rollout still running stops the experiment without a bundle; this
    brings the fleet in line on the next run."""
    # only stops ship: a waiting start waits for a publisher, the system never adds an experiment
    try:
        return _publish_stops(actor=None, note="experiments stopped since the last bundle")
    except ValidationError as exc:
        log.warning("experiments bundle sync deferred: %s", exc)
        return None


def experiments_evaluate_running() -> int:
    """Evaluate every running experiment (the periodic task), then sync the bundle; returns how many were evaluated."""
    done = 0
    for experiment_id in Experiment.objects.filter(status=ExperimentStatus.RUNNING).values_list(
        "pk", flat=True
    ):
        experiment = Experiment.objects.filter(pk=experiment_id, status=ExperimentStatus.RUNNING).first()
        if experiment is None:
            continue
        experiment_evaluate(experiment=experiment)
        done += 1
    experiments_bundle_sync()
    return done


# --- threshold drafts (what-if → policy) --------------------------------------------------------------------


@transaction.atomic
def threshold_draft_create(
    *,
    actor: Any,
    feature: Feature,
    threshold: Decimal,
    previous: Decimal | None,
    projection: dict[str, Any],
    note: str = "",
) -> ThresholdDraft:
    if not Decimal("0") <= threshold <= Decimal("1.01"):
        raise ValidationError(
            {"threshold": "Give a threshold between 0 and 1.01 (1.01 sends everything small)."}
        )
    draft = ThresholdDraft.objects.create(
        feature=feature,
        threshold=threshold.quantize(Decimal("0.001")),
        previous_threshold=previous,
        projection=projection,
        note=note,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        actor=actor,
        action=AuditAction.CREATE,
        obj=draft,
        after={
            "threshold": str(draft.threshold),
            "previous_threshold": str(previous) if previous is not None else None,
        },
        note=note,
    )
    return draft


@transaction.atomic
def threshold_draft_publish(*, actor: Any, draft: ThresholdDraft) -> Bundle:
    """Apply a reviewed draft to the feature's policy and publish a bundle (audited by the policy services too)."""
    draft = ThresholdDraft.objects.select_for_update().get(pk=draft.pk)
    if draft.status != ThresholdDraftStatus.DRAFT:
        raise ValidationError(f"This draft is already {draft.get_status_display().lower()}.")
    if not may_publish(actor):
        raise ValidationError(
            "This draft waits for an org-wide MLOps engineer or admin: publishing ships the whole "
            "organisation's staged changes, which needs the org-level publish right."
        )
    if Experiment.objects.filter(feature=draft.feature, status=ExperimentStatus.RUNNING).exists():
        raise ValidationError(
            "An experiment is running on this feature: stop or ship it before changing the threshold."
        )
    _feature_policy_set_threshold(actor=actor, feature=draft.feature, threshold=draft.threshold)
    bundle = _publish(
        actor=actor, note=f"threshold {draft.threshold} for {draft.feature.slug} (what-if draft)"
    )
    assert bundle is not None  # may_publish was checked above
    draft.status, draft.bundle_version = ThresholdDraftStatus.PUBLISHED, bundle.version
    draft.save(update_fields=["status", "bundle_version", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditAction.PUBLISH,
        obj=draft,
        before={"status": ThresholdDraftStatus.DRAFT},
        after={"status": draft.status, "bundle": bundle.version},
    )
    return bundle


@transaction.atomic
def threshold_draft_discard(*, actor: Any, draft: ThresholdDraft) -> ThresholdDraft:
    if draft.status != ThresholdDraftStatus.DRAFT:
        raise ValidationError(f"This draft is already {draft.get_status_display().lower()}.")
    draft.status = ThresholdDraftStatus.DISCARDED
    draft.save(update_fields=["status", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditAction.DELETE,
        obj=draft,
        before={"status": "draft"},
        after={"status": draft.status},
    )
    return draft


# --- feedback -----------------------------------------------------------------------------------------------


class KeyRejected(Exception):
    """The feature key is unknown, revoked or expired."""


def feature_key_authenticate(*, plaintext: str) -> FeatureKey:
    """The live feature key with this plaintext (looked up by hash), else KeyRejected."""
    if not plaintext:
        raise KeyRejected("Send the feature key as 'Authorization: Bearer <key>'.")
    key = FeatureKey.objects.select_related("feature").filter(key_hash=signing.token_hash(plaintext)).first()
    if key is None:
        raise KeyRejected("Unknown feature key.")
    if key.revoked_at is not None:
        raise KeyRejected("This feature key was revoked: use a current key.")
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise KeyRejected("This feature key has expired: use a current key.")
    return key


def feedback_score(value: Any) -> int:
    """1–5 from a number or 'up'/'down' (thumbs up 5, thumbs down 1)."""
    if isinstance(value, str) and value.strip().lower() in THUMBS:
        return THUMBS[value.strip().lower()]
    if isinstance(value, bool):
        return 5 if value else 1
    try:
        score = int(value)
    except (TypeError, ValueError):
        score = 0
    if isinstance(value, float) and value != int(value):
        score = 0
    if not 1 <= score <= 5:
        raise ValidationError({"score": "Send 'up', 'down' or a whole number from 1 to 5."})
    return score


def feedback_record(*, key: FeatureKey, call_id: str, score: Any, comment: str = "") -> tuple[Feedback, bool]:
    """Store (or replace) the feedback on one call of the key's feature; returns (feedback, created)."""
    call_id = (call_id or "").strip()
    if not call_id or len(call_id) > 128:
        raise ValidationError({"call_id": "Send the call id the proxy returned (1–128 characters)."})
    if len(comment or "") > 2000:
        raise ValidationError({"comment": "Keep the comment under 2000 characters."})
    value = feedback_score(score)
    feedback, created = Feedback.objects.update_or_create(
        feature=key.feature, call_id=call_id, defaults={"score": value, "comment": comment or "", "key": key}
    )
    return feedback, created
