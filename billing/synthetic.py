"""Synthetic but plausible spend for demos and benchmarks: the demo features, both routes, fallbacks with
reasons, an A/B threshold experiment, diurnal and weekly traffic shape, scores and thresholds.

Two kinds: the default per-feature profiles below (varied features, for benchmarks and hand-made seeds),
or a `LiveMix` (`demo_mix()`): history drawn from the very traffic the demo's proxies serve live (its
prompts, scorer and threshold, the fake models' faults and token counts, gpt-4o's price), so the seeded
month and the live minutes show the same fallback rate and savings.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from routing.devtools.fake_upstream import estimate_tokens
from routing.devtools.traffic import COMPLEX, ROUTINE
from routing.engine import ComplexityScorer
from routing.engine.spend import MONEY_PLACES, SLM_UNAVAILABLE, SpendRecord

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


@dataclass(frozen=True)
class LiveMix:
    """The demo's live traffic as history: per prompt (weight, score, input tokens), routed at `threshold`.

    A small-routed call fails on the SLM with `error_rate` (a 5xx, back at once) or `hang_rate` (waits the
    SLM timeout) and falls back to the frontier model; during an incident the small model is down and its
    circuit breaker open: small-routed calls go straight to the frontier (`slm_unavailable`, not a fallback).
    """

    prompts: tuple[tuple[float, float, int], ...]
    threshold: float
    output_tokens: int
    frontier_price: tuple[Decimal, Decimal]
    small_group: str
    small_model: str
    frontier_group: str
    frontier_model: str
    error_rate: float
    hang_rate: float
    slm_timeout_ms: int
    slm_latency_ms: float = 60.0
    frontier_latency_ms: float = 300.0
    end_users: int = 200


def demo_mix(
    *,
    threshold: float,
    slm_timeout_ms: int,
    error_rate: float,
    hang_rate: float,
    scorer_weights: str,
    complex_share: float = 0.3,
    output_tokens: int = 120,
    small: tuple[str, str] = ("llama-3-8b", "openai/llama-3-8b-instruct"),
    frontier: tuple[str, str] = ("gpt-4o", "openai/gpt-4o"),
) -> LiveMix:
    """The `LiveMix` of `manage.py demo`: traffic.py's prompts scored as its proxies score them.

    Input tokens are what the fake upstream reports for a prompt; the frontier price is litellm's bundled
    price of the frontier model (the SLM has none: hosting only), as the proxies price live calls.
    """
    import litellm  # at call time: litellm takes about 1 s to import and only the demo's mix needs its prices

    scorer = ComplexityScorer.for_version(scorer_weights)
    prompts = []
    for pool, share in ((ROUTINE, 1.0 - complex_share), (COMPLEX, complex_share)):
        for prompt in pool:
            messages = [{"role": "user", "content": prompt}]
            prompts.append((share / len(pool), float(scorer.score(messages)), estimate_tokens(messages)))
    price = litellm.model_cost[frontier[1].split("/", 1)[-1]]
    return LiveMix(
        prompts=tuple(prompts),
        threshold=threshold,
        output_tokens=output_tokens,
        frontier_price=(
            Decimal(str(price["input_cost_per_token"])),
            Decimal(str(price["output_cost_per_token"])),
        ),
        small_group=small[0],
        small_model=small[1],
        frontier_group=frontier[0],
        frontier_model=frontier[1],
        error_rate=error_rate,
        hang_rate=hang_rate,
        slm_timeout_ms=slm_timeout_ms,
    )


INCIDENT_TIMEOUT_SHARE = 0.45  # during an incident the small model times out on this share of its calls


def synthetic_records(
    *,
    events: int,
    start: datetime,
    end: datetime,
    features: list[tuple[str, str]],
    seed: int = 7,
    incidents: list[tuple[datetime, datetime]] | None = None,
    mix: LiveMix | None = None,
) -> Iterator[SpendRecord]:
    """About `events` attempt records (whole calls, so a few more) with start times in [start, end).

    `features` is a list of (team slug, feature slug). `incidents`: [from, to) windows in which the
    small model is degraded (INCIDENT_TIMEOUT_SHARE of its calls time out and fall back; with a `mix`,
    it is down and its breaker open). `mix`: draw every feature's calls from that live traffic instead
    of the per-feature profiles.
    """
    incidents = incidents or []
    if mix is not None:
        yield from _mix_records(
            mix, events=events, start=start, end=end, features=features, seed=seed, incidents=incidents
        )
        return
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


def _mix_records(
    mix: LiveMix,
    *,
    events: int,
    start: datetime,
    end: datetime,
    features: list[tuple[str, str]],
    seed: int,
    incidents: list[tuple[datetime, datetime]],
) -> Iterator[SpendRecord]:
    """Calls as the demo's proxies record them: one attempt, or an SLM failure and its frontier fallback."""
    rand = random.Random(seed)
    span = (end - start).total_seconds()
    weights = list(itertools.accumulate(weight for weight, _, _ in mix.prompts))
    credits: dict[datetime, list[float]] = {}  # per hour: running (hang, error) credit
    emitted = 0
    while emitted < events:
        moment = start + timedelta(seconds=rand.random() * span)
        if rand.random() > _traffic_weight(moment):
            continue
        team, feature = rand.choice(features)
        _, score, tokens_in = rand.choices(mix.prompts, cum_weights=weights)[0]
        baseline = _cost(mix.frontier_price, tokens_in, mix.output_tokens)
        small = score < mix.threshold
        down = small and any(first <= moment < last for first, last in incidents)
        common = {
            "call_id": f"{rand.getrandbits(128):032x}",
            "team": team,
            "feature": feature,
            "route": "small" if small and not down else "frontier",
            "score": round(score, 4),
            "threshold": mix.threshold,
            "decision_reason": SLM_UNAVAILABLE if down else "score",
            "bundle_version": "seeded",
            "end_user": f"user-{rand.randrange(mix.end_users)}",
            "first_token_time": None,
        }
        frontier_ms = rand.lognormvariate(math.log(mix.frontier_latency_ms), 0.2)
        attempts: list[dict] = []
        hang = error = False
        if small and not down:
            # faults spread evenly within each hour at exactly their rates (as the demo's fake SLM spreads
            # them, `--even-faults`): any range of whole hours shows the fault rate itself, not a draw of it
            credit = credits.setdefault(moment.replace(minute=0, second=0, microsecond=0), [0.5, 0.5])
            credit[0] += mix.hang_rate
            credit[1] += mix.error_rate
            hang = credit[0] >= 1.0
            credit[0] -= hang
            error = not hang and credit[1] >= 1.0
            credit[1] -= error
        if hang or error:
            attempts.append(
                {
                    "model_group": mix.small_group,
                    "deployment": mix.small_model,
                    "status": "error",
                    "ms": mix.slm_timeout_ms + rand.random() * 20 if hang else rand.uniform(20, 80),
                    "error_class": "Timeout" if hang else "InternalServerError",
                }
            )
            reason = "timeout" if hang else "error"
            attempts.append({"fallback": True, "fallback_reason": reason, "ms": frontier_ms})
        elif small and not down:
            ms = rand.lognormvariate(math.log(mix.slm_latency_ms), 0.2)
            attempts.append(
                {"model_group": mix.small_group, "deployment": mix.small_model, "status": "success", "ms": ms}
            )
        else:
            attempts.append({"fallback_reason": SLM_UNAVAILABLE if down else "", "ms": frontier_ms})
        at = moment
        for number, attempt in enumerate(attempts, start=1):
            finish = at + timedelta(milliseconds=attempt["ms"])
            status = attempt.get("status", "success")
            on_frontier = "model_group" not in attempt
            served = status == "success"
            yield SpendRecord(
                event_id=f"{rand.getrandbits(128):032x}",
                attempt=number,
                start_time=at,
                end_time=finish,
                model_group=attempt.get("model_group", mix.frontier_group),
                deployment=attempt.get("deployment", mix.frontier_model),
                status=status,
                input_tokens=tokens_in if served else 0,  # a failed attempt reports no usage
                output_tokens=mix.output_tokens if served else 0,
                cost_usd=baseline if on_frontier and served else Decimal(0),
                baseline_cost_usd=baseline if served else Decimal(0),
                error_class=attempt.get("error_class", ""),
                fallback=bool(attempt.get("fallback")),
                fallback_reason=attempt.get("fallback_reason", ""),
                **common,
            )
            emitted += 1
            at = finish + timedelta(milliseconds=2)
