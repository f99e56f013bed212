"""Tenancy (teams, features, memberships) and the audit log."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from controlplane.outbound import url_problem


class TimeStampedModel(models.Model):
    """Abstract base: created/updated times on every table."""

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Role(models.TextChoices):
    VIEWER = "viewer"
    PM = "pm", "Product manager"
    MLOPS = "mlops", "MLOps engineer"
    ADMIN = "admin"


class Team(TimeStampedModel):
    """A group of engineers that owns AI features and pays for them."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=64, unique=True, help_text="Names the team in spend records and tags.")
    description = models.TextField(blank=True)
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="Budget months start at midnight here."
    )
    webhook_url = models.URLField(blank=True, help_text="Slack-compatible webhook for this team's alerts.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problem = url_problem(self.webhook_url) if self.webhook_url else None
        if problem:
            raise ValidationError(
                {"webhook_url": f"This webhook URL is refused: {problem}. Use a public http(s) endpoint."}
            )


class Feature(TimeStampedModel):
    """A product feature that calls LLMs; requests name it by its slug through a feature key."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="features")
    name = models.CharField(max_length=100)
    slug = models.SlugField(
        max_length=64, unique=True, help_text="Names the feature on requests and in spend."
    )
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_features",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="feature_name_unique_in_team")]

    def __str__(self) -> str:
        return f"{self.team.name} / {self.name}"


class Membership(TimeStampedModel):
    """A user's role, on one team or (team empty) across the whole organisation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        ordering = ["user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="membership_one_role_per_team"),
            models.UniqueConstraint(
                fields=["user"], condition=Q(team__isnull=True), name="membership_one_org_wide_role"
            ),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        scope = self.team.name if self.team_id else "organisation"
        return f"{self.user} is {self.role} on {scope}"


class AuditAction(models.TextChoices):
    CREATE = "create", "Created"
    UPDATE = "update", "Updated"
    DELETE = "delete", "Deleted"
    PUBLISH = "publish", "Published"
    ROLLBACK = "rollback", "Rolled back"
    REVOKE = "revoke", "Revoked"
    OTHER = "other"


class AuditEntry(models.Model):
    """An immutable record of one change a user made, with the fields before and after."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_entries",
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="Kept when the user is deleted.")
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    object_type = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    changes = models.JSONField(default=dict, help_text="{field: [before, after]}")
    note = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.object_type} {self.object_repr}"
