"""Forms of the billing app."""

from __future__ import annotations

from datetime import datetime, time, timedelta
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


class AlertSnoozeForm(forms.Form):
    """How long to silence an alert: an hour, a day, or until the start of a chosen day (team time)."""

    DURATIONS = [("1h", "1 hour"), ("24h", "24 hours"), ("date", "until a date")]

    duration = forms.ChoiceField(label="Snooze", choices=DURATIONS, initial="1h")
    until = forms.DateField(
        label="Until",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The alert becomes active again at 00:00 on this day, in the team's timezone.",
    )

    def __init__(self, *args: Any, zone: Any, now: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone, self.now = zone, now

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        duration = data.get("duration")
        if duration == "1h":
            data["until_at"] = self.now + timedelta(hours=1)
        elif duration == "24h":
            data["until_at"] = self.now + timedelta(hours=24)
        elif duration == "date":
            day = data.get("until")
            if day is None:
                if "until" not in self.errors:
                    self.add_error(
                        "until", "Pick the day the snooze ends (YYYY-MM-DD), or choose 1 h or 24 h."
                    )
            else:
                data["until_at"] = datetime.combine(day, time.min, tzinfo=self.zone)
        return data
