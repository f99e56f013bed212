"""Issue 14 (security): attacks on the control plane's pages and API, each through the Django test client."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from routing import services
from routing.models import ModelDeployment, Rollout, RolloutStatus
from tests.routing.fleet_support import make_routing

pytestmark = pytest.mark.django_db


class _HxVals(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.values += [value or "" for name, value in attrs if name == "hx-vals"]


def test_fleet_rollback_button_keeps_a_hostile_pool_name_inside_its_json_string(client, users):
    """A pool name with quotes and braces must not add or override values the rollback button posts."""
    make_routing()
    first = services.bundle_publish(actor=None, note="first", rollout=False)
    Rollout.objects.create(bundle=first, status=RolloutStatus.SUCCEEDED)
    ModelDeployment.objects.filter(name="slm").update(context_window=8000)
    second = services.bundle_publish(actor=None, note="second", rollout=False)
    pool = 'eu", "pool": "", "x": "</script><b>\'{}'
    Rollout.objects.create(bundle=second, previous_bundle=first, pool=pool, status=RolloutStatus.SUCCEEDED)
    client.force_login(users["admin"])
    page = client.get(reverse("fleet"), {"fragment": "live"})
    assert page.status_code == 200
    parser = _HxVals()
    parser.feed(page.content.decode())
    assert parser.values, "the rollback button is missing"
    posted = json.loads(parser.values[0])
    assert posted == {"note": f"roll back {second.version} from the fleet page", "pool": pool}


# --- item 8: team webhook URLs are secrets ---------------------------------------------------------

WEBHOOK = "https://hooks.slack.test/services/T000/B000/very-secret-token"


def _team_with_webhook(team, admin):
    from controlplane import services as tenancy

    return tenancy.team_update(actor=admin, team=team, webhook_url=WEBHOOK)


def test_team_api_never_returns_the_webhook_url(client, users, team):
    _team_with_webhook(team, users["admin"])
    for who in ("team_viewer", "pm", "admin"):
        client.force_login(users[who])
        detail = client.get(f"/api/v1/teams/{team.code}/")
        listing = client.get("/api/v1/teams/")
        assert detail.status_code == 200 and listing.status_code == 200
        assert "very-secret-token" not in detail.content.decode() + listing.content.decode(), who
        assert detail.json()["has_webhook"] is True


def test_team_api_keeps_the_webhook_when_an_update_leaves_it_out(client, users, team):
    _team_with_webhook(team, users["admin"])
    client.force_login(users["admin"])
    response = client.patch(
        f"/api/v1/teams/{team.code}/", {"description": "new words"}, content_type="application/json"
    )
    assert response.status_code == 200 and "webhook_url" not in response.json()
    team.refresh_from_db()
    assert team.webhook_url == WEBHOOK


def test_audit_diffs_mask_webhook_urls(client, users, team):
    _team_with_webhook(team, users["admin"])
    client.force_login(users["team_viewer"])
    api = client.get("/api/v1/audit/")
    page = client.get(reverse("audit-list"))
    assert api.status_code == 200 and page.status_code == 200
    text = api.content.decode() + page.content.decode()
    assert "very-secret-token" not in text
    assert "hooks.slack.test" in api.content.decode()  # the change is visible, its secret is not


def test_team_form_never_renders_the_webhook_and_empty_keeps_it(client, users, team):
    _team_with_webhook(team, users["admin"])
    client.force_login(users["admin"])
    page = client.get(reverse("team-detail", args=[team.code]))
    assert page.status_code == 200 and "very-secret-token" not in page.content.decode()
    form = {
        "name": team.name,
        "slug": team.slug,
        "description": "edited",
        "timezone": "UTC",
        "webhook_url": "",
    }
    saved = client.post(reverse("team-detail", args=[team.code]), form, HTTP_HX_REQUEST="true")
    assert saved.status_code == 200, saved.content
    team.refresh_from_db()
    assert team.webhook_url == WEBHOOK and team.description == "edited"
    removed = client.post(
        reverse("team-detail", args=[team.code]), {**form, "remove_webhook": "on"}, HTTP_HX_REQUEST="true"
    )
    assert removed.status_code == 200
    team.refresh_from_db()
    assert team.webhook_url == ""


# --- item 13: login throttles ----------------------------------------------------------------------


@pytest.fixture
def clean_throttle():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _admin_with_password():
    from tests.factories import UserFactory

    user = UserFactory(username="root", is_staff=True, is_superuser=True)
    user.set_password("right-password")
    user.save()
    return user


def test_admin_login_is_throttled(client, clean_throttle):
    _admin_with_password()
    for _ in range(5):
        failed = client.post("/admin/login/", {"username": "root", "password": "wrong"})
        assert failed.status_code == 200
    blocked = client.post("/admin/login/", {"username": "root", "password": "right-password"})
    assert blocked.status_code == 429 and blocked["Retry-After"] == "300"


def test_admin_login_still_works_below_the_limit(client, clean_throttle):
    _admin_with_password()
    client.post("/admin/login/", {"username": "root", "password": "wrong"})
    assert client.post("/admin/login/", {"username": "root", "password": "right-password"}).status_code == 302


def test_failures_behind_a_trusted_reverse_proxy_lock_out_only_the_attacker(client, settings, clean_throttle):
    settings.TRUSTED_PROXIES = ["10.9.0.0/16"]
    _admin_with_password()
    via_proxy = {"REMOTE_ADDR": "10.9.0.2"}
    for _ in range(6):
        client.post(
            reverse("login"),
            {"username": "root", "password": "wrong"},
            HTTP_X_FORWARDED_FOR="198.51.100.66, 203.0.113.9",  # the attacker cannot choose the last entry
            **via_proxy,
        )
    assert (
        client.post(
            reverse("login"),
            {"username": "root", "password": "wrong"},
            HTTP_X_FORWARDED_FOR="203.0.113.9",
            **via_proxy,
        ).status_code
        == 429
    )
    victim = client.post(
        reverse("login"),
        {"username": "root", "password": "right-password"},
        HTTP_X_FORWARDED_FOR="192.0.2.10",
        **via_proxy,
    )
    assert victim.status_code == 302


def test_forwarded_for_from_an_untrusted_peer_is_ignored(client, settings, clean_throttle):
    settings.TRUSTED_PROXIES = ["10.9.0.0/16"]
    _admin_with_password()
    for i in range(5):  # a client rotating X-Forwarded-For on its own is still one address
        client.post(
            reverse("login"),
            {"username": "root", "password": "wrong"},
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}",
            REMOTE_ADDR="203.0.113.9",
        )
    assert (
        client.post(
            reverse("login"), {"username": "root", "password": "right-password"}, REMOTE_ADDR="203.0.113.9"
        ).status_code
        == 429
    )


# --- item 11: bundles are for org-wide roles only ---------------------------------------------------


@pytest.mark.parametrize("who", ["pm", "team_viewer", "outsider"])
def test_team_scoped_members_cannot_read_bundles(client, users, feature, other_feature, who):
    make_routing()
    services.feature_key_create(actor=None, feature=other_feature, name="growth key")
    bundle = services.bundle_publish(actor=None, note="v1", rollout=False)
    client.force_login(users[who])
    for url in (
        reverse("bundle-list"),
        reverse("bundle-detail", args=[bundle.code]),
        f"/api/v1/fleet/bundles/{bundle.code}/",
        f"/api/v1/fleet/bundles/{bundle.code}/diff/",
    ):
        assert client.get(url).status_code == 404, url
    listing = client.get("/api/v1/fleet/bundles/")
    assert listing.status_code == 200 and listing.json()["count"] == 0
    fleet = client.get(reverse("fleet")).content.decode()
    assert str(bundle.code) not in fleet and bundle.content_hash not in fleet


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer", "pm", "team_viewer", "outsider"])
def test_every_bundle_link_a_page_shows_opens_for_that_user(client, users, feature, other_feature, who):
    """Pages show a bundle link only to those who may read bundles: a team-scoped member got a 404."""
    import re

    from routing.models import Rollout, RolloutStatus

    make_routing()
    services.feature_key_create(actor=None, feature=other_feature, name="growth key")
    bundle = services.bundle_publish(actor=None, note="note-for-fleet-readers", rollout=False)
    rollout = Rollout.objects.create(bundle=bundle, status=RolloutStatus.SUCCEEDED)
    client.force_login(users[who])
    links: set[str] = set()
    for page in (reverse("routing"), reverse("fleet"), reverse("fleet-rollout", args=[rollout.code])):
        answer = client.get(page)
        assert answer.status_code == 200, page
        links |= set(re.findall(r'href="(/fleet/bundles/[^"]*)"', answer.content.decode()))
    for link in links:
        assert client.get(link).status_code == 200, f"{who} is shown {link}, which does not open for them"
    readers = {"admin", "mlops", "viewer"}
    assert bool(links) == (who in readers)
    if who not in readers:  # the routing page still says which version is live, without the note
        page = client.get(reverse("routing")).content.decode()
        assert "Latest bundle: v1" in page and "note-for-fleet-readers" not in page


@pytest.mark.parametrize("who", ["admin", "mlops", "viewer"])
def test_org_wide_roles_read_bundles(client, users, feature, who):
    make_routing()
    bundle = services.bundle_publish(actor=None, note="v1", rollout=False)
    client.force_login(users[who])
    assert client.get(reverse("bundle-detail", args=[bundle.code])).status_code == 200
    assert client.get(f"/api/v1/fleet/bundles/{bundle.code}/").status_code == 200


def test_production_settings_refuse_to_start_without_a_bundle_signing_key():
    import os
    import subprocess
    import sys

    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "finops.example.com",
        "DATABASE_URL": "sqlite:///:memory:",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "FINOPS_BUNDLE_SIGNING_KEY is not set" in result.stderr


# --- proxy base URLs: the proxy token never travels over plain http off loopback -------------------


def test_proxy_form_and_api_refuse_plain_http_off_loopback(client, users, settings):
    from rest_framework.test import APIClient

    from routing.models import Proxy

    settings.FINOPS_ALLOW_HTTP_PROXIES = False
    settings.FINOPS_HTTP_PROXY_HOSTS = []
    client.force_login(users["admin"])
    form = client.post(
        reverse("fleet"),
        {"name": "edge-1", "base_url": "http://10.0.0.7:4000", "pool": "default", "is_active": "on"},
        HTTP_HX_REQUEST="true",
    )
    page = form.content.decode()
    assert form.status_code == 422 and "https://10.0.0.7:4000" in page and "FINOPS_HTTP_PROXY_HOSTS" in page
    api = APIClient()
    api.force_authenticate(users["admin"])
    answer = api.post("/api/v1/fleet/proxies/", {"name": "api-edge", "base_url": "http://203.0.113.5:4000"})
    assert answer.status_code == 400 and "FINOPS_HTTP_PROXY_HOSTS" in str(answer.json()["base_url"])
    existing = services_proxy("edge-0", "https://10.0.0.9:4000")
    moved = api.patch(f"/api/v1/fleet/proxies/{existing.code}/", {"base_url": "http://10.0.0.9:4000"})
    assert moved.status_code == 400 and "base_url" in moved.json()
    assert not Proxy.objects.filter(base_url__startswith="http://").exists()


def services_proxy(name, base_url):
    from routing.services import fleet as fleet_services

    return fleet_services.proxy_create(actor=None, name=name, base_url=base_url)[0]


@pytest.mark.parametrize(
    ("url", "hosts", "allow_all", "allowed"),
    [
        ("https://edge.example.com:4000", [], False, True),
        ("http://127.0.0.1:4000", [], False, True),
        ("http://[::1]:4000", [], False, True),
        ("http://localhost:4000", [], False, True),
        ("http://edge.example.com:4000", [], False, False),
        ("http://10.0.0.7:4000", [], False, False),
        ("http://proxy-a:4000", ["proxy-a", "proxy-b"], False, True),  # compose service names
        ("http://proxy-c:4000", ["proxy-a", "proxy-b"], False, False),
        ("http://10.1.2.3:4000", ["10.0.0.0/8"], False, True),
        ("http://192.168.1.3:4000", ["10.0.0.0/8"], False, False),
        ("http://anything.example:4000", [], True, True),
        ("ftp://127.0.0.1/", [], True, False),
    ],
)
def test_which_proxy_urls_may_carry_the_token(settings, url, hosts, allow_all, allowed):
    from routing.services.fleet import proxy_base_url_problem

    settings.FINOPS_HTTP_PROXY_HOSTS = hosts
    settings.FINOPS_ALLOW_HTTP_PROXIES = allow_all
    problem = proxy_base_url_problem(url)
    assert (problem is None) is allowed, problem


def test_push_refuses_a_proxy_registered_over_plain_http_before_the_check(settings):
    from routing.engine import signing
    from routing.models import Proxy, TargetStatus
    from routing.services.fleet import encrypt_token

    settings.FINOPS_ALLOW_HTTP_PROXIES = False
    settings.FINOPS_HTTP_PROXY_HOSTS = []
    Proxy.objects.create(  # a row from before the check (written directly, as an old version did)
        name="old-edge",
        base_url="http://192.0.2.10:4000",
        token_hash=signing.token_hash("fpx-old"),
        signing_key=signing.signing_key("fpx-old"),
        push_credential=encrypt_token("fpx-old"),
    )
    result = services.push_bundle(
        base_url="http://192.0.2.10:4000",
        token="fpx-old",
        body=b"{}",
        expected_hash="x",
        attempts=3,
        backoff_s=0.0,
        timeout_s=1.0,
    )
    assert result.status == TargetStatus.REJECTED and result.attempts == 0  # no connection was made
    assert "FINOPS_HTTP_PROXY_HOSTS" in result.error
