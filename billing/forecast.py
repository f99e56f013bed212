"""Month-end spend forecast from a daily series: weekday-aware means with a Student-t interval (pure functions).

Model: a remaining day costs the mean of the observed days of the same weekday (Mondays predict
Mondays). Early in the month, before every needed weekday has been seen with at least two degrees
of freedom left, every remaining day costs the plain mean of the observed days instead. The
interval adds the day-to-day noise of each remaining day to the uncertainty of the means it uses:
Var(total) = s² · (m + Σ_g c_g² / n_g), with s² the pooled residual variance, m remaining days,
c_g the remaining days predicted by group g and n_g its observed days; half-width t(level, df)·√Var.

On the first day of a period there is no complete day to learn from: with at least
RUN_RATE_MIN_HOURS of today seen, every remaining day costs today's hourly run-rate × 24 (model
"run-rate", no interval); before that the model is "none" and callers say "not enough data yet"
(never "runs out: not this month" with no basis).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from statistics import NormalDist

CENT = Decimal("0.01")
RUN_RATE_MIN_HOURS = 3
ZERO = Decimal(0)

# One-sided 95 % quantiles of Student's t (a two-sided 90 % interval) for 1..30 degrees of freedom.
_T95 = (
    6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
    1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725,
    1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697,
)  # fmt: skip


def t_quantile_95(df: int) -> float:
    """The 0.95 quantile of Student's t with `df` degrees of freedom (normal beyond 30)."""
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    return _T95[df - 1] if df <= len(_T95) else NormalDist().inv_cdf(0.95)


@dataclass(frozen=True)
class Forecast:
    """Projected period total (with a 90 % interval when there is enough data) and the day-by-day path."""

    projection: Decimal
    low: Decimal | None
    high: Decimal | None
    spent: Decimal  # actual spend so far (complete days plus today so far)
    basis_days: int  # complete days the forecast learned from
    model: str  # "weekday", "mean", "run-rate" or "none" (not enough data: projection is the spend so far)
    path: list[tuple[date, Decimal]] = field(default_factory=list)  # actual days, then predicted days

    @property
    def has_basis(self) -> bool:
        return self.model != "none"

    def runs_out_on(self, limit: Decimal) -> date | None:
        """The first day on which cumulative spend reaches `limit` (None if not within the period)."""
        total = ZERO
        for day, amount in self.path:
            total += amount
            if total >= limit:
                return day
        return None


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def month_end_forecast(
    series: Iterable[tuple[date, Decimal]],
    *,
    as_of: date,
    period_end: date,
    spent_today: Decimal = ZERO,
    hours_today: float | None = None,
) -> Forecast:
    """Project spend through `period_end` (inclusive).

    `series`: spend per complete day of the period (days before `as_of`; give zero days as zero,
    a missing day counts as unobserved). `spent_today`: spend so far on `as_of`, which counts as
    at least what today already cost. `hours_today`: hours of `as_of` elapsed so far, for the
    run-rate projection when no complete day has been seen.
    """
    if period_end < as_of:
        raise ValueError(f"period_end ({period_end}) must not be before as_of ({as_of})")
    observed = sorted((d, Decimal(v)) for d, v in series if d < as_of)
    spent_days = sum((v for _, v in observed), ZERO)
    spent = spent_days + spent_today
    remaining = [as_of + timedelta(days=i) for i in range((period_end - as_of).days + 1)]
    path: list[tuple[date, Decimal]] = list(observed)
    n = len(observed)
    if n == 0:
        if hours_today is not None and hours_today >= RUN_RATE_MIN_HOURS:
            per_day = spent_today / Decimal(str(hours_today)) * 24
            path += [(d, max(per_day, spent_today) if d == as_of else per_day) for d in remaining]
            projection = sum((v for _, v in path), ZERO)
            return Forecast(_money(projection), None, None, spent, 0, "run-rate", path)
        path.append((as_of, spent_today))
        return Forecast(_money(spent), None, None, spent, 0, "none", path)

    values = [v for _, v in observed]
    by_weekday: dict[int, list[Decimal]] = defaultdict(list)
    for d, v in observed:
        by_weekday[d.weekday()].append(v)
    needed = {d.weekday() for d in remaining}
    weekday_df = n - len(by_weekday)
    use_weekday = needed <= set(by_weekday) and weekday_df >= 2

    if use_weekday:
        means = {w: sum(vs, ZERO) / len(vs) for w, vs in by_weekday.items()}
        residuals = [v - means[d.weekday()] for d, v in observed]
        df = weekday_df
        group_of: dict[int, int] = {w: w for w in means}
        counts = {w: len(vs) for w, vs in by_weekday.items()}
    else:
        means = {-1: sum(values, ZERO) / n}
        residuals = [v - means[-1] for v in values]
        df = n - 1
        group_of = defaultdict(lambda: -1)
        counts = {-1: n}

    predicted_total = ZERO
    per_group: dict[int, int] = defaultdict(int)
    for d in remaining:
        group = group_of[d.weekday()]
        per_group[group] += 1
        estimate = means[group]
        if d == as_of:
            estimate = max(estimate, spent_today)
        estimate = max(estimate, ZERO)
        predicted_total += estimate
        path.append((d, estimate))
    projection = spent_days + predicted_total

    low = high = None
    if df >= 1:
        s2 = sum((r * r for r in residuals), ZERO) / df
        spread = len(remaining) + sum((Decimal(c * c) / counts[g] for g, c in per_group.items()), ZERO)
        half = Decimal(str(t_quantile_95(df))) * (s2 * spread).sqrt()
        low = _money(max(spent, projection - half))
        high = _money(projection + half)
    return Forecast(_money(projection), low, high, spent, n, "weekday" if use_weekday else "mean", path)
