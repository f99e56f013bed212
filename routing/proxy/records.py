"""Turning LiteLLM's logging kwargs for one attempt into a `SpendRecord`.

The decision stamp the pre-call hook put into request metadata travels with every attempt LiteLLM
makes (first try, fallback, escalation); this module reads it back together with LiteLLM's
standard logging payload (tokens, times, `response_cost`).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from routing.engine.bundle import Bundle
from routing.engine.spend import MONEY_PLACES, SLM_UNAVAILABLE, SpendRecord

STAMP_KEY = "finops"  # request metadata key holding the decision stamp
ZERO = Decimal("0")


def _money(value: Any) -> Decimal:
    if value is None:
        return ZERO
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return ZERO
    if not amount.is_finite() or amount < 0:
        return ZERO
    return amount.quantize(MONEY_PLACES)


def _moment(epoch: Any, fallback: Any = None) -> datetime | None:
    if isinstance(epoch, int | float) and epoch > 0:
        return datetime.fromtimestamp(float(epoch), UTC)
    if isinstance(fallback, datetime):
        return fallback.astimezone(UTC) if fallback.tzinfo else fallback.astimezone().astimezone(UTC)
    return None


@lru_cache(maxsize=256)
def _price_map_rates(model: str) -> tuple[Decimal, Decimal]:
    """Per-token input/output prices from litellm's price map (zero when the model is unknown)."""
    import litellm

    entry = litellm.model_cost.get(model) or litellm.model_cost.get(model.split("/", 1)[-1]) or {}
    return _money(entry.get("input_cost_per_token")), _money(entry.get("output_cost_per_token"))


def token_rates(bundle: Bundle | None, model_group: str) -> tuple[Decimal, Decimal]:
    """Prices for a model group: the bundle's override if set, else litellm's price map."""
    if bundle is not None:
        for deployment in bundle.deployments_in(model_group):
            if deployment.input_cost_per_token is not None or deployment.output_cost_per_token is not None:
                return deployment.input_cost_per_token or ZERO, deployment.output_cost_per_token or ZERO
            return _price_map_rates(deployment.model)
    return ZERO, ZERO


def estimate_cost(bundle: Bundle | None, model_group: str, input_tokens: int, output_tokens: int) -> Decimal:
    rate_in, rate_out = token_rates(bundle, model_group)
    return (rate_in * input_tokens + rate_out * output_tokens).quantize(MONEY_PLACES)


def confidence_of(response: Any) -> float | None:
    """Geometric-mean token probability of the first choice, from logprobs; None when absent."""
    try:
        choices = response["choices"] if isinstance(response, dict) else response.choices
        logprobs = choices[0]["logprobs"] if isinstance(choices[0], dict) else choices[0].logprobs
        if logprobs is None:
            return None
        content = logprobs["content"] if isinstance(logprobs, dict) else logprobs.content
        values = [(t["logprob"] if isinstance(t, dict) else t.logprob) for t in content or []]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    if not values:
        return None
    return math.exp(sum(values) / len(values))


COOLDOWN_ERROR = (
    "RouterRateLimitError"  # what LiteLLM raises when every deployment of a group is cooling down
)


def fallback_reason_of(exception_type: str) -> str:
    return "timeout" if "timeout" in exception_type.lower() else "error"


def metadata_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    litellm_params = kwargs.get("litellm_params") or {}
    return litellm_params.get("metadata") or kwargs.get("metadata") or {}


def build_record(
    kwargs: dict[str, Any],
    response_obj: Any,
    *,
    status: str,
    bundle: Bundle | None,
    start_time: Any = None,
    end_time: Any = None,
) -> SpendRecord | None:
    """The record for one attempt, or None when the call never got a routing decision."""
    metadata = metadata_of(kwargs)
    stamp = metadata.get(STAMP_KEY)
    if not isinstance(stamp, dict):
        return None
    payload = kwargs.get("standard_logging_object") or {}
    model_group = str(metadata.get("model_group") or payload.get("model_group") or kwargs.get("model") or "")
    deployment = metadata.get("deployment")
    if not isinstance(deployment, str):
        deployment = str(payload.get("model") or "") if metadata.get("model_group") else ""

    escalation = stamp.get("escalation", "")
    exception = kwargs.get("exception")
    error_class = str((payload.get("error_information") or {}).get("error_class") or "")
    # LiteLLM refused the decided group without calling it (cooled down): still that group's attempt 1
    skipped = status == "error" and COOLDOWN_ERROR in (type(exception).__name__, error_class)
    if escalation:
        attempt, fallback, reason = 2, True, escalation
    elif skipped:
        attempt, fallback, reason = 1, False, ""
        model_group, deployment = stamp["model_group"], ""
    elif model_group and model_group != stamp["model_group"]:
        previous = metadata.get("previous_models") or []
        last = previous[-1] if previous and isinstance(previous[-1], dict) else {}
        attempt, fallback, reason = 2, True, fallback_reason_of(str(last.get("exception_type", "")))
    elif stamp.get("reason") == SLM_UNAVAILABLE:
        # the open breaker sent it straight to the frontier: counted apart from fallbacks
        attempt, fallback, reason = 1, False, SLM_UNAVAILABLE
    elif stamp.get("budget_forced"):
        attempt, fallback, reason = 1, True, "budget"
    else:
        attempt, fallback, reason = 1, False, ""
    if not model_group:
        model_group = stamp["model_group"]

    input_tokens = int(payload.get("prompt_tokens") or 0)
    output_tokens = int(payload.get("completion_tokens") or 0)
    cost = _money(payload.get("response_cost", kwargs.get("response_cost")))
    if cost == ZERO and (input_tokens or output_tokens):
        cost = estimate_cost(bundle, model_group, input_tokens, output_tokens)
    baseline = estimate_cost(bundle, stamp["frontier_group"], input_tokens, output_tokens)

    start = _moment(payload.get("startTime"), start_time) or datetime.now(UTC)
    end = _moment(payload.get("endTime"), end_time) or start
    end = max(end, start)
    stream = bool(payload.get("stream") or kwargs.get("stream"))
    first_token = _moment(payload.get("completionStartTime")) if status == "success" else None
    if first_token is not None:
        first_token = min(max(first_token, start), end)

    error_class = ""
    if status == "error":
        info = payload.get("error_information") or {}
        error_class = str(info.get("error_class") or type(kwargs.get("exception")).__name__ or "Exception")[
            :200
        ]

    return SpendRecord(
        event_id=uuid.uuid4().hex,
        call_id=str(stamp["call_id"]),
        attempt=attempt,
        team=stamp["team"],
        feature=stamp["feature"],
        start_time=start,
        end_time=end,
        route=stamp["route"],
        model_group=model_group,
        deployment=deployment[:200],
        status=status,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        baseline_cost_usd=baseline,
        first_token_time=first_token,
        error_class=error_class,
        fallback=fallback,
        fallback_reason=reason,
        score=stamp.get("score"),
        signals=dict(stamp.get("signals") or {}),
        threshold=min(1.0, stamp["threshold"]) if stamp.get("threshold") is not None else None,
        decision_reason=stamp.get("reason", ""),
        bundle_version=stamp.get("bundle_version", ""),
        experiment=stamp.get("experiment", ""),
        arm=stamp.get("arm", ""),
        end_user=str(stamp.get("end_user", ""))[:128],
        stream=stream,
        confidence=confidence_of(response_obj) if status == "success" else None,
        team_code=str(stamp.get("team_code") or ""),
        feature_code=str(stamp.get("feature_code") or ""),
    )
