"""Plotly figures of the routing app (what-if curves, experiment comparisons) as pure functions: plain data in,
a figure dict out, no ORM. Rendered by templates/billing/_chart.html with plotly.js from our static files.

Readable without colour: each series has its own marker symbol or dash and a legend name; intervals
are shaded bands or error bars labelled in the legend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13}
BLUE, RED, GREEN, GREY = "#2b59c3", "#d1495b", "#00798c", "#5c6b73"


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0, "xanchor": "left"},
        "font": FONT,
        "margin": {"l": 60, "r": 60, "t": 50, "b": 60},
        "legend": {"orientation": "h", "y": -0.25},
        "plot_bgcolor": "#fff",
        "paper_bgcolor": "#fff",
        "height": 360,
    }
    layout.update(extra)
    return layout


def _band(
    x: list[float], low: list[float], high: list[float], colour: str, name: str, axis: str = "y"
) -> list[dict]:
    return [
        {"type": "scatter", "x": x, "y": high, "mode": "lines", "line": {"width": 0}, "yaxis": axis,
         "showlegend": False, "hoverinfo": "skip", "legendgroup": name},
        {"type": "scatter", "x": x, "y": low, "mode": "lines", "line": {"width": 0}, "fill": "tonexty", "yaxis": axis,
         "fillcolor": colour + "33", "name": name, "hoverinfo": "skip", "legendgroup": name},
    ]  # fmt: skip


def _marker_line(x: float, label: str, dash: str, colour: str) -> tuple[dict[str, Any], dict[str, Any]]:
    shape = {"type": "line", "x0": x, "x1": x, "yref": "paper", "y0": 0, "y1": 1,
             "line": {"color": colour, "dash": dash, "width": 2}}  # fmt: skip
    note = {"x": x, "y": 1.02, "yref": "paper", "text": label, "showarrow": False, "font": {"size": 11}}
    return shape, note


def whatif_figure(
    points: Sequence[Mapping[str, Any]], *, current: float | None = None, selected: float | None = None
) -> dict[str, Any] | None:
    """Small-model share and expected fallback rate (left, %) and savings (right, USD) against the threshold.

    `points` are ThresholdPoint.as_dict() rows; the current and the selected thresholds are marked."""
    if not points:
        return None
    x = [float(p["threshold"]) for p in points]
    share = [float(p["small_share"]) * 100 for p in points]
    fallback = [float(p["fallback_rate"]) * 100 for p in points]
    savings = [float(p["savings_usd"]) for p in points]
    data: list[dict[str, Any]] = [
        *_band(x, [float(p["small_share_low"]) * 100 for p in points],
               [float(p["small_share_high"]) * 100 for p in points], BLUE, "Small share 95 % interval"),
        {"type": "scatter", "x": x, "y": share, "mode": "lines", "name": "Small-model share (%)",
         "line": {"color": BLUE, "width": 2}},
        *_band(x, [float(p["fallback_rate_low"]) * 100 for p in points],
               [float(p["fallback_rate_high"]) * 100 for p in points], RED, "Fallback 95 % interval"),
        {"type": "scatter", "x": x, "y": fallback, "mode": "lines", "name": "Expected fallback rate (%)",
         "line": {"color": RED, "width": 2, "dash": "dot"}},
        *_band(x, [float(p["savings_low_usd"]) for p in points], [float(p["savings_high_usd"]) for p in points],
               GREEN, "Savings 95 % interval", axis="y2"),
        {"type": "scatter", "x": x, "y": savings, "mode": "lines", "name": "Savings vs all-frontier (USD)",
         "yaxis": "y2", "line": {"color": GREEN, "width": 2, "dash": "dash"}},
    ]  # fmt: skip
    shapes, notes = [], []
    if current is not None:
        shape, note = _marker_line(current, f"current {current:g}", "solid", GREY)
        shapes.append(shape)
        notes.append(note)
    if selected is not None and (current is None or abs(selected - current) > 1e-9):
        shape, note = _marker_line(selected, f"selected {selected:g}", "dashdot", "#000000")
        shapes.append(shape)
        notes.append(note)
    return {
        "data": data,
        "layout": _layout(
            "What this threshold would have done",
            xaxis={"title": {"text": "Threshold (calls scoring below it go small)"}, "range": [0, 1.01]},
            yaxis={"title": {"text": "% of calls"}, "range": [0, 100]},
            yaxis2={
                "title": {"text": "USD saved"},
                "overlaying": "y",
                "side": "right",
                "rangemode": "tozero",
            },
            shapes=shapes,
            annotations=notes,
            hovermode="x unified",
        ),
    }


def experiment_differences_figure(
    comparisons: Sequence[Mapping[str, Any]], *, metric: str, title: str, scale: float = 1.0, unit: str = ""
) -> dict[str, Any] | None:
    """Each arm minus control for one metric: the estimate with its always-valid interval, and the zero line."""
    rows = [c for c in comparisons if c.get(metric, {}).get("estimate") is not None]
    if not rows:
        return None
    names, estimates, plus, minus = [], [], [], []
    for row in rows:
        diff = row[metric]
        estimate = float(diff["estimate"]) * scale
        low = diff["low"] if diff["low"] is not None else diff["estimate"]
        high = diff["high"] if diff["high"] is not None else diff["estimate"]
        names.append(f"{row['arm']} − control")
        estimates.append(estimate)
        plus.append(float(high) * scale - estimate)
        minus.append(estimate - float(low) * scale)
    return {
        "data": [
            {
                "type": "scatter",
                "x": estimates,
                "y": names,
                "mode": "markers",
                "name": f"difference{unit} with always-valid interval",
                "marker": {"symbol": "diamond", "size": 11, "color": BLUE},
                "error_x": {"type": "data", "array": plus, "arrayminus": minus, "visible": True},
            }
        ],
        "layout": _layout(
            title,
            height=140 + 50 * len(rows),
            xaxis={"title": {"text": f"treatment − control{unit}"}, "zeroline": True, "zerolinewidth": 2},
            yaxis={"automargin": True},
            showlegend=True,
        ),
    }


def experiment_arms_figure(arms: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Cost per request per arm (bars, patterned) with requests as text labels."""
    rows = [a for a in arms if a.get("cost_per_request") is not None]
    if not rows:
        return None
    patterns = ["", "/", "x", "."]
    return {
        "data": [
            {
                "type": "bar",
                "x": [a["name"] for a in rows],
                "y": [float(a["cost_per_request"]) for a in rows],
                "text": [f"{a['requests']} requests" for a in rows],
                "textposition": "auto",
                "name": "cost per request (USD)",
                "marker": {"color": BLUE, "pattern": {"shape": [patterns[i % 4] for i in range(len(rows))]}},
            }
        ],
        "layout": _layout(
            "Cost per request by arm", yaxis={"title": {"text": "USD per request"}}, showlegend=True
        ),
    }
