"""Dashboard pages: overview (VP), the feature page's spend sections (PM), routing analytics (MLOps), exports.

One URL serves each page, its htmx fragment (filters swap the body, the URL carries them) and, with
`?format=csv&table=<name>`, any of its tables as CSV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_htmx.http import push_url

from billing import charts, exports, selectors
from controlplane.http import wants_fragment
from controlplane.permissions import feature_for_user

Table = tuple[Sequence[str], Callable[[Any], list[Sequence[Any]]]]  # header, rows of a selector's result


def _csv_or_none(request: HttpRequest, page: str, tables: dict[str, Table], data: Any) -> HttpResponse | None:
    if request.GET.get("format") != "csv":
        return None
    name = request.GET.get("table", "")
    if name not in tables:
        return HttpResponse(
            f"table: unknown table {name!r}; use one of {', '.join(sorted(tables))}.",
            status=400,
            content_type="text/plain",
        )
    header, rows = tables[name]
    return exports.csv_response(f"{page}-{name}.csv", header, rows(data))


def _status(request: HttpRequest, filters: selectors.DashboardFilters) -> int:
    """400 for bad filters, except to htmx, which swaps only 2xx answers and must show the message."""
    return 400 if filters.errors and not wants_fragment(request) else 200


def _filters(request: HttpRequest, **kw: Any) -> selectors.DashboardFilters:
    return selectors.dashboard_filters(request.GET, user=request.user, today=timezone.now().date(), **kw)


# Overview ---------------------------------------------------------------------------------------------------------

OVERVIEW_TABLES: dict[str, Table] = {
    "teams": (
        ["team", "requests", "cost_usd", "baseline_cost_usd", "savings_usd", "fallback_rate"],
        lambda d: [
            [
                r.team_slug,
                r.requests,
                r.cost_usd,
                r.baseline_cost_usd,
                r.savings_usd,
                r.fallback_rate,
            ]
            for r in d.by_team
        ],
    ),
    "features": (
        ["feature", "team", "requests", "cost_usd", "baseline_cost_usd", "savings_usd", "fallback_rate"],
        lambda d: [
            [
                r.feature_slug,
                r.team_slug,
                r.requests,
                r.cost_usd,
                r.baseline_cost_usd,
                r.savings_usd,
                r.fallback_rate,
            ]
            for r in d.by_feature
        ],
    ),
    "daily": (
        ["day", "model", "route", "requests", "attempts", "cost_usd", "baseline_cost_usd"],
        lambda d: [
            [
                r.day,
                r.model,
                r.route,
                r.requests,
                r.attempts,
                r.cost_usd,
                r.baseline_cost_usd,
            ]
            for r in d.daily_by_model
        ],
    ),
    "fallbacks": (
        ["day", "requests", "fallbacks", "fallback_rate"],
        lambda d: [[p.at, p.requests, p.fallbacks, p.fallback_rate] for p in d.fallback_trend],
    ),
    "movers": (
        ["feature", "this_week_usd", "last_week_usd", "change_usd", "change_pct"],
        lambda d: [[m.feature_slug, m.this_week, m.last_week, m.change, m.change_pct] for m in d.movers],
    ),
}


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    data = selectors.overview(filters=filters, user=request.user, now=timezone.now())
    csv = _csv_or_none(request, "overview", OVERVIEW_TABLES, data)
    if csv is not None:
        return csv
    role = selectors.landing_role(request.user)
    landing: dict[str, Any] = {"role": role}
    if role == "pm":
        scoped = [f for f in filters.features if filters.feature is None or f == filters.feature]
        landing["pm"] = selectors.pm_landing(
            features=[f for f in scoped if filters.team is None or f.team_id == filters.team.pk],
            month_spend=data.month_spend_by_feature,
        )
    elif role == "mlops":
        landing["mlops"] = selectors.mlops_landing(filters=filters)
    context = {
        "landing": landing,
        "filters": filters,
        "data": data,
        "charts": {
            "daily": charts.daily_spend_by_model(
                data.daily_by_model, start=filters.start, end=filters.end, granularity=data.granularity
            ),
            "teams": charts.spend_bars(data.by_team, label_key="team_name", title="Spend by team (USD)"),
            "features": charts.spend_bars(
                data.by_feature, label_key="feature_name", title="Spend by feature (USD)"
            ),
            "fallbacks": charts.rate_trend(
                data.fallback_trend, start=filters.start, end=filters.end, granularity=data.granularity
            ),
        },
        "has_traffic": bool(data.summary.requests or data.month_to_date),
    }
    template = "billing/_overview_body.html" if wants_fragment(request) else "billing/overview.html"
    return render(request, template, context, status=_status(request, filters))


# Feature page: its spend sections, loaded by hx-get --------------------------------------------------------

# tables the feature page and routing analytics both export
LATENCY_HEADER = ["model", "p50_ms", "p95_ms", "attempts"]


def _latency_table(rows: Sequence[selectors.ModelLatency]) -> list[Sequence[Any]]:
    return [[r.model, r.p50, r.p95, r.count] for r in rows]


FALLBACK_BY_SCORE_TABLE: Table = (
    ["feature", "score_bucket", "requests", "fallbacks", "fallback_rate"],
    lambda d: [
        [f.feature_slug, b.bucket, b.requests, b.fallbacks, "" if b.rate is None else b.rate]
        for f in d.features
        for b in f.fallback_by_score
    ],
)


FEATURE_TABLES: dict[str, Table] = {
    "daily": (
        [
            "day",
            "requests",
            "small_requests",
            "frontier_requests",
            "fallbacks",
            "cost_usd",
            "cost_per_request_usd",
        ],
        lambda d: [
            [
                r.day,
                r.requests,
                r.small_requests,
                r.frontier_requests,
                r.fallbacks,
                r.cost_usd,
                r.cost_per_request,
            ]
            for r in d.daily
        ],
    ),
    "fallbacks": (
        ["reason", "fallbacks", "rate"],
        lambda d: [[r.reason, r.fallbacks, r.rate] for r in d.fallbacks],
    ),
    "latency": (LATENCY_HEADER, lambda d: _latency_table(d.latency)),
    # no fallback_by_score here: that table is routing analytics' (per feature); this page has no such data
}


FEATURE_SPEND_LOADER = "feature-spend-loader"  # the feature page's placeholder that loads this section


@login_required
@require_GET
def feature_spend(request: HttpRequest, code: str) -> HttpResponse:
    """The feature page's spend and routing sections (loaded by hx-get), or one of their tables as CSV.

    Filters and presets swap the section again; the browser's address stays on the feature page."""
    feature = feature_for_user(request.user, code)
    now = timezone.now()
    filters = _filters(request, default_start=(now - timedelta(days=29)).date(), scope_feature=feature)
    data = selectors.feature_page(feature=feature, filters=filters, now=now)
    csv = _csv_or_none(request, f"feature-{feature.slug}", FEATURE_TABLES, data)
    if csv is not None:
        return csv
    page_url = reverse("feature-detail", args=[feature.code])
    context = {
        "feature": feature,
        "filters": filters,
        "spend": data,
        "page_url": page_url,
        "fragment_url": request.path,
        "blocked_today": selectors.feature_blocked_since(
            feature=feature, since=now.replace(hour=0, minute=0, second=0, microsecond=0)
        ),
        "spend_charts": {
            "burn_down": charts.burn_down(data.burn_down),
            "volume": charts.daily_volume_split(data.daily),
            "cost_per_request": charts.cost_per_request(data.daily),
            "fallbacks": charts.fallback_reasons(data.fallbacks),
            "latency": charts.latency_by_model(data.latency),
        },
    }
    response = render(request, "billing/_feature_sections.html", context, status=_status(request, filters))
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.trigger != FEATURE_SPEND_LOADER:  # a filter or preset: the address follows the choice
        query = request.GET.urlencode()
        push_url(response, f"{page_url}?{query}" if query else page_url)
    return response


# Routing analytics -------------------------------------------------------------------------------------------------

ROUTING_TABLES: dict[str, Table] = {
    "features": (
        ["feature", "requests", "small_requests", "small_share", "fallbacks", "fallback_rate", "threshold"],
        lambda d: [
            [
                f.feature_slug,
                f.requests,
                f.small_requests,
                f.small_share,
                f.fallbacks,
                f.fallback_rate,
                f.threshold,
            ]
            for f in d.features
        ],
    ),
    "reasons": (
        ["feature", "reason", "fallbacks", "rate"],
        lambda d: [[f.feature_slug, r.reason, r.fallbacks, r.rate] for f in d.features for r in f.reasons],
    ),
    "scores": (
        ["feature", *[f"score_{k / 10:.1f}_{(k + 1) / 10:.1f}" for k in range(10)]],
        lambda d: [[f.feature_slug, *f.score_histogram] for f in d.features],
    ),
    "latency": (LATENCY_HEADER, lambda d: _latency_table(d.latency)),
    "fallback_by_score": FALLBACK_BY_SCORE_TABLE,
}


@login_required
@require_GET
def routing_analytics(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    data = selectors.routing_analytics(filters=filters)
    csv = _csv_or_none(request, "routing-analytics", ROUTING_TABLES, data)
    if csv is not None:
        return csv
    context = {
        "filters": filters,
        "data": data,
        "charts": {
            "small_share": charts.small_share_bars(data.features),
            "reasons": charts.fallback_reasons_by_feature(data.features),
            "latency": charts.latency_by_model(data.latency),
        },
        "score_charts": [
            (
                f,
                charts.score_histogram(
                    f.score_histogram, threshold=f.threshold, title=f"{f.feature_slug}: complexity scores"
                ),
            )
            for f in data.features
        ],
    }
    template = (
        "billing/_routing_analytics_body.html"
        if wants_fragment(request)
        else "billing/routing_analytics.html"
    )
    return render(request, template, context, status=_status(request, filters))


# FOCUS export --------------------------------------------------------------------------------------------------------


@login_required
@require_GET
def focus_export(request: HttpRequest) -> HttpResponse:
    """FOCUS 1.2 CSV of every attempt in the date range (and team/feature filters) the user may see."""
    filters = _filters(request)
    if filters.errors:
        return HttpResponse(" ".join(filters.errors.values()), status=400, content_type="text/plain")
    scope = filters.scope()
    return exports.focus_response(
        start=filters.start_at,
        end=filters.end_at,
        team_ids=scope["teams"],
        feature_ids=scope["features"],
        filename=f"focus-{filters.start}-{filters.end}.csv",
    )


# Request log ---------------------------------------------------------------------------------------------------------

REQUEST_LOG_LIMIT = 100


@login_required
@require_GET
def request_log(request: HttpRequest) -> HttpResponse:
    """The newest calls in scope: served model, fallback reason, cost, latency; filter by model, end user, fallback."""
    now = timezone.now()
    filters = _filters(request, default_start=now.date())
    scope = filters.where()
    model = filters.model or ""
    end_user = filters.end_user or ""
    fallback_only = request.GET.get("fallback") == "1"
    rows = selectors.request_list(
        start=filters.start_at,
        end=filters.end_at,
        teams=scope["teams"],
        features=scope["features"],
        fallback_only=fallback_only,
        model=model or None,
        end_user=end_user or None,
        limit=REQUEST_LOG_LIMIT,
    )
    features = {f.pk: f for f in filters.features}
    models = filters.model_choices
    context = {
        "filters": filters,
        "rows": [(r, features.get(r.feature_id)) for r in rows],
        "models": models,
        "model": model,
        "end_user": end_user,
        "fallback_only": fallback_only,
        "limit": REQUEST_LOG_LIMIT,
    }
    template = "billing/_request_log_body.html" if wants_fragment(request) else "billing/request_log.html"
    return render(request, template, context, status=_status(request, filters))
