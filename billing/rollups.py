"""The one aggregate that turns attempt rows into hourly rollup rows, shared by ingest, rebuild and seeding.

Definitions (docs/spend.md): requests = rows with attempt = 1 (each call counted once, on its first
attempt, whichever batch carries it); attempts = rows; errors = rows with status 'error';
fallbacks = rows with fallback = true; cost = all attempts; baseline = successful attempts that
are not a low-confidence escalation (exactly one row per served request: the counterfactual is one
frontier call per request, and an escalated request keeps the estimate made on its SLM answer);
latency buckets = every attempt's latency; score buckets = attempt-1 rows with a score; fallback score
buckets = fallback rows by the score of their call (so fallback rate by score bucket = fallback_score_bk /
score_bk).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from billing.models import (
    FALLBACK_SCORE_BUCKETS,
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    SCORE_BUCKETS,
    SpendAttemptMeasures,
    SpendEvent,
    SpendRollupHourly,
)
from routing.engine import spend

ROLLUP = SpendRollupHourly._meta.db_table
EVENTS = SpendEvent._meta.db_table
# SQL forms of the counting rules in routing/engine/spend.py (the same names without _SQL/_ROW there).
REQUEST_ROW = f"attempt = {spend.REQUEST_ATTEMPT}"  # counts one request
# The one attempt row of a served request that carries its baseline (frontier-price) estimate.
BASELINE_ROW = f"status = '{spend.BASELINE_STATUS}' AND fallback_reason <> '{spend.BASELINE_EXCLUDED_REASON}'"
SMALL_MODEL_FALLBACK_ROW = "fallback AND fallback_reason IN ({})".format(
    ", ".join(f"'{reason}'" for reason in spend.SMALL_MODEL_FALLBACK_REASONS)
)
MODEL_SQL = "CASE WHEN deployment <> '' THEN deployment ELSE model_group END"  # spend.model_name
# The same rules for ORM queries.
REQUEST_Q = Q(attempt=spend.REQUEST_ATTEMPT)
SMALL_MODEL_FALLBACK_Q = Q(fallback=True, fallback_reason__in=spend.SMALL_MODEL_FALLBACK_REASONS)
KEY = ["hour", "team_id", "feature_id", "route", "model", "fallback_reason", "experiment", "arm"]
MEASURES = [
    "requests",
    "attempts",
    "errors",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "latency_ms_sum",
    *LATENCY_BUCKETS,
    *SCORE_BUCKETS,
    *FALLBACK_SCORE_BUCKETS,
]
# Columns of an attempt row the aggregate reads (ingest's RETURNING list).
SOURCE_COLUMNS = [
    "start_time",
    "team_id",
    "feature_id",
    "route",
    "model_group",
    "deployment",
    "fallback_reason",
    "experiment",
    "arm",
    "attempt",
    "status",
    "fallback",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "latency_ms",
    "score",
]


def _hour_sql() -> str:
    if connection.vendor == "postgresql":
        return "date_trunc('hour', start_time)"
    return "strftime('%%Y-%%m-%%d %%H:00:00', start_time)"


def _count_if(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def _measure_sql() -> list[str]:
    exprs = [
        _count_if(REQUEST_ROW),
        "COUNT(*)",
        _count_if("status = 'error'"),
        _count_if("fallback"),
        "SUM(input_tokens)",
        "SUM(output_tokens)",
        "SUM(cost_usd)",
        f"SUM(CASE WHEN {BASELINE_ROW} THEN baseline_cost_usd ELSE 0 END)",
        "SUM(latency_ms)",
    ]
    lower = 0
    for upper in LATENCY_BOUNDS_MS:
        exprs.append(_count_if(f"latency_ms >= {lower} AND latency_ms < {upper}"))
        lower = upper
    exprs.append(_count_if(f"latency_ms >= {lower}"))
    for k in range(10):
        high = f"AND score < {(k + 1) / 10:.1f}" if k < 9 else ""
        exprs.append(_count_if(f"{REQUEST_ROW} AND score >= {k / 10:.1f} {high}"))
    for k in range(10):
        high = f"AND score < {(k + 1) / 10:.1f}" if k < 9 else ""
        exprs.append(_count_if(f"fallback AND score >= {k / 10:.1f} {high}"))
    return exprs


def upsert_sql(source: str, where: str = "") -> str:
    """INSERT the aggregate of `source` (a table or CTE with SOURCE_COLUMNS) into the rollups, adding to existing rows.

    Rows are inserted in key order so concurrent ingests lock rollup rows in the same order (no deadlock).
    """
    key_exprs = [
        f"{_hour_sql()} AS hour",
        "team_id",
        "feature_id",
        "route",
        f"{MODEL_SQL} AS model",
        "fallback_reason",
        "experiment",
        "arm",
    ]
    positions = ", ".join(str(i + 1) for i in range(len(KEY)))
    columns = ", ".join(KEY + MEASURES)
    updates = ", ".join(f"{m} = {ROLLUP}.{m} + excluded.{m}" for m in MEASURES)
    return (
        f"INSERT INTO {ROLLUP} ({columns}) "
        f"SELECT {', '.join(key_exprs + _measure_sql())} FROM {source} WHERE {where or '1 = 1'} "
        f"GROUP BY {positions} ORDER BY {positions} "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}"
    )


def _ids(items: Iterable[Any] | None) -> list[int] | None:
    if items is None:
        return None
    return [getattr(item, "pk", item) for item in items]


def scoped(qs: QuerySet, *, teams: Iterable[Any] | None, features: Iterable[Any] | None) -> QuerySet:
    """Rows of these teams / features (objects or ids; None: all)."""
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
    return scoped(qs, teams=teams, features=features)


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_floor(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def rollups_recompute(*, start: datetime, end: datetime) -> int:
    """Delete the rollup rows of the hours in [start, end) and recompute them from raw events.

    The caller holds the transaction. On Postgres the rollup table is locked against concurrent ingest
    (which would otherwise add to rows this deletes) until the caller commits. Returns rows written.
    """
    start, end = hour_floor(start), hour_ceil(end)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {ROLLUP} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM {ROLLUP} WHERE hour >= %s AND hour < %s", [start, end])
        cursor.execute(upsert_sql(EVENTS, "start_time >= %s AND start_time < %s"), [start, end])
        return cursor.rowcount
