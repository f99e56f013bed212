"""Issue 14 follow-up: automatic publishes ship only their own change, on top of what each pool runs.

A budget state change, a guardrail stop and a key revocation publish without a person. They must not
carry staged edits (a team-scoped user's change waits for someone with the publish right) and must not
move a pool that was rolled back forward to the latest bundle.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from billing import budgets
from billing.models import BudgetAction
from routing import services
from routing.models import (
    Bundle,
    Experiment,
    ExperimentStatus,
    Rollout,
    RolloutKind,
    RolloutStatus,
    RoutingPolicy,
)
from routing.services import experiments
from tests.billing.test_budgets import make_budget, spend
from tests.factories import MembershipFactory, UserFactory
from tests.routing.fleet_support import make_routing, register_proxy
from tests.routing.test_experiments import add_calls

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 16, 12, 30, tzinfo=UTC)
ARMS = [
    {"name": "control", "threshold": "0.6", "weight": 50},
    {"name": "lower", "threshold": "0.45", "weight": 50},
]


def settle() -> None:
    """Rollouts run in Celery after commit; tests never commit, so mark them done."""
    Rollout.objects.filter(status=RolloutStatus.PENDING).update(status=RolloutStatus.SUCCEEDED)


@pytest.fixture
def team_mlops(team):
    user = UserFactory(username="mlops-support")
    MembershipFactory(user=user, team=team, role="mlops")
    return user


@pytest.fixture
def staged_threshold(team_mlops):
    """A team-scoped MLOps edit of the default threshold: staged, waiting for a publisher."""

    def stage() -> None:
        services.policy_update(
            actor=team_mlops, policy=RoutingPolicy.objects.get(feature__isnull=True), threshold=Decimal("0.2")
        )

    return stage


def _latest() -> Bundle:
    return Bundle.objects.order_by("-number").first()


def test_a_budget_state_change_ships_only_the_budget_state(feature, users, settings, staged_threshold):
    make_routing(actor=users["admin"])
    first = services.bundle_publish(actor=users["admin"], note="first")
    settle()
    staged_threshold()
    make_budget(feature, action=BudgetAction.BLOCK)
    spend(feature, datetime(2026, 11, 2, tzinfo=UTC), "150")
    with time_machine.travel(NOW, tick=False):
        budgets.budgets_evaluate(now=NOW)
    latest = _latest()
    assert latest.number == first.number + 1 and latest.note.startswith("budget state change")
    assert [(b["feature"], b["action"]) for b in latest.document["budgets"]] == [("ticket-summary", "block")]
    assert latest.document["policies"] == first.document["policies"]  # the staged 0.2 did not ride along
    assert latest.rollouts.count() == 1
    # the staged edit still ships with the next real publish
    settle()
    with time_machine.travel(NOW, tick=False):
        full = services.bundle_publish(actor=users["mlops"], note="publisher")
    assert full.document["policies"]["default"]["threshold"] == 0.2
    assert full.document["budgets"] == latest.document["budgets"]


def test_a_guardrail_stop_ships_only_the_stop(feature, users, staged_threshold):
    make_routing(actor=users["admin"])
    experiment = experiments.experiment_create(
        actor=users["mlops"], feature=feature, name="guarded", arms=ARMS, max_fallback_rise=Decimal("0.05")
    )
    experiments.experiment_start(actor=users["mlops"], experiment=experiment)
    started = _latest()
    settle()
    staged_threshold()
    add_calls(experiment, "control", 600, seed=1, fallback=0.02)
    add_calls(experiment, "lower", 600, seed=2, fallback=0.40)
    experiments.experiment_evaluate(experiment=Experiment.objects.get(pk=experiment.pk))
    assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.STOPPED
    latest = _latest()
    assert latest.number == started.number + 1
    assert latest.document["experiments"] == []
    assert latest.document["policies"] == started.document["policies"]  # the staged 0.2 did not ride along


def test_a_stop_the_beat_task_ships_later_carries_no_staged_edit(feature, users, staged_threshold):
    make_routing(actor=users["admin"])
    experiment = experiments.experiment_create(actor=users["mlops"], feature=feature, name="g", arms=ARMS)
    experiments.experiment_start(actor=users["mlops"], experiment=experiment)
    started = _latest()
    settle()
    experiments.experiment_stop(actor=None, experiment=experiment, reason="guardrail", publish=False)
    staged_threshold()
    shipped = experiments.experiments_bundle_sync()
    assert shipped is not None and shipped.document["experiments"] == []
    assert shipped.document["policies"] == started.document["policies"]
    settle()
    assert experiments.experiments_bundle_sync() is None  # nothing left to ship


def _rolled_back_fleet(users, feature):
    """Pools a and b ran v2 (threshold 0.3); pool b was rolled back to v1 (threshold 1.01)."""
    make_routing(actor=users["admin"])
    register_proxy(name="a-0", base_url="http://127.0.0.1:9", token="fpx-a", pool="a")
    register_proxy(name="b-0", base_url="http://127.0.0.1:9", token="fpx-b", pool="b")
    key, _ = services.feature_key_create(actor=users["admin"], feature=feature, name="web")
    v1 = services.bundle_publish(actor=users["admin"], note="v1")
    settle()
    services.policy_update(
        actor=users["mlops"], policy=RoutingPolicy.objects.get(feature__isnull=True), threshold=Decimal("0.3")
    )
    v2 = services.bundle_publish(actor=users["admin"], note="v2")
    settle()
    services.rollout_rollback(actor=users["admin"], bundle=v1, pool="b")
    settle()
    return key, v1, v2


def test_revoking_a_key_keeps_a_rolled_back_pool_on_its_version(feature, users):
    key, v1, v2 = _rolled_back_fleet(users, feature)
    services.feature_key_revoke(actor=users["admin"], key=key)
    rollouts = {
        r.pool: r for r in Rollout.objects.filter(kind=RolloutKind.PUBLISH, bundle__number__gt=v2.number)
    }
    assert set(rollouts) == {"a", "b"}, rollouts
    for pool, base in (("a", v2), ("b", v1)):
        shipped = rollouts[pool].bundle
        assert shipped.document["policies"] == base.document["policies"], pool  # b stays on v1's 0.5 … 1.01
        assert [k["revoked"] for k in shipped.document["keys"]] == [True], pool
        assert "revocation only" in shipped.note
    assert rollouts["b"].bundle.document["policies"]["default"]["threshold"] == 1.01
    settle()
    assert services.revocations_sync() is None  # every pool refuses the key now


def test_a_revocation_whose_rollout_failed_reuses_its_bundle(feature, users):
    key, v1, _ = _rolled_back_fleet(users, feature)
    services.feature_key_revoke(actor=users["admin"], key=key)
    made = Bundle.objects.count()
    Rollout.objects.filter(status=RolloutStatus.PENDING).update(status=RolloutStatus.FAILED)
    services.revocations_sync()
    assert Bundle.objects.count() == made  # the same revocation bundles go out again, no twins
    assert Rollout.objects.filter(status=RolloutStatus.PENDING).count() == 2


def test_a_budget_state_change_keeps_a_rolled_back_pool_on_its_version(feature, users, settings):
    _, v1, v2 = _rolled_back_fleet(users, feature)
    make_budget(feature, action=BudgetAction.DEGRADE)
    spend(feature, datetime(2026, 11, 2, tzinfo=UTC), "150")
    with time_machine.travel(NOW, tick=False):
        budgets.budgets_evaluate(now=NOW)
    rollouts = {r.pool: r.bundle for r in Rollout.objects.filter(bundle__number__gt=v2.number)}
    assert rollouts["b"].document["policies"] == v1.document["policies"]
    assert rollouts["a"].document["policies"] == v2.document["policies"]
    assert all(b.document["budgets"][0]["action"] == "degrade" for b in rollouts.values())
