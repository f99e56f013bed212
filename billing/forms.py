"""Forms of the billing app."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from billing.models import THRESHOLD_MAX, THRESHOLD_MIN, BudgetAction
from billing.selectors import ACTION_EFFECTS


class BudgetForm(forms.Form):
    amount_usd = forms.DecimalField(
        label="Monthly budget (USD)",
        min_value=Decimal("0.01"),
        max_digits=14,
        decimal_places=2,
        help_text="Calendar month in the team's timezone.",
    )
    thresholds = forms.CharField(
        label="Alert thresholds (%)",
        initial="50, 80, 100",
        help_text=(
            f"Alert at these percentages of the budget, comma-separated, each from {THRESHOLD_MIN} to "
            f"{THRESHOLD_MAX} (above 100: alerts while overspending)."
        ),
    )
    action = forms.ChoiceField(
        label="At 100 %",
        choices=[(value, f"{label}: {ACTION_EFFECTS[value]}") for value, label in BudgetAction.choices],
        initial=BudgetAction.ALERT,
        widget=forms.RadioSelect,
        help_text="What the feature's users experience once spend reaches the budget. This is the only "
        "place over-budget behaviour is set.",
    )
    is_active = forms.BooleanField(label="Active", required=False, initial=True)
    fallback_threshold_pct = forms.DecimalField(
        label="Fallback-rate alert (%)",
        required=False,
        min_value=Decimal("0.1"),
        max_value=Decimal("100"),
        decimal_places=1,
        help_text="Alert when this share of requests falls back; empty: the default 20 %.",
    )

    def __init__(self, *args: Any, with_fallback: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not with_fallback:
            del self.fields["fallback_threshold_pct"]

    def clean_thresholds(self) -> list[int]:
        raw = self.cleaned_data["thresholds"]
        try:
            values = [int(part.strip().rstrip("%").strip()) for part in raw.split(",") if part.strip()]
        except ValueError as exc:
            raise ValidationError(
                "Alert thresholds: write whole percentages separated by commas, e.g. 50, 80, 100."
            ) from exc
        if not values:
            raise ValidationError("Alert thresholds: give at least one percentage, e.g. 50, 80, 100.")
        wrong = [v for v in values if not THRESHOLD_MIN <= v <= THRESHOLD_MAX]
        if wrong:
            raise ValidationError(
                f"Alert thresholds: {', '.join(str(v) for v in wrong)} "
                f"{'is' if len(wrong) == 1 else 'are'} outside {THRESHOLD_MIN}–{THRESHOLD_MAX} %; "
                "use percentages of the budget such as 50, 80, 100."
            )
        if len(set(values)) != len(values):
            raise ValidationError("Alert thresholds: a percentage repeats; list each once.")
        return sorted(values)
