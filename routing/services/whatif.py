"""What-if replay: what a routing threshold would have done on a feature's recorded traffic.

Every spend event stores the complexity score the proxy computed, so a threshold t can be
replayed: calls with score < t go to the small model, the rest to the frontier (the proxy's own
rule, `routing.engine.decision.decide`). `replay` is a pure function on plain call samples;
`feature_samples` loads them (the first attempt of each call, newest first, capped).

Cost model for one call i replayed onto the small model:

    cost_i = small_i + p(bucket of score_i) × baseline_i

where small_i is the observed small-model cost when the call was served by the small model
without falling back, else tokens_i × the observed small cost per token (or baseline_i × the
small/frontier price ratio when nothing was observed), and p(b) is the observed fallback rate of
small-model calls in score bucket b (ten buckets of 0.1; a bucket without small-model calls borrows
the nearest observed bucket's rate). Calls at or above t cost their baseline (the frontier price).

Uncertainty (95 %): small share — Wilson score interval; fallback rate — 400 draws of every
bucket's rate from its Jeffreys posterior Beta(f + ½, m − f + ½) (Beta(½, ½) for buckets never
observed, so the band widens where the data runs out); savings — the central limit interval of the
per-call savings plus the variance those draws add.

Internally figures are floats (statistics); money leaves this module as Decimal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from scipy import stats

from routing import providers
from routing.models import RoutingPolicy
from routing.services.experiment_stats import wilson_intervals

BUCKETS = 10
MAX_THRESHOLD = 1.01  # the engine's "everything small"
MAX_CALLS = 200_000
DRAWS = 400
USD = Decimal("0.000001")


@dataclass(frozen=True)
class CallSample:
    """One recorded call, as the replay needs it."""

    score: float
    tokens: int  # input + output tokens
    baseline_cost: Decimal  # what the frontier model costs for it
    route: str  # the route the proxy decided: small | frontier
    small_cost: Decimal | None = None  # observed small-model cost when served by it without falling back
    fell_back: bool = False  # went small and fell back (timeout, error, low confidence)


@dataclass(frozen=True)
class ThresholdPoint:
    """Projected figures at one threshold, with 95 % intervals."""

    threshold: float
    small_share: float
    small_share_low: float
    small_share_high: float
    cost_usd: Decimal
    savings_usd: Decimal
    savings_low_usd: Decimal
    savings_high_usd: Decimal
    fallback_rate: float  # expected fallbacks / all calls
    fallback_rate_low: float
    fallback_rate_high: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "small_share": self.small_share,
            "small_share_low": self.small_share_low,
            "small_share_high": self.small_share_high,
            "cost_usd": str(self.cost_usd),
            "savings_usd": str(self.savings_usd),
            "savings_low_usd": str(self.savings_low_usd),
            "savings_high_usd": str(self.savings_high_usd),
            "fallback_rate": self.fallback_rate,
            "fallback_rate_low": self.fallback_rate_low,
            "fallback_rate_high": self.fallback_rate_high,
        }


@dataclass
class Replay:
    """The replay of every threshold of a grid on one set of calls."""

    calls: int
    baseline_usd: Decimal  # everything on the frontier
    points: list[ThresholdPoint]
    bucket_fallback_rates: list[float | None]  # observed per score bucket (None: no small-model calls there)
    small_cost_per_token: float | None
    extrapolated_from: float | None  # lowest score whose bucket had no small-model calls
    notes: list[str] = field(default_factory=list)

    def at(self, threshold: float) -> ThresholdPoint:
        """The grid point nearest to `threshold`."""
        return min(self.points, key=lambda p: abs(p.threshold - threshold))


def _usd(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(USD)


def default_thresholds(scores: np.ndarray) -> np.ndarray:
    """101 evenly spaced points, the score percentiles 1..99, and 1.01 (everything small)."""
    grid = np.round(np.linspace(0.0, 1.0, 101), 4)
    extra = np.percentile(scores, np.arange(1, 100)) if scores.size else np.array([])
    return np.unique(np.concatenate([grid, np.round(extra, 6), [MAX_THRESHOLD]]))


def threshold_for_share(scores: Sequence[float], share: float) -> float:
    """The threshold that sends about `share` of these calls to the small model."""
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be between 0 and 1")
    data = np.sort(np.asarray(scores, dtype=float))
    if data.size == 0:
        raise ValueError("no calls with a score in this window: widen the window")
    k = int(math.ceil(share * data.size))
    if k <= 0:
        return 0.0
    if k >= data.size:
        return MAX_THRESHOLD
    # strictly above the k-th smallest score, below the next one when they differ
    low, high = data[k - 1], data[k]
    return float(round((low + high) / 2, 6)) if high > low else float(high)


def _bucket(scores: np.ndarray) -> np.ndarray:
    return np.clip((scores * BUCKETS).astype(int), 0, BUCKETS - 1)


def replay(
    samples: Sequence[CallSample],
    *,
    thresholds: Iterable[float] | None = None,
    price_ratio: Decimal | None = None,
    confidence: float = 0.95,
    draws: int = DRAWS,
    seed: int = 0,
) -> Replay:
    """Project small share, cost, savings and fallback rate at each threshold (pure; see module docstring)."""
    n = len(samples)
    if n == 0:
        raise ValueError("no calls with a score in this window: widen the window or send traffic first")
    scores = np.fromiter((s.score for s in samples), float, n)
    tokens = np.fromiter((s.tokens for s in samples), float, n)
    baseline = np.fromiter((float(s.baseline_cost) for s in samples), float, n)
    is_small = np.fromiter((s.route == "small" for s in samples), bool, n)
    fell_back = np.fromiter((s.fell_back for s in samples), bool, n)
    observed = np.fromiter(
        (float(s.small_cost) if s.small_cost is not None else math.nan for s in samples), float, n
    )
    notes: list[str] = []

    # small-model cost of each call: observed, else per token, else priced from the frontier baseline
    served = ~np.isnan(observed) & (tokens > 0)
    per_token = float(observed[served].sum() / tokens[served].sum()) if served.any() else None
    if per_token is not None:
        estimate = tokens * per_token
    elif price_ratio is not None:
        estimate = baseline * float(price_ratio)
        notes.append(
            "No small-model calls observed: small costs are the baseline × the small/frontier price ratio."
        )
    else:
        raise ValueError(
            "no small-model calls observed and no small/frontier price ratio: set prices on the deployments"
        )
    small_cost = np.where(np.isnan(observed), estimate, observed)

    # fallback rate per score bucket, from calls the small model actually took
    buckets = _bucket(scores)
    tried = np.bincount(buckets[is_small], minlength=BUCKETS).astype(float)
    failed = np.bincount(buckets[is_small & fell_back], minlength=BUCKETS).astype(float)
    seen = np.flatnonzero(tried > 0)
    observed_rates = np.divide(failed, tried, out=np.zeros(BUCKETS), where=tried > 0)
    rates = observed_rates.copy()
    extrapolated_from: float | None = None
    for b in range(BUCKETS):
        if tried[b] == 0 and seen.size:
            distance = np.abs(seen - b) * 2 + (seen > b)  # nearest observed bucket; ties go to the lower one
            rates[b] = observed_rates[seen[np.argmin(distance)]]
            if b > seen.max() and extrapolated_from is None:
                extrapolated_from = b / BUCKETS
    if not seen.size:
        notes.append(
            "No small-model calls observed: the fallback rate is unknown (shown as 0 with a 0–1 band)."
        )

    grid = np.asarray(
        sorted(set(float(t) for t in thresholds)) if thresholds is not None else default_thresholds(scores)
    )
    if grid.size and (grid.min() < 0 or grid.max() > MAX_THRESHOLD):
        raise ValueError(f"thresholds must lie in [0, {MAX_THRESHOLD}]")

    order = np.argsort(scores, kind="stable")
    s_sorted = scores[order]
    k = np.searchsorted(s_sorted, grid, side="left")  # calls with score < t
    zero = np.zeros(1)

    def prefix(values: np.ndarray) -> np.ndarray:
        return np.concatenate([zero, np.cumsum(values[order])])

    p_call = rates[buckets]
    saving_per_call = baseline - small_cost - p_call * baseline
    cum_small = prefix(small_cost + p_call * baseline)
    cum_base = prefix(baseline)
    cum_save = prefix(saving_per_call)
    cum_save2 = prefix(saving_per_call**2)
    cum_fb = prefix(p_call)
    onehot = np.zeros((n, BUCKETS))
    onehot[np.arange(n), buckets[order]] = 1.0
    count_b = np.vstack([np.zeros(BUCKETS), np.cumsum(onehot, axis=0)])[k]  # (T, B) calls per bucket below t
    onehot *= baseline[order][:, None]
    base_b = np.vstack([np.zeros(BUCKETS), np.cumsum(onehot, axis=0)])[
        k
    ]  # (T, B) baseline per bucket below t

    rng = np.random.default_rng(seed)
    alpha_post = np.where(tried > 0, failed + 0.5, 0.5)
    beta_post = np.where(tried > 0, tried - failed + 0.5, 0.5)
    if not seen.size:
        rates_draws = rng.beta(0.5, 0.5, size=(draws, BUCKETS))
    else:
        rates_draws = rng.beta(alpha_post, beta_post, size=(draws, BUCKETS))
    fb_draws = count_b @ rates_draws.T / n  # (T, draws)
    tail = (1 - confidence) / 2 * 100
    fb_low = np.percentile(fb_draws, tail, axis=1)
    fb_high = np.percentile(fb_draws, 100 - tail, axis=1)
    save_draw_var = np.var(base_b @ rates_draws.T, axis=1)

    share = k / n
    share_low, share_high = wilson_intervals(
        k.astype(float), np.full(k.shape, float(n)), confidence=confidence
    )
    total_base = float(baseline.sum())
    cost = cum_small[k] + (total_base - cum_base[k])
    savings = cum_save[k]
    mean_save = savings / n
    var_save = np.maximum(cum_save2[k] / n - mean_save**2, 0.0)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    half = z * np.sqrt(n * var_save + save_draw_var)
    fallback = cum_fb[k] / n
    points = [
        ThresholdPoint(
            threshold=float(grid[i]),
            small_share=float(share[i]),
            small_share_low=float(share_low[i]),
            small_share_high=float(share_high[i]),
            cost_usd=_usd(cost[i]),
            savings_usd=_usd(savings[i]),
            savings_low_usd=_usd(savings[i] - half[i]),
            savings_high_usd=_usd(savings[i] + half[i]),
            fallback_rate=float(fallback[i]),
            fallback_rate_low=float(min(fb_low[i], fallback[i])),
            fallback_rate_high=float(max(fb_high[i], fallback[i])),
        )
        for i in range(grid.size)
    ]
    return Replay(
        calls=n,
        baseline_usd=_usd(total_base),
        points=points,
        bucket_fallback_rates=[float(failed[b] / tried[b]) if tried[b] else None for b in range(BUCKETS)],
        small_cost_per_token=per_token,
        extrapolated_from=extrapolated_from,
        notes=notes,
    )


# --- loading recorded traffic (Django from here on) --------------------------------------------------


def feature_samples(
    *, feature: Any, start: datetime, end: datetime, limit: int = MAX_CALLS
) -> list[CallSample]:
    """The newest `limit` scored calls of a feature that started in [start, end), one sample per call."""
    calls = providers.spend_reader().scored_calls(feature=feature, start=start, end=end, limit=limit)
    samples = []
    for c in calls:
        served_small = c.route == "small" and c.status == "success" and not c.small_model_fallback
        samples.append(
            CallSample(
                score=float(c.score),
                tokens=int(c.input_tokens) + int(c.output_tokens),
                baseline_cost=c.baseline_cost_usd,
                route=c.route,
                small_cost=c.cost_usd if served_small else None,
                fell_back=c.small_model_fallback and c.route == "small",
            )
        )
    return samples


def price_ratio(*, feature: Any) -> Decimal | None:
    """Small/frontier price ratio from the feature's effective policy deployments (None when unpriced)."""
    policy = effective_policy(feature=feature)
    small, frontier = policy.get("small_deployment"), policy.get("frontier_deployment")
    if small is None or frontier is None:
        return None

    def price(dep: Any) -> Decimal | None:
        if dep.input_price_per_mtok is None or dep.output_price_per_mtok is None:
            return None
        return dep.input_price_per_mtok + dep.output_price_per_mtok

    small_price, frontier_price = price(small), price(frontier)
    if small_price is None or not frontier_price:
        return None
    return small_price / frontier_price


def effective_policy(*, feature: Any) -> dict[str, Any]:
    """The feature's threshold, target share and deployments after inheriting from the default policy."""
    own = (
        RoutingPolicy.objects.filter(feature=feature)
        .select_related("small_deployment", "frontier_deployment")
        .first()
    )
    default = (
        RoutingPolicy.objects.filter(feature__isnull=True)
        .select_related("small_deployment", "frontier_deployment")
        .first()
    )
    out: dict[str, Any] = {"policy": own, "default": default}
    for name in ("small_deployment", "frontier_deployment"):
        out[name] = getattr(own, name, None) or getattr(default, name, None)
    if own is not None and (own.threshold is not None or own.target_small_share is not None):
        out["threshold"], out["target_small_share"] = own.threshold, own.target_small_share
    elif default is not None:
        out["threshold"], out["target_small_share"] = default.threshold, default.target_small_share
    else:
        out["threshold"], out["target_small_share"] = None, None
    return out


def current_threshold(*, feature: Any, scores: Sequence[float] = ()) -> float | None:
    """The threshold the feature runs with now (a target share is turned into its threshold on `scores`)."""
    policy = effective_policy(feature=feature)
    if policy["threshold"] is not None:
        return float(policy["threshold"])
    if policy["target_small_share"] is not None and len(scores):
        return threshold_for_share(scores, float(policy["target_small_share"]))
    return None
