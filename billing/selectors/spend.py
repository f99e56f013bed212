"""Reads of spend: requests rebuilt from attempts, and dashboard figures from the hourly rollups only.

Dashboard selectors never scan raw events. `teams` / `features` narrow the scope (objects or ids;
None means all: callers pass what controlplane.permissions lets the user see).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from billing.models import LATENCY_BOUNDS_MS, BlockedCallCount, SpendEvent
from billing.rollups import scoped
from controlplane.models import Feature
from routing.engine import spend

ZERO = Decimal("0")


def percentile_from_buckets(counts: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of latencies bucketed by LATENCY_BOUNDS_MS, interpolated inside its bucket."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for index, count in enumerate(counts):
        upper = float(LATENCY_BOUNDS_MS[index]) if index < len(LATENCY_BOUNDS_MS) else None
        if count and seen + count >= rank:
            if upper is None:
                return lower  # open last bucket: report its lower bound
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper if upper is not None else lower
    return lower


# Requests, rebuilt from attempts ------------------------------------------------------------------------------


@dataclass
class RequestView:
    """One call as the user saw it, built from its attempt rows."""

    call_id: str
    team_id: int
    feature_id: int
    route: str  # decided route
    served_model: str  # model of the attempt that succeeded, else of the last attempt
    status: str  # success if any attempt succeeded
    fallback: bool
    fallback_reason: str
    cost_usd: Decimal  # every attempt, failed ones included
    baseline_cost_usd: Decimal  # frontier-price estimate, from the row rollups take it from (billing.rollups)
    started_at: datetime
    ended_at: datetime
    score: float | None
    threshold: float | None
    experiment: str
    arm: str
    attempts: list[SpendEvent] = field(default_factory=list)

    @property
    def latency_ms(self) -> int:
        return max(0, round((self.ended_at - self.started_at).total_seconds() * 1000))

    @property
    def savings_usd(self) -> Decimal:
        return self.baseline_cost_usd - self.cost_usd


def _request_from(attempts: list[SpendEvent]) -> RequestView:
    attempts.sort(key=lambda a: (a.attempt, a.start_time))
    first, last = attempts[0], attempts[-1]
    served = next((a for a in reversed(attempts) if a.status == "success"), None)
    fallen = next((a for a in attempts if a.fallback), None)
    return RequestView(
        call_id=first.call_id,
        team_id=first.team_id,
        feature_id=first.feature_id,
        route=first.route,
        served_model=(served or last).model,
        status="success" if served else "error",
        fallback=fallen is not None,
        fallback_reason=fallen.fallback_reason if fallen else "",
        cost_usd=sum((a.cost_usd for a in attempts), ZERO),
        baseline_cost_usd=sum(
            (
                a.baseline_cost_usd
                for a in attempts
                if spend.counts_toward_baseline(a.status, a.fallback_reason)
            ),
            ZERO,
        ),
        started_at=min(a.start_time for a in attempts),
        ended_at=max(a.end_time for a in attempts),
        score=first.score,
        threshold=first.threshold,
        experiment=first.experiment,
        arm=first.arm,
        attempts=attempts,
    )


def request_list(
    *,
    start: datetime,
    end: datetime,
    teams: Iterable[Any] | None = None,
    features: Iterable[Any] | None = None,
    fallback_only: bool = False,
    model: str | None = None,
    end_user: str | None = None,
    limit: int = 100,
) -> list[RequestView]:
    """The latest requests whose first attempt (or, with fallback_only, whose fallback) started in [start, end).

    `model`: only calls served by that model (its successful attempt's deployment, else model group);
    `end_user`: only that end user's calls.
    """
    marker = Q(fallback=True) if fallback_only else Q(attempt=1)
    firsts = scoped(
        SpendEvent.objects.filter(marker, start_time__gte=start, start_time__lt=end),
        teams=teams,
        features=features,
    )
    if end_user:
        firsts = firsts.filter(end_user=end_user)
    if model:
        served = SpendEvent.objects.filter(
            Q(deployment=model) | Q(deployment="", model_group=model),
            status="success",
            start_time__gte=start,
            start_time__lt=end + timedelta(hours=1),
        ).values("call_id")
        firsts = firsts.filter(call_id__in=served)
    # a call can succeed on two models (an escalated answer): the served one is the last success, so
    # the model pre-filter over-selects and the exact test runs on the rebuilt calls
    wanted = limit * 2 if model else limit
    call_ids = list(firsts.order_by("-start_time").values_list("call_id", flat=True)[:wanted])
    grouped: dict[str, list[SpendEvent]] = defaultdict(list)
    for attempt in SpendEvent.objects.filter(call_id__in=call_ids):
        grouped[attempt.call_id].append(attempt)
    calls = [_request_from(grouped[c]) for c in dict.fromkeys(call_ids) if c in grouped]
    if model:
        calls = [c for c in calls if c.served_model == model]
    return calls[:limit]


BLOCKED_REASON_LABELS = {
    "budget": "over budget",
    "revoked": "revoked key",
    "expired": "expired key",
    "endpoint": "endpoint not served",
}


def feature_blocked_since(*, feature: Feature, since: datetime) -> dict[str, Any]:
    """Calls the proxies refused for a feature since `since` (counter windows ending after it), by reason."""

    rows = (
        BlockedCallCount.objects.filter(feature=feature, window_end__gte=since)
        .values("reason")
        .annotate(calls=Sum("count"))
        .order_by("reason")
    )
    by_reason = [
        {
            "reason": r["reason"],
            "label": BLOCKED_REASON_LABELS.get(r["reason"], r["reason"]),
            "calls": r["calls"],
        }
        for r in rows
    ]
    return {"total": sum(r["calls"] for r in by_reason), "by_reason": by_reason}
