"""Routing-quality metrics against a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest

from routing.engine.tooling.metrics import (
    apgr,
    bootstrap_metrics,
    call_performance_threshold,
    cost_saved,
    paired_apgr_difference,
    routing_curve,
    routing_metrics,
)

# Four prompts. Weak right on #2 and #3, strong right on all. Scores tie on #2 and #4.
SCORES = np.array([0.9, 0.5, 0.1, 0.5])
WEAK = np.array([0.0, 1.0, 1.0, 0.0])
STRONG = np.array([1.0, 1.0, 1.0, 1.0])


def test_curve_moves_tied_prompts_together():
    # Thresholds: above 0.9 (none strong), 0.9 (#1), 0.5 (#1, #2, #4), 0.1 (all).
    curve = routing_curve(SCORES, WEAK, STRONG)
    assert curve.strong_share.tolist() == [0.0, 0.25, 0.75, 1.0]
    assert curve.quality.tolist() == [0.5, 0.75, 1.0, 1.0]
    assert curve.pgr.tolist() == [0.0, 0.5, 1.0, 1.0]


def test_apgr_cpt_and_cost_saved_by_hand():
    # Trapezoids: 0.25*(0+0.5)/2 + 0.5*(0.5+1)/2 + 0.25*(1+1)/2 = 0.0625 + 0.375 + 0.25.
    metrics = routing_metrics(SCORES, WEAK, STRONG, price_ratio=40)
    assert metrics["apgr"] == pytest.approx(0.6875)
    assert metrics["cpt50"] == 0.25
    assert metrics["cpt80"] == 0.75
    # 95 % of strong quality (0.95) first reached at share 0.75: saved = 1 - (0.75 + 0.25/40).
    assert metrics["strong_share_95"] == 0.75
    assert metrics["cost_saved_95"] == pytest.approx(1 - (0.75 + 0.25 / 40))


def test_perfect_and_inverted_scorers_bracket_random():
    rng = np.random.default_rng(1)
    weak = (rng.random(2000) < 0.6).astype(float)
    strong = np.maximum(weak, (rng.random(2000) < 0.7).astype(float))
    gain = strong - weak
    perfect = apgr(routing_curve(gain + rng.random(2000) * 0.1, weak, strong))
    inverted = apgr(routing_curve(-gain + rng.random(2000) * 0.1, weak, strong))
    random = apgr(routing_curve(rng.random(2000), weak, strong))
    assert perfect > 0.8
    assert inverted < 0.3
    assert 0.4 < random < 0.6


def test_constant_scorer_is_the_diagonal():
    curve = routing_curve(np.zeros(4), WEAK, STRONG)
    assert curve.strong_share.tolist() == [0.0, 1.0]
    assert apgr(curve) == pytest.approx(0.5)
    assert call_performance_threshold(curve, 0.5) == 1.0


def test_cost_saved_endpoints():
    assert cost_saved(1.0, 40) == 0.0
    assert cost_saved(0.0, 40) == pytest.approx(1 - 1 / 40)


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(2)
    weak = (rng.random(500) < 0.6).astype(float)
    strong = np.maximum(weak, (rng.random(500) < 0.7).astype(float))
    scores = strong - weak + rng.random(500)
    estimates = bootstrap_metrics(scores, weak, strong, rounds=50, seed=3)
    point, low, high = estimates["apgr"]
    assert low <= point <= high


def test_paired_difference_of_a_scorer_with_itself_is_zero():
    point, low, high = paired_apgr_difference(SCORES, SCORES, WEAK, STRONG, rounds=20, seed=1)
    assert point == low == high == 0.0
    point, _, _ = paired_apgr_difference(SCORES, -SCORES, WEAK, STRONG, rounds=0)
    assert point == pytest.approx(0.6875 - apgr(routing_curve(-SCORES, WEAK, STRONG)))
