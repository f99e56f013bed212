"""Publishing needs the diff first: "Publish and roll out" exists only in the preview, and the publish view
checks the preview's signed token (this user, under an hour old, nothing changed and nothing published
since). Each refusal says what to do. Time is frozen for every test (they log in)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from routing import services
from routing.models import Bundle, RoutingPolicy
from tests.routing.fleet_support import make_routing

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
T0 = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def mlops(client, users):
    make_routing()
    client.force_login(users["mlops"])
    return client


def _preview(client) -> tuple[str, str]:
    body = client.get(reverse("routing-publish-preview"), **HTMX).content.decode()
    token = re.search(r'name="preview_token" value="([^"]+)"', body)
    return body, token.group(1) if token else ""


def _publish(client, token: str | None):
    data = {"note": "reviewed"} | ({"preview_token": token} if token is not None else {})
    return client.post(reverse("routing-publish"), data, **HTMX)


def test_the_routing_page_offers_publish_only_after_the_preview(mlops):
    page = mlops.get(reverse("routing")).content.decode()
    assert "Preview changes" in page and "Publish and roll out" not in page
    body, token = _preview(mlops)
    assert "against nothing (this would be the first bundle)" in body and "$.deployments" in body
    assert token and "Publish and roll out" in body
    response = _publish(mlops, token)
    assert response.status_code == 200 and Bundle.objects.get().note == "reviewed"


def test_publish_without_a_preview_is_refused_naming_the_field(mlops):
    response = _publish(mlops, None)
    assert response.status_code == 422
    body = response.content.decode()
    assert "preview_token: publishing needs the diff first" in body and "Preview changes" in body
    assert not Bundle.objects.exists()


def test_a_change_after_the_preview_makes_it_stale(mlops):
    _, token = _preview(mlops)
    policy = RoutingPolicy.objects.get(feature=None)
    services.policy_update(actor=None, policy=policy, threshold=Decimal("0.5"))
    response = _publish(mlops, token)
    assert response.status_code == 422
    assert "Something changed since your preview" in response.content.decode()
    assert not Bundle.objects.exists()
    _, fresh = _preview(mlops)  # the new diff, then publishing works
    assert _publish(mlops, fresh).status_code == 200
    assert Bundle.objects.count() == 1


def test_a_bundle_published_since_the_preview_makes_it_stale(mlops, users):
    _, token = _preview(mlops)
    services.bundle_publish(actor=users["admin"], note="someone else", rollout=False)
    policy = RoutingPolicy.objects.get(feature=None)
    services.policy_update(actor=None, policy=policy, threshold=Decimal("0.5"))
    response = _publish(mlops, token)
    assert response.status_code == 422
    assert "v1 was published since your preview" in response.content.decode()
    assert Bundle.objects.count() == 1


def test_an_old_a_forged_or_a_borrowed_preview_is_refused(mlops, client, users, frozen):
    _, token = _preview(mlops)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = _publish(mlops, forged)
    assert response.status_code == 422 and "not a preview this server made" in response.content.decode()
    frozen.shift(timedelta(minutes=61))
    response = _publish(mlops, token)
    assert response.status_code == 422 and "more than 60 minutes old" in response.content.decode()
    _, token = _preview(mlops)
    mlops.force_login(users["admin"])
    response = _publish(mlops, token)
    assert response.status_code == 422 and "made for another user" in response.content.decode()
    assert not Bundle.objects.exists()


def test_nothing_to_publish_offers_no_button(mlops):
    _, token = _preview(mlops)
    _publish(mlops, token)
    body, again = _preview(mlops)
    assert "Nothing changed since the live bundle v1" in body and not again
    assert "Publish and roll out" not in body
