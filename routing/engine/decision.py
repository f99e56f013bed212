"""The routing decision for one call: budget, hard rules, experiment arm, score against threshold.

Pure functions over a validated `Bundle`; the proxy plugin calls `decide` on its hot path, so
everything here is dictionary lookups and arithmetic (no I/O, no tokenizer).
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from routing.engine.adjustment import ScoreAdjustment
from routing.engine.bundle import Bundle, Deployment, Experiment, ExperimentArm, RoutingPolicy

ScoreFn = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], float]
# The score with the feature's adjustment applied, and the signals a spend record keeps for refitting it.
ScoredFn = Callable[
    [list[dict[str, Any]], list[dict[str, Any]] | None, ScoreAdjustment | None],
    tuple[float, dict[str, float]],
]
CHARS_PER_TOKEN = 4  # cheap estimate: a tokenizer would cost milliseconds (or a download) per call
SHARE_WARMUP = 20  # scores seen before a target share overrides the neutral threshold


class BudgetBlocked(Exception):
    """The feature is over budget and its policy blocks further calls."""

    def __init__(self, team: str, feature: str, spend_usd: str, limit_usd: str, period: str) -> None:
        self.team, self.feature = team, feature
        self.spend_usd, self.limit_usd, self.period = spend_usd, limit_usd, period
        when = f" for {period}" if period else ""
        super().__init__(
            f"feature '{feature}' (team '{team}') is over its budget{when}: spent ${spend_usd} of ${limit_usd}. "
            "Raise the budget or set its over-budget action to 'degrade' in the control plane."
        )


@dataclass(frozen=True)
class RequestShape:
    """What the hard rules look at in a chat request."""

    has_tools: bool
    has_images: bool
    wants_structured_output: bool
    prompt_tokens: int


@dataclass(frozen=True)
class Decision:
    """The plugin's verdict for one call, stamped into request metadata and every spend record."""

    route: str  # small | frontier
    model_group: str
    fallback_group: str | None  # where LiteLLM goes when the small model fails (None: nowhere)
    reason: str  # score | rule:<name> | budget_degrade | experiment arm via score
    score: float | None
    threshold: float | None
    experiment: str = ""
    arm: str = ""
    budget_forced: bool = False  # budget degrade changed the route to small
    slm_timeout_s: float | None = None
    confidence_floor: float | None = None
    signals: dict[str, float] = field(default_factory=dict, hash=False)  # recorded for the feature's refit


def _text_length(content: Any) -> tuple[int, bool]:
    """Characters of text and whether an image part is present."""
    if isinstance(content, str):
        return len(content), False
    if isinstance(content, list):
        total, image = 0, False
        for part in content:
            if isinstance(part, dict):
                kind = part.get("type")
                if kind in ("image_url", "input_image", "image"):
                    image = True
                elif isinstance(part.get("text"), str):
                    total += len(part["text"])
            elif isinstance(part, str):
                total += len(part)
        return total, image
    return 0, False


def request_shape(data: dict[str, Any]) -> RequestShape:
    chars, images = 0, False
    for message in data.get("messages") or ():
        if isinstance(message, dict):
            length, image = _text_length(message.get("content"))
            chars += length
            images = images or image
    tools = data.get("tools") or data.get("functions")
    if tools:
        chars += len(str(tools))
    response_format = data.get("response_format")
    structured = isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    )
    return RequestShape(
        has_tools=bool(tools),
        has_images=images,
        wants_structured_output=structured,
        prompt_tokens=chars // CHARS_PER_TOKEN + 1,
    )


def hard_rule(
    policy: RoutingPolicy, small: Sequence[Deployment], shape: RequestShape, max_tokens: int
) -> str:
    """The name of the first hard rule that rules out the small model, or ""."""
    rules = policy.rules
    if rules.tools and shape.has_tools and not all(d.supports_tools for d in small):
        return "tools"
    if rules.images and shape.has_images and not all(d.supports_vision for d in small):
        return "images"
    if (
        rules.structured_output
        and shape.wants_structured_output
        and not all(d.supports_structured_output for d in small)
    ):
        return "structured_output"
    if rules.context and small:
        window = min(d.context_window for d in small)
        if shape.prompt_tokens + max(max_tokens, rules.context_margin_tokens) > window:
            return "context"
    return ""


def assign_arm(experiment: Experiment, sticky_key: str) -> ExperimentArm:
    """Weighted, sticky arm: the same key always lands in the same arm of the same experiment."""
    digest = hashlib.sha256(f"{experiment.id}:{sticky_key}".encode()).digest()
    total = sum(arm.weight for arm in experiment.arms)
    point = int.from_bytes(digest[:8], "big") % total
    for arm in experiment.arms:
        if point < arm.weight:
            return arm
        point -= arm.weight
    return experiment.arms[-1]


class ShareThreshold:
    """Turns a target small-model share into a threshold: the share-quantile of recent scores."""

    def __init__(self, window: int = 1000, refresh_every: int = 25) -> None:
        self._scores: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []
        self._refresh_every = refresh_every
        self._since_refresh = 0
        self._lock = threading.Lock()

    def observe(self, score: float) -> None:
        with self._lock:
            self._scores.append(score)
            self._since_refresh += 1
            if self._since_refresh >= self._refresh_every or len(self._scores) <= SHARE_WARMUP:
                self._sorted = sorted(self._scores)
                self._since_refresh = 0

    def threshold(self, share: float) -> float:
        ranked = self._sorted
        if len(ranked) < SHARE_WARMUP:
            return 0.5
        if share >= 1.0:
            return 1.01
        if share <= 0.0:
            return 0.0
        index = int(share * len(ranked))  # about `share` of recent scores fall below this one
        return ranked[index] if index < len(ranked) else 1.01


def decide(
    bundle: Bundle,
    *,
    team: str,
    feature: str,
    data: dict[str, Any],
    sticky_key: str,
    score_fn: ScoreFn,
    shares: dict[str, ShareThreshold] | None = None,
    request_key: str = "",
    scored_fn: ScoredFn | None = None,
) -> Decision:
    """Route one call; raises `BudgetBlocked` when the feature must not spend more.

    With `scored_fn` the score carries the policy's `scorer_adjustment` and the decision the recorded signals."""
    policy = bundle.policy_for(feature)
    slm_timeout_s = policy.slm_timeout_ms / 1000.0
    budget = bundle.budget_for(team, feature)
    degrade = False
    if budget is not None and budget.state == "over":
        if (budget.action or policy.over_budget) == "block":
            raise BudgetBlocked(team, feature, str(budget.spend_usd), str(budget.limit_usd), budget.period)
        degrade = True

    def small(reason: str, score: float | None, threshold: float | None, **extra: Any) -> Decision:
        return Decision(
            route="small",
            model_group=policy.small_model,
            fallback_group=None if degrade else policy.frontier_model,
            reason=reason,
            score=score,
            threshold=threshold,
            slm_timeout_s=slm_timeout_s,
            confidence_floor=None if degrade else policy.confidence_floor,
            **extra,
        )

    def frontier(reason: str, score: float | None, threshold: float | None, **extra: Any) -> Decision:
        return Decision("frontier", policy.frontier_model, None, reason, score, threshold, **extra)

    shape = request_shape(data)
    max_tokens = data.get("max_tokens") or data.get("max_completion_tokens") or 0
    rule = hard_rule(policy, bundle.deployments_in(policy.small_model), shape, int(max_tokens or 0))
    if rule and not degrade:
        return frontier(f"rule:{rule}", None, None)

    experiment = bundle.experiments.get(feature)
    arm_name, experiment_id = "", ""
    tracker: ShareThreshold | None = None
    if experiment is not None:
        # sticky_key is the end user (else the call); experiments split per request hash the call id instead
        unit_key = request_key if experiment.sticky_by == "request" and request_key else sticky_key
        arm = assign_arm(experiment, unit_key)
        threshold: float = arm.threshold
        arm_name, experiment_id = arm.name, experiment.id
    elif policy.threshold is not None:
        threshold = policy.threshold
    else:
        tracker = shares.setdefault(feature, ShareThreshold()) if shares is not None else None
        threshold = tracker.threshold(policy.target_small_share or 0.0) if tracker is not None else 0.5

    signals: dict[str, float] = {}
    if scored_fn is not None:
        raw, signals = scored_fn(data.get("messages") or [], data.get("tools"), policy.scorer_adjustment)
    else:
        raw = score_fn(data.get("messages") or [], data.get("tools"))
    score = min(1.0, max(0.0, float(raw)))
    if tracker is not None:
        tracker.observe(score)
    extra: dict[str, Any] = {"experiment": experiment_id, "arm": arm_name, "signals": signals}
    if degrade:
        return small(
            "budget_degrade", score, threshold, budget_forced=score >= threshold or bool(rule), **extra
        )
    if score >= threshold:
        return frontier("score", score, threshold, **extra)
    return small("score", score, threshold, **extra)


def length_score(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> float:
    """Stand-in scorer when the learned one is unavailable: longer prompts need the frontier more."""
    chars = 0
    for message in messages:
        if isinstance(message, dict):
            chars += _text_length(message.get("content"))[0]
    return min(1.0, chars / 8000.0 + (0.2 if tools else 0.0))
