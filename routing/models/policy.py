"""Routing: model deployments, routing policies and feature keys (the bundles that ship them: fleet.py)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce

from controlplane.fields import bounded_count, bounded_decimal
from controlplane.models import Feature, TimeStampedModel
from routing.engine.scorer import default_version, shipped_versions

ENV_NAME = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$",
    "Give the name of an environment variable (letters, digits, underscore), e.g. ANTHROPIC_API_KEY — never the key itself.",
)
GROUP_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
    "Use letters, digits, '.', '_' or '-' (the model name clients and fallbacks refer to), e.g. slm or frontier.",
)


class Tier(models.TextChoices):
    SMALL = "small", "Small (SLM)"
    FRONTIER = "frontier"


DEPLOYMENT_FIELDS = (  # what a user sets on a deployment: the form, the API and the audit share it
    "name",
    "model_group",
    "tier",
    "litellm_model",
    "api_base",
    "api_key_env",
    "timeout_s",
    "context_window",
    "supports_tools",
    "supports_vision",
    "supports_structured_output",
    "supports_logprobs",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "monthly_hosting_usd",
    "is_active",
)


class ModelDeployment(TimeStampedModel):
    """One LiteLLM deployment: a model behind a model group, with its key held in the proxy's environment."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True, validators=[GROUP_NAME])
    model_group = models.CharField(
        max_length=100,
        blank=True,
        validators=[GROUP_NAME],
        help_text="LiteLLM model group; deployments sharing one are load-balanced. Empty: the name.",
    )
    tier = models.CharField(max_length=16, choices=Tier.choices)
    litellm_model = models.CharField(
        max_length=200,
        help_text="LiteLLM model string, e.g. openai/llama-3-8b-instruct or anthropic/claude-sonnet-4-5.",
    )
    api_base = models.CharField(
        max_length=300,
        blank=True,
        help_text="http(s) URL of an OpenAI-compatible server; empty for the provider's.",
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[ENV_NAME],
        help_text="Name of the proxy's environment variable holding the key (never the key).",
    )
    timeout_s = bounded_decimal(
        "0.05",
        "3600",
        digits=7,
        places=2,
        help_text="Request timeout in seconds (the SLM's per-request timeout is set by the policy).",
    )
    context_window = bounded_count(1, 10_000_000, default=8192)
    supports_tools = models.BooleanField(default=False)
    supports_vision = models.BooleanField(default=False)
    supports_structured_output = models.BooleanField(default=False)
    supports_logprobs = models.BooleanField(default=False)
    input_price_per_mtok = bounded_decimal(
        "0", digits=12, places=6, help_text="USD per 1M input tokens; empty uses litellm's price map."
    )
    output_price_per_mtok = bounded_decimal(
        "0", digits=12, places=6, help_text="USD per 1M output tokens; empty uses litellm's price map."
    )
    monthly_hosting_usd = bounded_decimal(
        "0",
        digits=12,
        places=2,
        help_text="Fixed monthly cost of a self-hosted model (0 for pay-per-token providers).",
        default=Decimal("0.00"),
    )
    is_active = models.BooleanField(default=True, help_text="Inactive deployments are left out of bundles.")

    class Meta:
        ordering = ["tier", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(tier__in=Tier.values), name="deployment_tier_valid")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def group(self) -> str:
        return self.model_group or self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.api_base and not self.api_base.startswith(("http://", "https://")):
            errors["api_base"] = "Give an http:// or https:// URL, or leave it empty for the provider's own."
        if self.tier and self.is_active:
            others = ModelDeployment.objects.filter(is_active=True).exclude(pk=self.pk)
            clash = [d for d in others if d.group == self.group and d.tier != self.tier]
            if clash:
                errors["model_group"] = (
                    f"Model group {self.group!r} already serves {clash[0].tier}-tier deployment {clash[0].name!r}: "
                    "one group holds one tier, so pick another group name."
                )
        if errors:
            raise ValidationError(errors)


class OverBudget(models.TextChoices):
    BLOCK = "block", "Block with a clear 429"
    DEGRADE = "degrade", "Degrade: send everything to the small model"


def default_scorer_weights() -> str:
    """The scorer weights a new default policy's thresholds are meant for: the shipped default."""
    return default_version()


def validate_scorer_weights(value: str) -> None:
    if value and value not in shipped_versions():
        raise ValidationError(
            f"{value!r} is not a shipped scorer weights version: pick one of {', '.join(shipped_versions())}."
        )


class RoutingPolicy(TimeStampedModel):
    """How a feature's traffic splits between small and frontier; the one without a feature is the default.

    On an override, empty fields inherit the default policy's value."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    feature = models.OneToOneField(
        Feature, null=True, blank=True, on_delete=models.CASCADE, related_name="routing_policy"
    )
    small_deployment = models.ForeignKey(
        ModelDeployment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    frontier_deployment = models.ForeignKey(
        ModelDeployment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    threshold = bounded_decimal(
        "0",
        "1.01",
        digits=4,
        places=3,
        help_text="Complexity score below which the small model answers (0 all frontier, 1.01 all small).",
    )
    target_small_share = bounded_decimal(
        "0",
        "1",
        digits=4,
        places=3,
        help_text="Instead of a threshold: the share of calls the small model should take (0–1).",
    )
    slm_timeout_ms = bounded_count(
        50,
        120_000,
        help_text="Per-request timeout for the small model before falling back (default 2000 ms).",
    )
    confidence_floor = bounded_decimal(
        "0",
        "1",
        digits=4,
        places=3,
        help_text="Escalate small-model answers whose mean token probability is below this (0–1).",
    )
    rule_tools = models.BooleanField(null=True, blank=True, help_text="Requests with tools go to frontier.")
    rule_images = models.BooleanField(null=True, blank=True, help_text="Requests with images go to frontier.")
    rule_structured_output = models.BooleanField(
        null=True, blank=True, help_text="Requests asking for structured output go to frontier."
    )
    rule_context = models.BooleanField(
        null=True, blank=True, help_text="Prompts too long for the small model's window go to frontier."
    )
    context_margin_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(1_000_000)]
    )
    over_budget = models.CharField(max_length=16, blank=True, choices=OverBudget.choices)
    # Which scorer's scale the thresholds are on (default policy only; the bundle pins it). Policies that
    # existed before this field keep complexity-v1, the scale their thresholds were set on.
    scorer_weights = models.CharField(
        max_length=32,
        blank=True,
        default=default_scorer_weights,
        validators=[validate_scorer_weights],
        help_text="Scorer weights version the thresholds are set for (default policy only; every feature uses it).",
    )
    # Feature policies only: the approved per-feature score adjustment (feature-adjustment/1), set by approving
    # an AdjustmentProposal, shipped by the next publish.
    scorer_adjustment = models.JSONField(
        null=True,
        blank=True,
        help_text="The feature's own adjustment of the score, fitted from its outcomes (approve a proposal to set it).",
    )
    # The small model's circuit breaker (default policy only; empty: the documented default)
    breaker_window_s = bounded_count(
        1, 3600, help_text="Seconds of small-model attempts the failure share is taken over (default 30)."
    )
    breaker_failure_share = bounded_decimal(
        "0.05",
        "1",
        digits=4,
        places=3,
        help_text="Share of failed attempts (timeouts, connection errors, 5xx) that opens the breaker (default 0.5).",
    )
    breaker_min_attempts = bounded_count(
        1, 100_000, help_text="Attempts in the window before the failure share counts (default 20)."
    )
    breaker_consecutive_failures = bounded_count(
        1, 1000, help_text="Timeouts or refused connections in a row that open the breaker (default 5)."
    )
    breaker_cool_off_s = bounded_decimal(
        "0.1",
        "3600",
        digits=7,
        places=1,
        help_text="Seconds an open breaker waits before its first probe; doubles per failed probe (default 10).",
    )
    breaker_max_cool_off_s = bounded_decimal(
        "0.1", "86400", digits=7, places=1, help_text="Longest wait between probes (default 60)."
    )
    breaker_probe_one_in = bounded_count(
        1,
        100_000,
        help_text="A half-open breaker lets one call in this many try the small model (default 10).",
    )
    breaker_close_after = bounded_count(
        1, 1000, help_text="Successful probes that close the breaker (default 3)."
    )

    class Meta:
        ordering = ["feature__slug"]
        verbose_name_plural = "routing policies"
        constraints = [
            # a plain unique on a nullable column lets many NULLs through; coalescing makes "no feature" one value
            models.UniqueConstraint(
                Coalesce("feature", Value(0)), name="one_policy_per_feature_and_one_default"
            ),
            models.CheckConstraint(
                condition=Q(threshold__isnull=True) | Q(target_small_share__isnull=True),
                name="policy_threshold_or_share",
            ),
        ]

    def __str__(self) -> str:
        return f"policy for {self.feature.slug}" if self.feature_id else "default policy"

    @property
    def is_default(self) -> bool:
        return self.feature_id is None

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.threshold is not None and self.target_small_share is not None:
            errors["target_small_share"] = "Set either a threshold or a target small share, not both."
        for attr, tier in (("small_deployment", Tier.SMALL), ("frontier_deployment", Tier.FRONTIER)):
            dep = getattr(self, attr)
            if dep is None and self.is_default:
                errors[attr] = f"The default policy needs a {tier.label.lower()} deployment: pick one."
            elif dep is not None and dep.tier != tier:
                errors[attr] = f"{dep.name} is a {dep.tier}-tier deployment: pick a {tier.value}-tier one."
            elif dep is not None and not dep.is_active:
                errors[attr] = f"{dep.name} is inactive: activate it first or pick another."
        if self.is_default and self.scorer_adjustment is not None:
            errors["scorer_adjustment"] = (
                "An adjustment is fitted from one feature's outcomes: set it on that feature's policy."
            )
        if not self.is_default:
            for name in BREAKER_FIELDS:
                if getattr(self, name) is not None:
                    errors[name] = (
                        "The breaker guards the small model for every feature: set it on the default policy."
                    )
        if (
            self.breaker_cool_off_s is not None
            and self.breaker_max_cool_off_s is not None
            and self.breaker_max_cool_off_s < self.breaker_cool_off_s
        ):
            errors["breaker_max_cool_off_s"] = "Make the longest wait at least the first cool-off."
        if errors:
            raise ValidationError(errors)


BREAKER_FIELDS = {  # model field -> bundle key under policies.default.breaker
    "breaker_window_s": "window_s",
    "breaker_failure_share": "failure_share",
    "breaker_min_attempts": "min_attempts",
    "breaker_consecutive_failures": "consecutive_failures",
    "breaker_cool_off_s": "cool_off_s",
    "breaker_max_cool_off_s": "max_cool_off_s",
    "breaker_probe_one_in": "probe_one_in",
    "breaker_close_after": "close_after",
}


POLICY_FIELDS = (  # what a user sets on a policy: the form, the API and the audit share it
    "feature",
    "small_deployment",
    "frontier_deployment",
    "threshold",
    "target_small_share",
    "slm_timeout_ms",
    "confidence_floor",
    "rule_tools",
    "rule_images",
    "rule_structured_output",
    "rule_context",
    "context_margin_tokens",
    "over_budget",
    "scorer_weights",
    *BREAKER_FIELDS,
)


class FeatureKey(TimeStampedModel):
    """A key a feature's code sends to the proxies; stored only as its SHA-256 and a short prefix."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    feature = models.ForeignKey(Feature, on_delete=models.PROTECT, related_name="keys")
    name = models.CharField(max_length=100, help_text="What uses this key, e.g. production web app.")
    prefix = models.CharField(
        max_length=16, editable=False, help_text="First characters, to recognise the key."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["feature__slug", "-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.feature.slug})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
