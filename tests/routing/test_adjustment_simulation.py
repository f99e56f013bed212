"""The simulation, short: through a real proxy, a feature whose small model fails on quantitative asks learns
from its outcomes to send them to the frontier; fallbacks and thumbs-downs fall, routine asks stay small.

The long run with printed figures is `python manage.py simulate_adjustment --calls 400`."""

from __future__ import annotations

import pytest

from controlplane.management.commands.simulate_adjustment import simulate
from routing.engine.bundle import Bundle as EngineBundle
from routing.models import AdjustmentStatus, Bundle, RoutingPolicy

pytestmark = [pytest.mark.proxy, pytest.mark.django_db]


def test_after_enough_labelled_outcomes_the_failing_kind_goes_to_the_frontier(tmp_path):
    before, after, proposal = simulate(calls=120, workdir=tmp_path, seed=3)
    print(f"\n{before.line('before')}\n{after.line('after')}")
    assert proposal.status == AdjustmentStatus.APPROVED
    # the adjustment reached the proxy only through a published bundle
    latest = Bundle.objects.order_by("-number").first()
    policy = RoutingPolicy.objects.get(feature=proposal.feature)
    assert latest.document["policies"][proposal.feature.slug]["scorer_adjustment"] == policy.scorer_adjustment
    assert (
        EngineBundle.from_json(latest.document).policy_for(proposal.feature.slug).scorer_adjustment
        is not None
    )

    assert (
        before.quantitative_to_frontier == 0.0 and before.fallback_rate > 0 and before.bad_feedback_rate > 0
    )
    assert after.quantitative_to_frontier == 1.0
    assert after.routine_to_small == 1.0
    assert after.fallback_rate < before.fallback_rate and after.bad_feedback_rate < before.bad_feedback_rate
    assert after.savings_usd > 0 and after.savings_share > 0.3
