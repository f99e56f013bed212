"""Reads of recorded spend that routing's pages and experiments need (what-if samples, experiment calls).

Routing must not import billing, so `BillingConfig.ready()` registers this module as
`routing.providers.spend_reader()`; routing calls these functions through that slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Case, IntegerField, Max, Min, QuerySet, Sum, When

from billing.models import SpendEvent
from routing.engine import spend


@dataclass(frozen=True)
class ScoredCall:
    """The first attempt of one scored call, and whether the small model fell back on it."""

    call_id: str
    score: float
    input_tokens: int
    output_tokens: int
    baseline_cost_usd: Decimal
    route: str
    cost_usd: Decimal
    status: str
    small_model_fallback: bool


def _scored_first_attempts(feature: Any, start: datetime, end: datetime) -> QuerySet[SpendEvent]:
    """First attempts of a feature's scored calls that started in [start, end), newest first."""
    return SpendEvent.objects.filter(
        feature=feature,
        attempt=spend.REQUEST_ATTEMPT,
        start_time__gte=start,
        start_time__lt=end,
        score__isnull=False,
    ).order_by("-start_time")


def _fell_back_since(feature: Any, since: datetime) -> set[str]:
    """Call ids of the feature's calls that fell back from the small model since `since`."""
    return set(
        SpendEvent.objects.filter(
            feature=feature,
            fallback=True,
            fallback_reason__in=spend.SMALL_MODEL_FALLBACK_REASONS,
            start_time__gte=since,
        ).values_list("call_id", flat=True)
    )


def scored_calls(*, feature: Any, start: datetime, end: datetime, limit: int) -> list[ScoredCall]:
    """The newest `limit` scored calls of a feature that started in [start, end), one per call."""
    scored = _scored_first_attempts(feature, start, end)
    firsts = list(
        scored.values_list(
            "call_id",
            "score",
            "input_tokens",
            "output_tokens",
            "baseline_cost_usd",
            "route",
            "cost_usd",
            "status",
        )[:limit]
    )
    if not firsts:
        return []
    oldest = scored[len(firsts) - 1 : len(firsts)].values_list("start_time", flat=True)
    since = next(iter(oldest), start)
    fell = _fell_back_since(feature, since)
    return [ScoredCall(*row, small_model_fallback=row[0] in fell) for row in firsts]


@dataclass(frozen=True)
class ExperimentCall:
    """One call of an experiment, its attempts folded: arm, cost, outcome flags and latency."""

    call_id: str
    arm: str
    cost_usd: Decimal | None
    small: int  # 1 when its first attempt went to the small model
    small_model_fallback: int
    success: int
    latency_ms: int | None


def experiment_calls(*, feature: Any, experiment: str, since: datetime, limit: int) -> list[ExperimentCall]:
    """The newest `limit` calls tagged with this experiment since `since`, one per call."""

    def flag(**condition: Any) -> Case:
        return Case(When(**condition, then=1), default=0, output_field=IntegerField())

    rows = (
        SpendEvent.objects.filter(feature=feature, experiment=experiment, start_time__gte=since)
        .values("call_id")
        .annotate(
            arm_name=Max("arm"),
            cost=Sum("cost_usd"),
            small=Max(flag(attempt=spend.REQUEST_ATTEMPT, route="small")),
            fell=Max(flag(fallback=True, fallback_reason__in=spend.SMALL_MODEL_FALLBACK_REASONS)),
            ok=Max(flag(status="success")),
            latency=Sum("latency_ms"),
            first=Min("start_time"),
        )
        .order_by("-first")[:limit]
    )
    return [
        ExperimentCall(
            call_id=r["call_id"],
            arm=r["arm_name"],
            cost_usd=r["cost"],
            small=r["small"],
            small_model_fallback=r["fell"],
            success=r["ok"],
            latency_ms=r["latency"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class OutcomeCall:
    """The first attempt of one scored call with what its feature's adjustment is fitted from."""

    call_id: str
    score: float
    threshold: float | None
    signals: dict[str, float]
    bundle_version: str
    route: str
    decision_reason: str
    status: str
    input_tokens: int
    output_tokens: int
    baseline_cost_usd: Decimal
    cost_usd: Decimal
    small_model_fallback: bool  # any attempt fell back for timeout, error or low confidence


def outcome_calls(*, feature: Any, start: datetime, end: datetime, limit: int) -> list[OutcomeCall]:
    """The newest `limit` scored calls of a feature that started in [start, end), with their signals."""
    scored = _scored_first_attempts(feature, start, end)
    rows = list(
        scored.values_list(
            "call_id",
            "score",
            "threshold",
            "signals",
            "bundle_version",
            "route",
            "decision_reason",
            "status",
            "input_tokens",
            "output_tokens",
            "baseline_cost_usd",
            "cost_usd",
            "start_time",
        )[:limit]
    )
    if not rows:
        return []
    since = rows[-1][-1]
    fell = _fell_back_since(feature, since)
    return [OutcomeCall(*row[:-1], small_model_fallback=row[0] in fell) for row in rows]
