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

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncDay

from billing.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    SCORE_BUCKETS,
    SpendAttemptMeasures,
    SpendEvent,
    SpendRollupHourly,
)
from controlplane.models import Feature

ZERO = Decimal("0")
TOTALS = [
    "requests",
    "attempts",
    "errors",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "latency_ms_sum",
]


def _ids(items: Iterable[Any] | None) -> list[int] | None:
    if items is None:
        return None
    return [getattr(item, "pk", item) for item in items]


def _scope(qs: QuerySet, *, teams: Iterable[Any] | None, features: Iterable[Any] | None) -> QuerySet:
    team_ids, feature_ids = _ids(teams), _ids(features)
    if team_ids is not None:
        qs = qs.filter(team_id__in=team_ids)
    if feature_ids is not None:
        qs = qs.filter(feature_id__in=feature_ids)
    return qs


def rollups_in(
    *,
    start: datetime,
    end: datetime,
    teams: Iterable[Any] | None = None,
    features: Iterable[Any] | None = None,
    models: Iterable[str] | None = None,
    end_users: Iterable[str] | None = None,
) -> QuerySet:
    """Rollup rows of the hours in [start, end), scoped, optionally to attempt models (deployment, else
    model group, as the rollups name them).

    With `end_users` the rollups cannot answer (they do not carry the end user): the rows come from the
    SpendAttemptMeasures view over the raw attempts instead, which has the same key and measure columns,
    so every caller's grouping and sums work unchanged."""
    if end_users is not None:
        qs = SpendAttemptMeasures.objects.filter(
            start_time__gte=start, start_time__lt=end, end_user__in=list(end_users)
        )
    else:
        qs = SpendRollupHourly.objects.filter(hour__gte=start, hour__lt=end)
    if models is not None:
        qs = qs.filter(model__in=list(models))
    return _scope(qs, teams=teams, features=features)


def _sums(names: list[str]) -> dict[str, Sum]:
    return {name: Sum(name) for name in names}


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(Decimal("0.0000000001"))


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    """Fill derived figures: savings, fallback rate, mean latency; None sums become zero."""
    for name in TOTALS:
        if name in ("cost_usd", "baseline_cost_usd"):
            row[name] = _money(row.get(name))
        elif name in row:
            row[name] = int(row[name] or 0)
    row["savings_usd"] = row["baseline_cost_usd"] - row["cost_usd"]
    requests = row.get("requests", 0)
    row["fallback_rate"] = (row.get("fallbacks", 0) / requests) if requests else 0.0
    attempts = row.get("attempts", 0)
    row["mean_latency_ms"] = (row.get("latency_ms_sum", 0) / attempts) if attempts else None
    return row


def spend_summary(
    *,
    start: datetime,
    end: datetime,
    teams: Iterable[Any] | None = None,
    features: Iterable[Any] | None = None,
) -> dict[str, Any]:
    """Totals over the range: requests, attempts, errors, fallbacks, tokens, cost, baseline, savings, SLM share."""
    qs = rollups_in(start=start, end=end, teams=teams, features=features)
    # small_requests first: once the `requests` alias exists, Sum("requests") would refer to it
    row = _finish(qs.aggregate(small_requests=Sum("requests", filter=Q(route="small")), **_sums(TOTALS)))
    row["small_requests"] = int(row["small_requests"] or 0)
    row["small_share"] = row["small_requests"] / row["requests"] if row["requests"] else 0.0
    return row


def spend_by_feature(
    *,
    start: datetime,
    end: datetime,
    teams: Iterable[Any] | None = None,
    features: Iterable[Any] | None = None,
) -> list[dict[str, Any]]:
    """Per feature (most expensive first): feature id/slug/name, team, totals, savings and fallback rate."""
    qs = rollups_in(start=start, end=end, teams=teams, features=features)
    rows = qs.values("feature_id").annotate(**_sums(TOTALS)).order_by()
    out = [_finish(dict(r)) for r in rows]
    names = {  # names after grouping: a join before it would touch every rollup row
        f["id"]: f
        for f in Feature.objects.filter(pk__in=[r["feature_id"] for r in out]).values(
            "id", "slug", "name", "team_id", "team__slug"
        )
    }
    for r in out:
        f = names.get(r["feature_id"], {})
        r.update(
            {
                "feature__slug": f.get("slug", ""),
                "feature__name": f.get("name", ""),
                "team_id": f.get("team_id"),
                "team__slug": f.get("team__slug", ""),
            }
        )
    out.sort(key=lambda r: (-r["cost_usd"], r["feature__slug"]))
    return out


def spend_daily_by_model(
    *,
    start: datetime,
    end: datetime,
    teams: Iterable[Any] | None = None,
    features: Iterable[Any] | None = None,
) -> list[dict[str, Any]]:
    """Per UTC day and model: requests, attempts, cost, baseline and savings, ordered by day then model."""
    qs = rollups_in(start=start, end=end, teams=teams, features=features)
    rows = (
        qs.annotate(day=TruncDate("hour"))
        .values("day", "model", "route")
        .annotate(**_sums(TOTALS))
        .order_by("day", "model", "route")
    )
    return [_finish(dict(r)) for r in rows]


def fallback_rate_series(
    *,
    start: datetime,
    end: datetime,
    teams: Iterable[Any] | None = None,
    features: Iterable[Any] | None = None,
    bucket: str = "hour",
    by_feature: bool = False,
) -> list[dict[str, Any]]:
    """Fallbacks / requests per hour (or day), optionally per feature; each point carries both counts."""
    if bucket not in ("hour", "day"):
        raise ValueError(f"bucket must be 'hour' or 'day', got {bucket!r}")
    qs = rollups_in(start=start, end=end, teams=teams, features=features)
    if bucket == "day":
        qs = qs.annotate(at=TruncDay("hour"))
    keys = ["hour"] if bucket == "hour" else ["at"]
    if by_feature:
        keys.append("feature_id")
    rows = qs.values(*keys).annotate(requests=Sum("requests"), fallbacks=Sum("fallbacks")).order_by(*keys)
    out = []
    for r in rows:
        requests, fallbacks = int(r["requests"] or 0), int(r["fallbacks"] or 0)
        point = {
            "at": r["hour"] if bucket == "hour" else r["at"],
            "requests": requests,
            "fallbacks": fallbacks,
            "fallback_rate": fallbacks / requests if requests else 0.0,
        }
        if by_feature:
            point["feature_id"] = r["feature_id"]
        out.append(point)
    return out


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


def latency_percentiles(
    *,
    start: datetime,
    end: datetime,
    teams: Iterable[Any] | None = None,
    features: Iterable[Any] | None = None,
    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99),
    by: str | None = None,
) -> dict[str, Any]:
    """Attempt latency percentiles (ms) from the rollups' histogram buckets: {"p50": .., "p95": .., "p99": .., "count": n}.

    `by` = "model", "route" or "feature_id" returns {value: {...}} instead.
    """
    qs = rollups_in(start=start, end=end, teams=teams, features=features)

    def figures(row: dict[str, Any]) -> dict[str, Any]:
        counts = [int(row[name] or 0) for name in LATENCY_BUCKETS]
        out: dict[str, Any] = {f"p{round(q * 100)}": percentile_from_buckets(counts, q) for q in quantiles}
        out["count"] = sum(counts)
        return out

    if by is None:
        return figures(qs.aggregate(**_sums(LATENCY_BUCKETS)))
    if by not in ("model", "route", "feature_id"):
        raise ValueError(f"by must be model, route or feature_id, got {by!r}")
    return {row[by]: figures(row) for row in qs.values(by).annotate(**_sums(LATENCY_BUCKETS)).order_by(by)}


def score_distribution(
    *,
    start: datetime,
    end: datetime,
    teams: Iterable[Any] | None = None,
    features: Iterable[Any] | None = None,
) -> list[dict[str, Any]]:
    """Requests per complexity-score decile [0, 0.1), ..., [0.9, 1.0], from the rollups."""
    row = rollups_in(start=start, end=end, teams=teams, features=features).aggregate(**_sums(SCORE_BUCKETS))
    return [
        {"low": k / 10, "high": (k + 1) / 10, "requests": int(row[name] or 0)}
        for k, name in enumerate(SCORE_BUCKETS)
    ]


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
                if a.status == "success" and a.fallback_reason != "low_confidence"
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


def request_detail(call_id: str, *, features: Iterable[Any] | None = None) -> RequestView | None:
    """The request with this call id (None if unknown or outside `features`)."""
    qs = _scope(SpendEvent.objects.filter(call_id=call_id), teams=None, features=features)
    attempts = list(qs)
    return _request_from(attempts) if attempts else None


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
    firsts = _scope(
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
    from billing.models import BlockedCallCount

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
