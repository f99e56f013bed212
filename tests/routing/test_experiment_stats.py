"""Always-valid statistics: A/A false positives under continuous peeking, power, SRM, verdicts, arm assignment."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.engine.bundle import Experiment as BundleExperiment
from routing.engine.bundle import ExperimentArm as BundleArm
from routing.engine.decision import assign_arm
from routing.services.experiment_stats import (
    ArmData,
    Summary,
    cs_radius,
    evaluate_arms,
    mixture_lr,
    sample_ratio_check,
    sequential_difference,
)

PEEK_EVERY = 50


def _prefix_summaries(values: np.ndarray, step: int) -> list[Summary]:
    """Summaries of values[:k] for k = step, 2·step, … from running sums (fast peeking)."""
    s1, s2 = np.cumsum(values), np.cumsum(values**2)
    out = []
    for k in range(step, values.size + 1, step):
        mean = s1[k - 1] / k
        var = max((s2[k - 1] - k * mean * mean) / (k - 1), 0.0)
        out.append(Summary(k, float(mean), float(var)))
    return out


def _ever_significant(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> bool:
    return any(
        sequential_difference(x, y, alpha=alpha).significant
        for x, y in zip(_prefix_summaries(a, PEEK_EVERY), _prefix_summaries(b, PEEK_EVERY), strict=True)
    )


@pytest.mark.parametrize(
    "draw",
    [
        pytest.param(lambda rng, n: rng.lognormal(-6.0, 1.0, n), id="cost-lognormal"),
        pytest.param(lambda rng, n: (rng.random(n) < 0.08).astype(float), id="fallback-bernoulli"),
    ],
)
def test_aa_false_positive_rate_stays_below_alpha_under_continuous_peeking(draw):
    rng = np.random.default_rng(20261127)
    simulations, per_arm = 200, 1500  # a look after every 50 calls per arm: 30 looks each
    false_positives = sum(
        _ever_significant(draw(rng, per_arm), draw(rng, per_arm)) for _ in range(simulations)
    )
    assert false_positives / simulations <= 0.05


def test_naive_fixed_sample_test_does_inflate_under_the_same_peeking():
    """The control: a plain z-test looked at 30 times fails the A/A check, which is why we use the mixture."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(200):
        a, b = rng.normal(0, 1, 1500), rng.normal(0, 1, 1500)
        for x, y in zip(_prefix_summaries(a, PEEK_EVERY), _prefix_summaries(b, PEEK_EVERY), strict=True):
            z = (y.mean - x.mean) / math.sqrt(x.var / x.n + y.var / y.n)
            if abs(z) > 1.96:
                hits += 1
                break
    assert hits / 200 > 0.10


def test_a_real_effect_is_detected():
    rng = np.random.default_rng(11)
    detected = 0
    for _ in range(50):
        control = rng.lognormal(-6.0, 1.0, 3000)
        cheaper = rng.lognormal(-6.0, 1.0, 3000) * 0.8  # 20 % cheaper per request
        detected += _ever_significant(control, cheaper)
    assert detected / 50 >= 0.8


def test_confidence_sequence_edge_is_where_the_p_value_reaches_alpha():
    variance, tau2, alpha = 0.04, 0.01, 0.05
    radius = cs_radius(variance, tau2, alpha)
    assert 1 / mixture_lr(radius, variance, tau2) == pytest.approx(alpha, rel=1e-9)
    assert 1 / mixture_lr(radius * 0.9, variance, tau2) > alpha
    # wider than the fixed-sample interval: the price of looking as often as you like
    assert radius > 1.96 * math.sqrt(variance)


def test_nothing_is_declared_before_the_minimum_sample():
    tiny = sequential_difference(Summary(20, 1.0, 0.01), Summary(20, 2.0, 0.01))
    assert not tiny.ready and not tiny.significant
    enough = sequential_difference(Summary(200, 1.0, 0.01), Summary(200, 2.0, 0.01))
    assert enough.significant and enough.high < 2.0 < enough.estimate + 1.01


def test_srm_flags_a_skewed_split_and_not_a_fair_one():
    fair = sample_ratio_check([5020, 4980], [50, 50])
    assert not fair.mismatch and fair.chi2_p_value > 0.5
    skewed = sample_ratio_check([5400, 4600], [50, 50])
    assert skewed.mismatch and skewed.chi2_p_value < 0.001
    three = sample_ratio_check([2000, 2000, 1000], [40, 40, 20])
    assert not three.mismatch


def test_sequential_srm_stays_quiet_on_correct_splits_however_often_checked():
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(200):
        arms = rng.choice(2, size=3000, p=[0.7, 0.3])
        counts = np.cumsum(np.eye(2)[arms], axis=0)
        alarms += any(sample_ratio_check(counts[k - 1], [70, 30]).mismatch for k in range(100, 3001, 100))
    assert alarms / 200 <= 0.01


def _arm(rng, name, n, *, control=False, cost=1.0, fallback=0.05, error=0.01, weight=50.0, feedback=None):
    return ArmData(
        name=name,
        threshold=0.5,
        weight=weight,
        is_control=control,
        cost=rng.lognormal(-6.0, 0.8, n) * cost,
        small=(rng.random(n) < 0.6).astype(float),
        fallback=(rng.random(n) < fallback).astype(float),
        error=(rng.random(n) < error).astype(float),
        latency_ms=rng.gamma(2.0, 200.0, n),
        feedback=np.asarray(feedback if feedback is not None else rng.integers(3, 6, 60), dtype=float),
    )


def test_verdict_keeps_running_on_equal_arms():
    rng = np.random.default_rng(1)
    result = evaluate_arms([_arm(rng, "control", 2000, control=True), _arm(rng, "lower", 2000)])
    assert result["verdict"]["decision"] == "keep_running"
    assert {a["name"] for a in result["arms"]} == {"control", "lower"}
    lower = result["arms"][1]
    assert lower["latency_p50_ms"] < lower["latency_p95_ms"]


def test_verdict_ships_a_cheaper_arm():
    rng = np.random.default_rng(2)
    result = evaluate_arms([_arm(rng, "control", 3000, control=True), _arm(rng, "lower", 3000, cost=0.7)])
    assert result["verdict"]["decision"] == "ship"
    assert result["verdict"]["arm"] == "lower"
    assert result["comparisons"][0]["cost_per_request"]["high"] < 0


def test_verdict_stops_on_a_fallback_guardrail_breach_even_when_cheaper():
    rng = np.random.default_rng(3)
    arms = [_arm(rng, "control", 3000, control=True), _arm(rng, "lower", 3000, cost=0.7, fallback=0.25)]
    result = evaluate_arms(arms, max_fallback_rise=0.05)
    assert result["verdict"]["decision"] == "stop"
    assert "fallback rate" in result["verdict"]["reason"] and "lower" in result["verdict"]["reason"]


def test_verdict_stops_on_low_feedback():
    rng = np.random.default_rng(4)
    arms = [
        _arm(rng, "control", 1000, control=True),
        _arm(rng, "lower", 1000, feedback=rng.integers(1, 3, 200)),  # mean 1.5
    ]
    assert evaluate_arms(arms, min_feedback=3.0)["verdict"]["decision"] == "stop"
    assert evaluate_arms(arms, min_feedback=None)["verdict"]["decision"] != "stop"


def test_verdict_reports_sample_ratio_mismatch():
    rng = np.random.default_rng(5)
    arms = [_arm(rng, "control", 3000, control=True), _arm(rng, "lower", 2000)]  # configured 50/50
    result = evaluate_arms(arms)
    assert result["srm"]["mismatch"]
    assert result["verdict"]["decision"] == "srm"


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=5, max_value=60), min_size=2, max_size=4),
    experiment_id=st.from_regex(r"[a-z][a-z0-9-]{2,20}", fullmatch=True),
)
def test_arm_assignment_is_sticky_and_follows_the_weights(weights, experiment_id):
    experiment = BundleExperiment(
        id=experiment_id,
        feature="ticket-summary",
        sticky_by="end_user",
        arms=tuple(BundleArm(f"arm{i}", 0.1 * (i + 1), w) for i, w in enumerate(weights)),
    )
    users = [f"user-{i}" for i in range(4000)]
    first = [assign_arm(experiment, u).name for u in users]
    assert first == [assign_arm(experiment, u).name for u in users]  # sticky: same user, same arm
    counts = Counter(first)
    total = sum(weights)
    for i, w in enumerate(weights):
        share = w / total
        sd = math.sqrt(share * (1 - share) / len(users))
        assert abs(counts.get(f"arm{i}", 0) / len(users) - share) < 5 * sd
