"""Shared fixtures: fixed users for every role, an outsider, and two teams with features."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tests.factories import FeatureFactory, MembershipFactory, TeamFactory, UserFactory  # noqa: E402


@pytest.fixture
def team(db):
    return TeamFactory(name="Support", slug="support")


@pytest.fixture
def other_team(db):
    return TeamFactory(name="Growth", slug="growth")


@pytest.fixture
def feature(team):
    return FeatureFactory(team=team, name="Ticket summariser", slug="ticket-summary")


@pytest.fixture
def other_feature(other_team):
    return FeatureFactory(team=other_team, name="Email copywriter", slug="email-copy")


def _member(role: str, team=None):
    user = UserFactory(username=f"{role}-{team.slug if team else 'org'}")
    MembershipFactory(user=user, team=team, role=role)
    return user


@pytest.fixture
def users(team, other_team):
    """One user per cell of the permission matrix; keys name the role and its scope."""
    return {
        "admin": _member("admin"),
        "viewer": _member("viewer"),
        "mlops": _member("mlops"),
        "pm": _member("pm", team),
        "team_viewer": _member("viewer", team),
        "outsider": _member("viewer", other_team),
        "nobody": UserFactory(username="nobody"),
    }


def pytest_report_header(config):
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"finops: database={engine} broker={settings.CELERY_BROKER_URL.split('://')[0]}"
