"""A feature's own adjustment: moves with its labels, towards the shared scorer when they are few."""

from __future__ import annotations

import numpy as np
import pytest

from routing.engine.tooling.adjust import MIN_LABELS, fit_feature_adjustment

NAMES = ("quantitative_task", "transform_task")


def _calls(rng: np.random.Generator, n: int, *, small_fails_on_math: bool):
    shared = rng.normal(-1.0, 0.5, n)
    signals = rng.normal(0.0, 1.0, (n, 2))
    # The small model fails on quantitative asks of this feature far more than the shared scorer expects.
    extra = 2.5 * signals[:, 0] if small_fails_on_math else 0.0
    labels = (rng.random(n) < 1 / (1 + np.exp(-(shared + extra)))).astype(float)
    return shared, signals, labels


def test_a_feature_whose_small_model_fails_on_one_kind_of_ask_learns_to_send_it_to_the_frontier():
    shared, signals, labels = _calls(np.random.default_rng(1), 2000, small_fails_on_math=True)
    adjustment = fit_feature_adjustment(shared, signals, NAMES, labels)
    assert adjustment.moved and adjustment.labels == 2000
    assert adjustment.weights["quantitative_task"] > 1.5
    assert abs(adjustment.weights["transform_task"]) < 0.3
    math_ask = adjustment.logit_change({"quantitative_task": 2.0}, {}, {})
    assert math_ask > 3.0, "a clearly quantitative ask now scores far higher for this feature"


def test_labels_that_agree_with_the_shared_scorer_change_nothing_much():
    shared, signals, labels = _calls(np.random.default_rng(2), 2000, small_fails_on_math=False)
    adjustment = fit_feature_adjustment(shared, signals, NAMES, labels)
    assert abs(adjustment.offset) < 0.2
    assert max(abs(w) for w in adjustment.weights.values()) < 0.2


def test_too_few_labels_move_nothing_and_the_prior_holds_small_samples_back():
    shared, signals, labels = _calls(np.random.default_rng(3), 2000, small_fails_on_math=True)
    few = fit_feature_adjustment(
        shared[: MIN_LABELS - 1], signals[: MIN_LABELS - 1], NAMES, labels[: MIN_LABELS - 1]
    )
    assert not few.moved and few.offset == 0 and set(few.weights.values()) == {0.0}
    small = fit_feature_adjustment(shared[:60], signals[:60], NAMES, labels[:60])
    large = fit_feature_adjustment(shared, signals, NAMES, labels)
    assert 0 < small.weights["quantitative_task"] < large.weights["quantitative_task"]
    with pytest.raises(ValueError, match="one row per labelled call"):
        fit_feature_adjustment(shared[:10], signals[:9], NAMES, labels[:10])
