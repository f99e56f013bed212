"""A feature's own adjustment on top of the shared scorer, fitted from that feature's outcomes (issue 15 part 3).

Labels come from the feature's calls: 1 where the frontier model was needed (the small model failed,
escalated for low confidence, or its answer got a thumbs-down or a low rating), 0 where it was not
(a small-model answer rated well, or a frontier answer rated well on a prompt the small model would
have got). The adjustment is an offset plus weights on a few named signals, added to the shared
scorer's logit (before its calibration): a MAP logistic fit with a Gaussian prior centred on no
change, so it moves only as far as the feature's labels carry it, and not at all below a minimum
number of labels.

This module fits; `routing.engine.adjustment.ScoreAdjustment` is what the scorer applies
(`ComplexityScorer.score(..., adjustment=...)`). `routing.services.adjustments` collects the labels, runs
this fit daily and saves the result as a proposal; an approved one ships in a bundle (docs/scorer.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from routing.engine.adjustment import AdjustedSignal, ScoreAdjustment

MIN_LABELS = 50
# Prior precision (1 / variance) on the offset and each weight: 1.0 means one logit unit of change
# needs about as much evidence as a handful of consistent labels against the shared model.
PRIOR_PRECISION = 1.0


@dataclass(frozen=True)
class FeatureAdjustment:
    """offset + sum(weights[name] * standardised signal) added to the shared logit."""

    offset: float
    weights: dict[str, float] = field(default_factory=dict)
    labels: int = 0
    moved: bool = False  # False: too few labels, nothing changes

    def logit_change(
        self, signals: dict[str, float], mean: dict[str, float], scale: dict[str, float]
    ) -> float:
        return self.offset + sum(
            weight * (signals.get(name, 0.0) - mean.get(name, 0.0)) / (scale.get(name, 1.0) or 1.0)
            for name, weight in self.weights.items()
        )

    def runtime(self, mean: dict[str, float], scale: dict[str, float]) -> ScoreAdjustment:
        """What the scorer applies: the same change, with the standardisation the fit used carried along."""
        return ScoreAdjustment(
            self.offset if self.moved else 0.0,
            tuple(
                AdjustedSignal(name, weight, float(mean.get(name, 0.0)), float(scale.get(name, 1.0) or 1.0))
                for name, weight in self.weights.items()
                if self.moved
            ),
            self.labels,
        )


def standardise(
    raw: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
    """Columns scaled to mean 0 and spread 1 over the feature's calls, with the mean and scale used."""
    raw = np.asarray(raw, dtype=float)
    mean = raw.mean(axis=0)
    scale = raw.std(axis=0)
    scale = np.where(scale < 1e-9, 1.0, scale)
    return (
        (raw - mean) / scale,
        {n: float(m) for n, m in zip(names, mean, strict=True)},
        {n: float(v) for n, v in zip(names, scale, strict=True)},
    )


def fit_feature_adjustment(
    shared_logits: Sequence[float],
    signals: np.ndarray,
    signal_names: Sequence[str],
    labels: Sequence[float],
    *,
    min_labels: int = MIN_LABELS,
    prior_precision: float = PRIOR_PRECISION,
) -> FeatureAdjustment:
    """Fit the offset and signal weights; `signals` are already standardised (one column per name)."""
    logits = np.asarray(shared_logits, dtype=float)
    y = np.asarray(labels, dtype=float)
    x = np.asarray(signals, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(signal_names) or not (len(logits) == len(y) == x.shape[0]):
        raise ValueError(
            "shared_logits, signals and labels must have one row per labelled call, "
            f"and signals one column per name ({len(signal_names)})"
        )
    if len(y) < min_labels:
        return FeatureAdjustment(0.0, {name: 0.0 for name in signal_names}, len(y), moved=False)
    design = np.hstack([np.ones((len(y), 1)), x])

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = logits + design @ params
        log_p = -np.logaddexp(0.0, -z)
        log_not_p = -np.logaddexp(0.0, z)
        loss = -np.sum(y * log_p + (1 - y) * log_not_p) + 0.5 * prior_precision * float(params @ params)
        return loss, design.T @ (np.exp(log_p) - y) + prior_precision * params

    result = minimize(loss_and_gradient, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B")
    offset, *weights = (float(value) for value in result.x)
    return FeatureAdjustment(offset, dict(zip(signal_names, weights, strict=True)), len(y), moved=True)
