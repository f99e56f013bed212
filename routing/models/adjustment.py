"""A feature's proposed score adjustment, fitted from its own outcomes by the scheduled job, awaiting MLOps.

A proposal never reaches a proxy by itself: approving it writes it onto the feature's routing policy (the
draft), and only a publish (preview, then publish) ships it in a bundle.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from controlplane.models import Feature, TimeStampedModel

__all__ = ["AdjustmentProposal", "AdjustmentStatus"]


class AdjustmentStatus(models.TextChoices):
    PROPOSED = "proposed"
    APPROVED = "approved"  # written onto the feature's policy; ships with the next publish
    REJECTED = "rejected"
    SUPERSEDED = "superseded"  # a newer fit replaced it before anyone decided


class AdjustmentProposal(TimeStampedModel):
    """An adjustment of one feature's score fitted from its labelled outcomes, with its what-if."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="adjustment_proposals")
    status = models.CharField(
        max_length=16, choices=AdjustmentStatus.choices, default=AdjustmentStatus.PROPOSED
    )
    adjustment = models.JSONField(help_text="The feature-adjustment/1 document a bundle would carry.")
    scorer_weights = models.CharField(max_length=32, help_text="Scorer weights version the fit is on top of.")
    labels = models.PositiveIntegerField()
    needed_labels = models.PositiveIntegerField(help_text="Labels saying the frontier model was needed.")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    whatif = models.JSONField(
        default=dict, blank=True, help_text="Current policy vs adjusted, on the same calls."
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=AdjustmentStatus.values), name="adjustment_status_valid"
            ),
            models.UniqueConstraint(
                fields=["feature"], condition=Q(status="proposed"), name="one_open_adjustment_per_feature"
            ),
        ]

    def __str__(self) -> str:
        return f"adjustment for {self.feature.slug} ({self.status}, {self.labels} labels)"
