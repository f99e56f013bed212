"""The complexity scorer: learned weights over cheap signals, plain Python at inference.

The score is a logistic model of (strong - weak + 1) / 2, the quality the frontier model adds
rescaled to [0, 1]: about 0.5 means no expected gain, higher means the frontier model is more
likely to do better. Weights come from `routing.engine.train` and ship in `weights/*.json`.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing.engine.signals import SIGNAL_NAMES, extract_signals

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS_FILE = "complexity-v1.json"
WEIGHTS_FORMAT = "complexity-logistic/1"


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

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ComplexityScorer:
        if document.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"unknown weights format {document.get('format')!r}")
        signal_weights = tuple(
            SignalWeight(
                name=name,
                mean=float(entry["mean"]),
                scale=float(entry["scale"]) or 1.0,
                weight=float(entry["weight"]),
            )
            for name, entry in document["signals"].items()
        )
        unknown = {weight.name for weight in signal_weights} - set(SIGNAL_NAMES)
        if unknown:
            raise ValueError(f"weights name signals this scorer does not compute: {sorted(unknown)}")
        return cls(
            version=str(document["version"]),
            intercept=float(document["intercept"]),
            signal_weights=signal_weights,
            trained_on=str(document.get("trained_on", "")),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ComplexityScorer:
        with open(path, encoding="utf-8") as weights_file:
            return cls.from_dict(json.load(weights_file))

    @classmethod
    def default(cls) -> ComplexityScorer:
        """The shipped scorer, loaded once per process."""
        return _default_scorer()

    def _contributions(self, signals: dict[str, float]) -> dict[str, float]:
        return {
            weight.name: weight.weight * (signals.get(weight.name, 0.0) - weight.mean) / weight.scale
            for weight in self.signal_weights
        }

    def score(self, messages: object, tools: object = None) -> float:
        try:
            signals = extract_signals(messages, tools)
        except Exception:
            # A malformed request must still be routed; the prior is the neutral answer.
            return _sigmoid(self.intercept)
        z = self.intercept
        for weight in self.signal_weights:
            z += weight.weight * (signals[weight.name] - weight.mean) / weight.scale
        return _sigmoid(z)

    def explain(self, messages: object, tools: object = None) -> dict[str, Any]:
        """The score, each signal's value and its contribution to the logit, largest first."""
        try:
            signals = extract_signals(messages, tools)
        except Exception:
            signals = {}
        contributions = self._contributions(signals) if signals else {}
        logit = self.intercept + sum(contributions.values())
        ranked = sorted(contributions.items(), key=lambda item: (-abs(item[1]), item[0]))
        return {
            "score": round(_sigmoid(logit), 6),
            "scorer": "complexity-logistic",
            "weights_version": self.version,
            "intercept": round(self.intercept, 6),
            "signals": [
                {"name": name, "value": round(signals[name], 6), "contribution": round(contribution, 6)}
                for name, contribution in ranked
            ],
        }


@functools.cache
def _default_scorer() -> ComplexityScorer:
    return ComplexityScorer.from_file(WEIGHTS_DIR / DEFAULT_WEIGHTS_FILE)
