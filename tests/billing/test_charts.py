"""billing.charts: pure figure builders (plain data in, plotly dicts out), readable without colour."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

from billing import charts
from billing.selectors import (
    BurnDown,
    DaySpend,
    FallbackPoint,
    FallbackReason,
    FeatureRouting,
    ForecastBand,
    ModelLatency,
    ModelSpendBucket,
    TeamSpendRow,
)


def _totals(cost: str) -> dict:
    """SpendTotals' fields for a row of this cost (the charts here read only the cost)."""
    return {
        "requests": 1,
        "attempts": 1,
        "fallbacks": 0,
        "cost_usd": Decimal(cost),
        "baseline_cost_usd": Decimal(cost),
        "savings_usd": Decimal("0"),
        "fallback_rate": 0.0,
    }


def _daily_rows():
    return [
        ModelSpendBucket(day=date(2026, 11, 1), model="slm", route="small", **_totals("1.50")),
        ModelSpendBucket(day=date(2026, 11, 1), model="frontier", route="frontier", **_totals("3.25")),
        ModelSpendBucket(day=date(2026, 11, 2), model="slm", route="small", **_totals("2.00")),
    ]


def test_every_builder_returns_none_without_data():
    assert charts.daily_spend_by_model([]) is None
    assert charts.spend_bars([], label_key="team_name", title="t") is None
    assert (
        charts.rate_trend([FallbackPoint(at=date(2026, 11, 1), requests=0, fallbacks=0, fallback_rate=0.0)])
        is None
    )
    assert charts.burn_down(_burn_down(days=[], projection=[], band=[])) is None
    assert charts.daily_volume_split([]) is None
    assert charts.fallback_reasons([]) is None
    assert charts.latency_by_model([ModelLatency(model="m", p50=None, p95=None, count=0)]) is None
    assert charts.score_histogram([0] * 10, threshold=0.5, title="t") is None
    assert charts.small_share_bars([]) is None
    no_fallbacks = FeatureRouting(
        feature_id=1, feature_slug="a", feature_name="A", feature_code=None, requests=10, small_requests=10,
        small_share=1.0, fallbacks=0, fallback_rate=0.0, slm_unavailable=0, slm_unavailable_share=0.0,
        reasons=[], score_histogram=[10] + [0] * 9, fallback_by_score=[], threshold=None,
    )  # fmt: skip
    assert charts.fallback_reasons_by_feature([no_fallbacks]) is None


def test_daily_spend_stacks_one_patterned_series_per_model_with_day_totals():
    figure = charts.daily_spend_by_model(_daily_rows())
    bars = [t for t in figure["data"] if t["type"] == "bar"]
    assert [b["name"] for b in bars] == ["frontier", "slm"]
    assert figure["layout"]["barmode"] == "stack"
    assert len({b["marker"]["pattern"]["shape"] for b in bars}) == 2  # told apart without colour
    assert bars[1]["x"] == ["2026-11-01", "2026-11-02"] and bars[1]["y"] == [1.5, 2.0]
    assert bars[0]["y"] == [3.25, 0.0]  # a model missing on a day stacks zero, not a gap
    totals = next(t for t in figure["data"] if t["type"] == "scatter")
    assert totals["text"] == ["$4.75", "$2.00"]
    json.dumps(figure)  # embeddable through json_script


def test_spend_bars_label_every_bar_with_its_amount_most_expensive_on_top():
    rows = [
        TeamSpendRow(team_id=1, team_slug="platform", team_name="Platform", **_totals("1234.5")),
        TeamSpendRow(team_id=2, team_slug="growth", team_name="Growth", **_totals("0.25")),
        TeamSpendRow(team_id=3, team_slug="idle", team_name="Idle", **_totals("0")),
    ]
    bar = charts.spend_bars(rows, label_key="team_name", title="Spend by team")["data"][0]
    assert bar["y"] == ["Growth", "Platform"]  # plotly draws the first label at the bottom
    assert bar["text"] == ["$0.2500", "$1,234"]


def test_rate_trend_skips_days_without_requests_and_labels_points():
    points = [
        FallbackPoint(at=date(2026, 11, 1), requests=200, fallbacks=10, fallback_rate=0.05),
        FallbackPoint(at=date(2026, 11, 2), requests=0, fallbacks=0, fallback_rate=0.0),
    ]
    trace = charts.rate_trend(points)["data"][0]
    assert trace["x"] == ["2026-11-01"] and trace["y"] == [5.0] and trace["text"] == ["5.0%"]


def test_score_histogram_marks_the_threshold_and_splits_bars_at_it():
    counts = [5, 10, 20, 30, 40, 30, 20, 10, 5, 1]
    figure = charts.score_histogram(counts, threshold=0.6, title="ticket-summary")
    below, above = figure["data"]
    assert sum(below["y"]) == 5 + 10 + 20 + 30 + 40 + 30 and sum(above["y"]) == 20 + 10 + 5 + 1
    assert below["marker"]["pattern"]["shape"] != above["marker"]["pattern"]["shape"]
    (line,) = figure["layout"]["shapes"]
    assert line["x0"] == line["x1"] == 0.6
    assert figure["layout"]["annotations"][0]["text"] == "threshold 0.60"
    unmarked = charts.score_histogram(counts, threshold=None, title="x")
    assert len(unmarked["data"]) == 1 and not unmarked["layout"]["shapes"]
    assert "no routing policy" in unmarked["layout"]["title"]["text"]


def _burn_down(**values) -> BurnDown:
    defaults = {
        "month_to_date": Decimal("25"),
        "projected_month_end": Decimal("40"),
        "projected_low": Decimal("35"),
        "projected_high": Decimal("45"),
        "month_start": date(2026, 11, 1),
        "month_end": date(2026, 11, 30),
        "budget_usd": None,
    }
    return BurnDown(**{**defaults, **values})


def test_burn_down_draws_forecast_band_and_budget_line():
    data = _burn_down(
        days=[
            DaySpend(day=date(2026, 11, 1), cost_usd=Decimal("10")),
            DaySpend(day=date(2026, 11, 2), cost_usd=Decimal("25")),
        ],
        projection=[DaySpend(day=date(2026, 11, 3), cost_usd=Decimal("40"))],
        band=[ForecastBand(day=date(2026, 11, 3), low=Decimal("35"), high=Decimal("45"))],
        budget_usd=Decimal("100"),
    )
    figure = charts.burn_down(data)
    names = [t["name"] for t in figure["data"]]
    assert names == ["spent so far", "forecast", "forecast band (90%)"]
    assert figure["data"][1]["x"][0] == "2026-11-02"  # the forecast continues from today's point
    assert figure["data"][2]["y"] == [45.0, 35.0]
    assert figure["layout"]["shapes"][0]["y0"] == 100.0
    assert figure["layout"]["annotations"][0]["text"] == "budget $100.00"


def test_latency_and_reasons_are_patterned_and_labelled():
    latency = charts.latency_by_model([ModelLatency(model="slm", p50=120.4, p95=900.0, count=50)])
    p50, p95 = latency["data"]
    assert p50["text"] == ["p50 120 ms"] and p95["text"] == ["p95 900 ms"]
    assert p50["marker"]["pattern"]["shape"] != p95["marker"]["pattern"]["shape"]
    reasons = charts.fallback_reasons([FallbackReason(reason="timeout", fallbacks=12, rate=0.06)])
    assert reasons["data"][0]["text"] == ["6.0% (12)"]


def test_money_labels():
    assert charts.usd_label(Decimal("-0.1808")) == "−$0.1808"
    assert charts.usd_label(0) == "$0.00"
    assert charts.usd_label(Decimal("12345.6")) == "$12,346"
    assert charts.pct_label(None) == "—" and charts.pct_label(0.1234) == "12.3%"
