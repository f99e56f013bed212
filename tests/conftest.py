"""Shared fixtures: fixed users for every role, an outsider, and two teams with features."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tests.factories import FeatureFactory, MembershipFactory, TeamFactory, UserFactory  # noqa: E402

# Tests write spend dated in 2026 (frozen clocks) and around the real "now"; the test database gets
# monthly partitions for all of it, so no test depends on the day the suite runs (e.g. under faketime).
PARTITIONS_FROM = datetime(2025, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from billing import partitions

    with django_db_blocker.unblock():
        if partitions.is_partitioned():
            months = 0
            while partitions.month_start(PARTITIONS_FROM, months) <= partitions.month_start(
                datetime.now(UTC), 3
            ):
                months += 1
            partitions.partitions_ensure(partitions.month_start(PARTITIONS_FROM, k) for k in range(months))


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
