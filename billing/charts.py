"""Plotly figures for the dashboards, as pure functions: the selectors' plain results in, a figure dict out (no ORM).

Every figure is readable without colour: bars carry fill patterns and direct value labels, lines carry
marker symbols and labels, and the legend names each series. A function returns None when it has no
data, so the template shows the empty state instead of a blank chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from billing.selectors.dashboards import (
    BurnDown,
    FallbackPoint,
    FallbackReason,
    FeatureDay,
    FeatureRouting,
    ModelLatency,
    ModelSpendBucket,
    SpendTotals,
)

PATTERNS = ["", "/", "x", ".", "\\", "+", "-", "|"]
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon"]
COLOURS = ["#2b59c3", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6a9f", "#5c6b73", "#c05746"]
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0, "xanchor": "left"},
        "font": FONT,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
        "plot_bgcolor": "#fff",
        "paper_bgcolor": "#fff",
        "height": 340,
        # axes grow their margins to fit their tick labels, so no category name is clipped
        "xaxis": {"automargin": True},
        "yaxis": {"automargin": True},
    }
    for key, value in extra.items():
        if key in ("xaxis", "yaxis") and isinstance(value, dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


USD_AXIS = {"tickprefix": "$", "tickformat": ",.4~f", "rangemode": "tozero"}
PCT_AXIS = {"ticksuffix": "%", "tickformat": ",.1~f", "rangemode": "tozero"}
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def time_axis(start: date, end: date, granularity: str) -> dict[str, Any]:
    """A date x-axis over the inclusive days [start, end]: hourly or daily ticks, never sub-hour ones.

    Hourly: ticks every 3 hours on one day, every 6 on two, labelled "HH:MM" over the day. Daily: at most
    about ten day ticks ("Nov 3"). The range is explicit, so a single bucket does not zoom to milliseconds.
    """
    days = (end - start).days + 1
    first = datetime(start.year, start.month, start.day, tzinfo=UTC)
    last = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    if granularity == "hour":
        return {
            "type": "date",
            "range": [_stamp(first), _stamp(last)],
            "dtick": HOUR_MS * (3 if days <= 1 else 6),
            "tick0": _stamp(first),
            "tickformat": "%H:%M\n%b %-d",
            "hoverformat": "%b %-d %H:%M UTC",
        }
    return {
        "type": "date",
        "range": [_stamp(first - timedelta(hours=12)), _stamp(last - timedelta(hours=12))],
        "dtick": DAY_MS * max(1, math.ceil(days / 10)),
        "tick0": _stamp(first),
        "tickformat": "%b %-d",
        "hoverformat": "%b %-d %Y",
    }


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M")


def _bar_width(granularity: str) -> int:
    return int((HOUR_MS if granularity == "hour" else DAY_MS) * 0.8)


def _usd(value: Decimal | float | int) -> float:
    """Money to a float for plotting only (the table and CSV show the Decimal)."""
    return float(value)


def usd_label(value: Decimal | float | int) -> str:
    amount = float(value)
    sign, amount = ("−" if amount < 0 else ""), abs(amount)
    if amount >= 1000:
        text = f"{amount:,.0f}"
    elif amount >= 1 or amount == 0:
        text = f"{amount:,.2f}"
    elif amount >= 0.01:
        text = f"{amount:.4f}"
    else:  # sub-cent amounts (a call's cost): three significant digits, never "0.0000"
        text = f"{amount:.{2 - math.floor(math.log10(amount))}f}"
    return f"{sign}${text}"


def pct_label(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _day(value: Any) -> str:
    """A bucket as plotly reads it: a date, or an hour (UTC) for hourly buckets."""
    if isinstance(value, datetime):
        return _stamp(value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value)
    return value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)


def daily_spend_by_model(
    rows: Sequence[ModelSpendBucket],
    *,
    start: date | None = None,
    end: date | None = None,
    granularity: str = "day",
) -> dict[str, Any] | None:
    """Stacked bars: spend per UTC day (or hour), one patterned series per served model, totals on top."""
    if not rows:
        return None
    days = sorted({_day(r.day) for r in rows})
    models = sorted({r.model for r in rows})
    cost: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (_day(r.day), r.model)
        cost[key] = cost.get(key, 0.0) + _usd(r.cost_usd)
    data = []
    for i, model in enumerate(models):
        values = [cost.get((day, model), 0.0) for day in days]
        data.append(
            {
                "type": "bar",
                "name": model,
                "x": days,
                "y": values,
                "marker": {
                    "color": COLOURS[i % len(COLOURS)],
                    "pattern": {"shape": PATTERNS[i % len(PATTERNS)]},
                },
                "hovertemplate": f"{model}<br>%{{x}}: $%{{y:,.4~f}}<extra></extra>",
                "width": _bar_width(granularity),
            }
        )
    totals = [sum(cost.get((day, m), 0.0) for m in models) for day in days]
    data.append(
        {
            "type": "scatter",
            "mode": "text",
            "name": "day total",
            "x": days,
            "y": totals,
            "text": [usd_label(t) for t in totals],
            "textposition": "top center",
            "showlegend": False,
            "hoverinfo": "skip",
        }
    )
    per = "Hourly" if granularity == "hour" else "Daily"
    # headroom above the tallest bar for its total label, so no label is clipped
    extra: dict[str, Any] = {"yaxis": {"title": "USD", **USD_AXIS, "range": [0, max(totals) * 1.18 or 1]}}
    if start is not None and end is not None:
        extra["xaxis"] = time_axis(start, end, granularity)
    return {
        "data": data,
        "layout": _layout(f"{per} spend by served model (USD)", barmode="stack", **extra),
    }


def spend_bars(
    rows: Sequence[SpendTotals], *, label_key: str, title: str, limit: int = 15
) -> dict[str, Any] | None:
    """Horizontal bars of cost per label (team or feature), most expensive on top, each bar labelled with its amount."""
    rows = [r for r in rows if r.cost_usd][:limit]
    if not rows:
        return None
    labels = [str(getattr(r, label_key)) for r in rows][::-1]
    values = [_usd(r.cost_usd) for r in rows][::-1]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "name": "spend",
                "x": values,
                "y": labels,
                "text": [usd_label(v) for v in values],
                "textposition": "outside",
                "cliponaxis": False,
                "marker": {"color": COLOURS[0], "pattern": {"shape": "/"}},
                "hovertemplate": "%{y}: $%{x:,.2f}<extra></extra>",
            }
        ],
        "layout": _layout(
            title,
            height=max(220, 60 + 34 * len(rows)),
            margin={"l": 20, "r": 20, "t": 50, "b": 40},
            showlegend=False,
            # headroom right of the longest bar for its outside label
            xaxis={"title": "USD", **USD_AXIS, "range": [0, max(values) * 1.3]},
        ),
    }


def rate_trend(
    points: Sequence[FallbackPoint],
    *,
    title: str | None = None,
    start: date | None = None,
    end: date | None = None,
    granularity: str = "day",
) -> dict[str, Any] | None:
    """A line with markers and a percentage label on each point (days with requests only)."""
    points = [p for p in points if p.requests]
    if not points:
        return None
    x = [_day(p.at) for p in points]
    y = [p.fallback_rate * 100 for p in points]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers+text",
                "name": "fallback rate",
                "x": x,
                "y": y,
                "text": [f"{v:.1f}%" for v in y],
                "textposition": "top center",
                "marker": {"symbol": "circle", "size": 7, "color": COLOURS[1]},
                "line": {"color": COLOURS[1]},
                "customdata": [[p.fallbacks, p.requests] for p in points],
                "hovertemplate": "%{x}: %{y:.1f}% (%{customdata[0]} of %{customdata[1]})<extra></extra>",
            }
        ],
        "layout": _layout(
            title or f"Fallback rate per {granularity}",
            showlegend=False,
            yaxis={"title": "% of requests", **PCT_AXIS, "range": [0, max(y) * 1.2 or 1]},
            **(
                {"xaxis": time_axis(start, end, granularity)} if start is not None and end is not None else {}
            ),
        ),
    }


def burn_down(data: BurnDown) -> dict[str, Any] | None:
    """Cumulative month-to-date spend, the dashed forecast path with its shaded band, and the budget line if set."""
    days = data.days
    if not days:
        return None
    x = [_day(d.day) for d in days]
    y = [_usd(d.cost_usd) for d in days]
    series = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "spent so far",
            "x": x,
            "y": y,
            "marker": {"symbol": "circle", "color": COLOURS[0]},
            "line": {"color": COLOURS[0]},
        },
    ]
    projection = data.projection
    if projection:
        px = [x[-1]] + [_day(p.day) for p in projection]
        py = [y[-1]] + [_usd(p.cost_usd) for p in projection]
        series.append(
            {
                "type": "scatter",
                "mode": "lines+text",
                "name": "forecast",
                "x": px,
                "y": py,
                "text": [""] * (len(px) - 1) + [f"forecast {usd_label(data.projected_month_end)}"],
                "textposition": "top left",
                "line": {"dash": "dash", "color": COLOURS[2]},
            }
        )
    band = data.band
    if band:  # low/high per forecast day
        series.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "forecast band (90%)",
                "x": [_day(b.day) for b in band] + [_day(b.day) for b in reversed(band)],
                "y": [_usd(b.high) for b in band] + [_usd(b.low) for b in reversed(band)],
                "fill": "toself",
                "line": {"width": 0},
                "fillcolor": "rgba(237,174,73,0.25)",
            }
        )
    shapes, annotations = [], []
    if data.budget_usd is not None:
        budget = _usd(data.budget_usd)
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": budget,
                "y1": budget,
                "line": {"dash": "dot"},
            }
        )
        annotations.append(
            {
                "xref": "paper",
                "x": 0,
                "y": budget,
                "text": f"budget {usd_label(budget)}",
                "showarrow": False,
                "yshift": 10,
            }
        )
    return {
        "data": series,
        "layout": _layout(
            "Month-to-date spend and month-end forecast (USD)",
            shapes=shapes,
            annotations=annotations,
            yaxis={"title": "USD", **USD_AXIS},
            xaxis=time_axis(data.month_start, data.month_end, "day"),
        ),
    }


def daily_volume_split(daily: Sequence[FeatureDay]) -> dict[str, Any] | None:
    """Requests per day stacked by route (small vs frontier), patterned, with the day's total on top."""
    if not any(d.requests for d in daily):
        return None
    x = [_day(d.day) for d in daily]
    data = []
    routes = (
        ([d.small_requests for d in daily], "small model"),
        ([d.frontier_requests for d in daily], "frontier"),
    )
    for i, (requests, name) in enumerate(routes):
        data.append(
            {
                "type": "bar",
                "name": name,
                "x": x,
                "y": requests,
                "marker": {"color": COLOURS[i + 3], "pattern": {"shape": PATTERNS[i * 2]}},
            }
        )
    data.append(
        {
            "type": "scatter",
            "mode": "text",
            "name": "total",
            "x": x,
            "y": [d.requests for d in daily],
            "text": [f"{d.requests:,}" for d in daily],
            "textposition": "top center",
            "showlegend": False,
            "hoverinfo": "skip",
        }
    )
    return {
        "data": data,
        "layout": _layout("Requests per day by route", barmode="stack", yaxis={"title": "requests"}),
    }


def cost_per_request(daily: Sequence[FeatureDay]) -> dict[str, Any] | None:
    points = [d for d in daily if d.requests]
    if not points:
        return None
    y = [_usd(d.cost_per_request or 0) for d in points]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "cost per request",
                "x": [_day(d.day) for d in points],
                "y": y,
                "marker": {"symbol": "square", "color": COLOURS[0]},
                "hovertemplate": "%{x}: $%{y:.5f}<extra></extra>",
            }
        ],
        "layout": _layout("Cost per request (USD)", showlegend=False, yaxis={"title": "USD", **USD_AXIS}),
    }


def fallback_reasons(rows: Sequence[FallbackReason]) -> dict[str, Any] | None:
    """Bars of fallback rate per reason, labelled with the rate and the count."""
    if not rows:
        return None
    return {
        "data": [
            {
                "type": "bar",
                "name": "fallback rate",
                "x": [r.reason for r in rows],
                "y": [r.rate * 100 for r in rows],
                "text": [f"{r.rate * 100:.1f}% ({r.fallbacks:,})" for r in rows],
                "textposition": "outside",
                "cliponaxis": False,
                "marker": {"color": COLOURS[1], "pattern": {"shape": "x"}},
            }
        ],
        "layout": _layout("Fallback rate by reason", showlegend=False, yaxis={"title": "% of requests"}),
    }


def latency_by_model(rows: Sequence[ModelLatency]) -> dict[str, Any] | None:
    """Grouped bars p50 and p95 per model (ms), patterned and labelled."""
    rows = [r for r in rows if r.count]
    if not rows:
        return None
    models = [r.model for r in rows]
    data = []
    for i, key in enumerate(("p50", "p95")):
        values = [round((r.p50 if key == "p50" else r.p95) or 0) for r in rows]
        data.append(
            {
                "type": "bar",
                "name": key,
                "x": models,
                "y": values,
                "text": [f"{key} {v:,} ms" for v in values],
                "textposition": "outside",
                "cliponaxis": False,
                "marker": {"color": COLOURS[i * 3], "pattern": {"shape": PATTERNS[i * 2 + 1]}},
            }
        )
    return {"data": data, "layout": _layout("Latency per model (ms)", barmode="group", yaxis={"title": "ms"})}


def score_histogram(counts: Sequence[int], *, threshold: float | None, title: str) -> dict[str, Any] | None:
    """Requests per score decile, bars below the threshold patterned differently from those above, threshold marked."""
    if not sum(counts):
        return None
    x = [(k + 0.5) / len(counts) for k in range(len(counts))]
    below = [threshold is None or (k + 1) / len(counts) <= threshold for k in range(len(counts))]
    groups = (
        ((True, "requests", "", COLOURS[3]),)
        if threshold is None
        else ((True, "at or below threshold", "", COLOURS[3]), (False, "above threshold", "/", COLOURS[1]))
    )
    data = []
    for flag, name, pattern, colour in groups:
        data.append(
            {
                "type": "bar",
                "name": name,
                "x": [xi for xi, b in zip(x, below, strict=True) if b == flag],
                "y": [c for c, b in zip(counts, below, strict=True) if b == flag],
                "text": [f"{c:,}" for c, b in zip(counts, below, strict=True) if b == flag],
                "textposition": "outside",
                "cliponaxis": False,
                "width": 0.095,
                "marker": {"color": colour, "pattern": {"shape": pattern}},
            }
        )
    shapes, annotations = [], []
    if threshold is not None:
        shapes.append(
            {
                "type": "line",
                "x0": threshold,
                "x1": threshold,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"dash": "dash", "width": 2},
            }
        )
        annotations.append(
            {
                "x": threshold,
                "yref": "paper",
                "y": 1,
                "text": f"threshold {threshold:.2f}",
                "showarrow": False,
                "yshift": 8,
            }
        )
    else:
        title = f"{title} (no routing policy, so no threshold to mark)"
    return {
        "data": data,
        "layout": _layout(
            title,
            shapes=shapes,
            annotations=annotations,
            height=280,
            xaxis={"title": "complexity score", "range": [0, 1], "dtick": 0.1},
            yaxis={"title": "requests"},
        ),
    }


def small_share_bars(rows: Sequence[FeatureRouting]) -> dict[str, Any] | None:
    rows = [r for r in rows if r.requests]
    if not rows:
        return None
    values = [r.small_share * 100 for r in rows]
    return {
        "data": [
            {
                "type": "bar",
                "name": "small-model share",
                "x": [r.feature_slug for r in rows],
                "y": values,
                "text": [f"{v:.1f}%" for v in values],
                "textposition": "outside",
                "cliponaxis": False,
                "marker": {"color": COLOURS[3], "pattern": {"shape": "."}},
            }
        ],
        "layout": _layout(
            "Small-model share of requests", showlegend=False, yaxis={"title": "%", "range": [0, 100]}
        ),
    }


def fallback_reasons_by_feature(rows: Sequence[FeatureRouting]) -> dict[str, Any] | None:
    """Stacked bars: fallback rate per feature, one patterned segment per reason."""
    reasons = sorted({r.reason for row in rows for r in row.reasons})
    if not reasons:
        return None
    x = [row.feature_slug for row in rows]
    data = []
    for i, reason in enumerate(reasons):
        values = [next((r.rate * 100 for r in row.reasons if r.reason == reason), 0.0) for row in rows]
        data.append(
            {
                "type": "bar",
                "name": reason,
                "x": x,
                "y": values,
                "text": [f"{v:.1f}%" if v else "" for v in values],
                "textposition": "inside",
                "marker": {
                    "color": COLOURS[i % len(COLOURS)],
                    "pattern": {"shape": PATTERNS[i % len(PATTERNS)]},
                },
            }
        )
    return {
        "data": data,
        "layout": _layout(
            "Fallback rate by reason, per feature", barmode="stack", yaxis={"title": "% of requests"}
        ),
    }
