"""Tenancy (teams, features, memberships), the audit log and the proxy fleet registry."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
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


class ServiceURLValidator:
    """An http(s) URL whose host may also be a single-label service name: `http://proxy-a:4000` (compose,
    Kubernetes). Django's URLValidator demands a dotted domain, an IP or `localhost`. Whether plain http is
    allowed off loopback is a separate rule (FINOPS_ALLOW_HTTP_PROXIES)."""

    message = (
        "Enter a URL like http://10.0.0.5:4000 or http://proxy-a:4000 (a compose or Kubernetes service name)."
    )
    label_re = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)

    def __call__(self, value: object) -> None:
        try:
            URLValidator(schemes=["http", "https"])(value)
            return
        except ValidationError:
            pass
        text = str(value)
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = None
        ok = (
            parts is not None
            and parts.scheme in ("http", "https")
            and bool(parts.hostname and self.label_re.fullmatch(parts.hostname))
            and not parts.username
            and not any(ch.isspace() for ch in text)
            and len(text) <= 200
        )
        if not ok:
            raise ValidationError(self.message, code="invalid", params={"value": value})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServiceURLValidator)

    def __hash__(self) -> int:
        return hash(ServiceURLValidator)


class ServiceURLFormField(forms.URLField):
    """A URL form field taking compose/Kubernetes service names too (http://proxy-a:4000)."""

    default_validators = [ServiceURLValidator()]


class ServiceURLField(models.URLField):
    """URLField taking service names too (ServiceURLValidator). Same column and migration state as URLField."""

    default_validators = [ServiceURLValidator()]

    def deconstruct(self):  # type: ignore[no-untyped-def]
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.URLField", args, kwargs  # validators never reach the database

    def formfield(self, **kwargs):  # type: ignore[no-untyped-def]
        return super().formfield(**{"form_class": ServiceURLFormField, **kwargs})


class Proxy(TimeStampedModel):
    """A LiteLLM proxy of the fleet; it authenticates with a token we store only as hashes."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    base_url = ServiceURLField(help_text="Where the control plane pushes bundles, e.g. http://127.0.0.1:4000")
    pool = models.CharField(max_length=64, default="default")
    is_canary = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    signing_key = models.CharField(
        max_length=64, editable=False, help_text="HMAC key derived from the token."
    )
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    applied_version = models.CharField(max_length=80, blank=True)
    applied_hash = models.CharField(max_length=80, blank=True)
    last_report = models.JSONField(default=dict, blank=True)
    push_credential = models.TextField(
        blank=True,
        editable=False,
        help_text="The token, encrypted with a key derived from SECRET_KEY, to push bundles.",
    )
    target_bundle = models.ForeignKey(
        "routing.Bundle",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The bundle this proxy should run; empty: its pool's current bundle.",
    )

    class Meta:
        ordering = ["pool", "name"]
        verbose_name_plural = "proxies"

    def __str__(self) -> str:
        return self.name
