"""Issue 14 item 6 (control-plane side): where a deployment sends its key is an admin decision, flagged in diffs."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from routing import services
from routing.models import ModelDeployment
from tests.routing.fleet_support import make_routing

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _form(deployment: ModelDeployment, **changes: str) -> dict[str, str]:
    data = {
        "name": deployment.name,
        "tier": deployment.tier,
        "litellm_model": deployment.litellm_model,
        "api_base": deployment.api_base,
        "api_key_env": deployment.api_key_env,
        "context_window": str(deployment.context_window),
        "monthly_hosting_usd": str(deployment.monthly_hosting_usd),
        "is_active": "on",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "change", [{"api_base": "https://attacker.example/v1"}, {"api_key_env": "LITELLM_MASTER_KEY"}]
)
def test_org_mlops_cannot_point_a_deployment_or_its_key_elsewhere(client, users, change):
    _, frontier, _ = make_routing()
    client.force_login(users["mlops"])
    answer = client.post(
        reverse("routing-deployment", args=[frontier.code]), _form(frontier, **change), **HTMX
    )
    assert answer.status_code == 422 and "Only an admin" in answer.content.decode()
    api = APIClient()
    api.force_authenticate(users["mlops"])
    via_api = api.patch(f"/api/v1/routing/deployments/{frontier.code}/", change, format="json")
    assert via_api.status_code == 400 and "Only an admin" in str(via_api.json())
    frontier.refresh_from_db()
    assert frontier.api_base == "http://127.0.0.1:9/v1" and frontier.api_key_env == "FINOPS_TEST_UPSTREAM_KEY"


def test_org_mlops_still_edits_everything_else(client, users):
    _, frontier, _ = make_routing()
    client.force_login(users["mlops"])
    answer = client.post(
        reverse("routing-deployment", args=[frontier.code]), _form(frontier, context_window="64000"), **HTMX
    )
    assert answer.status_code == 200
    frontier.refresh_from_db()
    assert frontier.context_window == 64000


def test_admin_may_and_the_bundle_diff_flags_it(client, users):
    _, frontier, _ = make_routing()
    first = services.bundle_publish(actor=None, note="v1", rollout=False)
    client.force_login(users["admin"])
    answer = client.post(
        reverse("routing-deployment", args=[frontier.code]),
        _form(frontier, api_base="https://frontier.example/v1"),
        **HTMX,
    )
    assert answer.status_code == 200
    second = services.bundle_publish(actor=None, note="v2", rollout=False)
    page = client.get(reverse("bundle-detail", args=[second.code])).content.decode()
    assert "key destination changed" in page
    diff = client.get(f"/api/v1/fleet/bundles/{second.code}/diff/").json()
    flagged = [c for c in diff["changes"] if c["endpoint"]]
    assert flagged and flagged[0]["path"].endswith(".api_base") and diff["from"] == first.version
