"""Issue 14 item 10: only the org-level publish right publishes; a team-scoped MLOps change waits for it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from routing.models import Bundle, ExperimentStatus, Rollout, RolloutStatus
from routing.services import experiments
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


# --- item 12: revocation publishes at once ---------------------------------------------------------


def test_revoke_publishes_a_revocation_only_bundle_and_rolls_it_out(
    feature, users, django_capture_on_commit_callbacks
):
    from routing import services
    from routing.models import RoutingPolicy

    make_routing(actor=users["admin"])
    key, _ = services.feature_key_create(actor=users["admin"], feature=feature, name="web")
    first = services.bundle_publish(actor=users["admin"], note="with key", rollout=False)
    services.policy_update(
        actor=users["mlops"], policy=RoutingPolicy.objects.get(feature__isnull=True), threshold=Decimal("0.2")
    )
    services.feature_key_revoke(actor=users["admin"], key=key)
    latest = Bundle.objects.order_by("-number").first()
    assert latest.number == first.number + 1 and latest.rollouts.count() == 1
    assert [k["revoked"] for k in latest.document["keys"]] == [True]
    assert latest.document["policies"] == first.document["policies"]  # staged edits stay staged
    assert services.revocations_sync() is None  # nothing left to ship


def test_a_revocation_that_meets_a_running_rollout_goes_out_with_the_sync(feature, users):
    from routing import services

    make_routing(actor=users["admin"])
    key, _ = services.feature_key_create(actor=users["admin"], feature=feature, name="web")
    first = services.bundle_publish(actor=users["admin"], note="with key")  # its rollout stays pending here
    services.feature_key_revoke(actor=users["admin"], key=key)
    assert Bundle.objects.order_by("-number").first() == first  # blocked by the running rollout
    Rollout.objects.update(status=RolloutStatus.SUCCEEDED)
    shipped = services.revocations_sync()
    assert shipped is not None and shipped.document["keys"][0]["revoked"] is True


def test_inactive_features_keys_leave_the_bundle(feature, users):
    from routing import services
    from routing.compiler import compile_bundle

    make_routing(actor=users["admin"])
    services.feature_key_create(actor=users["admin"], feature=feature, name="web")
    assert len(compile_bundle(version="v1").document["keys"]) == 1
    feature.is_active = False
    feature.save()
    assert compile_bundle(version="v2").document["keys"] == []
