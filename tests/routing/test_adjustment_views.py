"""The proposed adjustments section on the routing analytics page, and who may approve or reject one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from routing.models import AdjustmentProposal, AdjustmentStatus, RoutingPolicy
from tests.routing.fleet_support import make_routing

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ADJUSTMENT = {
    "format": "feature-adjustment/1",
    "offset": 0.12,
    "labels": 80,
    "signals": [{"name": "quantitative_task", "weight": 1.4, "mean": 0.3, "scale": 0.34}],
}
SIDE = {
    "small_share": 1.0,
    "cost_usd": "0.010000",
    "savings_usd": "0.090000",
    "fallback_rate": 0.3,
    "fallback_rate_low": 0.25,
    "fallback_rate_high": 0.35,
    "needed_kept_small": 1.0,
    "bad_rated_kept_small": 12,
}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def proposal(feature, users):
    make_routing(actor=users["admin"])
    return AdjustmentProposal.objects.create(
        feature=feature,
        adjustment=ADJUSTMENT,
        scorer_weights="complexity-v3",
        labels=80,
        needed_labels=40,
        window_start=NOW - timedelta(days=30),
        window_end=NOW,
        whatif={
            "threshold": 0.5,
            "calls": 120,
            "current": SIDE,
            "proposed": {**SIDE, "small_share": 0.5, "fallback_rate": 0.04, "needed_kept_small": 0.1},
        },
    )


@pytest.mark.django_db
def test_the_analytics_page_loads_the_section_that_shows_the_proposal_and_its_whatif(client, users, proposal):
    client.force_login(users["mlops"])
    page = client.get(reverse("routing-analytics")).content.decode()
    assert f'hx-get="{reverse("routing-adjustments")}"' in page
    section = client.get(reverse("routing-adjustments")).content.decode()
    assert proposal.feature.name in section and "quantitative_task 1.400" in section
    assert "What-if at threshold 0.500 on 120 recorded calls" in section
    assert "0.040" in section and "0.300" in section  # expected fallback rate, proposed and current
    assert reverse("routing-adjustment-action", args=[proposal.code, "approve"]) in section


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "sees", "may_decide"),
    [("viewer", True, False), ("pm", True, False), ("outsider", False, False), ("admin", True, True)],
)
def test_who_sees_and_who_may_decide(client, users, proposal, who, sees, may_decide):
    client.force_login(users[who])
    section = client.get(reverse("routing-adjustments")).content.decode()
    assert (proposal.feature.name in section) is sees
    assert (reverse("routing-adjustment-action", args=[proposal.code, "approve"]) in section) is may_decide


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "status"), [("viewer", 403), ("pm", 403), ("team_viewer", 403), ("outsider", 404)]
)
def test_only_routing_editors_approve(client, users, proposal, who, status):
    client.force_login(users[who])
    response = client.post(reverse("routing-adjustment-action", args=[proposal.code, "approve"]))
    assert response.status_code == status
    assert AdjustmentProposal.objects.get(pk=proposal.pk).status == AdjustmentStatus.PROPOSED
    assert not RoutingPolicy.objects.filter(feature=proposal.feature).exists()


@pytest.mark.django_db
def test_mlops_approves_into_the_policy_draft_and_is_sent_to_publish(client, users, proposal):
    client.force_login(users["mlops"])
    response = client.post(reverse("routing-adjustment-action", args=[proposal.code, "approve"]))
    assert response.status_code == 302 and response["Location"] == reverse("routing")
    assert RoutingPolicy.objects.get(feature=proposal.feature).scorer_adjustment == ADJUSTMENT
    again = client.post(reverse("routing-adjustment-action", args=[proposal.code, "approve"]), follow=True)
    assert "only an open proposal can be approved" in again.content.decode()
    assert client.post(reverse("routing-adjustment-action", args=[proposal.code, "bogus"])).status_code == 404


@pytest.mark.django_db
def test_mlops_rejects(client, users, proposal):
    client.force_login(users["mlops"])
    client.post(reverse("routing-adjustment-action", args=[proposal.code, "reject"]))
    assert AdjustmentProposal.objects.get(pk=proposal.pk).status == AdjustmentStatus.REJECTED
    assert not RoutingPolicy.objects.filter(feature=proposal.feature).exists()
