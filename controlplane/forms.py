"""Forms for teams and features; each error says what to change."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from controlplane.models import Feature, Role, Team


class TeamForm(forms.ModelForm):
    """Team settings; the webhook URL is a secret: never shown back, left empty to keep the current one."""

    webhook_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Slack-compatible webhook for alerts. Write-only: it is never shown again.",
    )
    remove_webhook = forms.BooleanField(required=False, label="Remove the webhook")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("webhook_url", None)  # a secret is never rendered back into the page
        if self.instance.pk and self.instance.webhook_url:
            self.fields[
                "webhook_url"
            ].help_text = "A webhook is set. Leave empty to keep it, type a new URL to replace it."
            self.fields["webhook_url"].widget.attrs["placeholder"] = "(set — hidden)"
        else:
            del self.fields["remove_webhook"]

    class Meta:
        model = Team
        fields = ["name", "slug", "description", "timezone", "webhook_url"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def clean_timezone(self) -> str:
        value = self.cleaned_data["timezone"]
        if value not in zoneinfo.available_timezones():
            raise forms.ValidationError(
                f"“{value}” is not a time zone name: use one such as UTC or Europe/Berlin."
            )
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.pop("remove_webhook", False):
            data["webhook_url"] = ""
        elif not data.get("webhook_url") and self.instance.pk:
            data["webhook_url"] = Team.objects.get(pk=self.instance.pk).webhook_url
        return data


class FeatureForm(forms.ModelForm):
    class Meta:
        model = Feature
        fields = ["team", "name", "slug", "description", "owner", "is_active"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        help_texts = {
            "slug": "Lowercase letters, digits and hyphens; requests and spend records name the feature by it."
        }

    def __init__(self, *args: Any, teams: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if teams is not None:
            self.fields["team"].queryset = teams
        self.fields["owner"].queryset = get_user_model().objects.filter(is_active=True).order_by("username")
        self.fields["owner"].required = False

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if slug != slug.lower():
            raise forms.ValidationError(
                "Use lowercase only: spend records and feature keys match slugs exactly."
            )
        return slug


class MemberAddForm(forms.Form):
    """Add an existing user to a team with a role (admins only; the user signs in with their own password)."""

    username = forms.CharField(
        label="User", max_length=150, help_text="Their username or email address, e.g. jane@example.com."
    )
    role = forms.ChoiceField(label="Role on this team", choices=[])

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["role"].choices = [(r.value, r.label) for r in Role if r != Role.ADMIN]
        self.fields[
            "role"
        ].help_text = "PM: this team's features and budgets; MLOps: its routing; viewer: read only."

    def clean_username(self) -> Any:
        raw = self.cleaned_data["username"].strip()
        users = get_user_model().objects
        user = users.filter(username=raw).first() or users.filter(email__iexact=raw).first()
        if user is None:
            raise forms.ValidationError(
                f"User: no account {raw!r}; check the spelling, or ask an admin to create the account first."
            )
        if self.team.memberships.filter(user=user).exists():
            raise forms.ValidationError(
                f"User: {user.get_username()} is already a member of {self.team.name}; change their role "
                "in the admin instead."
            )
        return user
