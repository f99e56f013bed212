"""Alert snooze under frozen time: a snoozed alert sends nothing and is not active until the snooze ends;
snoozing is audited and limited to the roles that act on alerts; bad input names its field; every alert
links to the chart that shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from billing import alerts
from billing.models import Alert, AlertKind, AlertStatus, Notification
from controlplane.models import AuditEntry
from tests.billing.test_alerts import calls, evaluate

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.DATADOG_ENABLED = True  # one notification channel that needs no team webhook
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _failing(feature, at):
    calls(feature, at=at, requests=100, fallbacks={"timeout": 60})
    evaluate(at)


def _events(alert):
    return sorted(Notification.objects.filter(alert=alert).values_list("event", flat=True))


@pytest.mark.django_db
def test_a_snoozed_alert_sends_nothing_and_is_not_active_until_the_snooze_ends(feature, users):
    _failing(feature, T0)
    alert = Alert.objects.get(kind=AlertKind.FALLBACK_RATE)
    assert _events(alert) == ["opened"]
    assert alerts.open_alert_count(users["pm"]) == 1

    alerts.alert_snooze(alert=alert, actor=users["pm"], until=T0 + timedelta(hours=1), now=T0)
    assert alert.snoozed_until == T0 + timedelta(hours=1) and alert.snoozed_by == users["pm"]
    assert alerts.open_alert_count(users["pm"]) == 0
    entry = AuditEntry.objects.get(object_type="billing.Alert", object_id=str(alert.pk))
    assert entry.changes == {"snoozed_until": [None, (T0 + timedelta(hours=1)).isoformat()]}
    assert entry.actor == users["pm"]

    _failing(feature, T0 + timedelta(minutes=30))  # still failing, still snoozed
    alert.refresh_from_db()
    assert alert.is_snoozed(T0 + timedelta(minutes=30)) and _events(alert) == ["opened"]

    _failing(feature, T0 + timedelta(minutes=61))  # the snooze ended while it still fails: active again
    alert.refresh_from_db()
    assert alert.snoozed_until is None and alert.status == AlertStatus.OPEN
    assert alerts.open_alert_count(users["pm"]) == 1
    assert _events(alert) == ["opened"]  # it was announced before the snooze: not twice


@pytest.mark.django_db
def test_an_alert_that_opens_and_clears_during_a_snooze_is_never_announced(feature, users):
    _failing(feature, T0)
    first = Alert.objects.get(kind=AlertKind.FALLBACK_RATE)
    alerts.alert_snooze(alert=first, actor=users["mlops"], until=T0 + timedelta(hours=24), now=T0)
    calls(feature, at=T0 + timedelta(minutes=16), requests=60)
    evaluate(T0 + timedelta(minutes=16))  # cleared during the snooze: no "resolved" either
    first.refresh_from_db()
    assert first.status == AlertStatus.RESOLVED and _events(first) == ["opened"]

    _failing(feature, T0 + timedelta(minutes=20))  # fails again: the new alert keeps the snooze
    second = Alert.objects.exclude(status=AlertStatus.RESOLVED).get()
    assert second.pk != first.pk and second.snoozed_until == T0 + timedelta(hours=24)
    assert _events(second) == [] and alerts.open_alert_count(users["mlops"]) == 0
    calls(feature, at=T0 + timedelta(minutes=40), requests=60)
    evaluate(T0 + timedelta(minutes=40))
    second.refresh_from_db()
    assert second.status == AlertStatus.RESOLVED and _events(second) == []

    _failing(feature, T0 + timedelta(hours=25))  # after the snooze a new occurrence notifies again
    third = Alert.objects.exclude(status=AlertStatus.RESOLVED).get()
    assert third.snoozed_until is None and _events(third) == ["opened"]


@pytest.mark.django_db
def test_ending_a_snooze_by_hand_announces_an_alert_that_opened_during_it(feature, users):
    _failing(feature, T0)
    first = Alert.objects.get()
    alerts.alert_snooze(alert=first, actor=users["pm"], until=T0 + timedelta(hours=2), now=T0)
    calls(feature, at=T0 + timedelta(minutes=16), requests=60)
    evaluate(T0 + timedelta(minutes=16))
    _failing(feature, T0 + timedelta(minutes=20))
    second = Alert.objects.exclude(status=AlertStatus.RESOLVED).get()
    assert _events(second) == []
    alerts.alert_snooze(alert=second, actor=users["pm"], until=None, now=T0 + timedelta(minutes=21))
    assert second.snoozed_until is None and _events(second) == ["opened"]
    assert AuditEntry.objects.filter(object_id=str(second.pk), note="alert snooze ended by hand").exists()


SNOOZE = {"admin": 200, "pm": 200, "mlops": 200, "viewer": 403, "team_viewer": 403, "outsider": 404}


@pytest.fixture
def open_alert(feature):
    return Alert.objects.create(
        key=f"fallback_rate:feature:{feature.pk}", kind=AlertKind.FALLBACK_RATE, team=feature.team,
        feature=feature, title="Ticket summariser: 30% of requests fell back", opened_at=T0, last_seen_at=T0,
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(SNOOZE))
def test_snooze_by_role(client, users, open_alert, role):
    client.force_login(users[role])
    response = client.post(
        reverse("alert-snooze", args=[open_alert.code]), {"duration": "24h"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == SNOOZE[role]
    open_alert.refresh_from_db()
    if SNOOZE[role] == 200:
        assert open_alert.snoozed_until == T0 + timedelta(hours=24) and open_alert.snoozed_by == users[role]
        row = response.content.decode()
        assert "snoozed until 2026-11-17 12:00" in row and "End snooze" in row and "<html" not in row
    else:
        assert open_alert.snoozed_until is None


@pytest.mark.django_db
def test_snooze_until_a_date_uses_the_teams_midnight(client, users, open_alert):
    open_alert.team.timezone = "Europe/Paris"
    open_alert.team.save()
    client.force_login(users["pm"])
    client.post(reverse("alert-snooze", args=[open_alert.code]), {"duration": "date", "until": "2026-11-20"})
    open_alert.refresh_from_db()
    assert open_alert.snoozed_until == datetime(2026, 11, 19, 23, 0, tzinfo=UTC)  # 00:00 in Paris
    page = client.get(reverse("alerts")).content.decode()
    assert "fell back" not in page  # the default view lists active alerts only
    snoozed = client.get(reverse("alerts"), {"status": "snoozed"}).content.decode()
    assert "fell back" in snoozed and "snoozed until" in snoozed
    assert "badge" not in client.get(reverse("alert-badge")).content.decode()
    client.post(reverse("alert-snooze", args=[open_alert.code]), {"duration": "off"})
    open_alert.refresh_from_db()
    assert open_alert.snoozed_until is None
    assert ">1</a>" in client.get(reverse("alert-badge")).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"duration": "date"}, "Until: Pick the day the snooze ends"),
        ({"duration": "date", "until": "2026-11-16"}, "Until: Choose a time in the future"),
        ({"duration": "date", "until": "2027-06-01"}, "Until: Snooze for at most 90 days"),
        ({"duration": "date", "until": "tomorrow"}, "Until: Enter a valid date."),
        ({"duration": "1w"}, "Snooze: Select a valid choice. 1w is not one of the available choices."),
        ({}, "Snooze: This field is required."),
    ],
)
def test_bad_snooze_values_name_the_field(client, users, open_alert, values, message):
    client.force_login(users["mlops"])
    response = client.post(
        reverse("alert-snooze", args=[open_alert.code]), values, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert message in response.content.decode()
    open_alert.refresh_from_db()
    assert open_alert.snoozed_until is None
    assert not AuditEntry.objects.filter(object_type="billing.Alert").exists()


@pytest.mark.django_db
def test_a_resolved_alert_cannot_be_snoozed(client, users, open_alert):
    alerts.alert_resolve(alert=open_alert, now=T0)
    client.force_login(users["pm"])
    response = client.post(
        reverse("alert-snooze", args=[open_alert.code]), {"duration": "1h"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422 and "resolved already" in response.content.decode()


@pytest.mark.django_db
def test_each_alert_links_to_the_chart_that_shows_it(client, users, open_alert, feature):
    from tests.factories import ProxyFactory

    budget = Alert.objects.create(
        key="budget", kind=AlertKind.BUDGET_THRESHOLD, team=feature.team, feature=feature, title="80% of budget",
        opened_at=T0, last_seen_at=T0,
    )  # fmt: skip
    anomaly = Alert.objects.create(
        key="anomaly", kind=AlertKind.SPEND_ANOMALY, team=feature.team, feature=feature, title="spend spike",
        opened_at=T0, last_seen_at=T0 + timedelta(days=1),
    )  # fmt: skip
    team_budget = Alert.objects.create(
        key="team", kind=AlertKind.BUDGET_FORECAST, team=feature.team, title="team overspend",
        opened_at=T0, last_seen_at=T0,
    )  # fmt: skip
    proxy = ProxyFactory()
    stale = Alert.objects.create(
        key="stale",
        kind=AlertKind.PROXY_STALE,
        proxy=proxy,
        title="proxy stale",
        opened_at=T0,
        last_seen_at=T0,
    )
    detail = reverse("feature-detail", args=[feature.code])
    overview = reverse("overview")
    days = "start=2026-11-16&end=2026-11-16"
    assert open_alert.chart_link() == (
        f"{overview}?feature={feature.slug}&{days}#chart-fallback-trend",
        "fallback-rate chart",
    )
    assert budget.chart_link() == (f"{detail}?{days}#chart-burn-down", "budget burn-down chart")
    assert anomaly.chart_link() == (
        f"{overview}?feature={feature.slug}&start=2026-11-16&end=2026-11-17#chart-daily",
        "spend chart",
    )
    assert team_budget.chart_link()[0] == f"{overview}?team={feature.team.slug}&{days}#chart-daily"
    assert stale.chart_link()[0] == reverse("fleet-proxy", args=[proxy.code])

    client.force_login(users["admin"])
    page = client.get(reverse("alerts")).content.decode()
    for alert in (open_alert, budget, anomaly, team_budget, stale):
        url, label = alert.chart_link()
        assert f'href="{url.replace("&", "&amp;")}">see it on the {label}' in page
        target = client.get(url.split("#")[0])
        assert target.status_code == 200, url
        anchor = url.partition("#")[2]
        body = target.content.decode()
        if 'id="feature-spend-loader"' in body:  # the feature page loads its charts from billing's spend URL
            path, _, query = url.split("#")[0].partition("?")
            body = client.get(f"{path}spend/?{query}").content.decode()
        assert not anchor or f'id="{anchor}"' in body, url
