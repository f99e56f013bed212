"""Fleet: proxy registration and its push credential, heartbeat, bundle pull with ETag/304, derived health."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse

from controlplane.models import AuditEntry
from routing import services
from routing.engine import signing
from routing.models import Proxy, Rollout, RolloutStatus
from routing.selectors import ProxyHealth, proxy_health
from routing.services import fleet as fleet_services
from routing.services.fleet import decrypt_token
from tests.routing.fleet_support import make_routing

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def _live_bundle(proxy_pool: str = "default"):
    """Publish a bundle and mark its (proxy-less) rollout done, as a finished rollout would."""
    bundle = services.bundle_publish(actor=None, note="first", rollout=False)
    Rollout.objects.create(bundle=bundle, status=RolloutStatus.SUCCEEDED)
    return bundle


@pytest.fixture
def registered(db):
    proxy, token = fleet_services.proxy_create(
        actor=None, name="proxy-a", base_url="http://127.0.0.1:9", pool="default", is_canary=True
    )
    return proxy, token


def _bearer(credential):
    return {"HTTP_AUTHORIZATION": f"Bearer {signing.split_credential(credential)[0]}"}


def test_token_is_shown_once_and_stored_only_hashed_or_encrypted(registered):
    proxy, credential = registered
    token, ingest_secret = signing.split_credential(credential)
    assert token.startswith("fpx-") and ingest_secret.startswith("fps-") and token != ingest_secret
    stored = Proxy.objects.get(pk=proxy.pk)
    assert stored.token_hash == signing.token_hash(token)
    assert stored.signing_key == signing.signing_key(ingest_secret)  # derived from the secret half only
    assert token not in stored.push_credential
    assert decrypt_token(stored.push_credential) == token  # only the token half is kept for pushes
    assert ingest_secret not in json.dumps(model_to_dict(stored), default=str)
    assert AuditEntry.objects.filter(object_type="routing.Proxy", action="create").count() == 1


def test_push_credential_is_unreadable_after_the_secret_key_changes(registered, settings):
    proxy, _ = registered
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789abcdef"
    assert decrypt_token(proxy.push_credential) is None


def test_rotating_the_token_invalidates_the_old_one(client, registered):
    proxy, old = registered
    new = fleet_services.proxy_rotate_token(actor=None, proxy=proxy)
    assert (
        client.post(
            reverse("api-fleet-heartbeat"), {}, content_type="application/json", **_bearer(old)
        ).status_code
        == 401
    )
    assert (
        client.post(
            reverse("api-fleet-heartbeat"), {}, content_type="application/json", **_bearer(new)
        ).status_code
        == 200
    )


def test_heartbeat_records_the_report_and_answers_the_target(client, registered, feature):
    proxy, token = registered
    make_routing()
    bundle = _live_bundle()
    report = {
        "applied_version": "v0",
        "applied_hash": "ab" * 32,
        "spool_depth": 3,
        "dead_letters": 0,
        "last_ship_at": None,
        "errors": ["spool full: 2 dropped"],
        "restart_required": True,
        "plugin_version": "0.1.0",
        "pid": 4242,
        "breakers": [
            {
                "model_group": "slm",
                "state": "open",
                "open_since": "2026-11-27T10:03:00+00:00",
                "skipped": 12,
                "abandoned": 3,
                "workers": 2,
                "workers_open": 1,
                "transitions": [{"to": "open", "why": "5 hard failures in a row"}],  # not kept
                "by_worker": [{"pid": 4242, "state": "open"}, {"pid": 4243, "state": "closed"}],  # not kept
            }
        ],
        "workers": [
            {"pid": 4242, "shipping": True, "records": 40},
            {"pid": 4243, "shipping": False, "records": 38},
        ],
    }
    response = client.post(
        reverse("api-fleet-heartbeat"), report, content_type="application/json", **_bearer(token)
    )
    assert response.status_code == 200
    assert response.json() == {"target_version": bundle.version, "target_hash": bundle.content_hash}
    proxy.refresh_from_db()
    assert proxy.applied_hash == "ab" * 32
    assert proxy.last_report["spool_depth"] == 3 and proxy.last_report["restart_required"] is True
    assert proxy.last_heartbeat_at is not None
    assert proxy.last_report["breakers"] == [
        {
            "model_group": "slm",
            "state": "open",
            "open_since": "2026-11-27T10:03:00+00:00",
            "skipped": 12,
            "abandoned": 3,
            "workers": 2,
            "workers_open": 1,
        }
    ]
    assert [w["pid"] for w in proxy.last_report["workers"]] == [4242, 4243]
    assert proxy.last_report["pid"] == 4242


def test_heartbeat_without_a_bundle_answers_nulls(client, registered):
    _, token = registered
    response = client.post(
        reverse("api-fleet-heartbeat"), {}, content_type="application/json", **_bearer(token)
    )
    assert response.json() == {"target_version": None, "target_hash": None}


@pytest.mark.parametrize(
    "header", [{}, {"HTTP_AUTHORIZATION": "Bearer fpx-wrong"}, {"HTTP_AUTHORIZATION": "Token x"}]
)
def test_fleet_endpoints_refuse_unknown_proxies(client, registered, header):
    assert client.get(reverse("api-fleet-bundle"), **header).status_code in (401, 403)
    assert client.post(
        reverse("api-fleet-heartbeat"), {}, content_type="application/json", **header
    ).status_code in (401, 403)


def test_inactive_proxy_is_refused(client, registered):
    proxy, token = registered
    Proxy.objects.filter(pk=proxy.pk).update(is_active=False)
    assert client.get(reverse("api-fleet-bundle"), **_bearer(token)).status_code == 401


def test_bundle_pull_with_etag_and_304(client, registered, feature):
    _, token = registered
    assert client.get(reverse("api-fleet-bundle"), **_bearer(token)).status_code == 404
    make_routing()
    bundle = _live_bundle()
    response = client.get(reverse("api-fleet-bundle"), **_bearer(token))
    assert response.status_code == 200
    assert response["ETag"] == f'"{bundle.content_hash}"'
    doc = json.loads(response.content)
    assert doc["content_hash"] == bundle.content_hash
    from routing.engine.bundle import Bundle as EngineBundle

    assert EngineBundle.from_json(doc).version == bundle.version  # what the plugin does with it
    again = client.get(
        reverse("api-fleet-bundle"), HTTP_IF_NONE_MATCH=f'"{bundle.content_hash}"', **_bearer(token)
    )
    assert again.status_code == 304 and again.content == b""
    stale = client.get(reverse("api-fleet-bundle"), HTTP_IF_NONE_MATCH='"' + "0" * 64 + '"', **_bearer(token))
    assert stale.status_code == 200


def test_proxy_target_overrides_the_pool_current(client, registered, feature):
    proxy, token = registered
    _, _, default = make_routing()
    first = _live_bundle()
    from decimal import Decimal

    services.policy_update(actor=None, policy=default, threshold=Decimal("0.3"))
    second = services.bundle_publish(actor=None, note="canary only", rollout=False)
    Proxy.objects.filter(pk=proxy.pk).update(target_bundle=second)
    other, other_token = fleet_services.proxy_create(
        actor=None, name="proxy-b", base_url="http://127.0.0.1:9"
    )
    assert (
        json.loads(client.get(reverse("api-fleet-bundle"), **_bearer(token)).content)["version"]
        == second.version
    )
    assert (
        json.loads(client.get(reverse("api-fleet-bundle"), **_bearer(other_token)).content)["version"]
        == first.version
    )


@pytest.mark.parametrize(
    ("age_s", "applied", "target", "expected"),
    [
        (None, "", "h1", ProxyHealth.UNREACHABLE),
        (5, "h1", "h1", ProxyHealth.HEALTHY),
        (5, "h0", "h1", ProxyHealth.DRIFTED),
        (5, "h0", None, ProxyHealth.HEALTHY),
        (45, "h1", "h1", ProxyHealth.STALE),
        (45, "h0", "h1", ProxyHealth.STALE),
        (600, "h1", "h1", ProxyHealth.UNREACHABLE),
    ],
)
def test_health_is_a_function_of_heartbeat_age_and_hashes(age_s, applied, target, expected):
    last = None if age_s is None else NOW - dt.timedelta(seconds=age_s)
    health = proxy_health(
        last_heartbeat_at=last,
        applied_hash=applied,
        target_hash=target,
        now=NOW,
        stale_after_s=30,
        unreachable_after_s=120,
    )
    assert health == expected
