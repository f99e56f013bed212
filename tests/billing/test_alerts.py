"""Alerts under frozen time: each kind opens once, deduplicates while it holds, resolves when it clears; ack/resolve RBAC."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django.urls import reverse

from billing import alerts, budgets
from billing.models import SpendEvent, SpendRollupHourly
from billing.models.budgets import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertStatus,
    BudgetAction,
    FeatureAlertSettings,
    Notification,
)
from billing.schedule import BEAT_SCHEDULE
from controlplane.models import AuditEntry
from routing.models import Proxy
from tests.factories import ProxyFactory

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


def calls(feature, *, at: datetime, requests: int, fallbacks: dict[str, int] | None = None) -> None:
    """`requests` calls in the minute before `at`; the first ones fall back for the given reasons."""
    rows = []
    reasons = [r for r, n in (fallbacks or {}).items() for _ in range(n)]
    for i in range(requests):
        start = at - timedelta(seconds=30, milliseconds=i)
        call_id = uuid.uuid4().hex
        common = {"call_id": call_id, "team_id": feature.team_id, "feature": feature, "start_time": start,
                  "end_time": start + timedelta(milliseconds=100), "status": "success"}  # fmt: skip
        if i < len(reasons):
            rows.append(
                SpendEvent(
                    event_id=uuid.uuid4().hex,
                    attempt=1,
                    route="small",
                    model_group="slm",
                    **{**common, "status": "error"},
                )
            )
            rows.append(SpendEvent(event_id=uuid.uuid4().hex, attempt=2, route="small", model_group="frontier", fallback=True, fallback_reason=reasons[i], **common))  # fmt: skip
        else:
            rows.append(
                SpendEvent(event_id=uuid.uuid4().hex, attempt=1, route="small", model_group="slm", **common)
            )
    SpendEvent.objects.bulk_create(rows)


def evaluate(at: datetime) -> dict:
    with time_machine.travel(at, tick=False):
        return alerts.alerts_evaluate(now=at)


def unresolved(kind: str) -> list[Alert]:
    return list(Alert.objects.filter(kind=kind).exclude(status=AlertStatus.RESOLVED))


@pytest.fixture(autouse=True)
def no_datadog(settings):
    settings.DATADOG_ENABLED = False  # notifications are tested in test_notifications


def skipped_calls(feature, *, at: datetime, requests: int) -> None:
    """Calls an open breaker sent straight to the frontier in the minute before `at` (one attempt each)."""
    SpendEvent.objects.bulk_create(
        SpendEvent(
            event_id=uuid.uuid4().hex,
            call_id=uuid.uuid4().hex,
            attempt=1,
            team_id=feature.team_id,
            feature=feature,
            start_time=at - timedelta(seconds=50 - i % 40),
            end_time=at - timedelta(seconds=49 - i % 40),
            status="success",
            route="frontier",
            model_group="frontier",
            fallback=False,
            fallback_reason="slm_unavailable",
            decision_reason="slm_unavailable",
        )
        for i in range(requests)
    )


# --- fallback rate -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_fallback_rate_opens_once_deduplicates_and_resolves(feature):
    calls(feature, at=T0, requests=100, fallbacks={"timeout": 15, "error": 5, "low_confidence": 5})
    summary = evaluate(T0)
    assert summary["fallback_rate"] == {"failing": 1, "opened": 1, "resolved": 0}
    (alert,) = unresolved(AlertKind.FALLBACK_RATE)
    assert alert.feature == feature and alert.status == AlertStatus.OPEN
    assert alert.details["by_reason"] == {"timeout": 15, "error": 5, "low_confidence": 5}
    assert alert.details["requests"] == 100 and alert.details["rate"] == 0.25
    assert "timeout 15, error 5, low_confidence 5" in alert.message

    evaluate(T0 + timedelta(minutes=1))  # still failing: same alert, refreshed
    assert Alert.objects.filter(kind=AlertKind.FALLBACK_RATE).count() == 1
    alert.refresh_from_db()
    assert alert.last_seen_at == T0 + timedelta(minutes=1)

    calls(feature, at=T0 + timedelta(minutes=16), requests=60)  # the bad minute left the window
    summary = evaluate(T0 + timedelta(minutes=16))
    assert summary["fallback_rate"]["resolved"] == 1
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_by is None

    calls(feature, at=T0 + timedelta(minutes=20), requests=60, fallbacks={"timeout": 30})
    evaluate(T0 + timedelta(minutes=20))  # a new occurrence opens a new alert; history keeps the old one
    assert Alert.objects.filter(kind=AlertKind.FALLBACK_RATE).count() == 2
    assert len(unresolved(AlertKind.FALLBACK_RATE)) == 1


@pytest.mark.django_db
def test_fallback_rate_needs_the_minimum_sample_and_ignores_budget_degrade(feature):
    calls(feature, at=T0, requests=49, fallbacks={"timeout": 40})
    evaluate(T0)
    assert unresolved(AlertKind.FALLBACK_RATE) == []
    calls(feature, at=T0 + timedelta(minutes=20), requests=60, fallbacks={"budget": 60})
    evaluate(T0 + timedelta(minutes=20))
    assert unresolved(AlertKind.FALLBACK_RATE) == []


@pytest.mark.django_db
def test_an_open_breaker_is_its_own_alert_and_not_a_fallback(feature):
    from tests.routing.fleet_support import make_routing

    make_routing()  # the default policy's small deployment is the group "slm"
    calls(feature, at=T0, requests=40, fallbacks={"timeout": 5})
    skipped_calls(feature, at=T0, requests=200)  # every call of the minute skipped the SLM
    evaluate(T0)
    assert unresolved(AlertKind.FALLBACK_RATE) == []  # 5 of 240 fell back; the skipped ones are not fallbacks
    (alert,) = unresolved(AlertKind.SLM_UNAVAILABLE)
    assert alert.title == "Small model slm unavailable since 11:59 UTC"
    assert alert.severity == AlertSeverity.CRITICAL and alert.team_id == feature.team_id
    assert alert.details["calls"] == 200 and alert.details["features"] == [feature.slug]
    assert "not counted as fallbacks" in alert.message

    # still open a minute later: the same alert, still "since 11:59"
    skipped_calls(feature, at=T0 + timedelta(minutes=1), requests=100)
    evaluate(T0 + timedelta(minutes=1))
    (again,) = unresolved(AlertKind.SLM_UNAVAILABLE)
    assert again.pk == alert.pk and again.title == alert.title

    # the breaker closed: no skipped call for two minutes resolves it
    calls(feature, at=T0 + timedelta(minutes=4), requests=60)
    evaluate(T0 + timedelta(minutes=4))
    assert unresolved(AlertKind.SLM_UNAVAILABLE) == []


@pytest.mark.django_db
def test_fallback_threshold_is_overridable_per_feature(feature, other_feature):
    FeatureAlertSettings.objects.create(feature=feature, fallback_threshold=Decimal("0.05"))
    calls(feature, at=T0, requests=100, fallbacks={"error": 10})
    calls(other_feature, at=T0, requests=100, fallbacks={"error": 10})  # 10 % is under the default 20 %
    evaluate(T0)
    assert [a.feature for a in unresolved(AlertKind.FALLBACK_RATE)] == [feature]


# --- budgets ---------------------------------------------------------------------------------------------


def rollup(feature, hour: datetime, cost: str) -> None:
    SpendRollupHourly.objects.create(
        hour=hour,
        team_id=feature.team_id,
        feature=feature,
        route="small",
        model="slm",
        requests=1,
        cost_usd=Decimal(cost),
    )


@pytest.mark.django_db
def test_budget_thresholds_open_one_alert_per_crossing_and_resolve_next_month(feature):
    budgets.budget_create(
        actor=None, team=feature.team, feature=feature, amount_usd=Decimal("100"), action=BudgetAction.ALERT
    )
    rollup(feature, datetime(2026, 11, 2, tzinfo=UTC), "55")
    evaluate(T0)
    (first,) = unresolved(AlertKind.BUDGET_THRESHOLD)
    assert first.details["threshold"] == 50 and first.team == feature.team
    evaluate(T0 + timedelta(minutes=1))
    assert Alert.objects.filter(kind=AlertKind.BUDGET_THRESHOLD).count() == 1

    rollup(feature, datetime(2026, 11, 3, tzinfo=UTC), "50")  # 105 %: the 100 % crossing supersedes 50 %
    evaluate(T0 + timedelta(minutes=2))
    (over,) = unresolved(AlertKind.BUDGET_THRESHOLD)
    assert over.details["threshold"] == 100 and over.severity == "critical"
    assert "$105.00 of its $100.00 budget for 2026-11" in over.message
    first.refresh_from_db()
    assert first.status == AlertStatus.RESOLVED

    evaluate(datetime(2026, 12, 1, 0, 1, tzinfo=UTC))  # a new month: spend starts at zero
    assert unresolved(AlertKind.BUDGET_THRESHOLD) == []


@pytest.mark.django_db
def test_projected_overspend_alerts_with_the_run_out_date_and_clears_when_raised(feature):
    budget = budgets.budget_create(actor=None, team=feature.team, feature=feature, amount_usd=Decimal("250"))
    for day in range(1, 16):
        rollup(feature, datetime(2026, 11, day, 9, tzinfo=UTC), "10")
    evaluate(T0)
    (alert,) = unresolved(AlertKind.BUDGET_FORECAST)
    assert alert.details["projection_usd"] == "300.00" and alert.details["runs_out_on"] == "2026-11-25"
    assert "runs out on 25 Nov" in alert.message
    evaluate(T0 + timedelta(minutes=1))
    assert Alert.objects.filter(kind=AlertKind.BUDGET_FORECAST).count() == 1
    budgets.budget_update(actor=None, budget=budget, amount_usd=Decimal("400"))
    evaluate(T0 + timedelta(minutes=2))
    assert unresolved(AlertKind.BUDGET_FORECAST) == []


# --- spend anomaly ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_spend_anomaly_uses_median_and_mad_of_the_recent_hours(feature):
    now = T0 + timedelta(minutes=5)  # evaluates the complete hour 11:00–12:00
    last = datetime(2026, 11, 16, 11, tzinfo=UTC)
    for i in range(1, 49):  # 2, 2.5, 3, 3.5, 4 USD an hour (median 3, MAD 0.5) and one earlier spike
        rollup(feature, last - timedelta(hours=i), "9" if i == 20 else str(Decimal("2") + Decimal(i % 5) / 2))
    rollup(feature, last, "6")  # 3 above the median, but within k·MAD (5 × 1.4826 × 0.5 = 3.7)
    evaluate(now)
    assert unresolved(AlertKind.SPEND_ANOMALY) == []
    SpendRollupHourly.objects.filter(hour=last).update(cost_usd=Decimal("40"))
    evaluate(now + timedelta(minutes=1))
    (alert,) = unresolved(AlertKind.SPEND_ANOMALY)
    assert alert.details["cost_usd"] == "40.00" and alert.details["median_usd"] == "3.0000"
    evaluate(now + timedelta(minutes=2))
    assert Alert.objects.filter(kind=AlertKind.SPEND_ANOMALY).count() == 1
    rollup(feature, last + timedelta(hours=1), "3")  # the next hour is normal again
    evaluate(now + timedelta(hours=1))
    assert unresolved(AlertKind.SPEND_ANOMALY) == []


@pytest.mark.django_db
def test_spend_anomaly_needs_history_and_a_minimum_excess(feature, other_feature):
    last = datetime(2026, 11, 16, 11, tzinfo=UTC)
    rollup(feature, last, "50")  # brand-new feature: no baseline yet
    for i in range(1, 49):
        rollup(other_feature, last - timedelta(hours=i), "0.01")
    rollup(other_feature, last, "0.50")  # 50× the baseline but only 49 cents more
    evaluate(T0 + timedelta(minutes=5))
    assert unresolved(AlertKind.SPEND_ANOMALY) == []


def test_robust_baseline_ignores_one_outlier():
    centre, spread = alerts.robust_baseline([Decimal(v) for v in ("1", "2", "3", "4", "1000")])
    assert centre == Decimal("3")
    assert spread == Decimal("1") * alerts.MAD_SCALE


# --- proxies ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_stale_proxy_opens_and_resolves_on_heartbeat():
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        proxy = ProxyFactory(name="edge-1")
    Proxy.objects.filter(pk=proxy.pk).update(last_heartbeat_at=T0 - timedelta(minutes=5))
    with time_machine.travel(T0 - timedelta(seconds=30), tick=False):
        quiet_new = ProxyFactory(name="just-registered")  # no heartbeat yet, but only 30 s old
    evaluate(T0)
    (alert,) = unresolved(AlertKind.PROXY_STALE)
    assert alert.proxy == proxy and "edge-1" in alert.title and "300 s ago" in alert.message
    evaluate(T0 + timedelta(minutes=1))
    assert Alert.objects.filter(kind=AlertKind.PROXY_STALE).count() == 1
    Proxy.objects.filter(pk__in=[proxy.pk, quiet_new.pk]).update(last_heartbeat_at=T0 + timedelta(minutes=2))
    evaluate(T0 + timedelta(minutes=2, seconds=10))
    assert unresolved(AlertKind.PROXY_STALE) == []


# --- lifecycle, constraint, schedule -------------------------------------------------------------------


@pytest.mark.django_db
def test_one_unresolved_alert_per_key_is_a_database_rule(feature):
    values = {"kind": AlertKind.FALLBACK_RATE, "title": "x", "opened_at": T0, "last_seen_at": T0}
    Alert.objects.create(key="k", status=AlertStatus.RESOLVED, **values)
    Alert.objects.create(key="k", status=AlertStatus.ACKNOWLEDGED, **values)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(key="k", status=AlertStatus.OPEN, **values)


@pytest.mark.django_db
def test_acknowledged_alert_stays_acknowledged_while_failing_then_resolves(feature, users):
    calls(feature, at=T0, requests=100, fallbacks={"timeout": 30})
    evaluate(T0)
    (alert,) = unresolved(AlertKind.FALLBACK_RATE)
    assert alerts.alert_acknowledge(alert=alert, actor=users["pm"]) is True
    assert alerts.alert_acknowledge(alert=alert, actor=users["pm"]) is False
    evaluate(T0 + timedelta(minutes=1))
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED and alert.acknowledged_by == users["pm"]
    evaluate(T0 + timedelta(minutes=30))
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert AuditEntry.objects.filter(object_type="billing.Alert", object_id=str(alert.pk)).count() == 1


@pytest.mark.django_db
def test_evaluation_queues_notifications_once_per_event(feature, settings):
    settings.DATADOG_ENABLED = True
    calls(feature, at=T0, requests=100, fallbacks={"timeout": 30})
    evaluate(T0)
    evaluate(T0 + timedelta(minutes=1))
    evaluate(T0 + timedelta(minutes=30))
    events = sorted(Notification.objects.values_list("channel", "event"))
    assert events == [("datadog", "opened"), ("datadog", "resolved")]


def test_beat_runs_the_evaluation_every_minute_with_an_expiry():
    entry = BEAT_SCHEDULE["billing-alerts-evaluate"]
    assert entry["task"] == "billing.tasks.alerts_evaluate"
    assert entry["schedule"].minute == set(range(60))
    assert 0 < entry["options"]["expires"] <= 60
    from controlplane.celery import app

    app.loader.import_default_modules()  # what a worker does at start: autodiscovers billing.tasks
    assert {"billing.tasks.alerts_evaluate", "billing.tasks.notifications_send_due"} <= set(app.tasks)


# --- views -----------------------------------------------------------------------------------------------

ACK = {
    "admin": 200,
    "pm": 200,
    "mlops": 200,
    "viewer": 403,
    "team_viewer": 403,
    "outsider": 404,
    "nobody": 404,
}


@pytest.fixture
def open_alert(feature):
    return Alert.objects.create(
        key=f"fallback_rate:feature:{feature.pk}", kind=AlertKind.FALLBACK_RATE, team=feature.team, feature=feature,
        title="Ticket summariser: 30% of requests fell back", opened_at=T0, last_seen_at=T0,
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(ACK))
def test_acknowledge_by_role(client, users, open_alert, role):
    client.force_login(users[role])
    response = client.post(
        reverse("alert-acknowledge", args=[open_alert.code]), headers={"HX-Request": "true"}
    )
    assert response.status_code == ACK[role]
    open_alert.refresh_from_db()
    assert (open_alert.status == AlertStatus.ACKNOWLEDGED) == (ACK[role] == 200)


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(ACK))
def test_resolve_by_role(client, users, open_alert, role):
    client.force_login(users[role])
    response = client.post(reverse("alert-resolve", args=[open_alert.code]))
    assert response.status_code == (302 if ACK[role] == 200 else ACK[role])
    open_alert.refresh_from_db()
    assert (open_alert.status == AlertStatus.RESOLVED) == (ACK[role] == 200)
    if ACK[role] == 200:
        assert open_alert.resolved_by == users[role]


@pytest.mark.django_db
def test_alerts_page_filters_and_hides_other_teams(client, users, open_alert, other_feature):
    Alert.objects.create(
        key="other", kind=AlertKind.SPEND_ANOMALY, team=other_feature.team, feature=other_feature,
        title="Email copywriter spend spike", opened_at=T0, last_seen_at=T0,
    )  # fmt: skip
    client.force_login(users["team_viewer"])
    page = client.get(reverse("alerts")).content.decode()
    assert "fell back" in page and "spend spike" not in page
    client.force_login(users["viewer"])  # organisation-wide
    assert "spend spike" in client.get(reverse("alerts")).content.decode()
    rows = client.get(
        reverse("alerts"), {"kind": "spend_anomaly"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "spend spike" in rows and "fell back" not in rows and "<html" not in rows
    rows = client.get(reverse("alerts"), {"team": str(open_alert.team.code)}).content.decode()
    assert "fell back" in rows and "spend spike" not in rows
    rows = client.get(reverse("alerts"), {"status": "resolved"}).content.decode()
    assert "fell back" not in rows
    client.force_login(users["outsider"])
    assert client.post(reverse("alert-acknowledge", args=[open_alert.code])).status_code == 404


@pytest.mark.django_db
def test_badge_counts_open_alerts_the_user_can_see(client, users, open_alert):
    client.force_login(users["team_viewer"])
    badge = client.get(reverse("alert-badge")).content.decode()
    assert ">1</a>" in badge
    client.force_login(users["outsider"])
    assert "badge" not in client.get(reverse("alert-badge")).content.decode()
    page = client.get(reverse("feature-list")).content.decode()
    assert f'hx-get="{reverse("alert-badge")}"' in page and "every 15s" in page
