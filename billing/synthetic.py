"""Synthetic but plausible spend for demos and benchmarks: the demo features, both routes, fallbacks with
reasons, an A/B threshold experiment, diurnal and weekly traffic shape, scores and thresholds."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from routing.engine.spend import MONEY_PLACES, SpendRecord

SLM_GROUP, SLM_MODEL = "slm", "openai/llama-3-8b-instruct"
FRONTIER_GROUP, FRONTIER_MODEL = "frontier", "anthropic/claude-sonnet-4-5"
# USD per token (input, output)
SLM_PRICE = (Decimal("0.00000005"), Decimal("0.00000008"))
FRONTIER_PRICE = (Decimal("0.000003"), Decimal("0.000015"))
SLM_TIMEOUT_MS = 1500


@dataclass(frozen=True)
class Profile:
    """How one feature's traffic looks."""

    weight: float  # share of calls
    score_mean: float  # mean complexity score
    threshold: float
    input_tokens: int
    output_tokens: int
    experiment: str = ""  # A/B threshold experiment: control keeps `threshold`, treatment adds 0.1


PROFILES = {
    "ticket-summary": Profile(5, 0.35, 0.60, 1800, 220, "ticket-summary-threshold"),
    "reply-draft": Profile(4, 0.45, 0.55, 900, 300),
    "intent-classify": Profile(6, 0.15, 0.60, 400, 12),
    "email-copy": Profile(3, 0.40, 0.50, 600, 450, "email-copy-threshold"),
    "churn-analysis": Profile(1, 0.70, 0.60, 3000, 600),
    "code-review": Profile(2, 0.75, 0.50, 4000, 700),
    "postmortem": Profile(0.5, 0.80, 0.60, 5000, 1200),
    "log-extract": Profile(6, 0.10, 0.65, 300, 60),
}
DEFAULT_PROFILE = Profile(2, 0.4, 0.6, 800, 200)


def _traffic_weight(moment: datetime) -> float:
    """Relative request rate: a daytime peak around 15:00 UTC and quiet weekends."""
    diurnal = 0.2 + 0.8 * math.exp(-((((moment.hour + moment.minute / 60) - 15) / 4.5) ** 2))
    return diurnal * (0.35 if moment.weekday() >= 5 else 1.0)


def _cost(price: tuple[Decimal, Decimal], tokens_in: int, tokens_out: int) -> Decimal:
    return (price[0] * tokens_in + price[1] * tokens_out).quantize(MONEY_PLACES)


INCIDENT_TIMEOUT_SHARE = 0.45  # during an incident the small model times out on this share of its calls


def synthetic_records(
    *,
    events: int,
    start: datetime,
    end: datetime,
    features: list[tuple[str, str]],
    seed: int = 7,
    incidents: list[tuple[datetime, datetime]] | None = None,
) -> Iterator[SpendRecord]:
    """About `events` attempt records (whole calls, so a few more) with start times in [start, end).

    `features` is a list of (team slug, feature slug). `incidents`: [from, to) windows in which the
    small model is degraded (INCIDENT_TIMEOUT_SHARE of its calls time out and fall back).
    """
    incidents = incidents or []
    rand = random.Random(seed)
    span = (end - start).total_seconds()
    profiles = [PROFILES.get(slug, DEFAULT_PROFILE) for _, slug in features]
    choices = list(zip(features, profiles, strict=True))
    cum_weights = list(itertools.accumulate(p.weight for p in profiles))
    emitted = 0
    while emitted < events:
        moment = start + timedelta(seconds=rand.random() * span)
        if rand.random() > _traffic_weight(moment):
            continue
        (team, feature), profile = rand.choices(choices, cum_weights=cum_weights)[0]
        call_id = f"{rand.getrandbits(128):032x}"
        threshold, arm = profile.threshold, ""
        if profile.experiment:
            arm = "treatment" if rand.random() < 0.5 else "control"
            threshold = round(threshold + (0.1 if arm == "treatment" else 0.0), 2)
        a = max(0.5, profile.score_mean * 6)
        score = round(rand.betavariate(a, max(0.5, 6 - a)), 4)
        tokens_in = max(5, int(rand.lognormvariate(math.log(profile.input_tokens), 0.5)))
        tokens_out = max(1, int(rand.lognormvariate(math.log(profile.output_tokens), 0.6)))
        baseline = _cost(FRONTIER_PRICE, tokens_in, tokens_out)
        common = {
            "call_id": call_id,
            "team": team,
            "feature": feature,
            "score": score,
            "threshold": threshold,
            "experiment": profile.experiment,
            "arm": arm,
            "bundle_version": "v42",
            "end_user": f"user-{rand.randrange(5000)}",
            "input_tokens": tokens_in,
        }
        budget = rand.random() < 0.01
        route = "small" if (score < threshold or budget) else "frontier"
        decision = (
            "budget degrade" if budget else ("score below threshold" if route == "small" else "score above")
        )
        attempts: list[dict] = []
        if route == "frontier":
            ok = rand.random() > 0.01
            attempts.append(
                {
                    "group": FRONTIER_GROUP,
                    "model": FRONTIER_MODEL,
                    "status": "success" if ok else "error",
                    "ms": rand.lognormvariate(math.log(900 + tokens_out * 4), 0.35),
                    "out": tokens_out if ok else 0,
                    "cost": baseline if ok else Decimal(0),
                    "error": "" if ok else "APIConnectionError",
                }
            )
        else:
            fate = rand.random()
            if any(first <= moment < last for first, last in incidents):
                fate = 0.0 if fate < INCIDENT_TIMEOUT_SHARE else fate  # an outage: most calls time out
            slm = {
                "group": SLM_GROUP,
                "model": SLM_MODEL,
                "status": "success",
                "ms": rand.lognormvariate(math.log(180 + tokens_out * 1.2), 0.4),
                "out": tokens_out,
                "cost": _cost(SLM_PRICE, tokens_in, tokens_out),
                "error": "",
                "fallback_reason": "budget" if budget else "",
            }
            reason = ""
            if fate < 0.05:
                slm.update(status="error", ms=SLM_TIMEOUT_MS + rand.random() * 30, out=0, cost=Decimal(0))
                slm["error"], reason = "Timeout", "timeout"
            elif fate < 0.065:
                slm.update(status="error", ms=40 + rand.random() * 200, out=0, cost=Decimal(0))
                slm["error"], reason = "InternalServerError", "error"
            elif fate < 0.095 and not budget:
                slm["confidence"], reason = round(rand.uniform(-3, -1.2), 3), "low_confidence"
            attempts.append(slm)
            if reason:
                attempts.append(
                    {
                        "group": FRONTIER_GROUP,
                        "model": FRONTIER_MODEL,
                        "status": "success",
                        "ms": rand.lognormvariate(math.log(900 + tokens_out * 4), 0.35),
                        "out": tokens_out,
                        "cost": baseline,
                        "error": "",
                        "fallback_reason": reason,
                    }
                )
        at = moment
        for number, attempt in enumerate(attempts, start=1):
            finish = at + timedelta(milliseconds=attempt["ms"])
            reason = attempt.get("fallback_reason", "")
            yield SpendRecord(
                event_id=f"{rand.getrandbits(128):032x}",
                attempt=number,
                start_time=at,
                end_time=finish,
                first_token_time=None,
                route=route,
                model_group=attempt["group"],
                deployment=attempt["model"],
                status=attempt["status"],
                output_tokens=attempt["out"],
                cost_usd=attempt["cost"],
                baseline_cost_usd=baseline,
                error_class=attempt["error"],
                fallback=bool(reason),
                fallback_reason=reason,
                decision_reason=decision,
                confidence=attempt.get("confidence"),
                **common,
            )
            emitted += 1
            at = finish + timedelta(milliseconds=2)
