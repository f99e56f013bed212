"""POST /api/v1/feedback: authenticated by the feature key, joined to the call's events as a quality signal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from routing import services
from routing.models import Feedback

URL = "/api/v1/feedback"


@pytest.fixture
def key(feature, users):
    return services.feature_key_create(actor=users["admin"], feature=feature, name="web app")


def post(client, body, plaintext=None, scheme="Bearer"):
    headers = {"Authorization": f"{scheme} {plaintext}"} if plaintext else {}
    return client.post(URL, data=body, content_type="application/json", headers=headers)


@pytest.mark.parametrize(("score", "stored"), [("up", 5), ("down", 1), (4, 4), (1, 1)])
def test_feedback_is_stored_for_the_keys_feature(client, feature, key, score, stored):
    _, plaintext = key
    response = post(client, {"call_id": "call-1", "score": score, "comment": "fine"}, plaintext)
    assert response.status_code == 201, response.content
    assert response.json()["feature"] == feature.slug
    row = Feedback.objects.get(call_id="call-1")
    assert (row.feature, row.score, row.comment) == (feature, stored, "fine")


def test_a_second_verdict_replaces_the_first(client, key):
    _, plaintext = key
    assert post(client, {"call_id": "call-1", "score": "up"}, plaintext).status_code == 201
    again = post(client, {"call_id": "call-1", "score": "down"}, plaintext)
    assert again.status_code == 200
    assert Feedback.objects.get().score == 1


@pytest.mark.parametrize("bad", [0, 6, 2.5, "meh", None])
def test_bad_scores_are_refused_naming_the_field(client, key, bad):
    _, plaintext = key
    response = post(client, {"call_id": "call-1", "score": bad}, plaintext)
    assert response.status_code == 400
    assert "score" in response.json()
    assert not Feedback.objects.exists()


def test_missing_call_id_is_refused(client, key):
    response = post(client, {"score": "up"}, key[1])
    assert response.status_code == 400 and "call_id" in response.json()


def test_unknown_revoked_and_expired_keys_get_401(client, feature, users, key):
    record, plaintext = key
    assert post(client, {"call_id": "c", "score": 5}).status_code == 401
    assert post(client, {"call_id": "c", "score": 5}, "fk-not-a-key").status_code == 401
    assert post(client, {"call_id": "c", "score": 5}, plaintext, scheme="Token").status_code == 401
    services.feature_key_revoke(actor=users["admin"], key=record)
    response = post(client, {"call_id": "c", "score": 5}, plaintext)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    expiring, other = services.feature_key_create(
        actor=users["admin"], feature=feature, name="old", expires_at=timezone.now() + timedelta(seconds=30)
    )
    type(expiring).objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = post(client, {"call_id": "c", "score": 5}, other)
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    assert not Feedback.objects.exists()


def test_feedback_joins_the_calls_arm_in_the_analysis(client, feature, users, key):
    from routing.services import experiments
    from tests.routing.test_experiments import ARMS, add_calls

    experiment = experiments.experiment_create(actor=users["mlops"], feature=feature, name="fb", arms=ARMS)
    experiments.experiment_start(actor=users["mlops"], experiment=experiment, publish=False)
    add_calls(experiment, "lower", 5, seed=9)
    add_calls(experiment, "control", 5, seed=10)
    from billing.models import SpendEvent

    call = SpendEvent.objects.filter(arm="lower").first().call_id
    assert post(client, {"call_id": call, "score": "down"}, key[1]).status_code == 201
    assert post(client, {"call_id": "not-in-the-experiment", "score": "up"}, key[1]).status_code == 201
    data = {a.name: a for a in experiments.experiment_arm_data(experiment=experiment)}
    assert list(data["lower"].feedback) == [1.0]
    assert data["control"].feedback.size == 0
