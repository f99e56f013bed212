"""Budgets: edits (audited), monthly state from the hourly rollups, forecasts, and the budget states bundles carry.

A budget covers one calendar month in its team's timezone. Every minute `budgets_evaluate` recomputes
each active budget's spend, state and month-end forecast into its BudgetStatus row. When the set of
features the proxies must degrade or block changes, it publishes a bundle (actor: system) so the
fleet enforces the change within a rollout. Each budget state carries the budget's action
(block or degrade), which the proxy applies. See docs/budgets.md.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing import signals
from billing.forecast import Forecast, month_end_forecast
from billing.models.budgets import Budget, BudgetAction, BudgetState, BudgetStatus, FeatureAlertSettings
from billing.rollups import rollups_in
from controlplane.models import AuditAction, Feature, Team
from controlplane.services import audit_record, snapshot, stored_snapshot
from routing import providers
from routing import services as routing_services
from routing.compiler import budget_entries
from routing.models import Bundle

log = logging.getLogger("finops.budgets")

BUDGET_FIELDS = ("team", "feature", "amount_usd", "thresholds", "action", "is_active")
# block is stricter than degrade: when a team and a feature budget are both over, the stricter wins
SEVERITY = {BudgetAction.DEGRADE: 1, BudgetAction.BLOCK: 2}


# --- periods ----------------------------------------------------------------------------------------


def team_zone(team: Team) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(team.timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        log.warning("team %s has an unknown timezone %r: budgets use UTC", team.slug, team.timezone)
        return zoneinfo.ZoneInfo("UTC")


@dataclass(frozen=True)
class Period:
    """A budget month: its label, local first and last day, and UTC bounds [start, end)."""

    label: str
    first_day: date
    last_day: date
    start: datetime
    end: datetime
    zone: zoneinfo.ZoneInfo

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()


def period_of(team: Team, now: datetime) -> Period:
    zone = team_zone(team)
    local = now.astimezone(zone)
    first = local.date().replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(next_first, time(0), tzinfo=zone).astimezone(UTC)
    return Period(f"{first:%Y-%m}", first, next_first - timedelta(days=1), start, end, zone)


# --- edits ------------------------------------------------------------------------------------------


def _apply(budget: Budget, values: Mapping[str, Any]) -> None:
    values = dict(values)
    if isinstance(values.get("amount_usd"), Decimal) and values["amount_usd"].is_finite():
        values["amount_usd"] = values["amount_usd"].quantize(
            Decimal("0.01")
        )  # "100" and "100.00" are one value
    for name, value in values.items():
        setattr(budget, name, value)
    if budget.feature_id and not budget.team_id:
        budget.team_id = budget.feature.team_id
    budget.full_clean()
    budget.save()


def _queue_refresh() -> None:
    transaction.on_commit(lambda: signals.budgets_changed.send(sender=Budget))


@transaction.atomic
def budget_create(*, actor: Any, **values: Any) -> Budget:
    feature = values.get("feature")
    if feature is not None and Budget.objects.filter(feature=feature).exists():
        raise ValidationError({"feature": f"Feature {feature.slug} already has a budget: edit it instead."})
    if feature is None and Budget.objects.filter(team=values.get("team"), feature__isnull=True).exists():
        raise ValidationError({"team": "This team already has a team budget: edit it instead."})
    budget = Budget()
    _apply(budget, values)
    audit_record(actor=actor, action=AuditAction.CREATE, obj=budget, after=snapshot(budget, BUDGET_FIELDS))
    _queue_refresh()
    return budget


@transaction.atomic
def budget_update(*, actor: Any, budget: Budget, **values: Any) -> Budget:
    values.pop("team", None)  # a budget stays with its team and feature
    values.pop("feature", None)
    before = stored_snapshot(budget, BUDGET_FIELDS)
    _apply(budget, values)
    after = snapshot(budget, BUDGET_FIELDS)
    if before != after:
        audit_record(actor=actor, action=AuditAction.UPDATE, obj=budget, before=before, after=after)
        _queue_refresh()
    return budget


@transaction.atomic
def budget_delete(*, actor: Any, budget: Budget) -> None:
    audit_record(actor=actor, action=AuditAction.DELETE, obj=budget, before=snapshot(budget, BUDGET_FIELDS))
    budget.delete()
    _queue_refresh()


ALERT_SETTINGS_FIELDS = ("fallback_threshold", "fallback_window_minutes", "fallback_min_requests")


@transaction.atomic
def feature_alert_settings_update(*, actor: Any, feature: Feature, **values: Any) -> FeatureAlertSettings:
    """Set a feature's fallback-rate alert overrides (audited; None restores a default)."""
    row = FeatureAlertSettings.objects.filter(feature=feature).first()
    created = row is None
    before = {} if created else stored_snapshot(row, ALERT_SETTINGS_FIELDS)
    row = row or FeatureAlertSettings(feature=feature)
    threshold = values.get("fallback_threshold")
    if isinstance(threshold, Decimal) and threshold.is_finite():
        values["fallback_threshold"] = threshold.quantize(Decimal("0.001"))
    for name, value in values.items():
        setattr(row, name, value)
    after = snapshot(row, ALERT_SETTINGS_FIELDS)
    if not created and before == after:
        return row
    if created and not any(v is not None for v in after.values()):
        return row  # nothing to override: keep no row
    row.full_clean()
    row.save()
    action = AuditAction.CREATE if created else AuditAction.UPDATE
    audit_record(actor=actor, action=action, obj=row, before=before, after=after)
    return row


@transaction.atomic
def budget_save(
    *,
    actor: Any,
    team: Team,
    feature: Feature | None,
    fallback_threshold: Decimal | None = None,
    now: datetime | None = None,
    **values: Any,
) -> Budget:
    """Create or update the budget of a feature (or of the team when `feature` is None), then evaluate it."""
    budget = Budget.objects.filter(team=team, feature=feature).first()
    if budget is None:
        budget = budget_create(actor=actor, team=team, feature=feature, **values)
    else:
        budget = budget_update(actor=actor, budget=budget, **values)
    if feature is not None:
        feature_alert_settings_update(actor=actor, feature=feature, fallback_threshold=fallback_threshold)
    budget_evaluate(budget=budget, now=now or timezone.now())
    return budget


# --- state ------------------------------------------------------------------------------------------


def _scope(budget: Budget) -> dict[str, Any]:
    if budget.feature_id:
        return {"features": [budget.feature_id]}
    return {"teams": [budget.team_id]}


def hourly_spend(budget: Budget, *, start: datetime, end: datetime) -> list[tuple[datetime, Decimal]]:
    """(hour, cost) of the budget's scope for the hours in [start, end), from the rollups."""
    rows = (
        rollups_in(start=start, end=end, **_scope(budget))
        .values("hour")
        .annotate(cost=Sum("cost_usd"))
        .order_by("hour")
    )
    return [(r["hour"], Decimal(r["cost"] or 0)) for r in rows]


def budget_forecast(budget: Budget, *, period: Period, now: datetime) -> tuple[Decimal, Forecast]:
    """Period spend so far and the month-end forecast from its local daily series."""
    hours = hourly_spend(budget, start=period.start, end=min(now + timedelta(hours=1), period.end))
    per_day: dict[date, Decimal] = defaultdict(Decimal)
    for hour, cost in hours:
        per_day[period.local_date(hour)] += cost
    today = period.local_date(now)
    series = []
    day = period.first_day
    while day < today:
        series.append((day, per_day.get(day, Decimal(0))))
        day += timedelta(days=1)
    spent = sum(per_day.values(), Decimal(0))
    hours_today = (now - datetime.combine(today, time.min, tzinfo=period.zone)).total_seconds() / 3600
    forecast = month_end_forecast(
        series,
        as_of=today,
        period_end=period.last_day,
        spent_today=per_day.get(today, Decimal(0)),
        hours_today=hours_today,
    )
    return spent, forecast


def budget_evaluate(*, budget: Budget, now: datetime) -> BudgetStatus:
    """Recompute one budget's status for the period containing `now` (idempotent)."""
    period = period_of(budget.team, now)
    spent, forecast = budget_forecast(budget, period=period, now=now)
    limit = budget.amount_usd
    state = BudgetState.OVER if spent >= limit else BudgetState.OK
    values = {
        "period": period.label,
        "spend_usd": spent,
        "limit_usd": limit,
        "state": state,
        "enforced": state == BudgetState.OVER and budget.action != BudgetAction.ALERT and budget.is_active,
        # no basis yet (the first hours of a period): no projection, and no "runs out" claim either way
        "projection_usd": forecast.projection if forecast.has_basis else None,
        "projection_low_usd": forecast.low,
        "projection_high_usd": forecast.high,
        "runs_out_on": forecast.runs_out_on(limit)
        if forecast.has_basis or state == BudgetState.OVER
        else None,
        "evaluated_at": now,
    }
    status, _ = BudgetStatus.objects.update_or_create(budget=budget, defaults=values)
    return status


@dataclass(frozen=True)
class Enforcement:
    team: str
    feature: str
    action: str
    spend_usd: Decimal
    limit_usd: Decimal
    period: str
    feature_obj: Feature


def _money_text(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def enforcements(*, now: datetime | None = None) -> list[Enforcement]:
    """Features the proxies must degrade or block now, from the stored statuses of the current periods."""
    now = now or timezone.now()
    statuses = BudgetStatus.objects.filter(enforced=True, budget__is_active=True).select_related(
        "budget__team", "budget__feature"
    )
    chosen: dict[int, Enforcement] = {}
    team_features: dict[int, list[Feature]] = {}
    for status in statuses:
        budget = status.budget
        if status.period != period_of(budget.team, now).label:
            continue  # last month's verdict: the new month starts clean
        if budget.feature_id:
            features = [budget.feature]
        else:
            if budget.team_id not in team_features:
                team_features[budget.team_id] = list(Feature.objects.filter(team_id=budget.team_id))
            features = team_features[budget.team_id]
        for feature in features:
            candidate = Enforcement(
                team=budget.team.slug,
                feature=feature.slug,
                action=budget.action,
                spend_usd=status.spend_usd,
                limit_usd=status.limit_usd,
                period=status.period,
                feature_obj=feature,
            )
            current = chosen.get(feature.pk)
            if (
                current is None
                or SEVERITY[BudgetAction(candidate.action)] > SEVERITY[BudgetAction(current.action)]
            ):
                chosen[feature.pk] = candidate
    return sorted(chosen.values(), key=lambda e: (e.team, e.feature))


def budget_states_for_bundle() -> list[dict[str, Any]]:
    """Budget states in the bundle's shape (routing.engine.bundle): the features that are over and enforced.

    Registered with the compiler in BillingConfig.ready() (routing.providers). Budgets within their limit
    or set to alert only are left out: the proxy has nothing to enforce for them.
    """
    return [
        {
            "team": e.team,
            "feature": e.feature,
            "state": "over",
            "spend_usd": _money_text(e.spend_usd),
            "limit_usd": _money_text(e.limit_usd),
            "period": e.period,
            "action": str(e.action),
        }
        for e in enforcements()
    ]


def _published_over() -> set[tuple[str, str, str]] | None:

    latest = Bundle.objects.order_by("-number").first()
    if latest is None:
        return None
    return {
        (b.get("team"), b.get("feature"), b.get("action", ""))
        for b in (latest.document or {}).get("budgets") or []
        if isinstance(b, dict) and b.get("state") == "over"
    }


def budgets_publish_if_changed(*, now: datetime) -> str | None:
    """Publish a bundle when the enforced budget states differ from the latest bundle's; returns the version."""

    published = _published_over()
    if published is None:
        return None  # no fleet bundle yet: nothing to enforce against
    enforced = enforcements(now=now)
    if providers.budget_states_provider() is not budget_states_for_bundle:
        if enforced:
            log.warning(
                "another budget-states provider is registered: budget states do not reach the proxies"
            )
        return None
    wanted = {(e.team, e.feature, str(e.action)) for e in enforced}
    with transaction.atomic():
        if wanted == published:
            return None
        parts = [f"{t}/{f} over → {a}" for t, f, a in sorted(wanted - published)]
        parts += [f"{t}/{f} back within budget" for t, f, a in sorted(published - wanted)]
        note = "budget state change: " + ", ".join(parts)
        try:
            # only the budget states change: staged edits wait for a publisher, rolled-back pools stay put
            shipped = routing_services.bundle_publish_patch(actor=None, patch=_set_budget_states, note=note)
        except routing_services.BundleRejected as exc:
            log.error("budget state change not published, the bundle is invalid: %s", exc)
            return None
        except ValidationError as exc:  # a rollout still running: the next minute retries
            log.info("budget state change not published now (retried next evaluation): %s", exc)
            return None
    if not shipped:
        return None
    log.info("published %s: %s", ", ".join(b.version for b in shipped), note)
    return shipped[-1].version


def _set_budget_states(doc: dict[str, Any]) -> str:
    """Patch for an automatic publish: the bundle's budgets become the enforced states, nothing else."""

    wanted = budget_entries()
    if doc.get("budgets") == wanted:
        return ""
    doc["budgets"] = wanted
    return "budget states"


def budgets_evaluate(*, now: datetime) -> list[BudgetStatus]:
    """Evaluate every active budget and publish when enforcement changed; idempotent for a given `now`."""
    statuses = [
        budget_evaluate(budget=b, now=now)
        for b in Budget.objects.filter(is_active=True).select_related("team", "feature")
    ]
    BudgetStatus.objects.filter(budget__is_active=False, enforced=True).update(enforced=False)
    budgets_publish_if_changed(now=now)
    return statuses


# --- reads ------------------------------------------------------------------------------------------


def budget_for_feature(feature: Feature) -> Budget | None:
    return Budget.objects.filter(feature=feature).select_related("status").first()


def team_budget(team: Team) -> Budget | None:
    return Budget.objects.filter(team=team, feature__isnull=True).select_related("status").first()
