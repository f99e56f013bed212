"""Routing and fleet pages and API: every role against every mutating view, outsiders 404, audit, errors."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from controlplane.models import AuditEntry
from routing import services
from routing.engine.signing import signing_key, split_credential, token_hash
from routing.models import Bundle, FeatureKey, ModelDeployment, Proxy, Rollout, RoutingPolicy
from routing.services import fleet as fleet_services
from tests.routing.fleet_support import make_routing

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
ROUTING_EDITORS = {"admin", "mlops"}


def _login(client, user):
    client.force_login(user)
    return client


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def routing(feature):
    small, frontier, default = make_routing()
    override = services.policy_create(actor=None, feature=feature, threshold=Decimal("0.6"))
    return {"small": small, "frontier": frontier, "default": default, "override": override}


DEPLOYMENT_POST = {
    "name": "llama-70b",
    "tier": "small",
    "litellm_model": "openai/llama-3-70b",
    "api_base": "http://10.0.0.9:8000/v1",
    "api_key_env": "LLAMA_KEY",
    "context_window": 8192,
    "monthly_hosting_usd": "900.00",
    "is_active": "on",
}


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer", "outsider", "nobody"])
def test_deployment_create_permission(client, users, routing, who):
    response = _login(client, users[who]).post(reverse("routing-deployment-create"), DEPLOYMENT_POST, **HTMX)
    # where a key is sent (api_base, key variable) is an admin decision (issue 14 item 6)
    allowed = who == "admin"
    assert response.status_code == (200 if allowed else 422 if who in ROUTING_EDITORS else 403)
    assert ModelDeployment.objects.filter(name="llama-70b").exists() is allowed


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("admin", 200),
        ("mlops", 422),  # an api_base change needs the admin role (issue 14 item 6)
        ("viewer", 403),
        ("pm", 403),
        ("team_viewer", 403),
        ("outsider", 403),
        ("nobody", 404),
    ],
)
def test_deployment_edit_permission(client, users, routing, who, status):
    small = routing["small"]
    data = {**DEPLOYMENT_POST, "name": "slm", "api_base": "http://10.0.0.1/v1"}
    response = _login(client, users[who]).post(reverse("routing-deployment", args=[small.code]), data, **HTMX)
    assert response.status_code == status
    small.refresh_from_db()
    assert (small.api_base == "http://10.0.0.1/v1") is (status == 200)


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("mlops", 200), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("outsider", 404)],
)
def test_policy_edit_permission(client, users, routing, who, status):
    override = routing["override"]
    data = {"threshold": "0.45", "over_budget": "degrade"}
    response = _login(client, users[who]).post(reverse("routing-policy", args=[override.code]), data, **HTMX)
    assert response.status_code == status
    override.refresh_from_db()
    assert (override.threshold == Decimal("0.45")) is (status == 200)


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("mlops", 200), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("outsider", 404)],
)
def test_policy_delete_permission(client, users, routing, who, status):
    override = routing["override"]
    response = _login(client, users[who]).post(reverse("routing-policy-delete", args=[override.code]), **HTMX)
    assert response.status_code == status
    assert RoutingPolicy.objects.filter(pk=override.pk).exists() is (status != 200)


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer", "nobody"])
def test_override_create_permission(client, users, routing, other_feature, who):
    data = {"feature": other_feature.pk, "threshold": "0.2"}
    response = _login(client, users[who]).post(reverse("routing-policy-create"), data, **HTMX)
    allowed = who in ROUTING_EDITORS
    assert response.status_code == (200 if allowed else 403)
    assert RoutingPolicy.objects.filter(feature=other_feature).exists() is allowed


def test_override_for_a_feature_of_another_team_is_not_offered_to_a_team_mlops(
    client, routing, other_feature
):
    from tests.conftest import _member

    team_mlops = _member("mlops", routing["override"].feature.team)
    response = _login(client, team_mlops).post(
        reverse("routing-policy-create"), {"feature": other_feature.pk, "threshold": "0.2"}, **HTMX
    )
    assert response.status_code == 422
    assert "Select a valid choice" in response.content.decode()


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer", "nobody"])
def test_key_create_permission_and_key_shown_once(client, users, feature, who):
    response = _login(client, users[who]).post(
        reverse("routing-key-create"), {"feature": feature.pk, "name": "web"}, **HTMX
    )
    allowed = who == "admin"
    assert response.status_code == (200 if allowed else 403)
    assert FeatureKey.objects.exists() is allowed
    if allowed:
        key = FeatureKey.objects.get()
        body = response.content.decode()
        plaintext = body.split('secret-value">')[1].split("<")[0].strip()
        assert token_hash(plaintext) == key.key_hash
        assert key.prefix == plaintext[:10]
        page = client.get(reverse("routing")).content.decode()
        assert plaintext not in page and key.prefix in page


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("mlops", 403), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("outsider", 404)],
)
def test_key_revoke_permission(client, users, feature, who, status):
    key, _ = services.feature_key_create(actor=None, feature=feature, name="web")
    response = _login(client, users[who]).post(reverse("routing-key-revoke", args=[key.code]), **HTMX)
    assert response.status_code == status
    key.refresh_from_db()
    assert key.is_revoked is (status == 200)


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer", "nobody"])
def test_publish_permission(client, users, routing, who):
    client = _login(client, users[who])
    preview = client.get(reverse("routing-publish-preview"), **HTMX).content.decode()
    token = re.search(r'name="preview_token" value="([^"]+)"', preview)
    data = {"note": "first", "preview_token": token.group(1) if token else ""}
    response = client.post(reverse("routing-publish"), data, **HTMX)
    allowed = who in ROUTING_EDITORS
    assert bool(token) is allowed
    assert response.status_code == (200 if allowed else 403)
    assert Bundle.objects.exists() is allowed
    if allowed:
        rollout = Rollout.objects.get()
        assert response["HX-Redirect"] == reverse("fleet-rollout", args=[rollout.code])


def test_publish_of_an_invalid_bundle_lists_every_error(client, users, db):
    services.deployment_create(actor=None, name="slm", tier="small", litellm_model="nonsense-provider/x")
    client = _login(client, users["mlops"])
    preview = client.get(reverse("routing-publish-preview"), **HTMX).content.decode()
    assert "no default policy" in preview and "would be refused" in preview
    assert "preview_token" not in preview and "Publish and roll out" not in preview  # nothing to confirm
    response = client.post(reverse("routing-publish"), {"note": "broken"}, **HTMX)
    assert response.status_code == 422
    assert "not published" in response.content.decode()
    assert not Bundle.objects.exists()


PROXY_POST = {"name": "edge-1", "base_url": "https://10.0.0.7:4000", "pool": "default", "is_active": "on"}


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("mlops", 200), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("nobody", 404)],
)
def test_proxy_register_permission_and_token_once(client, users, who, status):
    response = _login(client, users[who]).post(reverse("fleet"), PROXY_POST, **HTMX)
    assert response.status_code == status
    assert Proxy.objects.filter(name="edge-1").exists() is (status == 200)
    if status == 200:
        credential = response.content.decode().split("FINOPS_PROXY_TOKEN=")[1].split("<")[0].strip()
        token, ingest_secret = split_credential(credential)
        proxy = Proxy.objects.get(name="edge-1")
        assert proxy.token_hash == token_hash(token)
        assert ingest_secret != token and proxy.signing_key == signing_key(ingest_secret)


@pytest.fixture
def proxy(db):
    return fleet_services.proxy_create(actor=None, name="edge-0", base_url="http://127.0.0.1:9")[0]


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("mlops", 200), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("nobody", 404)],
)
def test_proxy_edit_and_rotate_permission(client, users, proxy, who, status):
    data = {**PROXY_POST, "name": "edge-0", "is_canary": "on"}
    client = _login(client, users[who])
    assert client.post(reverse("fleet-proxy", args=[proxy.code]), data, **HTMX).status_code == status
    old_hash = proxy.token_hash
    assert client.post(reverse("fleet-proxy-rotate", args=[proxy.code]), **HTMX).status_code == status
    proxy.refresh_from_db()
    assert proxy.is_canary is (status == 200)
    assert (proxy.token_hash != old_hash) is (status == 200)


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("mlops", 200), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("nobody", 404)],
)
def test_rollback_permission(client, users, routing, who, status):
    bundle = services.bundle_publish(actor=None, note="v1", rollout=False)
    response = _login(client, users[who]).post(
        reverse("bundle-rollout", args=[bundle.code]), {"note": "back"}, **HTMX
    )
    assert response.status_code == status
    assert Rollout.objects.filter(bundle=bundle, kind="rollback").exists() is (status == 200)


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer"])
def test_pages_render_for_every_member(client, users, routing, proxy, who):
    bundle = services.bundle_publish(actor=None, note="v1")
    rollout = bundle.rollouts.get()
    client = _login(client, users[who])
    for url in (
        reverse("routing"),
        reverse("fleet"),
        reverse("fleet-rollout", args=[rollout.code]),
        reverse("fleet-proxy", args=[proxy.code]),
        reverse("routing-policy", args=[routing["default"].code]),
        reverse("routing-deployment", args=[routing["small"].code]),
    ):
        assert client.get(url).status_code == 200, url


def test_outsider_does_not_see_another_teams_policy(client, users, routing):
    response = _login(client, users["outsider"]).get(
        reverse("routing-policy", args=[routing["override"].code])
    )
    assert response.status_code == 404
    page = client.get(reverse("routing")).content.decode()
    assert routing["override"].feature.slug not in page


def test_running_rollout_fragment_polls_every_second(client, users, routing, proxy):
    bundle = services.bundle_publish(actor=None, note="v1")  # its task never runs here: stays pending
    rollout = bundle.rollouts.get()
    body = (
        _login(client, users["viewer"])
        .get(reverse("fleet-rollout", args=[rollout.code]), **HTMX)
        .content.decode()
    )
    assert 'hx-trigger="every 1s"' in body and "edge-0" in body and 'role="progressbar"' in body
    Rollout.objects.filter(pk=rollout.pk).update(status="succeeded")
    body = client.get(reverse("fleet-rollout", args=[rollout.code]), **HTMX).content.decode()
    assert "every 1s" not in body


def test_bundle_page_shows_diff_and_config(client, users, routing):
    first = services.bundle_publish(actor=None, note="v1", rollout=False)
    services.policy_update(actor=None, policy=routing["default"], threshold=Decimal("0.3"))
    second = services.bundle_publish(actor=None, note="v2", rollout=False)
    body = _login(client, users["viewer"]).get(reverse("bundle-detail", args=[second.code])).content.decode()
    assert "$.policies.default.threshold" in body and "since v1" in body
    assert "model_list:" in body
    body = client.get(
        reverse("bundle-detail", args=[first.code]) + f"?against={second.code}"
    ).content.decode()
    assert "$.policies.default.threshold" in body


def test_deployment_form_explains_a_pasted_key(client, users, db):
    data = {**DEPLOYMENT_POST, "api_key_env": "sk-abc123secret"}
    response = _login(client, users["mlops"]).post(reverse("routing-deployment-create"), data, **HTMX)
    assert response.status_code == 422
    assert "looks like a key, not a variable name" in response.content.decode()


def test_policy_form_refuses_threshold_and_share_together(client, users, routing):
    data = {"threshold": "0.4", "target_small_share": "0.7"}
    response = _login(client, users["mlops"]).post(
        reverse("routing-policy", args=[routing["override"].code]), data, **HTMX
    )
    assert response.status_code == 422
    assert "not both" in response.content.decode()


def test_group_with_two_tiers_is_refused_next_to_the_field(client, users, routing):
    data = {**DEPLOYMENT_POST, "model_group": "frontier"}
    response = _login(client, users["mlops"]).post(reverse("routing-deployment-create"), data, **HTMX)
    assert response.status_code == 422
    assert "one group holds one tier" in response.content.decode()


def test_every_change_is_audited(users, routing, feature):
    admin = users["admin"]
    services.policy_update(actor=admin, policy=routing["default"], threshold=Decimal("0.3"))
    key, _ = services.feature_key_create(actor=admin, feature=feature, name="web")
    services.feature_key_revoke(actor=admin, key=key)
    services.bundle_publish(actor=admin, note="audited", rollout=False)
    entries = AuditEntry.objects.filter(actor=admin)
    update = entries.get(object_type="routing.RoutingPolicy", action="update")
    assert update.changes["threshold"] == ["1.010", "0.3"]
    assert entries.filter(object_type="routing.FeatureKey", action="create").exists()
    revoke = entries.get(object_type="routing.FeatureKey", action="revoke")
    assert revoke.changes["revoked_at"][0] is None and revoke.team == feature.team
    assert entries.get(object_type="routing.Bundle", action="publish").note == "audited"
    assert AuditEntry.objects.filter(object_type="routing.ModelDeployment", action="create").count() == 2


# --- API ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer", "nobody"])
def test_api_deployment_create_permission(users, routing, who):
    body = {"name": "api-slm", "tier": "small", "litellm_model": "openai/x", "context_window": 4096}
    response = _api(users[who]).post("/api/v1/routing/deployments/", body, format="json")
    assert response.status_code == (201 if who in ROUTING_EDITORS else 403)


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("mlops", 200), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("outsider", 404)],
)
def test_api_policy_update_permission(users, routing, who, status):
    url = f"/api/v1/routing/policies/{routing['override'].code}/"
    response = _api(users[who]).patch(url, {"threshold": "0.33"}, format="json")
    assert response.status_code == status


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 201), ("mlops", 403), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("outsider", 404)],
)
def test_api_key_create_permission(users, feature, who, status):
    response = _api(users[who]).post(
        "/api/v1/routing/keys/", {"feature": feature.slug, "name": "api"}, format="json"
    )
    assert response.status_code == status
    if status == 201:
        assert token_hash(response.json()["key"]) == FeatureKey.objects.get().key_hash


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("mlops", 403), ("viewer", 403), ("pm", 403), ("team_viewer", 403), ("outsider", 404)],
)
def test_api_key_revoke_permission(users, feature, who, status):
    key, _ = services.feature_key_create(actor=None, feature=feature, name="web")
    response = _api(users[who]).post(f"/api/v1/routing/keys/{key.code}/revoke/")
    assert response.status_code == status


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer", "nobody"])
def test_api_publish_permission(users, routing, who):
    response = _api(users[who]).post("/api/v1/fleet/bundles/publish/", {"note": "api"}, format="json")
    expected = {"admin": 201, "mlops": 201, "nobody": 404}.get(who, 403)
    assert response.status_code == expected
    if expected == 201:
        assert response.json()["version"] == "v1" and response.json()["rollout"]


def test_api_publish_errors_are_listed(users, db):
    response = _api(users["admin"]).post("/api/v1/fleet/bundles/publish/", {"note": "x"}, format="json")
    assert response.status_code == 400
    assert any("no default policy" in e for e in response.json()["errors"])


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer", "nobody"])
def test_api_rollback_and_proxy_create_permission(users, routing, who):
    bundle = services.bundle_publish(actor=None, note="v1", rollout=False)
    api = _api(users[who])
    rollback = api.post(f"/api/v1/fleet/bundles/{bundle.code}/rollout/", {"note": "back"}, format="json")
    created = api.post(
        "/api/v1/fleet/proxies/", {"name": "api-edge", "base_url": "https://10.0.0.8:4000"}, format="json"
    )
    expected = {"admin": 201, "mlops": 201, "nobody": 404}.get(who, 403)
    # team-scoped members do not see bundles at all (issue 14 item 11)
    assert rollback.status_code == (404 if who in ("pm", "team_viewer") else expected)
    assert created.status_code == expected
    if expected == 201:
        token, ingest_secret = split_credential(created.json()["token"])
        proxy = Proxy.objects.get(name="api-edge")
        assert token_hash(token) == proxy.token_hash and signing_key(ingest_secret) == proxy.signing_key


def test_api_bundle_diff(users, routing):
    services.bundle_publish(actor=None, note="v1", rollout=False)
    services.policy_update(actor=None, policy=routing["default"], threshold=Decimal("0.3"))
    second = services.bundle_publish(actor=None, note="v2", rollout=False)
    body = _api(users["viewer"]).get(f"/api/v1/fleet/bundles/{second.code}/diff/").json()
    assert body["from"] == "v1" and body["to"] == "v2"
    assert {
        "path": "$.policies.default.threshold",
        "kind": "changed",
        "before": 1.01,
        "after": 0.3,
        "endpoint": False,
    } in body["changes"]


@pytest.mark.parametrize(
    ("who", "shown"), [("mlops", True), ("admin", True), ("viewer", False), ("pm", False)]
)
def test_fleet_page_offers_rollback_to_fleet_managers(client, users, routing, proxy, who, shown):
    services.bundle_publish(actor=None, note="v1")
    Rollout.objects.update(status="succeeded")
    services.policy_update(actor=None, policy=routing["default"], threshold=Decimal("0.3"))
    services.bundle_publish(actor=None, note="v2")
    Rollout.objects.update(status="succeeded")
    body = _login(client, users[who]).get(reverse("fleet")).content.decode()
    assert ("Roll back to v1" in body) is shown
    assert "edge-0" in body and "v2" in body


def test_users_without_membership_get_404_on_routing_and_fleet(client, users):
    client = _login(client, users["nobody"])
    assert client.get(reverse("routing")).status_code == 404
    assert client.get(reverse("fleet")).status_code == 404


def test_only_the_default_policy_form_chooses_the_scorer_weights(client, users, routing):
    logged_in = _login(client, users["mlops"])
    default_page = logged_in.get(reverse("routing-policy", args=[routing["default"].code]), **HTMX)
    assert default_page.status_code == 200
    html = default_page.content.decode()
    assert 'name="scorer_weights"' in html
    for version in ("complexity-v1", "complexity-v2", "complexity-v3"):
        assert f'<option value="{version}"' in html
    assert "retune the thresholds" in html
    override_page = logged_in.get(reverse("routing-policy", args=[routing["override"].code]), **HTMX)
    assert override_page.status_code == 200 and 'name="scorer_weights"' not in override_page.content.decode()


def test_proxies_register_by_compose_service_name_through_api_and_form(users, db, settings):
    """Issue 19 item 6: compose and Kubernetes name a proxy `proxy-a`, a host without a dot (plain http to it
    is allowed by FINOPS_HTTP_PROXY_HOSTS, as docker/example.env sets it)."""
    from routing.forms.fleet import ProxyForm

    settings.FINOPS_HTTP_PROXY_HOSTS = ["proxy-a", "proxy-b"]
    created = _api(users["admin"]).post(
        "/api/v1/fleet/proxies/", {"name": "proxy-a", "base_url": "http://proxy-a:4000"}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert Proxy.objects.get(name="proxy-a").base_url == "http://proxy-a:4000"
    form = ProxyForm(data={"name": "proxy-b", "base_url": "http://proxy-b:4000/", "pool": "default"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["base_url"] == "http://proxy-b:4000"
    refused = _api(users["admin"]).post(
        "/api/v1/fleet/proxies/", {"name": "proxy-c", "base_url": "proxy-c:4000"}, format="json"
    )
    assert refused.status_code == 400
    assert "proxy-a:4000" in refused.json()["base_url"][0]  # the message shows a URL that works
