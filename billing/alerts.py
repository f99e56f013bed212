"""Alerts: evaluate every condition, open one alert per failing key, resolve alerts whose condition cleared.

`alerts_evaluate(*, now)` is the one entry point (Celery beat, every minute). Each check returns the
conditions failing at `now`; an unresolved alert per key is kept (database partial unique
constraint), refreshed while the condition holds and resolved automatically once it clears.
Opening and resolving queue notifications (billing.notifications); sending never blocks evaluation.
Thresholds come from settings (ALERT_*), the fallback-rate ones overridable per feature. See docs/alerts.md.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from billing import budgets
from billing.models import SpendEvent
from billing.models.budgets import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertStatus,
    Budget,
    BudgetStatus,
    FeatureAlertSettings,
)
from billing.notifications import notifications_queue
from billing.rollups import hour_floor, rollups_in
from controlplane.models import AuditAction, Feature
from controlplane.permissions import is_org_wide, visible_teams
from controlplane.services import audit_record
from routing.engine.spend import SLM_UNAVAILABLE, SMALL_MODEL_FALLBACK_REASONS, fallback_alert_fires
from routing.models import Proxy, RoutingPolicy

log = logging.getLogger("finops.alerts")

FALLBACK_REASONS = SMALL_MODEL_FALLBACK_REASONS
MAD_SCALE = Decimal("1.4826")  # makes the MAD estimate the standard deviation of normal data


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


@dataclass
class Condition:
    """A failing check: what the alert is about and what to tell people."""

    key: str
    kind: str
    title: str
    message: str
    severity: str = AlertSeverity.WARNING
    details: dict[str, Any] = field(default_factory=dict)
    team_id: int | None = None
    feature_id: int | None = None
    proxy_id: int | None = None


# --- lifecycle --------------------------------------------------------------------------------------


SNOOZE_MAX = timedelta(days=90)


def _notify(alert: Alert, event: str, now: datetime | None = None) -> None:
    """Queue the alert's notifications for `event`, except while it is snoozed.

    A resolution is not sent either for an alert whose opening was never sent (it opened during a
    snooze): receivers would close something they were never told about."""
    now = now or timezone.now()
    if alert.is_snoozed(now):
        return
    if (
        event == "resolved"
        and alert.snoozed_until is not None
        and not alert.notifications.filter(event="opened").exists()
    ):
        return
    notifications_queue(alert=alert, event=event)


def alert_raise(*, condition: Condition, now: datetime) -> tuple[Alert, bool]:
    """The unresolved alert for the condition's key, refreshed; opened (and notified) when there was none."""
    existing = Alert.objects.filter(key=condition.key).exclude(status=AlertStatus.RESOLVED).first()
    if existing is not None:
        existing.last_seen_at = now
        existing.details = condition.details
        existing.message = condition.message
        existing.title = condition.title[:200]
        fields = ["last_seen_at", "details", "message", "title", "updated_at"]
        snooze_ended = existing.snoozed_until is not None and not existing.is_snoozed(now)
        if snooze_ended:  # still failing when the snooze ends: it is active again, and says so once
            existing.snoozed_until = existing.snoozed_by = None
            fields += ["snoozed_until", "snoozed_by"]
        existing.save(update_fields=fields)
        if snooze_ended:
            _notify(existing, "opened", now)
        return existing, False
    # a condition that clears and fails again while its last alert was snoozed stays snoozed
    previous = (
        Alert.objects.filter(key=condition.key, status=AlertStatus.RESOLVED, snoozed_until__gt=now)
        .order_by("-resolved_at")
        .first()
    )
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                key=condition.key,
                kind=condition.kind,
                severity=condition.severity,
                team_id=condition.team_id,
                feature_id=condition.feature_id,
                proxy_id=condition.proxy_id,
                title=condition.title[:200],
                message=condition.message,
                details=condition.details,
                opened_at=now,
                last_seen_at=now,
                snoozed_until=previous.snoozed_until if previous else None,
                snoozed_by=previous.snoozed_by if previous else None,
            )
    except IntegrityError:  # another evaluation opened it a moment ago
        return Alert.objects.filter(key=condition.key).exclude(status=AlertStatus.RESOLVED).get(), False
    _notify(alert, "opened", now)
    return alert, True


def alert_resolve(*, alert: Alert, now: datetime, actor: Any = None) -> bool:
    """Resolve an unresolved alert (by a user, audited, or automatically); False when it already was."""
    with transaction.atomic():
        previous = Alert.objects.filter(pk=alert.pk).values_list("status", flat=True).first()
        claimed = (
            Alert.objects.filter(pk=alert.pk)
            .exclude(status=AlertStatus.RESOLVED)
            .update(status=AlertStatus.RESOLVED, resolved_at=now, resolved_by=actor, updated_at=now)
        )
        if claimed != 1:
            return False
        alert.refresh_from_db()
        if actor is not None:
            audit_record(
                actor=actor,
                action=AuditAction.UPDATE,
                obj=alert,
                before={"status": previous},
                after={"status": AlertStatus.RESOLVED},
                note="alert resolved by hand",
            )
        _notify(alert, "resolved", now)
    return True


def alert_acknowledge(*, alert: Alert, actor: Any, now: datetime | None = None) -> bool:
    """Mark an open alert acknowledged (audited); False when it was not open."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = Alert.objects.filter(pk=alert.pk, status=AlertStatus.OPEN).update(
            status=AlertStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=actor, updated_at=now
        )
        if claimed != 1:
            return False
        alert.refresh_from_db()
        audit_record(
            actor=actor,
            action=AuditAction.UPDATE,
            obj=alert,
            before={"status": AlertStatus.OPEN},
            after={"status": AlertStatus.ACKNOWLEDGED},
        )
    return True


def alert_snooze(*, alert: Alert, actor: Any, until: datetime | None, now: datetime | None = None) -> Alert:
    """Snooze an unresolved alert until `until` (audited), or end its snooze when `until` is None.

    Raises ValidationError naming `until` when it is not in the future or further than SNOOZE_MAX."""
    now = now or timezone.now()
    if until is not None and until <= now:
        raise ValidationError({"until": "Choose a time in the future to snooze until."})
    if until is not None and until > now + SNOOZE_MAX:
        raise ValidationError(
            {
                "until": f"Snooze for at most {SNOOZE_MAX.days} days; resolve the alert if it no longer matters."
            }
        )
    with transaction.atomic():
        locked = Alert.objects.select_for_update().get(pk=alert.pk)
        if locked.status == AlertStatus.RESOLVED:
            raise ValidationError({"until": "This alert is resolved already: there is nothing to snooze."})
        before = {"snoozed_until": locked.snoozed_until.isoformat() if locked.is_snoozed(now) else None}
        locked.snoozed_until = until
        locked.snoozed_by = actor if until is not None else None
        locked.save(update_fields=["snoozed_until", "snoozed_by", "updated_at"])
        audit_record(
            actor=actor,
            action=AuditAction.UPDATE,
            obj=locked,
            before=before,
            after={"snoozed_until": until.isoformat() if until else None},
            note="alert snoozed" if until else "alert snooze ended by hand",
        )
        if until is None and locked.status != AlertStatus.RESOLVED:
            _notify(locked, "opened", now)  # its opening may have been held back by the snooze
    alert.refresh_from_db()
    return alert


def _sync(kind: str, conditions: list[Condition], now: datetime) -> dict[str, int]:
    """Raise every failing condition of a kind, resolve that kind's alerts whose key no longer fails."""
    opened = 0
    for condition in conditions:
        _, created = alert_raise(condition=condition, now=now)
        opened += created
    failing = {c.key for c in conditions}
    resolved = 0
    for alert in (
        Alert.objects.filter(kind=kind).exclude(status=AlertStatus.RESOLVED).exclude(key__in=failing)
    ):
        resolved += alert_resolve(alert=alert, now=now)
    return {"failing": len(conditions), "opened": opened, "resolved": resolved}


# --- checks -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FallbackRule:
    threshold: Decimal
    window_minutes: int
    min_requests: int


def fallback_rules(features: list[Feature]) -> dict[int, FallbackRule]:
    default = FallbackRule(
        threshold=Decimal(str(_setting("ALERT_FALLBACK_THRESHOLD", "0.20"))),
        window_minutes=int(_setting("ALERT_FALLBACK_WINDOW_MINUTES", 15)),
        min_requests=int(_setting("ALERT_FALLBACK_MIN_REQUESTS", 50)),
    )
    overrides = {s.feature_id: s for s in FeatureAlertSettings.objects.filter(feature__in=features)}
    rules = {}
    for feature in features:
        o = overrides.get(feature.pk)
        rules[feature.pk] = FallbackRule(
            threshold=o.fallback_threshold if o and o.fallback_threshold is not None else default.threshold,
            window_minutes=o.fallback_window_minutes
            if o and o.fallback_window_minutes
            else default.window_minutes,
            min_requests=o.fallback_min_requests if o and o.fallback_min_requests else default.min_requests,
        )
    return rules


def fallback_rate_conditions(*, now: datetime) -> list[Condition]:
    """Features whose fallback rate over their rolling window reaches their threshold with enough requests.

    Counts come from the raw attempt rows of the window (minutes, finer than the hourly rollups):
    requests = first attempts, fallbacks = rows marked fallback for a timeout, an error or low
    confidence (budget degradation is a decision, not a small-model failure, so it is left out; calls
    an open breaker sent to the frontier, `slm_unavailable`, have their own alert).
    """
    features = list(Feature.objects.filter(is_active=True).select_related("team"))
    rules = fallback_rules(features)
    by_window: dict[int, list[Feature]] = defaultdict(list)
    for feature in features:
        by_window[rules[feature.pk].window_minutes].append(feature)
    conditions = []
    for minutes, group in sorted(by_window.items()):
        start = now - timedelta(minutes=minutes)
        events = SpendEvent.objects.filter(
            feature_id__in=[f.pk for f in group], start_time__gte=start, start_time__lt=now
        )
        totals = {
            r["feature_id"]: r["requests"]
            for r in events.values("feature_id").annotate(requests=Count("id", filter=Q(attempt=1)))
        }
        reasons: dict[int, dict[str, int]] = defaultdict(dict)
        for r in (
            events.filter(fallback=True, fallback_reason__in=SMALL_MODEL_FALLBACK_REASONS)
            .values("feature_id", "fallback_reason")
            .annotate(n=Count("id"))
        ):
            reasons[r["feature_id"]][r["fallback_reason"] or "other"] = r["n"]
        for feature in group:
            rule = rules[feature.pk]
            requests = totals.get(feature.pk, 0)
            split = reasons.get(feature.pk, {})
            fallbacks = sum(split.values())
            if not fallback_alert_fires(
                requests=requests, by_reason=split, threshold=rule.threshold, min_requests=rule.min_requests
            ):
                continue
            rate = Decimal(fallbacks) / Decimal(requests)
            by_reason = {reason: split.get(reason, 0) for reason in FALLBACK_REASONS}
            by_reason.update({k: v for k, v in split.items() if k not in FALLBACK_REASONS})
            reason_text = ", ".join(f"{k} {v}" for k, v in by_reason.items() if v)
            conditions.append(
                Condition(
                    key=f"fallback_rate:feature:{feature.pk}",
                    kind=AlertKind.FALLBACK_RATE,
                    severity=AlertSeverity.CRITICAL if rate >= 2 * rule.threshold else AlertSeverity.WARNING,
                    title=f"{feature.name}: {rate:.0%} of requests fell back in {minutes} min",
                    message=(
                        f"Feature {feature.slug} (team {feature.team.slug}): {fallbacks} of {requests} requests "
                        f"fell back to the frontier model in the last {minutes} minutes ({rate:.1%}, threshold "
                        f"{rule.threshold:.0%}). By reason: {reason_text}."
                    ),
                    details={
                        "requests": requests,
                        "fallbacks": fallbacks,
                        "rate": float(rate),
                        "threshold": float(rule.threshold),
                        "window_minutes": minutes,
                        "by_reason": by_reason,
                    },
                    team_id=feature.team_id,
                    feature_id=feature.pk,
                )
            )
    return conditions


def _small_model_of_features(feature_ids: list[int]) -> dict[int, str]:
    """Each feature's small model group under the current routing policies (override, else default)."""

    policies = {
        p.feature_id: p
        for p in RoutingPolicy.objects.filter(
            Q(feature_id__in=feature_ids) | Q(feature__isnull=True)
        ).select_related("small_deployment")
    }
    default = policies.get(None)
    fallback = default.small_deployment.group if default and default.small_deployment else "small model"
    out = {}
    for feature_id in feature_ids:
        policy = policies.get(feature_id)
        out[feature_id] = (
            policy.small_deployment.group if policy is not None and policy.small_deployment else fallback
        )
    return out


def slm_unavailable_conditions(*, now: datetime) -> list[Condition]:
    """Small models whose circuit breaker sent calls straight to the frontier in the last few minutes.

    One alert per small model group (its breaker guards every feature that uses it), from the
    `slm_unavailable` records of ALERT_SLM_UNAVAILABLE_WINDOW_MINUTES (default 2); it resolves once
    the breaker has closed for that long. "Since" is the first such call of the episode.
    """
    minutes = int(_setting("ALERT_SLM_UNAVAILABLE_WINDOW_MINUTES", 2))
    start = now - timedelta(minutes=minutes)
    rows = list(
        SpendEvent.objects.filter(fallback_reason=SLM_UNAVAILABLE, start_time__gte=start, start_time__lt=now)
        .values("feature_id")
        .annotate(calls=Count("id"), first=Min("start_time"), last=Max("start_time"))
    )
    if not rows:
        return []
    groups = _small_model_of_features([r["feature_id"] for r in rows])
    features = Feature.objects.in_bulk([r["feature_id"] for r in rows])
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_group[groups[row["feature_id"]]].append(row)
    conditions = []
    for group, group_rows in sorted(by_group.items()):
        key = f"slm_unavailable:{group}"
        since = min(r["first"] for r in group_rows)
        existing = Alert.objects.filter(key=key).exclude(status=AlertStatus.RESOLVED).first()
        if existing is not None and existing.details.get("since"):
            since = min(since, datetime.fromisoformat(existing.details["since"]))
        calls = sum(r["calls"] for r in group_rows)
        names = sorted(features[r["feature_id"]].slug for r in group_rows if r["feature_id"] in features)
        team_ids = {features[r["feature_id"]].team_id for r in group_rows if r["feature_id"] in features}
        conditions.append(
            Condition(
                key=key,
                kind=AlertKind.SLM_UNAVAILABLE,
                severity=AlertSeverity.CRITICAL,
                title=f"Small model {group} unavailable since {since:%H:%M} UTC",
                message=(
                    f"The circuit breaker of small model {group} is open: since {since:%Y-%m-%d %H:%M} UTC its "
                    f"calls go straight to the frontier model ({calls} in the last {minutes} minutes, features "
                    f"{', '.join(names)}). Savings stop while it lasts; proxies probe it and trust it again "
                    "once probes succeed. These calls are not counted as fallbacks."
                ),
                details={
                    "model_group": group,
                    "since": since.isoformat(),
                    "calls": calls,
                    "window_minutes": minutes,
                    "features": names,
                    "last_seen": max(r["last"] for r in group_rows).isoformat(),
                },
                # one team: that team's members see it; shared by several teams: an organisation alert
                team_id=next(iter(team_ids)) if len(team_ids) == 1 else None,
            )
        )
    return conditions


def _scope_name(budget: Budget) -> str:
    return f"feature {budget.feature.slug}" if budget.feature_id else f"team {budget.team.slug}"


def _current_statuses(now: datetime) -> list[BudgetStatus]:
    statuses = BudgetStatus.objects.filter(budget__is_active=True).select_related(
        "budget__team", "budget__feature"
    )
    return [s for s in statuses if s.period == budgets.period_of(s.budget.team, now).label]


def budget_threshold_conditions(*, now: datetime) -> list[Condition]:
    """The highest threshold each budget's spend has crossed this period (a higher crossing supersedes)."""
    conditions = []
    for status in _current_statuses(now):
        budget = status.budget
        pct = status.spend_usd / status.limit_usd * 100 if status.limit_usd else Decimal(0)
        crossed = [t for t in sorted(budget.thresholds) if pct >= t]
        if not crossed:
            continue
        threshold = crossed[-1]
        action = budget.get_action_display().lower() if threshold >= 100 else "alert"
        conditions.append(
            Condition(
                key=f"budget_threshold:{budget.code}:{threshold}",
                kind=AlertKind.BUDGET_THRESHOLD,
                severity=AlertSeverity.CRITICAL if threshold >= 100 else AlertSeverity.WARNING,
                title=f"Budget of {_scope_name(budget)} passed {threshold} %",
                message=(
                    f"{_scope_name(budget).capitalize()} has spent ${status.spend_usd:.2f} of its "
                    f"${status.limit_usd:.2f} budget for {status.period} ({pct:.1f} %)."
                    + (f" Action at 100 %: {action}." if threshold >= 100 else "")
                ),
                details={
                    "threshold": threshold,
                    "spend_usd": f"{status.spend_usd:.2f}",
                    "limit_usd": f"{status.limit_usd:.2f}",
                    "period": status.period,
                },
                team_id=budget.team_id,
                feature_id=budget.feature_id,
            )
        )
    return conditions


def budget_forecast_conditions(*, now: datetime) -> list[Condition]:
    """Budgets whose month-end projection exceeds the limit (once the forecast has an interval)."""
    conditions = []
    for status in _current_statuses(now):
        budget = status.budget
        if status.projection_usd is None or status.projection_low_usd is None:
            continue
        if status.projection_usd <= status.limit_usd:
            continue
        runs_out = f" At this rate it runs out on {status.runs_out_on:%d %b}." if status.runs_out_on else ""
        conditions.append(
            Condition(
                key=f"budget_forecast:{budget.code}",
                kind=AlertKind.BUDGET_FORECAST,
                title=f"Budget of {_scope_name(budget)} projected to overspend",
                message=(
                    f"{_scope_name(budget).capitalize()} is projected to spend ${status.projection_usd:.2f} "
                    f"(90 % interval ${status.projection_low_usd:.2f}–${status.projection_high_usd:.2f}) "
                    f"against a ${status.limit_usd:.2f} budget for {status.period}.{runs_out}"
                ),
                details={
                    "projection_usd": f"{status.projection_usd:.2f}",
                    "low_usd": f"{status.projection_low_usd:.2f}",
                    "high_usd": f"{status.projection_high_usd:.2f}",
                    "limit_usd": f"{status.limit_usd:.2f}",
                    "runs_out_on": status.runs_out_on.isoformat() if status.runs_out_on else None,
                    "period": status.period,
                },
                team_id=budget.team_id,
                feature_id=budget.feature_id,
            )
        )
    return conditions


def robust_baseline(values: list[Decimal]) -> tuple[Decimal, Decimal]:
    """(median, scaled MAD) of the values: a centre and spread one outlier hour cannot move."""
    centre = Decimal(median(values))
    mad = Decimal(median([abs(v - centre) for v in values]))
    return centre, mad * MAD_SCALE


def spend_anomaly_conditions(*, now: datetime) -> list[Condition]:
    """Features whose last complete hour cost far more than the hours before: > median + k·MAD (scaled).

    Needs ALERT_ANOMALY_MIN_HISTORY_HOURS of history, and the excess must be at least ALERT_ANOMALY_MIN_USD
    so that a flat baseline (MAD 0) does not alert on cents.
    """
    hours = int(_setting("ALERT_ANOMALY_BASELINE_HOURS", 48))
    k = Decimal(str(_setting("ALERT_ANOMALY_K", 5)))
    min_usd = Decimal(str(_setting("ALERT_ANOMALY_MIN_USD", "1")))
    min_history = int(_setting("ALERT_ANOMALY_MIN_HISTORY_HOURS", 12))
    last = hour_floor(now) - timedelta(hours=1)
    start = last - timedelta(hours=hours)
    rows = (
        rollups_in(start=start, end=last + timedelta(hours=1))
        .values("feature_id", "hour")
        .annotate(cost=Sum("cost_usd"))
    )
    series: dict[int, dict[datetime, Decimal]] = defaultdict(dict)
    for r in rows:
        series[r["feature_id"]][r["hour"]] = Decimal(r["cost"] or 0)
    features = Feature.objects.in_bulk(list(series))
    conditions = []
    for feature_id, by_hour in series.items():
        cost = by_hour.get(last, Decimal(0))
        history = [h for h in by_hour if h < last]
        if not history or min(history) > last - timedelta(hours=min_history):
            continue
        baseline = [by_hour.get(start + timedelta(hours=i), Decimal(0)) for i in range(hours)]
        centre, spread = robust_baseline(baseline)
        limit = centre + k * spread
        if cost <= limit or cost - centre < min_usd:
            continue
        feature = features.get(feature_id)
        if feature is None:
            continue
        conditions.append(
            Condition(
                key=f"spend_anomaly:feature:{feature_id}",
                kind=AlertKind.SPEND_ANOMALY,
                title=f"{feature.name}: ${cost:.2f} in the hour from {last:%H:00} UTC, far above usual",
                message=(
                    f"Feature {feature.slug} spent ${cost:.2f} in the hour starting {last:%Y-%m-%d %H:00} UTC; "
                    f"the last {hours} hours had a median of ${centre:.2f} and a robust spread (MAD) of "
                    f"${spread:.2f}, so anything above ${limit:.2f} is anomalous (k = {k})."
                ),
                details={
                    "hour": last.isoformat(),
                    "cost_usd": f"{cost:.2f}",
                    "median_usd": f"{centre:.4f}",
                    "mad_usd": f"{spread:.4f}",
                    "limit_usd": f"{limit:.4f}",
                    "k": str(k),
                    "baseline_hours": hours,
                },
                team_id=feature.team_id,
                feature_id=feature_id,
            )
        )
    return conditions


def proxy_stale_conditions(*, now: datetime) -> list[Condition]:
    """Active proxies without a heartbeat for ALERT_PROXY_STALE_SECONDS (default: the fleet's unreachable
    threshold, 120 s), or with none ever once registered that long."""
    stale_s = int(_setting("ALERT_PROXY_STALE_SECONDS", settings.FLEET_UNREACHABLE_AFTER_S))
    cutoff = now - timedelta(seconds=stale_s)
    conditions = []
    for proxy in Proxy.objects.filter(is_active=True):
        seen = proxy.last_heartbeat_at
        if seen is not None and seen >= cutoff:
            continue
        if seen is None and proxy.created_at >= cutoff:
            continue  # just registered: give it time to start
        if seen is None:
            what = (
                f"has not sent a heartbeat since it was registered at {proxy.created_at:%Y-%m-%d %H:%M} UTC"
            )
        else:
            what = f"last sent a heartbeat at {seen:%Y-%m-%d %H:%M:%S} UTC ({int((now - seen).total_seconds())} s ago)"
        conditions.append(
            Condition(
                key=f"proxy_stale:{proxy.pk}",
                kind=AlertKind.PROXY_STALE,
                severity=AlertSeverity.CRITICAL,
                title=f"Proxy {proxy.name} is stale or unreachable",
                message=f"Proxy {proxy.name} ({proxy.base_url}, pool {proxy.pool}) {what}.",
                details={
                    "last_heartbeat_at": seen.isoformat() if seen else None,
                    "applied_version": proxy.applied_version,
                    "stale_after_s": stale_s,
                },
                proxy_id=proxy.pk,
            )
        )
    return conditions


CHECKS = {
    AlertKind.FALLBACK_RATE: fallback_rate_conditions,
    AlertKind.BUDGET_THRESHOLD: budget_threshold_conditions,
    AlertKind.BUDGET_FORECAST: budget_forecast_conditions,
    AlertKind.SPEND_ANOMALY: spend_anomaly_conditions,
    AlertKind.PROXY_STALE: proxy_stale_conditions,
    AlertKind.SLM_UNAVAILABLE: slm_unavailable_conditions,
}


def alerts_evaluate(*, now: datetime) -> dict[str, dict[str, int]]:
    """Evaluate budgets (state, forecast, enforcement) then every alert check; safe to run twice for one `now`.

    A check that fails is logged and skipped, so one broken check never stops the others.
    """
    summary: dict[str, dict[str, int]] = {}
    try:
        budgets.budgets_evaluate(now=now)
    except Exception:
        log.exception("budget evaluation failed")
    for kind, check in CHECKS.items():
        try:
            with transaction.atomic():
                summary[str(kind)] = _sync(kind, check(now=now), now)
        except Exception:
            log.exception("alert check %s failed", kind)
    return summary


# --- reads ------------------------------------------------------------------------------------------


def alerts_visible(user: Any):  # type: ignore[no-untyped-def]
    """Alerts the user may see: their teams' alerts, and fleet alerts (no team) for organisation-wide roles."""

    qs = Alert.objects.select_related("team", "feature", "proxy", "acknowledged_by", "resolved_by")
    if is_org_wide(user):
        return qs
    return qs.filter(team__in=visible_teams(user))


def alerts_active(user: Any, now: datetime | None = None):  # type: ignore[no-untyped-def]
    """Unresolved alerts the user may see that are not snoozed right now."""
    now = now or timezone.now()
    return (
        alerts_visible(user)
        .exclude(status=AlertStatus.RESOLVED)
        .filter(Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
    )


def open_alert_count(user: Any) -> int:
    return alerts_active(user).count()
