"""Routing-quality metrics (APGR, CPT, cost saved at 95 % of strong quality) with bootstrap intervals.

Definitions follow shared/data/routing/README.md: a threshold sends scores at or above it to the
strong model; thresholds sweep every distinct score, so tied prompts move together.
Used by evaluation and training only; numpy is fine here, the hot path never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_PRICE_RATIO = 40.0


@dataclass(frozen=True)
class RoutingCurve:
    """Strong-call share and quality at each threshold, from all-weak (share 0) to all-strong (share 1)."""

    strong_share: np.ndarray
    quality: np.ndarray
    weak_quality: float
    strong_quality: float

    @property
    def pgr(self) -> np.ndarray:
        gap = self.strong_quality - self.weak_quality
        if gap == 0:
            return np.zeros_like(self.quality)
        return (self.quality - self.weak_quality) / gap


def routing_curve(scores: np.ndarray, weak_score: np.ndarray, strong_score: np.ndarray) -> RoutingCurve:
    scores = np.asarray(scores, dtype=float)
    weak = np.asarray(weak_score, dtype=float)
    strong = np.asarray(strong_score, dtype=float)
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    gain = np.cumsum(strong[order] - weak[order])
    # A threshold can only fall between distinct scores: keep the last index of each tie group.
    group_ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    weak_total = weak.sum()
    share = np.concatenate(([0.0], (group_ends + 1) / n))
    quality = np.concatenate(([weak_total / n], (weak_total + gain[group_ends]) / n))
    return RoutingCurve(share, quality, float(weak.mean()), float(strong.mean()))


def apgr(curve: RoutingCurve) -> float:
    pgr = curve.pgr
    return float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(curve.strong_share)) / 2.0)


def call_performance_threshold(curve: RoutingCurve, target_pgr: float) -> float:
    """CPT(x): the smallest strong-call share at which PGR reaches x."""
    reached = np.flatnonzero(curve.pgr >= target_pgr - 1e-12)
    return float(curve.strong_share[reached[0]]) if len(reached) else 1.0


def strong_share_for_quality(curve: RoutingCurve, fraction_of_strong: float = 0.95) -> float:
    reached = np.flatnonzero(curve.quality >= fraction_of_strong * curve.strong_quality - 1e-12)
    return float(curve.strong_share[reached[0]]) if len(reached) else 1.0


def cost_saved(strong_share: float, price_ratio: float = DEFAULT_PRICE_RATIO) -> float:
    """Saving against sending everything to the strong model, strong:weak price ratio r."""
    return 1.0 - (strong_share + (1.0 - strong_share) / price_ratio)


def routing_metrics(
    scores: np.ndarray,
    weak_score: np.ndarray,
    strong_score: np.ndarray,
    price_ratio: float = DEFAULT_PRICE_RATIO,
) -> dict[str, float]:
    curve = routing_curve(scores, weak_score, strong_score)
    share_95 = strong_share_for_quality(curve, 0.95)
    return {
        "apgr": apgr(curve),
        "cpt50": call_performance_threshold(curve, 0.5),
        "cpt80": call_performance_threshold(curve, 0.8),
        "strong_share_95": share_95,
        "cost_saved_95": cost_saved(share_95, price_ratio),
    }


def bootstrap_metrics(
    scores: np.ndarray,
    weak_score: np.ndarray,
    strong_score: np.ndarray,
    *,
    rounds: int = 200,
    seed: int = 0,
    price_ratio: float = DEFAULT_PRICE_RATIO,
) -> dict[str, tuple[float, float, float]]:
    """Point estimate and 95 % percentile interval of each metric, resampling prompts."""
    scores = np.asarray(scores, dtype=float)
    weak = np.asarray(weak_score, dtype=float)
    strong = np.asarray(strong_score, dtype=float)
    point = routing_metrics(scores, weak, strong, price_ratio)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in point}
    n = len(scores)
    for _ in range(rounds):
        pick = rng.integers(0, n, n)
        for name, value in routing_metrics(scores[pick], weak[pick], strong[pick], price_ratio).items():
            samples[name].append(value)
    intervals = {}
    for name, value in point.items():
        low, high = np.percentile(samples[name], [2.5, 97.5]) if rounds else (value, value)
        intervals[name] = (value, float(low), float(high))
    return intervals


def paired_apgr_difference(
    scores: np.ndarray,
    baseline_scores: np.ndarray,
    weak_score: np.ndarray,
    strong_score: np.ndarray,
    *,
    rounds: int = 200,
    seed: int = 0,
) -> tuple[float, float, float]:
    """APGR(scores) - APGR(baseline) with a 95 % interval, both scored on the same resampled prompts."""
    scores, baseline = np.asarray(scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    weak, strong = np.asarray(weak_score, dtype=float), np.asarray(strong_score, dtype=float)

    def difference(pick: np.ndarray) -> float:
        return apgr(routing_curve(scores[pick], weak[pick], strong[pick])) - apgr(
            routing_curve(baseline[pick], weak[pick], strong[pick])
        )

    point = difference(np.arange(len(scores)))
    rng = np.random.default_rng(seed)
    samples = [difference(rng.integers(0, len(scores), len(scores))) for _ in range(rounds)]
    low, high = np.percentile(samples, [2.5, 97.5]) if rounds else (point, point)
    return point, float(low), float(high)
