"""The fleet: the LiteLLM proxies, the bundles published to them and the rollouts that push them."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q

from controlplane.models import TimeStampedModel


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
        "Bundle",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The bundle this proxy should run; empty: its pool's current bundle.",
    )

    class Meta:
        db_table = "controlplane_proxy"  # the table it had in controlplane, kept so no data moved
        ordering = ["pool", "name"]
        verbose_name_plural = "proxies"

    def __str__(self) -> str:
        return self.name


class Bundle(models.Model):
    """An immutable, content-hashed routing bundle version, with the LiteLLM config rendered from it."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    number = models.PositiveIntegerField(unique=True)
    version = models.CharField(max_length=80, unique=True)
    content_hash = models.CharField(max_length=64, unique=True)
    source_hash = models.CharField(max_length=64, help_text="Hash of the content without version and time.")
    document = models.JSONField()
    config_yaml = models.TextField()
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return self.version


class RolloutKind(models.TextChoices):
    PUBLISH = "publish"
    ROLLBACK = "rollback"
    AUTO_ROLLBACK = "auto_rollback", "Automatic rollback"


class RolloutStatus(models.TextChoices):
    PENDING = "pending"
    CANARY = "canary"
    ROLLING = "rolling", "Rolling out"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed"


RUNNING_STATUSES = (RolloutStatus.PENDING, RolloutStatus.CANARY, RolloutStatus.ROLLING)
LIVE_STATUSES = (RolloutStatus.SUCCEEDED, RolloutStatus.PARTIAL)


class Rollout(TimeStampedModel):
    """Pushing one bundle to the proxies of a pool (all pools when empty): canary first, then the rest."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    bundle = models.ForeignKey(Bundle, on_delete=models.PROTECT, related_name="rollouts")
    previous_bundle = models.ForeignKey(
        Bundle, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=RolloutKind.choices, default=RolloutKind.PUBLISH)
    pool = models.CharField(max_length=64, blank=True, help_text="Empty: every pool.")
    status = models.CharField(max_length=16, choices=RolloutStatus.choices, default=RolloutStatus.PENDING)
    canary_window_s = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("5"))
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=RolloutStatus.values), name="rollout_status_valid")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.bundle.version}"

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING_STATUSES


class TargetStatus(models.TextChoices):
    PENDING = "pending"
    PUSHING = "pushing"
    APPLIED = "applied"
    REJECTED = "rejected", "Rejected the bundle"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"
    ROLLED_BACK = "rolled_back", "Rolled back"


class RolloutTarget(models.Model):
    """One proxy's part of a rollout: status, attempts, last error and timings."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="targets")
    proxy = models.ForeignKey(Proxy, on_delete=models.CASCADE, related_name="rollout_targets")
    is_canary = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=TargetStatus.choices, default=TargetStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-is_canary", "proxy__name"]
        constraints = [models.UniqueConstraint(fields=["rollout", "proxy"], name="rollout_target_once")]

    def __str__(self) -> str:
        return f"{self.proxy} in {self.rollout}"

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
