"""Pages: every role against every mutating view, outsiders get 404, errors land next to their field."""

import re

import pytest
from django.urls import reverse

from controlplane.models import AuditEntry, Feature, Team

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _login(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("viewer", 403), ("mlops", 403), ("pm", 403), ("team_viewer", 403), ("nobody", 403)],
)
def test_team_create_permission(client, users, who, status):
    response = _login(client, users[who]).post(
        reverse("team-list"), {"name": "Research", "slug": "research", "timezone": "UTC"}, **HTMX
    )
    assert response.status_code == status
    assert Team.objects.filter(slug="research").exists() is (status == 200)


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("viewer", 403), ("mlops", 403), ("pm", 403), ("team_viewer", 403), ("outsider", 404)],
)
def test_team_edit_permission(client, users, team, who, status):
    response = _login(client, users[who]).post(
        reverse("team-detail", args=[team.code]),
        {"name": "Support EU", "slug": team.slug, "timezone": "UTC"},
        **HTMX,
    )
    assert response.status_code == status
    team.refresh_from_db()
    assert (team.name == "Support EU") is (status == 200)


@pytest.mark.parametrize(
    ("who", "status"),
    [("admin", 200), ("pm", 200), ("viewer", 403), ("mlops", 403), ("team_viewer", 403), ("outsider", 404)],
)
def test_feature_edit_permission(client, users, feature, who, status):
    data = {"team": feature.team_id, "name": "Thread summariser", "slug": feature.slug, "is_active": "on"}
    response = _login(client, users[who]).post(reverse("feature-detail", args=[feature.code]), data, **HTMX)
    assert response.status_code == status
    feature.refresh_from_db()
    assert (feature.name == "Thread summariser") is (status == 200)


@pytest.mark.parametrize(
    ("who", "created"), [("admin", True), ("pm", True), ("viewer", False), ("mlops", False)]
)
def test_feature_create_permission(client, users, team, who, created):
    data = {"team": team.pk, "name": "Macro suggester", "slug": "macro-suggest", "is_active": "on"}
    response = _login(client, users[who]).post(reverse("feature-list"), data, **HTMX)
    assert Feature.objects.filter(slug="macro-suggest").exists() is created
    assert response.status_code == (200 if created else 403)
    if created:
        assert response["HX-Redirect"].startswith("/features/")


def test_pm_cannot_create_feature_in_another_team(client, users, other_team):
    data = {"team": other_team.pk, "name": "Sneaky", "slug": "sneaky", "is_active": "on"}
    response = _login(client, users["pm"]).post(reverse("feature-list"), data, **HTMX)
    assert response.status_code == 422
    assert "Select a valid choice" in response.content.decode()
    assert not Feature.objects.filter(slug="sneaky").exists()


def test_invalid_feature_form_shows_error_next_to_field(client, users, team, feature):
    data = {"team": team.pk, "name": "Dup", "slug": feature.slug, "is_active": "on"}
    response = _login(client, users["admin"]).post(reverse("feature-list"), data, **HTMX)
    assert response.status_code == 422
    body = response.content.decode()
    assert 'class="field has-error"' in body and "Slug already exists" in body
    assert not AuditEntry.objects.filter(object_type="controlplane.Feature", action="create").exists()


def test_outsider_gets_404_on_feature_page(client, users, feature):
    assert (
        _login(client, users["outsider"]).get(reverse("feature-detail", args=[feature.code])).status_code
        == 404
    )


def test_anonymous_is_sent_to_login(client, feature):
    response = client.get(reverse("feature-detail", args=[feature.code]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_feature_list_filters_by_team_through_htmx(client, users, feature, other_feature):
    response = _login(client, users["admin"]).get(reverse("feature-list"), {"team": "growth"}, **HTMX)
    body = response.content.decode()
    assert "<html" not in body  # a fragment, not the page
    assert other_feature.name in body and feature.name not in body


@pytest.mark.parametrize(
    "name",
    ["overview", "team-list", "feature-list", "audit-list", "routing", "fleet", "alerts", "experiments"],
)
def test_every_page_renders_for_a_viewer(client, users, name):
    response = _login(client, users["viewer"]).get(reverse(name))
    assert response.status_code == 200
    assert b'hx-headers=\'{"X-CSRFToken"' in response.content
    # every asset is served by us: no script, style or font from another host (random codes may spell "cdn")
    external = re.findall(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//[^"\'\s>]+', response.content.decode())
    assert external == []


def test_login_page_and_logout(client, users):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "admin-org", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.post(reverse("logout")).status_code == 302
