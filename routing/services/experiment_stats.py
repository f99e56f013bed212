"""Statistics for threshold experiments that stay valid however often someone looks (pure numpy/scipy).

Method (docs/experiments.md has the long form):

* Differences in means (cost per request, fallback / error / small-model rates, feedback) use the
  mixture sequential probability ratio test with a normal mixing distribution: Johari, Pekelis,
  Koomen, Walsh, "Always valid inference: continuous monitoring of A/B tests" (Operations Research
  2022; arXiv 1512.04922, 2015/2017). For an estimate Δ̂ with variance V and a N(0, τ²) mixture over
  the true difference, the mixture likelihood ratio is

      Λ = sqrt(V / (V + τ²)) · exp(τ² Δ̂² / (2 V (V + τ²)))

  and {θ : Λ_θ < 1/α} is a confidence sequence: it covers the true difference at every sample size
  at once with probability ≥ 1 − α (Ville's inequality; Howard, Ramdas, McAuliffe, Sekhon,
  "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021, eq. for the
  normal-mixture boundary). The variance is plugged in from the data, which makes the guarantee
  asymptotic (Waudby-Smith et al. 2021, "Time-uniform central limit theory"), so nothing is
  declared before every arm has `MIN_SAMPLES` observations.
* τ² is tuned so the boundary is tightest near `TUNE_N` observations per arm (τ² = the variance of
  the difference at that size), the choice Howard et al. §3.5 recommend.
* Sample-ratio mismatch: the sequential multinomial test of Lindon & Malek, "Anytime-valid
  inference for multinomial count data" (NeurIPS 2022), a Dirichlet-multinomial Bayes factor
  against the configured weights, rejected when it exceeds 1/α (α = 0.001); the classical
  chi-square p-value is reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

MIN_SAMPLES = 100  # per arm before any difference is declared (plug-in variance needs some data)
TUNE_N = 1000  # per-arm size where the confidence sequence is tuned to be tightest
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Summary:
    """Count, mean and variance of one arm's observations of one metric."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Summary:
        data = np.asarray(values, dtype=float)
        if data.size == 0:
            return cls(0, math.nan, math.nan)
        var = float(data.var(ddof=1)) if data.size > 1 else 0.0
        return cls(int(data.size), float(data.mean()), var)


@dataclass(frozen=True)
class SequentialDifference:
    """Treatment minus control with an always-valid confidence interval and p-value."""

    estimate: float
    low: float
    high: float
    p_value: float  # always-valid p-value: 1 / mixture likelihood ratio, capped at 1
    n_control: int
    n_treatment: int
    ready: bool  # both arms past MIN_SAMPLES

    @property
    def significant(self) -> bool:
        return bool(self.ready and (self.low > 0 or self.high < 0))


def mixture_lr(estimate: float, variance: float, tau2: float, null: float = 0.0) -> float:
    """The normal-mixture likelihood ratio Λ for H0: difference = null (Johari et al.; Howard et al. 2021)."""
    if variance <= 0 or tau2 <= 0:
        return math.inf if estimate != null else 1.0
    shift = estimate - null
    log_lr = 0.5 * math.log(variance / (variance + tau2)) + tau2 * shift * shift / (
        2.0 * variance * (variance + tau2)
    )
    return math.exp(min(log_lr, 700.0))


def cs_radius(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence at this variance: {θ : Λ_θ < 1/α}."""
    if variance <= 0:
        return 0.0
    return math.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (math.log((variance + tau2) / variance) + 2 * math.log(1 / alpha))
    )


def sequential_difference(
    control: Summary,
    treatment: Summary,
    *,
    alpha: float = 0.05,
    tune_n: int = TUNE_N,
    min_samples: int = MIN_SAMPLES,
    bounds: tuple[float, float] | None = None,
) -> SequentialDifference:
    """Always-valid difference in means (treatment − control) from two arms' running summaries.

    `bounds`: the range the true difference lies in (a difference of two rates lies in [−1, 1]); the
    interval is intersected with it, which keeps its coverage and never shows an impossible value.
    """
    n_a, n_b = control.n, treatment.n
    if n_a < 2 or n_b < 2:
        low, high = bounds if bounds is not None else (-math.inf, math.inf)
        return SequentialDifference(math.nan, low, high, 1.0, n_a, n_b, False)
    estimate = treatment.mean - control.mean
    variance = control.var / n_a + treatment.var / n_b
    pooled = (control.var * (n_a - 1) + treatment.var * (n_b - 1)) / (n_a + n_b - 2)
    if variance <= 0:
        # both arms constant: no spread to learn from, fall back to a tiny floor so equal arms stay equal
        variance = max(pooled, 1e-12) * (1 / n_a + 1 / n_b)
    tau2 = max(pooled, 1e-12) * 2.0 / tune_n
    radius = cs_radius(variance, tau2, alpha)
    p_value = min(1.0, 1.0 / mixture_lr(estimate, variance, tau2))
    ready = n_a >= min_samples and n_b >= min_samples
    low, high = estimate - radius, estimate + radius
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return SequentialDifference(estimate, low, high, p_value, n_a, n_b, ready)


def sequential_mean(summary: Summary, *, alpha: float = 0.05, tune_n: int = TUNE_N) -> tuple[float, float]:
    """Always-valid confidence interval for one arm's mean (same normal-mixture boundary, one sample)."""
    if summary.n < 2:
        return (-math.inf, math.inf)
    variance = max(summary.var, 1e-12) / summary.n
    tau2 = max(summary.var, 1e-12) / tune_n
    radius = cs_radius(variance, tau2, alpha)
    return (summary.mean - radius, summary.mean + radius)


@dataclass(frozen=True)
class SampleRatio:
    """Sample-ratio-mismatch check of arm counts against the configured weights."""

    counts: tuple[int, ...]
    expected_shares: tuple[float, ...]
    chi2_p_value: float
    bayes_factor: float  # sequential Dirichlet-multinomial test (Lindon & Malek 2022)
    mismatch: bool


def sample_ratio_check(
    counts: Sequence[int], weights: Sequence[float], *, alpha: float = SRM_ALPHA, prior_strength: float = 1.0
) -> SampleRatio:
    """Are the arms' request counts consistent with their weights? Anytime-valid at level `alpha`.

    Bayes factor of a Dirichlet(prior_strength · p0 · k) mixture against the fixed shares p0; by Ville's
    inequality it exceeds 1/α with probability ≤ α under the null, however often it is checked.
    """
    n = np.asarray(counts, dtype=float)
    p0 = np.asarray(weights, dtype=float)
    p0 = p0 / p0.sum()
    total = n.sum()
    if total == 0:
        return SampleRatio(tuple(int(c) for c in counts), tuple(p0.tolist()), 1.0, 1.0, False)
    prior = prior_strength * p0 * len(p0)
    log_marginal = (
        special.gammaln(prior.sum())
        - special.gammaln(prior.sum() + total)
        + float(np.sum(special.gammaln(prior + n) - special.gammaln(prior)))
    )
    log_null = float(np.sum(n * np.log(p0)))
    log_bf = log_marginal - log_null
    expected = p0 * total
    chi2_p = float(special.chdtrc(len(p0) - 1, float(np.sum((n - expected) ** 2 / expected))))
    bayes_factor = math.exp(min(log_bf, 700.0))
    return SampleRatio(
        counts=tuple(int(c) for c in counts),
        expected_shares=tuple(float(p) for p in p0),
        chi2_p_value=chi2_p,
        bayes_factor=bayes_factor,
        mismatch=bool(log_bf >= math.log(1 / alpha)),
    )


def wilson_interval(successes: float, n: float, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (fixed-sample; used for what-if projections)."""
    if n <= 0:
        return (0.0, 1.0)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def wilson_intervals(
    successes: np.ndarray, n: np.ndarray, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `wilson_interval`."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    n = np.asarray(n, dtype=float)
    safe = np.where(n > 0, n, 1.0)
    p = np.asarray(successes, dtype=float) / safe
    denom = 1 + z * z / safe
    centre = (p + z * z / (2 * safe)) / denom
    half = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / denom
    low = np.where(n > 0, np.clip(centre - half, 0, 1), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0, 1), 1.0)
    return low, high


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    return float(np.percentile(data, q))


# --- one experiment's verdict -------------------------------------------------------------------------------

MIN_FEEDBACK = 30  # feedback scores an arm needs before the feedback guardrail can fire


@dataclass
class ArmData:
    """One arm's per-call observations (plain arrays: one entry per call, feedback per rated call)."""

    name: str
    threshold: float
    weight: float
    is_control: bool
    cost: np.ndarray  # USD per call, all attempts
    small: np.ndarray  # 1 when the proxy routed the call to the small model
    fallback: np.ndarray  # 1 when the small model fell back
    error: np.ndarray  # 1 when the call failed for the user
    latency_ms: np.ndarray
    feedback: np.ndarray  # 1–5 scores of the arm's rated calls

    @property
    def requests(self) -> int:
        return int(self.cost.size)


# metrics observed as 0/1 per call: their differences lie in [−1, 1]; feedback scores 1–5 differ by at most 4
DIFFERENCE_BOUNDS = {
    "small": (-1.0, 1.0),
    "fallback": (-1.0, 1.0),
    "error": (-1.0, 1.0),
    "feedback": (-4.0, 4.0),
}

METRICS = (
    ("cost_per_request", "cost", "Cost per request (USD)"),
    ("small_share", "small", "Small-model share"),
    ("fallback_rate", "fallback", "Fallback rate"),
    ("error_rate", "error", "Error rate"),
    ("latency_ms", "latency_ms", "Latency (ms, mean)"),
    ("feedback", "feedback", "Feedback score (1–5)"),
)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _diff_json(d: SequentialDifference) -> dict[str, object]:
    return {
        "estimate": _finite(d.estimate),
        "low": _finite(d.low),
        "high": _finite(d.high),
        "p_value": float(d.p_value),
        "significant": bool(d.significant),
        "ready": bool(d.ready),
    }


def evaluate_arms(
    arms: Sequence[ArmData],
    *,
    alpha: float = 0.05,
    max_fallback_rise: float = 0.05,
    max_error_rise: float = 0.01,
    min_feedback: float | None = None,
    min_samples: int = MIN_SAMPLES,
) -> dict[str, object]:
    """Per-arm figures, always-valid differences against control, SRM check, guardrails and the verdict.

    Verdict decisions: "stop" (a guardrail is breached: stop the experiment), "srm" (traffic does not
    split as configured: results untrustworthy), "ship" (an arm costs significantly less per request
    than control with no guardrail breached; `arm` names it — the control itself when every other arm
    costs significantly more), "keep_running" (not enough evidence yet). Comparisons against control
    share α by Bonferroni.
    """
    control = next((a for a in arms if a.is_control), arms[0])
    others = [a for a in arms if a is not control]
    level = alpha / max(1, len(others))
    per_arm: list[dict[str, object]] = []
    for arm in arms:
        fb_low, fb_high = (
            sequential_mean(Summary.of(arm.feedback), alpha=level) if arm.feedback.size >= 2 else (None, None)
        )
        per_arm.append(
            {
                "name": arm.name,
                "threshold": arm.threshold,
                "weight": arm.weight,
                "is_control": arm is control,
                "requests": arm.requests,
                "cost_per_request": _finite(float(arm.cost.mean())) if arm.requests else None,
                "small_share": _finite(float(arm.small.mean())) if arm.requests else None,
                "fallback_rate": _finite(float(arm.fallback.mean())) if arm.requests else None,
                "error_rate": _finite(float(arm.error.mean())) if arm.requests else None,
                "latency_p50_ms": percentile(arm.latency_ms, 50),
                "latency_p95_ms": percentile(arm.latency_ms, 95),
                "feedback": _finite(float(arm.feedback.mean())) if arm.feedback.size else None,
                "feedback_n": int(arm.feedback.size),
                "feedback_low": _finite(fb_low) if fb_low is not None else None,
                "feedback_high": _finite(fb_high) if fb_high is not None else None,
            }
        )
    srm = sample_ratio_check([a.requests for a in arms], [a.weight for a in arms])
    comparisons: list[dict[str, object]] = []
    breaches: list[str] = []
    winners: list[tuple[float, ArmData]] = []
    costlier = 0
    for arm in others:
        diffs = {
            key: sequential_difference(
                Summary.of(getattr(control, attr)),
                Summary.of(getattr(arm, attr)),
                alpha=level,
                min_samples=min_samples,
                bounds=DIFFERENCE_BOUNDS.get(attr),
            )
            for key, attr, _ in METRICS
        }
        comparisons.append({"arm": arm.name, **{key: _diff_json(d) for key, d in diffs.items()}})
        fallback, error = diffs["fallback_rate"], diffs["error_rate"]
        if fallback.ready and fallback.low > max_fallback_rise:
            breaches.append(
                f"arm {arm.name}: fallback rate is at least {fallback.low:.1%} above control "
                f"(allowed rise {max_fallback_rise:.1%})"
            )
        if error.ready and error.low > max_error_rise:
            breaches.append(
                f"arm {arm.name}: error rate is at least {error.low:.1%} above control (allowed rise {max_error_rise:.1%})"
            )
        if min_feedback is not None and arm.feedback.size >= MIN_FEEDBACK:
            _, high = sequential_mean(Summary.of(arm.feedback), alpha=level)
            if high < min_feedback:
                breaches.append(
                    f"arm {arm.name}: mean feedback is at most {high:.2f} (lowest allowed {min_feedback:.2f})"
                )
        cost = diffs["cost_per_request"]
        if cost.significant and cost.high < 0:
            winners.append((cost.estimate, arm))
        elif cost.significant and cost.low > 0:
            costlier += 1

    counts = ", ".join(f"{a.name} {a.requests}" for a in arms)
    if breaches:
        verdict = {
            "decision": "stop",
            "arm": None,
            "reason": "Guardrail breached: " + "; ".join(breaches) + ".",
        }
    elif srm.mismatch:
        shares = ", ".join(f"{a.name} {w:.0%}" for a, w in zip(arms, srm.expected_shares, strict=True))
        verdict = {
            "decision": "srm",
            "arm": None,
            "reason": (
                f"Sample ratio mismatch: requests ({counts}) do not match the weights ({shares}); "
                f"Bayes factor {srm.bayes_factor:.3g} ≥ {1 / SRM_ALPHA:.0f}, chi-square p = {srm.chi2_p_value:.2g}. "
                "Check arm assignment and event shipping before trusting any difference."
            ),
        }
    elif any(a.requests < min_samples for a in arms):
        verdict = {
            "decision": "keep_running",
            "arm": None,
            "reason": f"Keep running: every arm needs {min_samples} requests before a difference is declared ({counts}).",
        }
    elif winners:
        saving, best = min(winners, key=lambda w: w[0])
        verdict = {
            "decision": "ship",
            "arm": best.name,
            "reason": (
                f"Ship arm {best.name} (threshold {best.threshold:g}): it costs ${-saving:.6f} less per request "
                f"than control with no guardrail breached, at {1 - alpha:.0%} confidence valid under continuous monitoring."
            ),
        }
    elif others and costlier == len(others):
        verdict = {
            "decision": "ship",
            "arm": control.name,
            "reason": f"Keep control {control.name}: every other arm costs significantly more per request.",
        }
    else:
        verdict = {
            "decision": "keep_running",
            "arm": None,
            "reason": "Keep running: no arm differs from control in cost per request yet (its interval still includes 0).",
        }
    return {
        "arms": per_arm,
        "comparisons": comparisons,
        "srm": {
            "counts": list(srm.counts),
            "expected_shares": list(srm.expected_shares),
            "chi2_p_value": srm.chi2_p_value,
            "bayes_factor": _finite(srm.bayes_factor),
            "mismatch": bool(srm.mismatch),
        },
        "breaches": breaches,
        "verdict": verdict,
        "alpha": alpha,
    }
