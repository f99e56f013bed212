"""Forms for deployments, routing policies, feature keys and publishing; each error says what to change."""

from __future__ import annotations

from typing import Any

from django import forms

from routing.engine.scorer import shipped_versions
from routing.models import (
    BREAKER_FIELDS,
    DEPLOYMENT_FIELDS,
    POLICY_FIELDS,
    ModelDeployment,
    RoutingPolicy,
    Tier,
)

INHERIT = (("", "Inherit from default"), ("true", "Yes"), ("false", "No"))


class DeploymentForm(forms.ModelForm):
    class Meta:
        model = ModelDeployment
        fields = list(DEPLOYMENT_FIELDS)
        labels = {
            "api_key_env": "API key environment variable",
            "input_price_per_mtok": "Input price (USD / 1M tokens)",
            "output_price_per_mtok": "Output price (USD / 1M tokens)",
            "monthly_hosting_usd": "Monthly hosting (USD)",
            "timeout_s": "Timeout (s)",
        }

    def clean_api_key_env(self) -> str:
        value = self.cleaned_data["api_key_env"].strip()
        if value.startswith(("sk-", "sk_")) or len(value) > 60:
            raise forms.ValidationError(
                "This looks like a key, not a variable name: put the key in the proxy's environment "
                "and give the variable's name here, e.g. ANTHROPIC_API_KEY."
            )
        return value.removeprefix("os.environ/")

    def clean_litellm_model(self) -> str:
        value = self.cleaned_data["litellm_model"].strip()
        if "/" not in value:
            raise forms.ValidationError(
                "Prefix the provider as LiteLLM expects, e.g. openai/llama-3-8b-instruct or anthropic/claude-sonnet-4-5."
            )
        return value


class PolicyForm(forms.ModelForm):
    rule_tools = forms.NullBooleanField(
        required=False, widget=forms.Select(choices=INHERIT), label="Tools → frontier"
    )
    rule_images = forms.NullBooleanField(
        required=False, widget=forms.Select(choices=INHERIT), label="Images → frontier"
    )
    rule_structured_output = forms.NullBooleanField(
        required=False, widget=forms.Select(choices=INHERIT), label="Structured output → frontier"
    )
    rule_context = forms.NullBooleanField(
        required=False, widget=forms.Select(choices=INHERIT), label="Too long for SLM → frontier"
    )

    class Meta:
        model = RoutingPolicy
        # over_budget is not edited here: over-budget behaviour has one home, the feature's budget
        fields = [name for name in POLICY_FIELDS if name != "over_budget"]
        labels = {
            "scorer_weights": "Scorer weights",
            "slm_timeout_ms": "SLM timeout (ms)",
            "over_budget": "Over budget",
            "breaker_window_s": "Breaker window (s)",
            "breaker_failure_share": "Breaker opens at failure share",
            "breaker_min_attempts": "Breaker minimum attempts",
            "breaker_consecutive_failures": "Breaker opens after hard failures in a row",
            "breaker_cool_off_s": "Breaker cool-off (s)",
            "breaker_max_cool_off_s": "Breaker longest cool-off (s)",
            "breaker_probe_one_in": "Half-open: probe one call in",
            "breaker_close_after": "Breaker closes after successful probes",
        }

    def __init__(self, *args: Any, features: Any = None, default: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        deployments = ModelDeployment.objects.filter(is_active=True)
        self.fields["small_deployment"].queryset = deployments.filter(tier=Tier.SMALL)
        self.fields["frontier_deployment"].queryset = deployments.filter(tier=Tier.FRONTIER)
        self.is_default = default or (self.instance.pk is not None and self.instance.is_default)
        if self.is_default or self.instance.pk is not None:
            del self.fields["feature"]
        else:
            self.fields["feature"].queryset = (
                features if features is not None else self.fields["feature"].queryset
            )
            self.fields["feature"].required = True
            self.fields["feature"].help_text = "The feature this override applies to."
        self.fields["threshold"].help_text = (
            "Complexity score below which the small model answers. Higher: more calls go to the small "
            "model, so lower cost but more fallbacks and weaker answers on hard prompts; lower: the "
            "reverse. 0 sends everything to frontier, 1.01 everything to the small model."
        )
        if not self.is_default:
            for name in BREAKER_FIELDS:  # one breaker per small model, shared by every feature
                del self.fields[name]
            del self.fields["scorer_weights"]  # one scorer for every feature: the default policy's
        else:
            self.fields["scorer_weights"].widget = forms.Select(
                choices=[(version, version) for version in reversed(shipped_versions())]
            )
            self.fields["scorer_weights"].help_text = (
                "The thresholds are on this scorer's scale: changing it moves every feature's routing, so "
                "retune the thresholds (the what-if shows each feature's split) before publishing."
            )
        if self.is_default:
            for name in ("rule_tools", "rule_images", "rule_structured_output", "rule_context"):
                self.fields[name].widget = forms.Select(choices=(("true", "Yes"), ("false", "No")))
        else:
            self.fields["small_deployment"].empty_label = "Inherit from default"
            self.fields["frontier_deployment"].empty_label = "Inherit from default"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("threshold") is not None and data.get("target_small_share") is not None:
            self.add_error(
                "target_small_share", "Set either a threshold or a target small share, not both: clear one."
            )
        if self.is_default and data.get("threshold") is None and data.get("target_small_share") is None:
            self.add_error(
                "threshold", "The default policy needs a threshold (e.g. 0.5) or a target small share."
            )
        return data


class FeatureKeyForm(forms.Form):
    feature = forms.ModelChoiceField(
        queryset=None, help_text="Calls made with the key count against this feature."
    )  # type: ignore[arg-type]
    name = forms.CharField(max_length=100, help_text="What uses the key, e.g. production web app.")
    expires_at = forms.DateTimeField(
        required=False,
        help_text="Optional, UTC, e.g. 2027-06-30 00:00. Empty: never expires.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args: Any, features: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["feature"].queryset = features


class PublishForm(forms.Form):
    note = forms.CharField(
        max_length=500,
        required=True,
        help_text="Why this version: shown in the bundle history and the audit log.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. lower support-bot threshold to 0.55"}),
    )
