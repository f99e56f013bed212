"""Month-end forecast: weekday-aware means with a t-interval, on synthetic series with a known answer."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest

from billing.forecast import month_end_forecast, t_quantile_95

NOV_FIRST = date(2026, 11, 1)  # a Sunday
NOV_LAST = date(2026, 11, 30)


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def weekday_pattern(day: date) -> Decimal:
    return Decimal("20.00") if day.weekday() >= 5 else Decimal("100.00")


def test_exact_weekday_pattern_projects_the_exact_total_with_zero_width_interval():
    as_of = date(2026, 11, 16)
    series = [(d, weekday_pattern(d)) for d in days(NOV_FIRST, as_of)]
    forecast = month_end_forecast(series, as_of=as_of, period_end=NOV_LAST)
    expected = sum(weekday_pattern(d) for d in days(NOV_FIRST, NOV_LAST + timedelta(days=1)))
    assert forecast.model == "weekday"
    assert forecast.projection == expected == Decimal("2280.00")  # 21 weekdays × 100 + 9 weekend days × 20
    assert forecast.low == forecast.high == expected


def test_weekday_awareness_beats_a_plain_mean():
    """With a weekend coming, a plain mean of weekdays-heavy history would overshoot; weekday means do not."""
    as_of = date(2026, 11, 14)  # a Saturday: 13 days seen (9 weekdays, 4 weekend days)
    series = [(d, weekday_pattern(d)) for d in days(NOV_FIRST, as_of)]
    forecast = month_end_forecast(series, as_of=as_of, period_end=NOV_LAST)
    plain_mean = sum(v for _, v in series) / len(series)
    naive = sum(v for _, v in series) + plain_mean * 17
    assert forecast.projection == Decimal("2280.00")
    assert naive != forecast.projection


def test_early_month_falls_back_to_the_mean_and_counts_today_so_far():
    as_of = date(2026, 11, 4)
    series = [(d, Decimal("10")) for d in days(NOV_FIRST, as_of)]
    forecast = month_end_forecast(series, as_of=as_of, period_end=NOV_LAST, spent_today=Decimal("25"))
    assert forecast.model == "mean"
    # 3 days × 10, today counts its 25 already spent (more than the mean), 26 more days × 10
    assert forecast.projection == Decimal("315.00")
    assert forecast.spent == Decimal("55")
    # 55 by the 4th, then +10 a day: 105 on the 9th
    assert forecast.runs_out_on(Decimal("100")) == date(2026, 11, 9)


def test_no_history_projects_what_is_spent_and_has_no_interval():
    forecast = month_end_forecast([], as_of=NOV_FIRST, period_end=NOV_LAST, spent_today=Decimal("3"))
    assert forecast.projection == Decimal("3.00")
    assert forecast.low is None and forecast.high is None


def test_interval_covers_the_true_total_about_90_percent_of_the_time():
    """Noisy months (weekday pattern + normal noise): the 90 % interval holds the actual total ~90 % of the time."""
    rng = random.Random(7)
    hits = trials = 0
    as_of = date(2026, 11, 16)
    for _ in range(400):
        month = [
            (d, max(Decimal(0), weekday_pattern(d) + Decimal(f"{rng.gauss(0, 15):.2f}")))
            for d in days(NOV_FIRST, NOV_LAST + timedelta(days=1))
        ]
        seen = [(d, v) for d, v in month if d < as_of]
        actual = sum(v for _, v in month)
        forecast = month_end_forecast(seen, as_of=as_of, period_end=NOV_LAST)
        trials += 1
        hits += forecast.low <= actual <= forecast.high
    coverage = hits / trials
    print(f"coverage of the 90% interval over {trials} synthetic months: {coverage:.3f}")
    assert 0.82 <= coverage <= 0.97


def test_runs_out_on_uses_actuals_then_the_projection():
    as_of = date(2026, 11, 16)
    series = [(d, weekday_pattern(d)) for d in days(NOV_FIRST, as_of)]
    forecast = month_end_forecast(series, as_of=as_of, period_end=NOV_LAST)
    # spent by the 15th: 11 weekdays × 100 + 4 weekend days × 20 = 1180; Mon 16 → 1280, Tue 17 → 1380, ...
    assert forecast.runs_out_on(Decimal("1000")) == date(2026, 11, 13)
    assert forecast.runs_out_on(Decimal("1300")) == date(2026, 11, 17)
    assert forecast.runs_out_on(Decimal("5000")) is None


def test_bad_period_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="period_end"):
        month_end_forecast([], as_of=NOV_LAST, period_end=NOV_FIRST)


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy not installed: cannot cross-check the t table")
    for df in (1, 2, 5, 10, 29, 30):
        assert t_quantile_95(df) == pytest.approx(stats.t.ppf(0.95, df), abs=1e-3)


def test_first_day_projects_from_the_hours_seen_or_says_there_is_no_basis():
    first, last = date(2026, 12, 1), date(2026, 12, 31)
    # 6 hours in, $3 spent: $0.50 an hour, $12 a day, over 31 days
    forecast = month_end_forecast([], as_of=first, period_end=last, spent_today=Decimal("3"), hours_today=6)
    assert forecast.model == "run-rate" and forecast.has_basis
    assert forecast.projection == Decimal("372.00")
    assert forecast.runs_out_on(Decimal("100")) == date(2026, 12, 9)  # 12 a day: day 9 reaches 108
    # one hour in: no basis, and the projection claims nothing beyond the spend so far
    early = month_end_forecast([], as_of=first, period_end=last, spent_today=Decimal("3"), hours_today=1)
    assert early.model == "none" and not early.has_basis and early.projection == Decimal("3.00")
