"""What-if replay against a dataset small enough to compute by hand, plus properties on random traffic."""

from __future__ import annotations

import random
from decimal import Decimal

import numpy as np
import pytest

from routing.services.whatif import CallSample, replay, threshold_for_share

D = Decimal

# Four calls; hand-computed below. Small cost per token observed = (0.001 + 0.0005) / (1000 + 500) = 1e-6.
# Fallback rate by score bucket: bucket 1 (A, B) = 1/2, bucket 3 (C) = 0; bucket 7 (D) borrows bucket 3's 0.
CALLS = [
    CallSample(score=0.10, tokens=1000, baseline_cost=D("0.010"), route="small", small_cost=D("0.001")),  # A
    CallSample(score=0.12, tokens=2000, baseline_cost=D("0.020"), route="small", fell_back=True),  # B
    CallSample(score=0.35, tokens=500, baseline_cost=D("0.005"), route="small", small_cost=D("0.0005")),  # C
    CallSample(score=0.75, tokens=3000, baseline_cost=D("0.030"), route="frontier"),  # D
]


@pytest.fixture(scope="module")
def result():
    return replay(CALLS, thresholds=[0.0, 0.10, 0.11, 0.5, 1.01])


def test_replay_figures_match_the_hand_computation(result):
    # small cost: A 0.001 observed, B 2000 × 1e-6, C 0.0005 observed, D 3000 × 1e-6; + p(bucket) × baseline
    expected = {
        0.0: (0.0, D("0.065"), D("0"), 0.0),
        0.10: (0.0, D("0.065"), D("0"), 0.0),  # score == threshold goes to the frontier, as in the proxy
        0.11: (0.25, D("0.061"), D("0.004"), 0.125),  # A: 0.001 + 0.5 × 0.010 = 0.006
        0.5: (0.75, D("0.0485"), D("0.0165"), 0.25),  # A 0.006, B 0.002 + 0.010, C 0.0005, D 0.030
        1.01: (1.0, D("0.0215"), D("0.0435"), 0.25),  # D: 0.003 + 0 × 0.030
    }
    assert result.calls == 4
    assert result.baseline_usd == D("0.065")
    assert result.small_cost_per_token == pytest.approx(1e-6)
    assert result.bucket_fallback_rates[1] == 0.5 and result.bucket_fallback_rates[3] == 0.0
    assert result.bucket_fallback_rates[7] is None
    assert result.extrapolated_from == pytest.approx(0.4)
    for point in result.points:
        share, cost, savings, fallback = expected[point.threshold]
        assert point.small_share == pytest.approx(share)
        assert point.cost_usd == cost
        assert point.savings_usd == savings
        assert point.fallback_rate == pytest.approx(fallback)


def test_share_interval_is_wilson(result):
    point = result.at(0.5)  # 3 of 4 small: Wilson 95 % interval (0.3006, 0.9544)
    assert point.small_share_low == pytest.approx(0.3006, abs=1e-3)
    assert point.small_share_high == pytest.approx(0.9544, abs=1e-3)


def test_intervals_contain_the_estimate_and_widen_where_data_runs_out(result):
    for point in result.points:
        assert point.small_share_low <= point.small_share <= point.small_share_high
        assert point.fallback_rate_low <= point.fallback_rate <= point.fallback_rate_high
        assert point.savings_low_usd <= point.savings_usd <= point.savings_high_usd
    # D's bucket was never tried on the small model: its fallback rate is unknown, so the band grows
    assert result.at(1.01).fallback_rate_high > result.at(0.5).fallback_rate_high + 0.05


def test_price_ratio_prices_calls_when_no_small_call_was_observed():
    calls = [CallSample(score=s, tokens=100, baseline_cost=D("0.010"), route="frontier") for s in (0.2, 0.6)]
    with pytest.raises(ValueError, match="price ratio"):
        replay(calls)
    result = replay(calls, thresholds=[0.5], price_ratio=D("0.1"))
    point = result.at(0.5)
    assert point.cost_usd == D("0.011")  # 0.010 × 0.1 + 0.010
    assert point.savings_usd == D("0.009")
    assert result.notes


def test_empty_window_and_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="widen the window"):
        replay([])
    with pytest.raises(ValueError, match="thresholds"):
        replay(CALLS, thresholds=[1.5])


def test_default_grid_covers_101_points_quantiles_and_everything_small():
    result = replay(CALLS)
    thresholds = [p.threshold for p in result.points]
    assert {0.0, 0.5, 1.0, 1.01} <= set(thresholds)
    assert len(thresholds) >= 102
    assert thresholds == sorted(thresholds)


def test_threshold_for_share_sends_that_share_small():
    scores = [c.score for c in CALLS]
    threshold = threshold_for_share(scores, 0.5)
    assert threshold == pytest.approx(0.235)
    assert replay(CALLS, thresholds=[threshold]).points[0].small_share == 0.5
    assert threshold_for_share(scores, 0.0) == 0.0
    assert threshold_for_share(scores, 1.0) == 1.01


def test_replay_agrees_with_a_brute_force_loop_on_random_traffic():
    rng = random.Random(5)
    calls = []
    for _ in range(400):
        score = rng.random()
        small = score < 0.6
        fell = small and rng.random() < score / 2
        calls.append(
            CallSample(
                score=score,
                tokens=rng.randint(10, 4000),
                baseline_cost=D(str(round(rng.uniform(0.001, 0.05), 6))),
                route="small" if small else "frontier",
                small_cost=D(str(round(rng.uniform(0.0001, 0.001), 6))) if small and not fell else None,
                fell_back=fell,
            )
        )
    result = replay(calls, thresholds=[0.3, 0.55, 0.9])
    per_token = result.small_cost_per_token
    rates = [r if r is not None else None for r in result.bucket_fallback_rates]
    known = [i for i, r in enumerate(rates) if r is not None]
    for point in result.points:
        cost = 0.0
        for c in calls:
            if c.score < point.threshold:
                bucket = min(int(c.score * 10), 9)
                rate = (
                    rates[bucket]
                    if rates[bucket] is not None
                    else rates[min(known, key=lambda k: (abs(k - bucket), k > bucket))]
                )
                small = float(c.small_cost) if c.small_cost is not None else c.tokens * per_token
                cost += small + rate * float(c.baseline_cost)
            else:
                cost += float(c.baseline_cost)
        assert float(point.cost_usd) == pytest.approx(cost, abs=2e-6)
        assert point.small_share == pytest.approx(np.mean([c.score < point.threshold for c in calls]))


def test_whatif_figure_draws_the_curves_and_marks_current_and_selected(result):
    from routing.charts import whatif_figure

    assert whatif_figure([]) is None
    figure = whatif_figure([p.as_dict() for p in result.points], current=0.5, selected=0.11)
    names = {trace.get("name") for trace in figure["data"]}
    assert {"Small-model share (%)", "Expected fallback rate (%)", "Savings vs all-frontier (USD)"} <= names
    share = next(t for t in figure["data"] if t.get("name") == "Small-model share (%)")
    assert share["y"] == [0.0, 0.0, 25.0, 75.0, 100.0]
    assert [s["x0"] for s in figure["layout"]["shapes"]] == [0.5, 0.11]
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["current 0.5", "selected 0.11"]
