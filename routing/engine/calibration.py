"""Turn a policy's target small-model share into a score threshold, from recent traffic scores."""

from __future__ import annotations

import math
from collections.abc import Iterable

# Above every score in [0, 1]: with this threshold nothing goes to the frontier model.
ALL_SMALL_THRESHOLD = math.nextafter(1.0, math.inf)


def threshold_for_small_share(scores: Iterable[float], small_share: float) -> float:
    """The threshold that sends about `small_share` of these scores to the small model.

    A threshold sends scores >= it to the frontier model, so it is the lowest score that must go
    to the frontier model. Ties cannot be split: tied scores all go to the frontier model, so the
    realised small share is at most the target. Non-finite scores are ignored.
    """
    if not 0.0 <= small_share <= 1.0 or math.isnan(small_share):
        raise ValueError(f"small_share must be within [0, 1], got {small_share}")
    ordered = sorted(score for score in scores if math.isfinite(score))
    if not ordered:
        raise ValueError("no finite scores to calibrate on")
    small_count = math.floor(small_share * len(ordered) + 1e-9)
    if small_count >= len(ordered):
        return max(ALL_SMALL_THRESHOLD, math.nextafter(ordered[-1], math.inf))
    # A cut inside a tie stays at the tied score: the tied prompts go to the frontier model, the safe side.
    return ordered[small_count]


def small_share_at(scores: Iterable[float], threshold: float) -> float:
    """The share of these scores that a threshold sends to the small model."""
    finite = [score for score in scores if math.isfinite(score)]
    if not finite:
        return 0.0
    return sum(score < threshold for score in finite) / len(finite)
