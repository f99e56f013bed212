"""Experiment services: validation, start/stop through the bundle compiler hook, evaluation, guardrails, promote."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing import partitions
from billing.models import SpendEvent
from controlplane.models import AuditEntry
from routing.models import (
    Bundle,
    Experiment,
    ExperimentStatus,
    Feedback,
    Rollout,
    RolloutStatus,
    RoutingPolicy,
)
from routing.services import experiments
from tests.routing.fleet_support import make_routing

ARMS = [
    {"name": "control", "threshold": "0.6", "weight": 50},
    {"name": "lower", "threshold": "0.45", "weight": 50},
]


@pytest.fixture
def routing(feature, users):
    return make_routing(actor=users["admin"])


def settle():
    """Rollouts run in Celery after commit; tests never commit, so mark them done before the next publish."""
    Rollout.objects.update(status=RolloutStatus.SUCCEEDED)


def _experiment(feature, actor, arms=ARMS, **kw):
    return experiments.experiment_create(actor=actor, feature=feature, name="threshold test", arms=arms, **kw)


def add_calls(experiment, arm, n, *, seed, cost=0.001, fallback=0.05, error=0.0, small=0.6):
    """n calls of one arm as spend events: small-routed calls that fell back get a frontier second attempt."""
    rng = np.random.default_rng(seed)
    start = timezone.now() - timedelta(minutes=1)
    partitions.partitions_ensure([start])
    rows = []
    for i in range(n):
        call = uuid.uuid4().hex
        routed_small = rng.random() < small
        fell = routed_small and rng.random() < fallback
        failed = rng.random() < error
        at = start + timedelta(milliseconds=i)
        common = {
            "call_id": call,
            "team_id": experiment.feature.team_id,
            "feature_id": experiment.feature_id,
            "start_time": at,
            "end_time": at + timedelta(milliseconds=300),
            "latency_ms": int(rng.gamma(2.0, 150.0)),
            "experiment": experiment.slug,
            "arm": arm,
            "score": float(rng.random()),
            "threshold": 0.5,
            "baseline_cost_usd": Decimal("0.004"),
        }
        rows.append(
            SpendEvent(
                event_id=uuid.uuid4().hex,
                attempt=1,
                route="small" if routed_small else "frontier",
                model_group="slm" if routed_small else "frontier",
                status="error" if (fell or failed) else "success",
                cost_usd=Decimal(str(round(float(rng.lognormal(np.log(cost), 0.5)), 8))),
                **common,
            )
        )
        if fell:
            rows.append(
                SpendEvent(
                    event_id=uuid.uuid4().hex,
                    attempt=2,
                    route="small",
                    model_group="frontier",
                    status="error" if failed else "success",
                    fallback=True,
                    fallback_reason="timeout",
                    cost_usd=Decimal("0.004"),
                    **common,
                )
            )
    SpendEvent.objects.bulk_create(rows, batch_size=1000)


@pytest.mark.parametrize(
    ("arms", "field", "message"),
    [
        ([ARMS[0]], "arms", "between 2 and 4"),
        (
            [*ARMS, *[{"name": f"x{i}", "threshold": "0.1", "weight": 1} for i in range(3)]],
            "arms",
            "between 2 and 4",
        ),
        ([ARMS[0], {**ARMS[1], "weight": 40}], "arms", "sum to 100"),
        ([ARMS[0], {**ARMS[1], "threshold": "1.5"}], "arms-1-threshold", "between 0 and 1"),
        ([ARMS[0], {**ARMS[1], "name": "control"}], "arms-1-name", "used twice"),
        ([ARMS[0], {**ARMS[1], "threshold": "0.6"}], "arms", "share a threshold"),
    ],
)
def test_bad_arms_are_refused_naming_the_field(feature, users, arms, field, message):
    with pytest.raises(ValidationError) as exc:
        _experiment(feature, users["mlops"], arms=arms)
    assert field in exc.value.message_dict
    assert message in " ".join(exc.value.message_dict[field])
    assert not Experiment.objects.exists()


def test_create_is_audited_and_first_arm_is_control(feature, users):
    experiment = _experiment(feature, users["mlops"])
    assert experiment.status == ExperimentStatus.DRAFT
    assert experiment.control.name == "control"
    entry = AuditEntry.objects.get(object_type="routing.Experiment")
    assert entry.action == "create" and entry.actor == users["mlops"]
    assert entry.changes["arms"][1][1]["threshold"] == "0.450"


def test_start_publishes_a_bundle_carrying_the_experiment_and_stop_removes_it(feature, users, routing):
    experiment = _experiment(feature, users["mlops"], sticky_by="request")
    experiments.experiment_start(actor=users["mlops"], experiment=experiment)
    bundle = Bundle.objects.order_by("-number").first()
    assert bundle.document["experiments"] == [
        {
            "id": experiment.slug,
            "feature": feature.slug,
            "sticky_by": "request",
            "arms": [
                {"name": "control", "threshold": 0.6, "weight": 50},
                {"name": "lower", "threshold": 0.45, "weight": 50},
            ],
        }
    ]
    settle()
    second = _experiment(feature, users["mlops"])
    with pytest.raises(ValidationError, match="already runs"):
        experiments.experiment_start(actor=users["mlops"], experiment=second)
    experiments.experiment_stop(actor=users["mlops"], experiment=experiment, reason="enough")
    latest = Bundle.objects.order_by("-number").first()
    assert latest.number == bundle.number + 1 and latest.document["experiments"] == []
    notes = list(AuditEntry.objects.filter(object_type="routing.Experiment").values_list("note", flat=True))
    assert "start" in notes and "stop" in notes


def test_guardrail_breach_stops_the_experiment_and_publishes(feature, users, routing):
    experiment = _experiment(feature, users["mlops"], max_fallback_rise=Decimal("0.05"))
    experiments.experiment_start(actor=users["mlops"], experiment=experiment)
    settle()
    add_calls(experiment, "control", 600, seed=1, fallback=0.02)
    add_calls(experiment, "lower", 600, seed=2, fallback=0.40)
    published = Bundle.objects.count()
    analysis = experiments.experiment_evaluate(experiment=Experiment.objects.get(pk=experiment.pk))
    assert analysis["verdict"]["decision"] == "stop"
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.STOPPED
    assert "fallback rate" in experiment.stop_reason
    assert Bundle.objects.count() == published + 1
    assert AuditEntry.objects.filter(
        object_type="routing.Experiment", note="stop", actor_name="system"
    ).exists()


def test_guardrail_stop_during_a_rollout_stops_now_and_publishes_on_the_next_run(feature, users, routing):
    experiment = _experiment(feature, users["mlops"], max_fallback_rise=Decimal("0.05"))
    experiments.experiment_start(
        actor=users["mlops"], experiment=experiment
    )  # its rollout is still "running"
    add_calls(experiment, "control", 600, seed=1, fallback=0.02)
    add_calls(experiment, "lower", 600, seed=2, fallback=0.40)
    published = Bundle.objects.count()
    experiments.experiment_evaluate(experiment=Experiment.objects.get(pk=experiment.pk))
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.STOPPED
    assert Bundle.objects.count() == published  # the rollout blocked the publish
    settle()
    experiments.experiments_evaluate_running()
    latest = Bundle.objects.order_by("-number").first()
    assert Bundle.objects.count() == published + 1 and latest.document["experiments"] == []


def test_evaluation_reads_arms_and_joins_feedback(client, feature, users, routing):
    experiment = _experiment(feature, users["mlops"])
    experiments.experiment_start(actor=users["mlops"], experiment=experiment, publish=False)
    add_calls(experiment, "control", 150, seed=3, cost=0.002)
    add_calls(experiment, "lower", 150, seed=4, cost=0.001)
    call = SpendEvent.objects.filter(experiment=experiment.slug, arm="lower").first().call_id
    Feedback.objects.create(feature=feature, call_id=call, score=2)
    data = {a.name: a for a in experiments.experiment_arm_data(experiment=experiment)}
    assert data["control"].requests == 150 and data["lower"].requests == 150
    assert list(data["lower"].feedback) == [2.0] and data["control"].feedback.size == 0
    assert 0.3 < data["lower"].small.mean() < 0.9
    analysis = experiments.experiment_evaluate(experiment=experiment)
    assert analysis["verdict"]["decision"] == "ship" and analysis["verdict"]["arm"] == "lower"
    experiment.refresh_from_db()
    assert experiment.verdict["verdict"]["arm"] == "lower" and experiment.status == ExperimentStatus.RUNNING
    client.force_login(users["team_viewer"])
    page = client.get(f"/experiments/{experiment.code}/").content.decode()
    assert "Ship arm lower" in page and "Cost per request difference" in page
    assert "Ship winner" not in page  # viewers read, MLOps ship


def test_promote_sets_the_feature_threshold_and_publishes(feature, users, routing):
    experiment = _experiment(feature, users["mlops"])
    experiments.experiment_start(actor=users["mlops"], experiment=experiment)
    lower = experiment.arms.get(name="lower")
    settle()
    bundle = experiments.experiment_promote(actor=users["mlops"], experiment=experiment, arm=lower)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED and experiment.winner == lower
    assert RoutingPolicy.objects.get(feature=feature).threshold == Decimal("0.450")
    assert bundle.document["policies"][feature.slug]["threshold"] == 0.45
    assert bundle.document["experiments"] == []
    assert AuditEntry.objects.filter(object_type="routing.Experiment", action="publish").exists()
    assert AuditEntry.objects.filter(object_type="routing.RoutingPolicy", action="create").exists()


def test_periodic_task_evaluates_running_experiments_and_ignores_missing_ones(feature, users, routing):
    from routing.tasks import experiment_evaluate_task, experiments_evaluate

    experiment = _experiment(feature, users["mlops"])
    experiments.experiment_start(actor=users["mlops"], experiment=experiment, publish=False)
    experiments_evaluate()
    experiment.refresh_from_db()
    assert experiment.evaluated_at is not None
    assert experiment.verdict["verdict"]["decision"] == "keep_running"
    experiment_evaluate_task(999_999)  # gone: quiet


# --- pages ----------------------------------------------------------------------------------------------------


def add_traffic(feature, n, *, seed, threshold=0.5):
    """Recorded calls of a feature routed at `threshold`, small calls falling back more as the score rises."""
    rng = np.random.default_rng(seed)
    start = timezone.now() - timedelta(hours=1)
    partitions.partitions_ensure([start])
    rows = []
    for i in range(n):
        score = float(rng.random())
        small = score < threshold
        fell = small and rng.random() < score / 2
        at = start + timedelta(seconds=i)
        common = {
            "call_id": uuid.uuid4().hex,
            "team_id": feature.team_id,
            "feature_id": feature.pk,
            "start_time": at,
            "end_time": at + timedelta(milliseconds=200),
            "score": score,
            "threshold": threshold,
            "input_tokens": 400,
            "output_tokens": 100,
            "baseline_cost_usd": Decimal("0.0050"),
        }
        rows.append(
            SpendEvent(
                event_id=uuid.uuid4().hex,
                attempt=1,
                route="small" if small else "frontier",
                model_group="slm" if small else "frontier",
                status="error" if fell else "success",
                cost_usd=Decimal("0.0001")
                if small and not fell
                else (Decimal("0") if fell else Decimal("0.0050")),
                **common,
            )
        )
        if fell:
            rows.append(
                SpendEvent(
                    event_id=uuid.uuid4().hex,
                    attempt=2,
                    route="small",
                    model_group="frontier",
                    status="success",
                    fallback=True,
                    fallback_reason="timeout",
                    cost_usd=Decimal("0.0050"),
                    **common,
                )
            )
    SpendEvent.objects.bulk_create(rows, batch_size=1000)


def _post_form(client, feature, **overrides):
    data = {
        "feature": str(feature.code),
        "name": "lower",
        "sticky_by": "end_user",
        "alpha": "0.05",
        "max_fallback_rise": "0.05",
        "max_error_rise": "0.01",
        "arm0_name": "control",
        "arm0_threshold": "0.6",
        "arm0_weight": "50",
        "arm1_name": "lower",
        "arm1_threshold": "0.45",
        "arm1_weight": "50",
    }
    data.update(overrides)
    return client.post("/experiments/new/", data)


def test_list_page_replaces_the_placeholder_and_shows_only_visible_experiments(
    client, feature, other_feature, users
):
    mine = _experiment(feature, users["mlops"])
    theirs = experiments.experiment_create(
        actor=users["admin"], feature=other_feature, name="theirs", arms=ARMS
    )
    client.force_login(users["pm"])
    page = client.get("/experiments/")
    assert page.status_code == 200
    assert mine.name in page.content.decode() and theirs.name not in page.content.decode()
    assert "New experiment" not in page.content.decode()  # pm reads, does not run experiments


def test_form_errors_sit_next_to_their_fields(client, feature, users):
    client.force_login(users["mlops"])
    response = _post_form(client, feature, arm1_weight="40", arm1_threshold="1.4")
    assert response.status_code == 422
    body = response.content.decode()
    assert "threshold between 0 and 1" in body
    response = _post_form(client, feature, arm1_weight="40")
    assert "sum to 100" in response.content.decode()
    response = _post_form(client, feature, arm1_name="control")
    assert "used twice" in response.content.decode()
    assert not Experiment.objects.exists()


def test_mlops_creates_starts_and_ships_from_the_pages(client, feature, users, routing):
    client.force_login(users["mlops"])
    response = _post_form(client, feature)
    experiment = Experiment.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/experiments/{experiment.code}/"
    assert client.post(f"/experiments/{experiment.code}/start/").status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING
    page = client.get(f"/experiments/{experiment.code}/")
    assert page.status_code == 200 and "Keep running" in page.content.decode()
    body = page.content.decode()
    # no evidence yet: the ship button is disabled and says why; stop and ship ask for confirmation
    assert re.search(r'<button type="submit" disabled aria-describedby="ship-why">Ship winner', body)
    assert "Disabled: the verdict is “keep running”" in body
    assert body.count("data-confirm=") == 2
    fragment = client.get(f"/experiments/{experiment.code}/", headers={"HX-Request": "true"})
    assert "<h1>" not in fragment.content.decode() and "Verdict" in fragment.content.decode()
    settle()
    client.post(f"/experiments/{experiment.code}/promote/", {"arm": "lower"})
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED
    assert RoutingPolicy.objects.get(feature=feature).threshold == Decimal("0.450")


def test_experiment_permissions(client, feature, users):
    experiment = _experiment(feature, users["mlops"])
    url = f"/experiments/{experiment.code}/"
    client.force_login(users["team_viewer"])
    assert client.get(url).status_code == 200
    assert client.post(url + "start/").status_code == 403
    assert client.get("/experiments/new/").status_code == 403
    client.force_login(users["outsider"])
    assert client.get(url).status_code == 404
    assert client.post(url + "start/").status_code == 404
    client.force_login(users["nobody"])
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def test_whatif_page_slider_fragment_and_draft_publish(client, feature, users, routing):
    add_traffic(feature, 400, seed=21)
    client.force_login(users["mlops"])
    url = f"/routing/whatif/{feature.code}/"
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'hx-trigger="input changed delay:250ms"' in body and "vendor/plotly/plotly.min.js" in body
    assert "current: 1.010" in body  # the default policy of make_routing
    fragment = client.get(
        url, {"threshold": "0.3", "by": "threshold", "days": "7"}, headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200 and "<h1>" not in fragment.content.decode()
    assert fragment.context["point"].threshold == pytest.approx(0.3)
    assert 0.2 < fragment.context["point"].small_share < 0.4
    by_share = client.get(url, {"share": "80", "by": "share"}, headers={"HX-Request": "true"})
    assert by_share.context["point"].small_share == pytest.approx(0.8, abs=0.02)
    client.post(url, {"threshold": "0.3", "days": "7", "note": "cheaper"})
    draft = feature.threshold_drafts.get()
    assert draft.threshold == Decimal("0.300") and draft.projection["small_share"] == pytest.approx(
        fragment.context["point"].small_share
    )
    settle()
    client.post(f"/routing/threshold-drafts/{draft.code}/publish/")
    draft.refresh_from_db()
    assert draft.status == "published" and draft.bundle_version
    assert (
        Bundle.objects.get(version=draft.bundle_version).document["policies"][feature.slug]["threshold"]
        == 0.3
    )
    assert AuditEntry.objects.filter(object_type="routing.ThresholdDraft", action="publish").exists()


def test_whatif_permissions(client, feature, users):
    url = f"/routing/whatif/{feature.code}/"
    client.force_login(users["team_viewer"])
    assert client.get(url).status_code == 200
    assert client.post(url, {"threshold": "0.3"}).status_code == 403
    client.force_login(users["outsider"])
    assert client.get(url).status_code == 404


# --- API ------------------------------------------------------------------------------------------------------


def test_api_create_start_and_permissions(client, feature, other_feature, users, routing):
    body = {"feature_code": str(feature.code), "name": "api", "arms": ARMS, "sticky_by": "request"}
    client.force_login(users["team_viewer"])
    assert (
        client.post("/api/v1/routing/experiments/", body, content_type="application/json").status_code == 403
    )
    client.force_login(users["mlops"])
    bad = client.post(
        "/api/v1/routing/experiments/",
        {**body, "arms": [ARMS[0], {**ARMS[1], "weight": 10}]},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "sum to 100" in str(bad.json())
    created = client.post("/api/v1/routing/experiments/", body, content_type="application/json")
    assert created.status_code == 201, created.content
    code = created.json()["code"]
    started = client.post(f"/api/v1/routing/experiments/{code}/start/")
    assert started.status_code == 200 and started.json()["status"] == "running"
    analysis = client.get(f"/api/v1/routing/experiments/{code}/analysis/")
    assert analysis.json()["verdict"]["decision"] == "keep_running"
    client.force_login(users["team_viewer"])
    assert client.get(f"/api/v1/routing/experiments/{code}/").status_code == 200
    assert client.post(f"/api/v1/routing/experiments/{code}/stop/").status_code == 403
    client.force_login(users["outsider"])
    assert client.get(f"/api/v1/routing/experiments/{code}/").status_code == 404
    assert client.post(f"/api/v1/routing/experiments/{code}/stop/").status_code == 404
