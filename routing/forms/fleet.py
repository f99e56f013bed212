"""Forms for the fleet: registering and editing proxies, rolling a bundle out again."""

from __future__ import annotations

from django import forms

from routing.models import Proxy, ServiceURLFormField


class ProxyForm(forms.ModelForm):
    base_url = ServiceURLFormField(
        assume_scheme="http",
        help_text="Where the control plane pushes bundles, e.g. http://10.0.0.5:4000 or http://proxy-a:4000 (the proxy's own port).",
    )

    class Meta:
        model = Proxy
        fields = ["name", "base_url", "pool", "is_canary", "is_active"]
        help_texts = {
            "pool": "Proxies of one pool run the same bundle; rollouts can target one pool.",
            "is_canary": "Gets every new bundle first; a failure there rolls the rollout back.",
        }

    def clean_base_url(self) -> str:
        return self.cleaned_data["base_url"].rstrip("/")


class RolloutForm(forms.Form):
    note = forms.CharField(max_length=500, required=False, help_text="Why (kept in the audit log).")
    pool = forms.CharField(max_length=64, required=False, help_text="Only this pool; empty for every proxy.")
