"""The complexity scorer: learned weights over cheap signals, plain Python at inference.

Two weights formats ship side by side in `weights/`, each file named by its version:
- `complexity-logistic/1` (complexity-v1): a logistic model of (strong - weak + 1) / 2 over the
  signals; about 0.5 means no expected gain from the frontier model.
- `complexity-terms/2` (complexity-v2 on): the same signals plus task-type signals and weighted ask
  terms (words, word pairs, lead words), then a calibration, so the score is the probability that
  the frontier model is needed (its answer beats the small model's).
Weights come from `routing.engine.tooling.train`; a bundle may pin a version (`$.scorer_weights`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.engine.adjustment import RECORDED_PLACES, RECORDED_SIGNALS, ScoreAdjustment
from routing.engine.signals import (
    SIGNAL_NAMES,
    TASK_SIGNAL_NAMES,
    extract_features,
    extract_signals,
    task_type_signals_and_terms,
)

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS_FILE = "complexity-v3.json"
WEIGHTS_FORMAT = "complexity-logistic/1"
TERMS_FORMAT = "complexity-terms/2"
_VERSION_NAME = re.compile(r"^complexity-v[0-9]{1,4}$")


def shipped_versions() -> tuple[str, ...]:
    """Weights versions shipped with this code (file stems in weights/), oldest first."""
    stems = (path.stem for path in WEIGHTS_DIR.glob("complexity-v*.json"))
    return tuple(sorted((stem for stem in stems if _VERSION_NAME.match(stem)), key=lambda v: int(v[12:])))


def default_version() -> str:
    """The version ComplexityScorer.default() loads."""
    return DEFAULT_WEIGHTS_FILE.removesuffix(".json")


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class SignalWeight:
    """How one signal enters the score: standardised with mean/scale, then weighted."""

    name: str
    mean: float
    scale: float
    weight: float


@dataclass(frozen=True)
class ComplexityScorer:
    """Scores a chat request in [0, 1]; higher means more likely to need the frontier model."""

    version: str
    intercept: float
    signal_weights: tuple[SignalWeight, ...]
    trained_on: str = ""
    # Format 2 only: task-type signals and term weights feed the logit, then the calibration maps it.
    term_weights: Mapping[str, float] = field(default_factory=dict)
    calibration: tuple[float, float] = (1.0, 0.0)
    format: str = WEIGHTS_FORMAT

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ComplexityScorer:
        weights_format = document.get("format")
        if weights_format not in (WEIGHTS_FORMAT, TERMS_FORMAT):
            raise ValueError(
                f"unknown weights format {weights_format!r} (this scorer reads {WEIGHTS_FORMAT}, {TERMS_FORMAT})"
            )
        known = set(SIGNAL_NAMES) | (set(TASK_SIGNAL_NAMES) if weights_format == TERMS_FORMAT else set())
        signal_weights = tuple(
            SignalWeight(
                name=name,
                mean=float(entry["mean"]),
                scale=float(entry["scale"]) or 1.0,
                weight=float(entry["weight"]),
            )
            for name, entry in document["signals"].items()
        )
        unknown = {weight.name for weight in signal_weights} - known
        if unknown:
            raise ValueError(f"weights name signals this scorer does not compute: {sorted(unknown)}")
        calibration = document.get("calibration") or {}
        return cls(
            version=str(document["version"]),
            intercept=float(document["intercept"]),
            signal_weights=signal_weights,
            trained_on=str(document.get("trained_on", "")),
            term_weights={str(term): float(weight) for term, weight in document.get("terms", {}).items()},
            calibration=(float(calibration.get("slope", 1.0)), float(calibration.get("offset", 0.0))),
            format=str(weights_format),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ComplexityScorer:
        with open(path, encoding="utf-8") as weights_file:
            return cls.from_dict(json.load(weights_file))

    @classmethod
    def default(cls) -> ComplexityScorer:
        """The shipped scorer, loaded once per process."""
        return _default_scorer()

    @classmethod
    def for_version(cls, version: str | None) -> ComplexityScorer:
        """A shipped weights version (None: the default), loaded once per process."""
        if version is None:
            return _default_scorer()
        if version not in shipped_versions():
            raise ValueError(
                f"unknown scorer weights version {version!r}; shipped: {', '.join(shipped_versions())}"
            )
        return _versioned_scorer(version)

    def _all_signals(self, messages: object, tools: object) -> tuple[dict[str, float], set[str]]:
        if self.format == WEIGHTS_FORMAT:
            return extract_signals(messages, tools), set()
        signals, window = extract_features(messages, tools)
        task_signals, terms = task_type_signals_and_terms(window, with_terms=bool(self.term_weights))
        signals.update(task_signals)
        return signals, terms

    def _calibrated(self, logit: float) -> float:
        slope, offset = self.calibration
        return _sigmoid(slope * logit + offset)

    def _contributions(self, signals: dict[str, float]) -> dict[str, float]:
        return {
            weight.name: weight.weight * (signals.get(weight.name, 0.0) - weight.mean) / weight.scale
            for weight in self.signal_weights
        }

    def _logit(self, signals: dict[str, float], terms: set[str], adjustment: ScoreAdjustment | None) -> float:
        z = self.intercept + (adjustment.logit_change(signals) if adjustment else 0.0)
        for weight in self.signal_weights:
            z += weight.weight * (signals[weight.name] - weight.mean) / weight.scale
        if terms:
            z += sum(map(self.term_weights.get, terms & self.term_weights.keys()))
        return z

    def score(
        self, messages: object, tools: object = None, adjustment: ScoreAdjustment | None = None
    ) -> float:
        """The calibrated score; `adjustment` is a feature's own change of the logit, fitted from its outcomes."""
        try:
            signals, terms = self._all_signals(messages, tools)
        except Exception:
            # A malformed request must still be routed; the prior is the neutral answer.
            return self._calibrated(self.intercept + (adjustment.offset if adjustment else 0.0))
        return self._calibrated(self._logit(signals, terms, adjustment))

    def score_with_signals(
        self, messages: object, tools: object = None, adjustment: ScoreAdjustment | None = None
    ) -> tuple[float, dict[str, float]]:
        """The score and the recorded signals (`RECORDED_SIGNALS` this format computes), for the spend record."""
        try:
            signals, terms = self._all_signals(messages, tools)
        except Exception:
            return self.score(messages, tools, adjustment), {}
        recorded = {
            name: round(signals[name], RECORDED_PLACES) for name in RECORDED_SIGNALS if name in signals
        }
        return self._calibrated(self._logit(signals, terms, adjustment)), recorded

    def explain(self, messages: object, tools: object = None) -> dict[str, Any]:
        """The score, each signal's value and its contribution to the logit, largest first."""
        try:
            signals, terms = self._all_signals(messages, tools)
        except Exception:
            signals, terms = {}, set()
        contributions = self._contributions(signals) if signals else {}
        matched = {term: self.term_weights[term] for term in terms & self.term_weights.keys()}
        logit = self.intercept + sum(contributions.values()) + sum(matched.values())
        ranked = sorted(contributions.items(), key=lambda item: (-abs(item[1]), item[0]))
        explanation: dict[str, Any] = {
            "score": round(self._calibrated(logit), 6),
            "scorer": "complexity-logistic" if self.format == WEIGHTS_FORMAT else "complexity-terms",
            "weights_version": self.version,
            "intercept": round(self.intercept, 6),
            "signals": [
                {"name": name, "value": round(signals[name], 6), "contribution": round(contribution, 6)}
                for name, contribution in ranked
            ],
        }
        if self.format == TERMS_FORMAT:
            explanation["logit"] = round(logit, 6)
            explanation["calibration"] = {"slope": self.calibration[0], "offset": self.calibration[1]}
            explanation["terms"] = [
                {"term": term, "contribution": round(weight, 6)}
                for term, weight in sorted(matched.items(), key=lambda item: (-abs(item[1]), item[0]))[:20]
            ]
        return explanation


@functools.cache
def _default_scorer() -> ComplexityScorer:
    return _versioned_scorer(DEFAULT_WEIGHTS_FILE.removesuffix(".json"))


@functools.cache
def _versioned_scorer(version: str) -> ComplexityScorer:
    return ComplexityScorer.from_file(WEIGHTS_DIR / f"{version}.json")
