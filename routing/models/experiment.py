"""Threshold experiments, their arms, end-user feedback on calls, and threshold drafts from the what-if page.

Imported at the end of routing/models/policy.py, so these are models of the routing app.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from controlplane.fields import bounded_decimal
from controlplane.models import Feature, TimeStampedModel

__all__ = [
    "Experiment",
    "ExperimentArm",
    "ExperimentStatus",
    "Feedback",
    "StickyBy",
    "ThresholdDraft",
    "ThresholdDraftStatus",
]


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"
    PROMOTED = "promoted", "Winner shipped"


class StickyBy(models.TextChoices):
    END_USER = "end_user", "End user (falls back to the request without one)"
    REQUEST = "request"


class Experiment(TimeStampedModel):
    """An A/B test of routing thresholds on one feature: 2–4 weighted arms, guardrails, a verdict."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    feature = models.ForeignKey(Feature, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=100)
    slug = models.SlugField(
        max_length=64, unique=True, help_text="Names the experiment in bundles and on every spend record."
    )
    hypothesis = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT)
    sticky_by = models.CharField(max_length=16, choices=StickyBy.choices, default=StickyBy.END_USER)
    alpha = bounded_decimal(
        "0.001",
        "0.200",
        digits=4,
        places=3,
        help_text="Error rate of the always-valid intervals (0.05: 95 % however often you look).",
        default=Decimal("0.050"),
    )
    max_fallback_rise = bounded_decimal(
        "0",
        "1",
        digits=4,
        places=3,
        help_text="Guardrail: largest allowed rise of an arm's fallback rate over control (0.05 = 5 points).",
        default=Decimal("0.050"),
    )
    max_error_rise = bounded_decimal(
        "0",
        "1",
        digits=4,
        places=3,
        help_text="Guardrail: largest allowed rise of an arm's error rate over control (0.01 = 1 point).",
        default=Decimal("0.010"),
    )
    min_feedback = bounded_decimal(
        "1",
        "5",
        digits=3,
        places=2,
        help_text="Guardrail: lowest allowed mean feedback score of an arm (1–5; empty: no feedback guardrail).",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.TextField(blank=True)
    winner = models.ForeignKey(
        "routing.ExperimentArm", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verdict = models.JSONField(default=dict, blank=True, help_text="The last evaluation.")
    evaluated_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["feature"], condition=Q(status="running"), name="experiment_one_running_per_feature"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ExperimentStatus.values), name="experiment_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_running(self) -> bool:
        return self.status == ExperimentStatus.RUNNING

    @property
    def control(self) -> ExperimentArm | None:
        return next((a for a in self.arms.all() if a.is_control), None)


class ExperimentArm(models.Model):
    """One arm of an experiment: a threshold and its share of the traffic (weights sum to 100)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    name = models.SlugField(max_length=64)
    threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    weight = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(99)])
    is_control = models.BooleanField(default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="experiment_arm_name_unique"),
            models.CheckConstraint(
                condition=Q(weight__gte=1) & Q(weight__lte=99), name="experiment_arm_weight_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (threshold {self.threshold}, {self.weight} %)"


class Feedback(TimeStampedModel):
    """An end user's verdict on one call (thumbs or 1–5), sent by the feature's code with its key."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="feedback")
    call_id = models.CharField(max_length=128)
    score = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="1–5; thumbs up is 5, thumbs down 1.",
    )
    comment = models.TextField(blank=True, max_length=2000)
    key = models.ForeignKey(
        "routing.FeatureKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["feature", "call_id"], name="feedback_once_per_call"),
            models.CheckConstraint(condition=Q(score__gte=1) & Q(score__lte=5), name="feedback_score_range"),
        ]

    def __str__(self) -> str:
        return f"{self.score}/5 on {self.call_id}"


class ThresholdDraftStatus(models.TextChoices):
    DRAFT = "draft"
    PUBLISHED = "published"
    DISCARDED = "discarded"


class ThresholdDraft(TimeStampedModel):
    """A threshold picked on the what-if page, with its projection, waiting for review and publish."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="threshold_drafts")
    threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1.01"))],
    )
    previous_threshold = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    projection = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=ThresholdDraftStatus.choices, default=ThresholdDraftStatus.DRAFT
    )
    bundle_version = models.CharField(max_length=80, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"threshold {self.threshold} for {self.feature.slug}"
