"""A feature's own adjustment of the shared score, applied at inference (plain Python, no numpy).

`routing.engine.tooling.adjust` fits it from the feature's labelled outcomes; here it is only read and
applied: an offset plus a few weights on named signals, each signal standardised with the mean and
scale the fit used, added to the shared scorer's logit before its calibration. The document comes from
the control plane, so every field is checked and an error names the field and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from routing.engine.signals import SIGNAL_NAMES, TASK_SIGNAL_NAMES

ADJUSTMENT_FORMAT = "feature-adjustment/1"
KNOWN_SIGNALS = frozenset((*SIGNAL_NAMES, *TASK_SIGNAL_NAMES))
MAX_SIGNALS = 16
# The signals every scored call records (spend record `signals`), so a feature's outcomes can be fitted
# against the kind of ask: the task-type layer says what kind of work was asked for.
RECORDED_SIGNALS: tuple[str, ...] = TASK_SIGNAL_NAMES
RECORDED_PLACES = 4  # rounding of recorded values: enough for a fit, small on the wire and in the row
# Bounds well beyond what a fit with its prior produces; a larger value is a broken or hostile document.
MAX_OFFSET = 8.0
MAX_WEIGHT = 8.0


class AdjustmentError(ValueError):
    """A feature adjustment document that cannot be applied; the message names the field and the fix."""


@dataclass(frozen=True)
class AdjustedSignal:
    name: str
    weight: float
    mean: float
    scale: float


@dataclass(frozen=True)
class ScoreAdjustment:
    """offset + sum(weight * (signal - mean) / scale), added to the shared logit."""

    offset: float
    signals: tuple[AdjustedSignal, ...] = ()
    labels: int = 0

    def logit_change(self, signals: Mapping[str, float]) -> float:
        change = self.offset
        for adjusted in self.signals:
            value = signals.get(adjusted.name)
            if value is not None:  # a signal this scorer format does not compute changes nothing
                change += adjusted.weight * (value - adjusted.mean) / adjusted.scale
        return change

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ADJUSTMENT_FORMAT,
            "offset": self.offset,
            "labels": self.labels,
            "signals": [
                {"name": s.name, "weight": s.weight, "mean": s.mean, "scale": s.scale} for s in self.signals
            ],
        }

    @classmethod
    def from_dict(cls, document: object, path: str = "$.scorer_adjustment") -> ScoreAdjustment:
        if not isinstance(document, Mapping):
            raise AdjustmentError(f"{path}: must be an object with format, offset and signals")
        if document.get("format") != ADJUSTMENT_FORMAT:
            raise AdjustmentError(
                f"{path}.format: must be {ADJUSTMENT_FORMAT!r}, got {document.get('format')!r}"
            )
        offset = _number(document.get("offset"), f"{path}.offset", MAX_OFFSET)
        labels = document.get("labels", 0)
        if not isinstance(labels, int) or isinstance(labels, bool) or labels < 0:
            raise AdjustmentError(f"{path}.labels: must be a whole number >= 0, got {labels!r}")
        entries = document.get("signals", [])
        if not isinstance(entries, list) or len(entries) > MAX_SIGNALS:
            raise AdjustmentError(f"{path}.signals: must be a list of at most {MAX_SIGNALS} signal weights")
        signals, seen = [], set()
        for index, entry in enumerate(entries):
            where = f"{path}.signals[{index}]"
            if not isinstance(entry, Mapping):
                raise AdjustmentError(f"{where}: must be an object with name, weight, mean and scale")
            name = entry.get("name")
            if name not in KNOWN_SIGNALS:
                raise AdjustmentError(f"{where}.name: must be one of the scorer's signal names, got {name!r}")
            if name in seen:
                raise AdjustmentError(f"{where}.name: {name!r} appears twice; give each signal one weight")
            seen.add(name)
            scale = _number(entry.get("scale"), f"{where}.scale", math.inf)
            if scale <= 0:
                raise AdjustmentError(f"{where}.scale: must be > 0 (the signal's spread), got {scale!r}")
            signals.append(
                AdjustedSignal(
                    str(name),
                    _number(entry.get("weight"), f"{where}.weight", MAX_WEIGHT),
                    _number(entry.get("mean"), f"{where}.mean", math.inf),
                    scale,
                )
            )
        return cls(offset, tuple(signals), labels)


def _number(value: object, where: str, bound: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AdjustmentError(f"{where}: must be a finite number, got {value!r}")
    if abs(value) > bound:
        raise AdjustmentError(f"{where}: must be within ±{bound:g}, got {value!r}; refit the adjustment")
    return float(value)
