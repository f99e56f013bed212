"""Dashboard reads beyond billing.selectors: filters, overview, feature and routing-analytics figures.

Everything here reads the hourly rollups (never raw events) and returns what billing.charts turns into
figures: frozen dataclasses (the overview, the feature page, routing analytics, the landings); the
grouped reads they fold (`spend_cube`, `hourly_cells`) stay plain dicts. Money stays Decimal; rates are floats
in [0, 1].
"""

from __future__ import annotations

import calendar
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from billing.alerts import alerts_active
from billing.budgets import budget_for_feature
from billing.forecast import Forecast, month_end_forecast
from billing.models import FALLBACK_SCORE_BUCKETS, LATENCY_BUCKETS, SCORE_BUCKETS, Budget, SpendEvent
from billing.rollups import rollups_in
from billing.selectors.spend import percentile_from_buckets
from controlplane.models import Feature, Membership, Role, Team
from controlplane.permissions import is_org_wide, visible_features, visible_teams
from routing.engine.spend import SLM_UNAVAILABLE
from routing.models import ModelDeployment, RoutingPolicy, Tier

ZERO = Decimal("0")
CENTS = Decimal("0.01")
MAX_RANGE_DAYS = 400
MOVERS = 5


# Filters -------------------------------------------------------------------------------------------------------


@dataclass
class DashboardFilters:
    """The date range (inclusive days, UTC), team and feature a dashboard shows, parsed from the query string."""

    start: date
    end: date
    team: Team | None = None
    feature: Feature | None = None
    model: str | None = None  # an attempt model (deployment, else model group) seen in the range
    end_user: str | None = None  # an end user seen in the range (read from the raw attempts)
    errors: dict[str, str] = field(default_factory=dict)
    model_choices: list[str] = field(default_factory=list)
    end_user_choices: list[str] = field(default_factory=list)
    # what the user may see: None means everything (an org-wide role)
    visible_team_ids: list[int] | None = None
    teams: list[Team] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)
    today: date | None = None

    @property
    def presets(self) -> list[dict[str, Any]]:
        """24 h (yesterday and today, hourly), 7 d, 30 d and month to date, each keeping team and feature."""
        today = self.today or self.end
        out = []
        for label, start in (
            ("24 h", today - timedelta(days=1)),
            ("7 d", today - timedelta(days=6)),
            ("30 d", today - timedelta(days=29)),
            ("Month to date", today.replace(day=1)),
        ):
            out.append(
                {
                    "label": label,
                    "query": self.query(start=start.isoformat(), end=today.isoformat()),
                    "active": self.start == start and self.end == today,
                }
            )
        return out

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        """Exclusive end: midnight after the last day."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def scope(self) -> dict[str, Any]:
        """The teams/features (and model/end-user) arguments every rollup selector takes."""
        scope = self.where()
        scope["models"] = [self.model] if self.model else None
        scope["end_users"] = [self.end_user] if self.end_user else None
        return scope

    def where(self) -> dict[str, list[int] | None]:
        """Teams and features only: what the user may see and chose (the model and end-user choices' scope)."""
        teams = self.visible_team_ids
        if self.team is not None:
            teams = [self.team.pk]
        features = [self.feature.pk] if self.feature is not None else None
        return {"teams": teams, "features": features}

    @property
    def narrows(self) -> dict[str, list[str] | None]:
        """Only the model and end-user arguments (for pages already scoped to one feature)."""
        return {k: v for k, v in self.scope().items() if k in ("models", "end_users")}

    @property
    def is_scoped(self) -> bool:
        scope = self.scope()
        return scope["teams"] is not None or scope["features"] is not None

    def params(self, **overrides: Any) -> dict[str, str]:
        values = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "team": self.team.slug if self.team else "",
            "feature": self.feature.slug if self.feature else "",
            "model": self.model or "",
            "end_user": self.end_user or "",
        }
        values.update({k: str(v) for k, v in overrides.items()})
        return {k: v for k, v in values.items() if v}

    def query(self, **overrides: Any) -> str:
        return urlencode(self.params(**overrides))


def _parse_day(raw: str, name: str, errors: dict[str, str]) -> date | None:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = f"{name}: {raw!r} is not a date; use YYYY-MM-DD, e.g. 2026-11-01."
        return None


def dashboard_filters(
    params: Mapping[str, str],
    *,
    user: Any,
    today: date,
    default_start: date | None = None,
    scope_feature: Feature | None = None,
) -> DashboardFilters:
    """Parse start/end/team/feature; bad values fall back to the defaults and are reported in `errors`."""
    errors: dict[str, str] = {}
    start_default = default_start or today.replace(day=1)
    start = _parse_day(params["start"], "start", errors) if params.get("start") else None
    end = _parse_day(params["end"], "end", errors) if params.get("end") else None
    start, end = start or start_default, end or today
    if start > end:
        errors["start"] = f"start: {start} is after end {end}; pick a start on or before the end."
        start, end = start_default, today
    if (end - start).days >= MAX_RANGE_DAYS:
        errors["start"] = f"start: the range may span at most {MAX_RANGE_DAYS} days; pick a later start."
        start = end - timedelta(days=MAX_RANGE_DAYS - 1)
    teams = list(visible_teams(user))
    features = list(visible_features(user))
    team = feature = None
    if params.get("team"):
        team = next((t for t in teams if t.slug == params["team"]), None)
        if team is None:
            errors["team"] = f"team: no team {params['team']!r} you can see; pick one from the list."
    if params.get("feature"):
        feature = next((f for f in features if f.slug == params["feature"]), None)
        if feature is None:
            errors["feature"] = (
                f"feature: no feature {params['feature']!r} you can see; pick one from the list."
            )
        elif team is not None and feature.team_id != team.pk:
            errors["feature"] = (
                f"feature: {feature.slug} belongs to team {feature.team.slug}, not {team.slug}."
            )
            feature = None
    filters = DashboardFilters(
        start=start,
        end=end,
        team=team,
        feature=feature,
        errors=errors,
        visible_team_ids=None if is_org_wide(user) else [t.pk for t in teams],
        teams=teams,
        features=features,
        today=today,
    )
    _narrow(filters, params, scope_feature=scope_feature)
    return filters


END_USER_CHOICES = 200  # the most active end users offered as suggestions; any other seen one is accepted


def _narrow(filters: DashboardFilters, params: Mapping[str, str], *, scope_feature: Feature | None) -> None:
    """Model and end-user filters: their values come from the data in the range and scope (what the user may
    see, the team and feature chosen); anything else is reported in `errors` naming the field."""
    where = filters.where()
    if scope_feature is not None:
        where = {"teams": None, "features": [scope_feature.pk]}
    model = (params.get("model") or "").strip()
    filters.model_choices = sorted(
        set(rollups_in(start=filters.start_at, end=filters.end_at, **where).values_list("model", flat=True))
    )
    if model:
        if model in filters.model_choices:
            filters.model = model
        else:
            filters.errors["model"] = (
                f"model: no calls were served by {model[:80]!r} from {filters.start} to {filters.end} in "
                "what you see; pick a model from the list or widen the range."
            )
    end_user = (params.get("end_user") or "").strip()
    raw = SpendEvent.objects.filter(start_time__gte=filters.start_at, start_time__lt=filters.end_at)
    if where["teams"] is not None:
        raw = raw.filter(team_id__in=where["teams"])
    if where["features"] is not None:
        raw = raw.filter(feature_id__in=where["features"])
    filters.end_user_choices = list(
        raw.exclude(end_user="")
        .values("end_user")
        .annotate(n=Count("id"))
        .order_by("-n", "end_user")
        .values_list("end_user", flat=True)[:END_USER_CHOICES]
    )
    if end_user:
        if len(end_user) > 128:
            filters.errors["end_user"] = (
                "end_user: at most 128 characters; pick an end user from the suggestions."
            )
        elif end_user in filters.end_user_choices or raw.filter(end_user=end_user).exists():
            filters.end_user = end_user
        else:
            filters.errors["end_user"] = (
                f"end_user: no calls from end user {end_user[:80]!r} from {filters.start} to {filters.end} in "
                "what you see (only calls whose proxy passed an end user carry one); pick one from the "
                "suggestions or widen the range."
            )


# Money helpers ---------------------------------------------------------------------------------------------------


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(Decimal("0.0000000001"))


def small_model_deployments() -> list[tuple[datetime, Decimal]]:
    """(live since, monthly hosting) of each active small-tier deployment (routing.models.ModelDeployment)."""

    return [
        (created, Decimal(monthly or 0))
        for created, monthly in ModelDeployment.objects.filter(is_active=True, tier=Tier.SMALL).values_list(
            "created_at", "monthly_hosting_usd"
        )
    ]


def small_model_monthly_hosting() -> Decimal:
    """Sum of the active small-tier deployments' monthly hosting cost."""
    return sum((monthly for _, monthly in small_model_deployments()), ZERO)


def hosting_cost_between(*, monthly_total: Decimal, start: datetime, end: datetime) -> Decimal:
    """Fixed monthly hosting prorated by the second over [start, end): each second is 1/(seconds of its month)."""
    total = ZERO
    at = start
    while at < end:
        month_days = calendar.monthrange(at.year, at.month)[1]
        month_start = datetime(at.year, at.month, 1, tzinfo=UTC)
        next_month = month_start + timedelta(days=month_days)
        stop = min(end, next_month)
        total += monthly_total * Decimal((stop - at).total_seconds()) / Decimal(month_days * 86400)
        at = stop
    return total


def hosting_for_range(*, start: datetime, end: datetime, now: datetime) -> tuple[Decimal, float]:
    """Small-model hosting charged to [start, end): each deployment from its start date, never past `now`.

    Returns the cost (cents) and the hours of the range any small deployment was live (the hours the
    range's traffic had to pay for).
    """
    total, live_from = ZERO, None
    stop = min(end, now)
    for created, monthly in small_model_deployments():
        first = max(start, created)
        if first >= stop or not monthly:
            continue
        total += hosting_cost_between(monthly_total=monthly, start=first, end=stop)
        live_from = first if live_from is None else min(live_from, first)
    hours = (stop - live_from).total_seconds() / 3600 if live_from is not None else 0.0
    return total.quantize(CENTS), hours


def break_even_requests(*, monthly_hosting: Decimal, gross_savings: Decimal, requests: int) -> int | None:
    """Requests a month at which the small model's per-token savings pay its monthly hosting.

    Uses the observed mix and prices: the gross saving per request (all requests, so the small-model
    share and the fallbacks are in it). None without hosting, traffic or a positive saving.
    """
    if not monthly_hosting or not requests or gross_savings <= 0:
        return None
    return math.ceil(monthly_hosting / (gross_savings / requests))


def open_alerts(*, user: Any, filters: DashboardFilters) -> int:
    """Unresolved, unsnoozed alerts (billing.alerts) the user may see, narrowed to the team/feature filters."""
    qs = alerts_active(user)
    if filters.team is not None:
        qs = qs.filter(team=filters.team)
    if filters.feature is not None:
        qs = qs.filter(feature=filters.feature)
    return qs.count()


# One grouped read per page ------------------------------------------------------------------------------------------
# Each page reads the rollups once, grouped by the dimensions it shows (a few hundred to a few thousand rows),
# and folds every figure from that in Python: one scan of the rollups instead of one per chart.

CUBE_SUMS = ["requests", "attempts", "fallbacks", "cost_usd", "baseline_cost_usd"]


def spend_cube(
    *, start: datetime, end: datetime, keys: Iterable[str], sums: Iterable[str] = CUBE_SUMS, **scope: Any
) -> list[dict[str, Any]]:
    """Rollup sums in [start, end) grouped by UTC `day` and the given rollup columns; money as Decimal."""
    keys, sums = list(keys), list(sums)
    rows = (
        rollups_in(start=start, end=end, **scope)
        .annotate(day=TruncDate("hour"))
        .values("day", *keys)
        .annotate(**{f"s_{name}": Sum(name) for name in sums})
        .order_by()
    )
    out = []
    for r in rows:
        cell = {"day": r["day"], **{k: r[k] for k in keys}}
        for name in sums:
            value = r[f"s_{name}"]
            cell[name] = _money(value) if name.endswith("_usd") else int(value or 0)
        out.append(cell)
    return out


def spend_cube_over(
    windows: Iterable[tuple[date, date]],
    *,
    keys: Iterable[str],
    sums: Iterable[str] = CUBE_SUMS,
    **scope: Any,
) -> list[dict[str, Any]]:
    """spend_cube over the union of inclusive day windows: overlapping or adjacent ones are read once, a
    distant one (a past range next to this month) separately, so no read spans the gap between them."""
    merged: list[list[date]] = []
    for first, last in sorted(windows):
        if merged and first <= merged[-1][1] + timedelta(days=1):
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    keys, sums = list(keys), list(sums)
    cells: list[dict[str, Any]] = []
    for first, last in merged:
        cells += spend_cube(
            start=datetime.combine(first, time.min, tzinfo=UTC),
            end=datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
            keys=keys,
            sums=sums,
            **scope,
        )
    return cells


def _fold(cells: Iterable[Mapping[str, Any]], key: Any, names: Iterable[str]) -> dict[Any, dict[str, Any]]:
    """Sum `names` of the cells per key(cell)."""
    names = list(names)
    out: dict[Any, dict[str, Any]] = {}
    for cell in cells:
        k = key(cell)
        acc = out.get(k)
        if acc is None:
            acc = out[k] = {n: (ZERO if n.endswith("_usd") else 0) for n in names}
        for n in names:
            acc[n] += cell[n]
    return out


def _derive(row: dict[str, Any]) -> dict[str, Any]:
    row["savings_usd"] = row["baseline_cost_usd"] - row["cost_usd"]
    row["fallback_rate"] = row["fallbacks"] / row["requests"] if row["requests"] else 0.0
    return row


@dataclass(frozen=True)
class MonthSpend:
    """This UTC month's spend per day up to today and the month-end forecast made from it."""

    month_start: date
    month_end: date
    today: date
    per_day: dict[date, Decimal]
    month_to_date: Decimal
    forecast: Forecast


def month_forecast(*, now: datetime, per_day: Mapping[date, Decimal]) -> MonthSpend:
    """Month-to-date spend per UTC day and the weekday-aware month-end forecast (billing.forecast)."""

    month_start = now.date().replace(day=1)
    month_end = month_start.replace(day=calendar.monthrange(now.year, now.month)[1])
    today = now.date()
    month_days = {d: v for d, v in per_day.items() if month_start <= d <= today}
    series, day = [], month_start
    while day < today:
        series.append((day, month_days.get(day, ZERO)))
        day += timedelta(days=1)
    midnight = datetime.combine(today, time.min, tzinfo=UTC)
    forecast = month_end_forecast(
        series,
        as_of=today,
        period_end=month_end,
        spent_today=month_days.get(today, ZERO),
        hours_today=(now - midnight).total_seconds() / 3600,
    )
    return MonthSpend(
        month_start=month_start,
        month_end=month_end,
        today=today,
        per_day=month_days,
        month_to_date=sum(month_days.values(), ZERO),
        forecast=forecast,
    )


# Overview ----------------------------------------------------------------------------------------------------------


HOURLY_MAX_DAYS = 2


def hourly_cells(*, filters: DashboardFilters) -> list[dict[str, Any]]:
    """Rollup sums per UTC hour, model and route over the filters' range (cells keyed "day" like spend_cube's)."""
    sums = ["requests", "attempts", "fallbacks", "cost_usd", "baseline_cost_usd"]
    rows = (
        rollups_in(start=filters.start_at, end=filters.end_at, **filters.scope())
        .values("hour", "model", "route")
        .annotate(**{f"s_{name}": Sum(name) for name in sums})
        .order_by()
    )
    return [
        {
            "day": r["hour"],
            "model": r["model"],
            "route": r["route"],
            **{
                name: _money(r[f"s_{name}"]) if name.endswith("_usd") else int(r[f"s_{name}"] or 0)
                for name in sums
            },
        }
        for r in rows
    ]


@dataclass(frozen=True)
class Mover:
    """A feature's spend over the last 7 days against the 7 days before."""

    feature_id: int
    feature_slug: str
    feature_name: str
    this_week: Decimal
    last_week: Decimal
    change: Decimal
    change_pct: float | None  # None: nothing spent the week before


def movers(
    per_feature_day: Mapping[tuple[int, date], Decimal],
    *,
    last_day: date,
    names: Mapping[int, Feature],
    limit: int = MOVERS,
) -> list[Mover]:
    """Features whose spend changed most between the 7 days up to `last_day` and the 7 days before those."""
    week_start, prior_start = last_day - timedelta(days=6), last_day - timedelta(days=13)
    weeks: dict[int, list[Decimal]] = {}
    for (feature_id, day), cost in per_feature_day.items():
        if prior_start <= day <= last_day:
            pair = weeks.setdefault(feature_id, [ZERO, ZERO])
            pair[0 if day >= week_start else 1] += cost
    out = []
    for feature_id, (this, last) in weeks.items():
        feature = names.get(feature_id)
        change = this - last
        out.append(
            Mover(
                feature_id=feature_id,
                feature_slug=feature.slug if feature else str(feature_id),
                feature_name=feature.name if feature else str(feature_id),
                this_week=this,
                last_week=last,
                change=change,
                change_pct=float(change / last) if last else None,
            )
        )
    out.sort(key=lambda m: (-abs(m.change), m.feature_slug))
    return out[:limit]


@dataclass(frozen=True)
class SpendTotals:
    """Sums over a range: requests, attempts, fallbacks, spend against the all-frontier baseline."""

    requests: int
    attempts: int
    fallbacks: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal
    savings_usd: Decimal  # baseline minus cost
    fallback_rate: float


@dataclass(frozen=True)
class OverviewSummary(SpendTotals):
    """The overview's totals, with the small model's share and the calls an open breaker sent on."""

    small_requests: int
    small_share: float
    slm_unavailable: int  # calls an open breaker sent straight to the frontier (not fallbacks)
    slm_unavailable_share: float


@dataclass(frozen=True)
class TeamSpendRow(SpendTotals):
    """One team's totals over the range."""

    team_id: int
    team_slug: str
    team_name: str


@dataclass(frozen=True)
class FeatureSpendRow(TeamSpendRow):
    """One feature's totals over the range, and its share of the range's spend."""

    feature_id: int
    feature_slug: str
    feature_name: str
    feature_code: uuid.UUID | None  # None: the feature is gone or not visible
    share: float


@dataclass(frozen=True)
class ModelSpendBucket(SpendTotals):
    """Totals of one model on one route in one chart bucket (a UTC day, or an hour on short ranges)."""

    day: date | datetime
    model: str
    route: str


@dataclass(frozen=True)
class FallbackPoint:
    """Fallbacks in one chart bucket."""

    at: date | datetime
    requests: int
    fallbacks: int
    fallback_rate: float


@dataclass(frozen=True)
class Overview:
    """Every figure of the overview page for a range and scope."""

    summary: OverviewSummary
    month_spend_by_feature: dict[int, Decimal]
    month_to_date: Decimal
    projected_month_end: Decimal | None
    projected_low: Decimal | None
    projected_high: Decimal | None
    projection_model: str
    hosting_usd: Decimal
    hosted_hours: float
    monthly_hosting_usd: Decimal
    total_cost_usd: Decimal
    gross_savings_usd: Decimal
    baseline_usd: Decimal
    break_even_requests: int | None
    monthly_volume: int | None
    net_savings_usd: Decimal
    net_savings_pct: float | None
    by_feature: list[FeatureSpendRow]
    by_team: list[TeamSpendRow]
    granularity: str  # "hour" or "day"
    daily_by_model: list[ModelSpendBucket]
    fallback_trend: list[FallbackPoint]
    movers: list[Mover]
    open_alerts: int


def overview(*, filters: DashboardFilters, user: Any, now: datetime) -> Overview:
    """Every figure of the overview page for the filters, from one grouped read of the rollups."""
    scope = filters.scope()
    today = now.date()
    movers_end = min(filters.end, today)
    # the range, this month (forecast) and the two weeks the movers compare, each day read once
    cells = spend_cube_over(
        [
            (filters.start, filters.end),
            (today.replace(day=1), today),
            (movers_end - timedelta(days=13), movers_end),
        ],
        keys=["team_id", "feature_id", "model", "route", "fallback_reason"],
        **scope,
    )
    in_range = [c for c in cells if filters.start <= c["day"] <= filters.end]
    features = {f.pk: f for f in filters.features}
    teams = {t.pk: t for t in filters.teams}

    empty = {n: (ZERO if n.endswith("_usd") else 0) for n in CUBE_SUMS}
    summary = _derive(_fold(in_range, lambda c: 0, CUBE_SUMS).get(0) or empty)
    summary["small_requests"] = sum(c["requests"] for c in in_range if c["route"] == "small")
    summary["small_share"] = summary["small_requests"] / summary["requests"] if summary["requests"] else 0.0
    _count_slm_unavailable(summary, in_range)

    by_feature = []
    for (team_id, feature_id), row in _fold(
        in_range, lambda c: (c["team_id"], c["feature_id"]), CUBE_SUMS
    ).items():
        feature = features.get(feature_id)
        row.update(
            feature_id=feature_id,
            feature_slug=feature.slug if feature else str(feature_id),
            feature_name=feature.name if feature else str(feature_id),
            feature_code=feature.code if feature else None,
            team_id=team_id,
            team_slug=teams[team_id].slug if team_id in teams else str(team_id),
            team_name=teams[team_id].name if team_id in teams else str(team_id),
            share=float(row["cost_usd"] / summary["cost_usd"]) if summary["cost_usd"] else 0.0,
        )
        by_feature.append(_derive(row))
    by_feature.sort(key=lambda r: (-r["cost_usd"], r["feature_slug"]))

    by_team = []
    for team_id, row in _fold(in_range, lambda c: c["team_id"], CUBE_SUMS).items():
        team = teams.get(team_id)
        row.update(
            team_id=team_id,
            team_slug=team.slug if team else str(team_id),
            team_name=team.name if team else str(team_id),
        )
        by_team.append(_derive(row))
    by_team.sort(key=lambda r: (-r["cost_usd"], r["team_slug"]))

    granularity = "hour" if filters.days <= HOURLY_MAX_DAYS else "day"
    # ranges of a day or two chart hourly buckets (one more, small, read); longer ones daily buckets
    buckets = hourly_cells(filters=filters) if granularity == "hour" else in_range
    daily_by_model = [
        ModelSpendBucket(**_derive({"day": day, "model": model, "route": route, **row}))
        for (day, model, route), row in sorted(
            _fold(buckets, lambda c: (c["day"], c["model"], c["route"]), CUBE_SUMS).items()
        )
    ]
    fallback_trend = [
        FallbackPoint(
            at=day,
            requests=row["requests"],
            fallbacks=row["fallbacks"],
            fallback_rate=row["fallbacks"] / row["requests"] if row["requests"] else 0.0,
        )
        for day, row in sorted(_fold(buckets, lambda c: c["day"], ["requests", "fallbacks"]).items())
    ]
    per_day = {day: row["cost_usd"] for day, row in _fold(cells, lambda c: c["day"], ["cost_usd"]).items()}
    month = month_forecast(now=now, per_day=per_day)
    forecast = month.forecast
    per_feature_day = {
        key: row["cost_usd"]
        for key, row in _fold(cells, lambda c: (c["feature_id"], c["day"]), ["cost_usd"]).items()
    }

    monthly_hosting = small_model_monthly_hosting()
    hosting, hosted_hours = hosting_for_range(start=filters.start_at, end=filters.end_at, now=now)
    if hosting and filters.is_scoped:
        # shared hosting is charged to each scope by its share of the small model's requests
        org_small = rollups_in(start=filters.start_at, end=filters.end_at).aggregate(
            n=Sum("requests", filter=Q(route="small"))
        )["n"]
        share = summary["small_requests"] / org_small if org_small else 0.0
        hosting = (hosting * Decimal(str(share))).quantize(CENTS)
    net_savings = summary["savings_usd"] - hosting
    baseline = summary["baseline_cost_usd"]
    range_hours = (min(filters.end_at, now) - filters.start_at).total_seconds() / 3600
    monthly_volume = round(summary["requests"] / range_hours * 24 * 365.25 / 12) if range_hours >= 1 else None
    month_start = today.replace(day=1)
    month_spend = {
        feature_id: row["cost_usd"]
        for feature_id, row in _fold(
            (c for c in cells if month_start <= c["day"] <= today), lambda c: c["feature_id"], ["cost_usd"]
        ).items()
    }
    return Overview(
        summary=OverviewSummary(**summary),
        month_spend_by_feature=month_spend,
        month_to_date=month.month_to_date,
        projected_month_end=forecast.projection,
        projected_low=forecast.low,
        projected_high=forecast.high,
        projection_model=forecast.model,
        hosting_usd=hosting,
        hosted_hours=hosted_hours,
        monthly_hosting_usd=monthly_hosting,
        total_cost_usd=summary["cost_usd"] + hosting,
        gross_savings_usd=summary["savings_usd"],
        baseline_usd=baseline,
        break_even_requests=break_even_requests(
            monthly_hosting=monthly_hosting,
            gross_savings=summary["savings_usd"],
            requests=summary["requests"],
        ),
        monthly_volume=monthly_volume,
        net_savings_usd=net_savings,
        net_savings_pct=float(net_savings / baseline) if baseline else None,
        by_feature=[FeatureSpendRow(**row) for row in by_feature],
        by_team=[TeamSpendRow(**row) for row in by_team],
        granularity=granularity,
        daily_by_model=daily_by_model,
        fallback_trend=fallback_trend,
        movers=movers(per_feature_day, last_day=movers_end, names=features),
        open_alerts=open_alerts(user=user, filters=filters),
    )


# Feature page ---------------------------------------------------------------------------------------------------

FEATURE_SUMS = [*CUBE_SUMS, *LATENCY_BUCKETS]


@dataclass(frozen=True)
class ModelLatency:
    """One model's attempt latency in a range: median and 95th percentile (ms, from the rollup buckets)."""

    model: str
    p50: float | None
    p95: float | None
    count: int


@dataclass(frozen=True)
class FallbackReason:
    """Fallbacks of one reason in a range, and their share of the requests."""

    reason: str
    fallbacks: int
    rate: float


def _latency_rows(cells: Iterable[Mapping[str, Any]]) -> list[ModelLatency]:
    rows = []
    for model, row in sorted(_fold(cells, lambda c: c["model"], LATENCY_BUCKETS).items()):
        counts = [row[name] for name in LATENCY_BUCKETS]
        rows.append(
            ModelLatency(
                model=model,
                p50=percentile_from_buckets(counts, 0.5),
                p95=percentile_from_buckets(counts, 0.95),
                count=sum(counts),
            )
        )
    return rows


def _count_slm_unavailable(row: dict[str, Any], cells: Iterable[Mapping[str, Any]]) -> None:
    """Calls an open breaker sent straight to the frontier: shown apart, never as fallbacks."""
    row["slm_unavailable"] = sum(c["requests"] for c in cells if c["fallback_reason"] == SLM_UNAVAILABLE)
    row["slm_unavailable_share"] = row["slm_unavailable"] / row["requests"] if row["requests"] else 0.0


def _reasons(cells: Iterable[Mapping[str, Any]], requests: int) -> list[FallbackReason]:
    folded = _fold((c for c in cells if c["fallback_reason"]), lambda c: c["fallback_reason"], ["fallbacks"])
    out = [
        FallbackReason(
            reason=reason,
            fallbacks=row["fallbacks"],
            rate=row["fallbacks"] / requests if requests else 0.0,
        )
        for reason, row in folded.items()
        if row["fallbacks"]
    ]
    out.sort(key=lambda r: (-r.fallbacks, r.reason))
    return out


@dataclass(frozen=True)
class DaySpend:
    """Spend up to and including one day (cumulative), spent or forecast."""

    day: date
    cost_usd: Decimal


@dataclass(frozen=True)
class ForecastBand:
    """The forecast's interval on one day ahead."""

    day: date
    low: Decimal
    high: Decimal


@dataclass(frozen=True)
class BurnDown:
    """A month's cumulative spend, the forecast path to month end with its band, and the budget if any."""

    days: list[DaySpend]
    projection: list[DaySpend]
    band: list[ForecastBand]
    month_to_date: Decimal
    projected_month_end: Decimal | None
    projected_low: Decimal | None
    projected_high: Decimal | None
    month_start: date
    month_end: date
    budget_usd: Decimal | None


def burn_down(*, month: MonthSpend, budget_usd: Decimal | None) -> BurnDown:
    """Cumulative spend per day of the current UTC month, the forecast path to month end with its band, the budget."""
    forecast = month.forecast
    cumulative, running, day = [], ZERO, month.month_start
    while day <= month.today:
        running += month.per_day.get(day, ZERO)
        cumulative.append(DaySpend(day=day, cost_usd=running))
        day += timedelta(days=1)
    # the forecast replaces today's partial spend with a whole day's estimate, then adds the days after
    projection, total = [], running - month.per_day.get(month.today, ZERO)
    for day, amount in forecast.path:
        if day >= month.today:
            total += amount
            projection.append(DaySpend(day=day, cost_usd=total))
    band = []
    if forecast.low is not None and forecast.high is not None and projection:
        # the interval is known at month end; draw it widening with the square root of days ahead
        spread_low, spread_high = forecast.projection - forecast.low, forecast.high - forecast.projection
        for k, point in enumerate(projection, start=1):
            share = Decimal(str(math.sqrt(k / len(projection))))
            band.append(
                ForecastBand(
                    day=point.day,
                    low=max(running, point.cost_usd - spread_low * share),
                    high=point.cost_usd + spread_high * share,
                )
            )
    return BurnDown(
        days=cumulative,
        projection=projection,
        band=band,
        month_to_date=running,
        projected_month_end=forecast.projection,
        projected_low=forecast.low,
        projected_high=forecast.high,
        month_start=month.month_start,
        month_end=month.month_end,
        budget_usd=budget_usd,
    )


@dataclass(frozen=True)
class FeatureDay:
    """One day of a feature's traffic: requests by route, fallbacks, spend."""

    day: date
    requests: int
    small_requests: int
    frontier_requests: int
    fallbacks: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal
    cost_per_request: Decimal | None  # None: no requests that day


@dataclass(frozen=True)
class FeatureSpend:
    """The feature page's spend sections over a range, with this month's burn-down."""

    daily: list[FeatureDay]
    requests: int
    cost_usd: Decimal
    cost_per_request: Decimal | None
    small_requests: int
    frontier_requests: int
    small_share: float
    slm_unavailable: int  # calls an open breaker sent straight to the frontier (not fallbacks)
    slm_unavailable_share: float
    fallbacks: list[FallbackReason]
    latency: list[ModelLatency]
    burn_down: BurnDown


def feature_page(*, feature: Feature, filters: DashboardFilters, now: datetime) -> FeatureSpend:
    """The feature page's figures from one grouped read (range and this month) of the feature's rollups."""

    today = now.date()
    cells = spend_cube_over(
        [(filters.start, filters.end), (today.replace(day=1), today)],
        keys=["route", "model", "fallback_reason"],
        sums=FEATURE_SUMS,
        features=[feature.pk],
        **filters.narrows,
    )
    in_range = [c for c in cells if filters.start <= c["day"] <= filters.end]
    daily = []
    for day, row in sorted(_fold(in_range, lambda c: c["day"], CUBE_SUMS).items()):
        small = sum(c["requests"] for c in in_range if c["day"] == day and c["route"] == "small")
        daily.append(
            FeatureDay(
                day=day,
                requests=row["requests"],
                small_requests=small,
                frontier_requests=row["requests"] - small,
                fallbacks=row["fallbacks"],
                cost_usd=row["cost_usd"],
                baseline_cost_usd=row["baseline_cost_usd"],
                cost_per_request=(row["cost_usd"] / row["requests"]) if row["requests"] else None,
            )
        )
    requests = sum(d.requests for d in daily)
    cost = sum((d.cost_usd for d in daily), ZERO)
    small = sum(d.small_requests for d in daily)
    per_day = {day: row["cost_usd"] for day, row in _fold(cells, lambda c: c["day"], ["cost_usd"]).items()}
    budget = budget_for_feature(feature)
    unavailable: dict[str, Any] = {"requests": requests}
    _count_slm_unavailable(unavailable, in_range)
    return FeatureSpend(
        slm_unavailable=unavailable["slm_unavailable"],
        slm_unavailable_share=unavailable["slm_unavailable_share"],
        daily=daily,
        requests=requests,
        cost_usd=cost,
        cost_per_request=(cost / requests) if requests else None,
        small_requests=small,
        frontier_requests=requests - small,
        small_share=small / requests if requests else 0.0,
        fallbacks=_reasons(in_range, requests),
        latency=_latency_rows(in_range),
        burn_down=burn_down(
            month=month_forecast(now=now, per_day=per_day),
            budget_usd=budget.amount_usd if budget is not None and budget.is_active else None,
        ),
    )


# Routing analytics ------------------------------------------------------------------------------------------------


def feature_thresholds(feature_ids: Iterable[int]) -> dict[int | None, float | None]:
    """Threshold of each feature's routing policy; key None holds the default policy's."""

    ids = list(feature_ids)
    out: dict[int | None, float | None] = {}
    for feature_id, threshold in RoutingPolicy.objects.filter(
        Q(feature_id__in=ids) | Q(feature__isnull=True)
    ).values_list("feature_id", "threshold"):
        out[feature_id] = float(threshold) if threshold is not None else None
    return out


@dataclass(frozen=True)
class ScoreBucketFallbacks:
    """Requests whose complexity score fell in one tenth of [0, 1], and how many of them fell back."""

    bucket: str  # "0.3–0.4"
    requests: int
    fallbacks: int
    rate: float | None  # None: no requests in the bucket


@dataclass(frozen=True)
class FeatureRouting:
    """One feature's routing in a range: small-model share, fallbacks by reason and by score, its threshold."""

    feature_id: int
    feature_slug: str
    feature_name: str
    feature_code: uuid.UUID | None  # None: the feature is gone or not visible
    requests: int
    small_requests: int
    small_share: float
    fallbacks: int
    fallback_rate: float
    slm_unavailable: int  # calls an open breaker sent straight to the frontier (not fallbacks)
    slm_unavailable_share: float
    reasons: list[FallbackReason]
    score_histogram: list[int]  # requests per score tenth
    fallback_by_score: list[ScoreBucketFallbacks]
    threshold: float | None  # the feature's policy threshold, else the default policy's


@dataclass(frozen=True)
class RoutingAnalytics:
    """The routing analytics page: one row per feature with traffic, latency per model."""

    features: list[FeatureRouting]
    latency: list[ModelLatency]


def routing_analytics(*, filters: DashboardFilters) -> RoutingAnalytics:
    """Per feature: score histogram with its threshold, small-model share, fallback rate by reason; latency per model."""
    sums = ["requests", "fallbacks", *SCORE_BUCKETS, *FALLBACK_SCORE_BUCKETS, *LATENCY_BUCKETS]
    rows = (
        rollups_in(start=filters.start_at, end=filters.end_at, **filters.scope())
        .values("feature_id", "route", "model", "fallback_reason")
        .annotate(**{f"s_{name}": Sum(name) for name in sums})
        .order_by()
    )
    cells = [
        {
            "feature_id": r["feature_id"],
            "route": r["route"],
            "model": r["model"],
            "fallback_reason": r["fallback_reason"],
            **{name: int(r[f"s_{name}"] or 0) for name in sums},
        }
        for r in rows
    ]
    names = {f.pk: f for f in filters.features}
    per_feature = _fold(
        cells, lambda c: c["feature_id"], ["requests", *SCORE_BUCKETS, *FALLBACK_SCORE_BUCKETS]
    )
    thresholds = feature_thresholds(per_feature)
    features = []
    for feature_id in sorted(per_feature, key=lambda i: names[i].slug if i in names else str(i)):
        total = per_feature[feature_id]
        mine = [c for c in cells if c["feature_id"] == feature_id]
        requests = total["requests"]
        small = sum(c["requests"] for c in mine if c["route"] == "small")
        reasons = _reasons(mine, requests)
        fallbacks = sum(r.fallbacks for r in reasons)
        feature = names.get(feature_id)
        unavailable: dict[str, Any] = {"requests": requests}
        _count_slm_unavailable(unavailable, mine)
        features.append(
            FeatureRouting(
                feature_id=feature_id,
                feature_slug=feature.slug if feature else str(feature_id),
                feature_name=feature.name if feature else str(feature_id),
                feature_code=feature.code if feature else None,
                requests=requests,
                small_requests=small,
                small_share=small / requests if requests else 0.0,
                fallbacks=fallbacks,
                fallback_rate=fallbacks / requests if requests else 0.0,
                slm_unavailable=unavailable["slm_unavailable"],
                slm_unavailable_share=unavailable["slm_unavailable_share"],
                reasons=reasons,
                score_histogram=[total[name] for name in SCORE_BUCKETS],
                fallback_by_score=[
                    ScoreBucketFallbacks(
                        bucket=f"{k / 10:.1f}–{(k + 1) / 10:.1f}",
                        requests=total[requests_name],
                        fallbacks=total[fallback_name],
                        rate=total[fallback_name] / total[requests_name] if total[requests_name] else None,
                    )
                    for k, (requests_name, fallback_name) in enumerate(
                        zip(SCORE_BUCKETS, FALLBACK_SCORE_BUCKETS, strict=True)
                    )
                ],
                threshold=thresholds.get(feature_id, thresholds.get(None)),
            )
        )
    return RoutingAnalytics(features=features, latency=_latency_rows(cells))


# Per-role landing ----------------------------------------------------------------------------------------------------

# What a feature's users experience once its budget reaches 100 % (shown beside the budget choices too)
ACTION_EFFECTS = {
    "alert": "Nothing changes for users: calls are served as before and the owners get an alert.",
    "degrade": (
        "Every call goes to the small model: users keep getting answers, but complex prompts may get "
        "weaker ones, until the month ends or the budget is raised."
    ),
    "block": (
        "Calls are refused (HTTP 429): users of the feature get an error until the month ends or the "
        "budget is raised."
    ),
}


def landing_role(user: Any) -> str:
    """Which question the landing page answers first: "mlops", "pm" or "vp" (org-wide viewers and admins)."""

    if not getattr(user, "is_authenticated", False) or user.is_superuser:
        return "vp"
    roles = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    if Role.MLOPS in roles:
        return "mlops"
    if Role.PM in roles:
        return "pm"
    return "vp"


@dataclass(frozen=True)
class PmLandingRow:
    """One feature on the PM landing: this month's spend against its budget and what happens at 100 %."""

    feature: Feature
    spend_usd: Decimal
    budget_usd: Decimal | None
    used: float | None  # share of the budget spent; None without a budget
    runs_out_on: date | None
    forecast_basis: bool  # the run-out date comes from a forecast
    action: str | None  # the budget's action, as shown
    effect: str | None  # what users experience at 100 %
    over: bool


def pm_landing(*, features: Iterable[Feature], month_spend: Mapping[int, Decimal]) -> list[PmLandingRow]:
    """Per feature: this month's spend against its budget, the run-out date and what happens at 100 %."""

    features = list(features)
    budgets = {
        b.feature_id: b
        for b in Budget.objects.filter(feature__in=features, is_active=True).select_related("status")
    }
    rows = []
    for feature in features:
        budget = budgets.get(feature.pk)
        status = getattr(budget, "status", None) if budget else None
        spent = month_spend.get(feature.pk, ZERO)
        limit = budget.amount_usd if budget else None
        rows.append(
            PmLandingRow(
                feature=feature,
                spend_usd=spent,
                budget_usd=limit,
                used=float(spent / limit) if limit else None,
                runs_out_on=status.runs_out_on if status else None,
                forecast_basis=status is not None and status.projection_usd is not None,
                action=budget.get_action_display() if budget else None,
                effect=ACTION_EFFECTS[budget.action] if budget else None,
                over=bool(limit) and spent >= limit,
            )
        )
    rows.sort(key=lambda r: (-(r.used or -1), -r.spend_usd, r.feature.name))
    return rows


MLOPS_MIN_REQUESTS = 20


@dataclass(frozen=True)
class MlopsLanding:
    """The MLOps landing: features by fallback rate, the worst one with enough requests, the alert line."""

    features: list[FeatureRouting]
    worst: FeatureRouting | None
    alert_line: float
    worst_over_line: bool
    min_requests: int


def mlops_landing(*, filters: DashboardFilters) -> MlopsLanding:
    """Fallback rate and small-model share per feature, the worst one (with enough requests) and the alert line."""
    from django.conf import settings

    analytics = routing_analytics(filters=filters)
    line = float(getattr(settings, "ALERT_FALLBACK_THRESHOLD", "0.20"))
    rows = sorted(analytics.features, key=lambda f: (-f.fallback_rate, f.feature_name))
    candidates = [f for f in rows if f.requests >= MLOPS_MIN_REQUESTS]
    worst = candidates[0] if candidates else None
    return MlopsLanding(
        features=rows,
        worst=worst,
        alert_line=line,
        worst_over_line=worst is not None and worst.fallback_rate > line,
        min_requests=MLOPS_MIN_REQUESTS,
    )
