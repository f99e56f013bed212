"""A target small-model share becomes a threshold from the quantile of recent scores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.engine.calibration import small_share_at, threshold_for_small_share


def test_half_of_ten_distinct_scores_go_to_the_small_model():
    scores = [i / 10 for i in range(10)]
    threshold = threshold_for_small_share(scores, 0.5)
    assert threshold == 0.5
    assert small_share_at(scores, threshold) == 0.5


def test_share_zero_sends_everything_to_the_frontier_model_and_one_sends_nothing():
    scores = [0.2, 0.4, 0.9]
    assert small_share_at(scores, threshold_for_small_share(scores, 0.0)) == 0.0
    assert small_share_at(scores, threshold_for_small_share(scores, 1.0)) == 1.0
    assert threshold_for_small_share([1.0, 1.0], 1.0) > 1.0


def test_ties_go_to_the_frontier_model_so_the_small_share_never_exceeds_the_target():
    scores = [0.1, 0.5, 0.5, 0.9]
    threshold = threshold_for_small_share(scores, 0.5)
    assert threshold == 0.5
    assert small_share_at(scores, threshold) == 0.25


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError):
        threshold_for_small_share([0.1], 1.5)
    with pytest.raises(ValueError):
        threshold_for_small_share([], 0.5)
    with pytest.raises(ValueError):
        threshold_for_small_share([float("nan")], 0.5)


@given(
    scores=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=200),
    small_share=st.floats(min_value=0, max_value=1),
)
def test_realised_small_share_is_at_most_the_target_and_as_close_as_ties_allow(scores, small_share):
    threshold = threshold_for_small_share(scores, small_share)
    assert small_share_at(scores, threshold) <= small_share + 1e-9
    if threshold <= max(scores):
        # The next threshold up, the lowest higher score, would already overshoot the target.
        next_up = min((score for score in scores if score > threshold), default=math.inf)
        assert small_share_at(scores, next_up) > small_share
