"""Budgets, their evaluated state, alerts, alert settings and notifications (re-exported by billing.models)."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from controlplane.models import Feature, Team, TimeStampedModel
from routing.models import Proxy

DEFAULT_THRESHOLDS = [50, 80, 100]
# alert thresholds are percentages of the budget: above 100 still alerts while overspending
THRESHOLD_MIN, THRESHOLD_MAX = 1, 200


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class BudgetAction(models.TextChoices):
    ALERT = "alert", "Alert only"
    DEGRADE = "degrade", "Degrade to the small model"
    BLOCK = "block", "Block (429)"


class BudgetState(models.TextChoices):
    OK = "ok", "Within budget"
    OVER = "over", "Over budget"


class Budget(TimeStampedModel):
    """A monthly spend limit in USD for one feature, or (feature empty) for a whole team."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budgets")
    feature = models.ForeignKey(
        Feature, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    amount_usd = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text="Monthly limit in USD (calendar month in the team's timezone).",
    )
    thresholds = models.JSONField(
        default=default_thresholds,
        help_text="Percentages of the limit that raise an alert, e.g. 50, 80, 100.",
    )
    action = models.CharField(
        max_length=16,
        choices=BudgetAction.choices,
        default=BudgetAction.ALERT,
        help_text="What the proxies do once spend reaches 100 %.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["team__name", "feature__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["feature"], condition=Q(feature__isnull=False), name="budget_one_per_feature"
            ),
            models.UniqueConstraint(
                fields=["team"], condition=Q(feature__isnull=True), name="budget_one_per_team"
            ),
            models.CheckConstraint(condition=Q(amount_usd__gt=0), name="budget_amount_positive"),
            models.CheckConstraint(condition=Q(action__in=BudgetAction.values), name="budget_action_valid"),
        ]

    def __str__(self) -> str:
        scope = self.feature.slug if self.feature_id else f"team {self.team.slug}"
        return f"budget of {scope}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.feature_id and self.team_id and self.feature.team_id != self.team_id:
            errors["feature"] = "The feature belongs to another team: pick one of this team's features."
        thresholds = self.thresholds
        if not isinstance(thresholds, list) or not thresholds:
            errors["thresholds"] = "Give at least one percentage, e.g. 50, 80, 100."
        elif not all(
            isinstance(t, int) and not isinstance(t, bool) and THRESHOLD_MIN <= t <= THRESHOLD_MAX
            for t in thresholds
        ):
            errors["thresholds"] = (
                f"Each threshold is a whole percentage between {THRESHOLD_MIN} and {THRESHOLD_MAX}, "
                "e.g. 50, 80, 100."
            )
        elif len(set(thresholds)) != len(thresholds):
            errors["thresholds"] = "Thresholds repeat: list each percentage once."
        if errors:
            raise ValidationError(errors)


class BudgetStatus(models.Model):
    """The last evaluation of a budget: period spend, state and month-end forecast (read by UI and bundles)."""

    budget = models.OneToOneField(Budget, on_delete=models.CASCADE, related_name="status")
    period = models.CharField(max_length=7, help_text="YYYY-MM in the team's timezone.")
    spend_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    limit_usd = models.DecimalField(max_digits=14, decimal_places=2)
    state = models.CharField(max_length=8, choices=BudgetState.choices, default=BudgetState.OK)
    enforced = models.BooleanField(default=False, help_text="Over, and the action is degrade or block.")
    projection_usd = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    projection_low_usd = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    projection_high_usd = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    runs_out_on = models.DateField(null=True, blank=True)
    evaluated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "budget statuses"

    def __str__(self) -> str:
        return f"{self.budget}: {self.state} ({self.spend_usd} of {self.limit_usd}, {self.period})"

    @property
    def used_pct(self) -> Decimal:
        return (
            (self.spend_usd / self.limit_usd * 100).quantize(Decimal("0.1")) if self.limit_usd else Decimal(0)
        )


class FeatureAlertSettings(TimeStampedModel):
    """Per-feature overrides of the fallback-rate alert (empty fields use the defaults)."""

    feature = models.OneToOneField(Feature, on_delete=models.CASCADE, related_name="alert_settings")
    fallback_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("1"))],
        help_text="Fallback rate (0–1) that opens an alert; empty: the default 0.20.",
    )
    fallback_window_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1440)]
    )
    fallback_min_requests = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )

    class Meta:
        verbose_name_plural = "feature alert settings"

    def __str__(self) -> str:
        return f"alert settings of {self.feature.slug}"


def new_webhook_secret() -> str:
    return secrets.token_hex(32)


class AlertChannel(TimeStampedModel):
    """Where a team's alerts go besides the UI: its webhook (Team.webhook_url) signed with this secret."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="alert_channel")
    webhook_secret = models.CharField(max_length=64, default=new_webhook_secret, editable=False)
    webhook_enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"alert channel of {self.team.slug}"


class AlertKind(models.TextChoices):
    FALLBACK_RATE = "fallback_rate", "Fallback rate"
    BUDGET_THRESHOLD = "budget_threshold", "Budget threshold"
    BUDGET_FORECAST = "budget_forecast", "Projected overspend"
    SPEND_ANOMALY = "spend_anomaly", "Spend anomaly"
    PROXY_STALE = "proxy_stale", "Proxy stale"
    SLM_UNAVAILABLE = "slm_unavailable", "Small model unavailable"


class AlertStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertSeverity(models.TextChoices):
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(TimeStampedModel):
    """One occurrence of a problem, identified by `key`; at most one unresolved alert per key, history kept."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    key = models.CharField(
        max_length=200, help_text="What the alert is about, e.g. fallback_rate:feature:12."
    )
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    feature = models.ForeignKey(
        Feature, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    proxy = models.ForeignKey(Proxy, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when resolved automatically.",
    )
    snoozed_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Until then the alert sends no notification and does not count as active.",
    )
    snoozed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=~Q(status="resolved"), name="alert_one_unresolved_per_key"
            ),
            models.CheckConstraint(condition=Q(status__in=AlertStatus.values), name="alert_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "kind"], name="alert_status_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.title}"

    def is_snoozed(self, now: datetime | None = None) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > (now or timezone.now())

    @property
    def snoozed(self) -> bool:
        return self.is_snoozed()

    def chart_link(self) -> tuple[str, str] | None:
        """(url, label) of the chart that shows this alert, over the days from its opening to when it was
        last seen (one day gives hourly buckets), or None when no chart shows it."""
        days = f"start={self.opened_at.date():%Y-%m-%d}&end={self.last_seen_at.date():%Y-%m-%d}"
        overview = reverse("overview")
        if self.kind == AlertKind.PROXY_STALE and self.proxy_id:
            return reverse("fleet-proxy", args=[self.proxy.code]), "proxy heartbeat page"
        if self.feature_id:
            if self.kind in (AlertKind.FALLBACK_RATE, AlertKind.SLM_UNAVAILABLE):
                return (
                    f"{overview}?feature={self.feature.slug}&{days}#chart-fallback-trend",
                    "fallback-rate chart",
                )
            if self.kind in (AlertKind.BUDGET_THRESHOLD, AlertKind.BUDGET_FORECAST):
                page = reverse("feature-detail", args=[self.feature.code])
                return f"{page}?{days}#chart-burn-down", "budget burn-down chart"
            return f"{overview}?feature={self.feature.slug}&{days}#chart-daily", "spend chart"
        if self.team_id:
            return f"{overview}?team={self.team.slug}&{days}#chart-daily", "spend chart"
        return None


class NotificationChannel(models.TextChoices):
    DATADOG = "datadog", "Datadog event"
    WEBHOOK = "webhook", "Team webhook"


class NotificationStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Notification(models.Model):
    """One message about an alert to one channel; retried with backoff until sent or out of attempts."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    event = models.CharField(max_length=16, help_text="opened or resolved")
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel", "event"], name="notification_once_per_event")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_due")]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} of alert {self.alert_id}: {self.status}"
