"""Issue 14 item 10: only the org-level publish right publishes; a team-scoped MLOps change waits for it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from routing import experiments
from routing.experiment_models import ExperimentStatus
from routing.models import Bundle, Rollout, RolloutStatus
from tests.factories import MembershipFactory, UserFactory
from tests.routing.fleet_support import make_routing

pytestmark = pytest.mark.django_db

ARMS = [
    {"name": "control", "threshold": "0.6", "weight": 50},
    {"name": "lower", "threshold": "0.45", "weight": 50},
]


@pytest.fixture
def team_mlops(team):
    user = UserFactory(username="mlops-support")
    MembershipFactory(user=user, team=team, role="mlops")
    return user


@pytest.fixture
def published(feature, users):
    """Routing plus one published bundle (v1), as the fleet has it."""
    make_routing(actor=users["admin"])
    bundle = Bundle.objects.create(
        number=0, version="v0", content_hash="0" * 64, source_hash="0", document={}
    )
    Rollout.objects.create(bundle=bundle, status=RolloutStatus.SUCCEEDED)
    return bundle


def _experiment(feature, actor):
    return experiments.experiment_create(actor=actor, feature=feature, name="threshold test", arms=ARMS)


def test_team_scoped_mlops_start_waits_for_a_publisher_and_the_page_says_so(
    client, feature, team_mlops, published
):
    experiment = _experiment(feature, team_mlops)
    client.force_login(team_mlops)
    page = client.get(reverse("experiment-detail", args=[experiment.code])).content.decode()
    assert "publishing needs an org-wide MLOps engineer or admin" in page
    answer = client.post(reverse("experiment-action", args=[experiment.code, "start"]), follow=True)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING
    assert Bundle.objects.count() == 1 and Rollout.objects.count() == 1  # nothing published, no rollout
    assert "Saved, not published" in answer.content.decode()
    assert experiments.experiments_bundle_sync() is None  # the beat task does not publish it either
    assert Bundle.objects.count() == 1


def test_team_scoped_mlops_stop_and_promote_do_not_publish(feature, team_mlops, users, published):
    experiment = _experiment(feature, team_mlops)
    experiments.experiment_start(actor=users["mlops"], experiment=experiment)  # an org publisher started it
    started = Bundle.objects.count()
    Rollout.objects.update(status=RolloutStatus.SUCCEEDED)
    arm = experiment.arms.get(name="lower")
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(team_mlops)
    answer = api.post(
        f"/api/v1/routing/experiments/{experiment.code}/promote/", {"arm": "lower"}, format="json"
    )
    assert (
        answer.status_code == 200 and answer.json()["published"] is False and answer.json()["bundle"] is None
    )
    assert Bundle.objects.count() == started
    feature.refresh_from_db()
    assert feature.routing_policy.threshold == arm.threshold  # the change is staged for the next publish


def test_team_scoped_mlops_threshold_draft_stays_a_draft(client, feature, team_mlops, published):
    draft = experiments.threshold_draft_create(
        actor=team_mlops, feature=feature, threshold=Decimal("0.3"), previous=Decimal("1.01"), projection={}
    )
    client.force_login(team_mlops)
    client.post(reverse("threshold-draft-action", args=[draft.code, "publish"]))
    draft.refresh_from_db()
    assert draft.status == "draft" and not draft.bundle_version
    assert Bundle.objects.count() == 1


def test_org_wide_mlops_still_publishes(feature, users, published):
    experiment = _experiment(feature, users["mlops"])
    experiments.experiment_start(actor=users["mlops"], experiment=experiment)
    latest = Bundle.objects.order_by("-number").first()
    assert latest.number == 1 and latest.document["experiments"][0]["id"] == experiment.slug
