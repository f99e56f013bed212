"""Notifications: a signed webhook received by a real local HTTP server, a Datadog event on a real UDP socket, retries."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import time_machine

from billing import notifications
from billing.models import Alert, AlertKind, Notification, NotificationStatus

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


class WebhookReceiver:
    """A local HTTP server that records each POST; `fail_next` answers 500 that many times first."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}  # header names are case-insensitive
                receiver.received.append({"headers": headers, "body": body})
                status = 500 if receiver.fail_next > 0 else 200
                receiver.fail_next -= 1
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def alert(feature):
    return Alert.objects.create(
        key=f"fallback_rate:feature:{feature.pk}",
        kind=AlertKind.FALLBACK_RATE,
        severity="critical",
        team=feature.team,
        feature=feature,
        title="Ticket summariser: 30% of requests fell back in 15 min",
        message="30 of 100 requests fell back. By reason: timeout 30.",
        details={"by_reason": {"timeout": 30}},
        opened_at=T0,
        last_seen_at=T0,
    )


@pytest.mark.django_db
def test_webhook_is_slack_compatible_and_signed_with_the_team_secret(alert, receiver, settings):
    settings.DATADOG_ENABLED = False
    alert.team.webhook_url = receiver.url
    alert.team.save()
    (queued,) = notifications.notifications_queue(alert=alert, event="opened")
    assert notifications.notification_send(notification_id=queued.pk) == NotificationStatus.SENT

    (hit,) = receiver.received
    body, headers = hit["body"], hit["headers"]
    payload = json.loads(body)
    assert payload["text"].startswith("[CRITICAL] Ticket summariser: 30% of requests fell back")
    assert payload["alert"]["feature"] == "ticket-summary" and payload["alert"]["event"] == "opened"
    secret = notifications.channel_for(alert.team).webhook_secret
    assert len(secret) == 64
    timestamp, signature = headers["x-finops-timestamp"], headers["x-finops-signature"]
    assert notifications.verify(secret, timestamp, body, signature)
    assert not notifications.verify(secret, timestamp, body + b" ", signature)  # tampered body
    assert not notifications.verify("0" * 64, timestamp, body, signature)  # another team's secret
    assert not notifications.verify(secret, str(int(timestamp) - 3600), body, signature)  # replayed later

    assert notifications.notification_send(notification_id=queued.pk) == ""  # sent once, never twice
    assert len(receiver.received) == 1


@pytest.mark.django_db
def test_failed_webhook_is_retried_with_backoff_until_it_succeeds(alert, receiver, settings):
    settings.DATADOG_ENABLED = False
    alert.team.webhook_url = receiver.url
    alert.team.save()
    receiver.fail_next = 2
    with time_machine.travel(T0, tick=False):
        (queued,) = notifications.notifications_queue(alert=alert, event="opened")
    assert notifications.notification_send(notification_id=queued.pk, now=T0) == NotificationStatus.PENDING
    queued.refresh_from_db()
    assert queued.attempts == 1 and "HTTP 500" in queued.last_error
    assert queued.next_attempt_at == T0 + timedelta(seconds=30)
    assert notifications.notifications_send_due(now=T0 + timedelta(seconds=10)) == 0  # not due yet
    assert notifications.notifications_send_due(now=T0 + timedelta(seconds=30)) == 1
    queued.refresh_from_db()
    assert queued.attempts == 2 and queued.next_attempt_at == T0 + timedelta(seconds=90)  # then 60 s
    assert notifications.notifications_send_due(now=T0 + timedelta(seconds=90)) == 1
    queued.refresh_from_db()
    assert (queued.status, queued.attempts, queued.last_error) == (NotificationStatus.SENT, 3, "")
    assert len(receiver.received) == 3


@pytest.mark.django_db
def test_unreachable_webhook_gives_up_after_the_last_attempt(alert, settings):
    settings.DATADOG_ENABLED = False
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    alert.team.webhook_url = f"http://127.0.0.1:{port}/hook"
    alert.team.save()
    with time_machine.travel(T0, tick=False):
        (queued,) = notifications.notifications_queue(alert=alert, event="opened")
    now = T0
    for _ in range(notifications.MAX_ATTEMPTS):
        notifications.notification_send(notification_id=queued.pk, now=now)
        now += timedelta(hours=2)
    queued.refresh_from_db()
    assert queued.status == NotificationStatus.FAILED and queued.attempts == notifications.MAX_ATTEMPTS
    assert "URLError" in queued.last_error or "Connection refused" in queued.last_error


def test_backoff_doubles_and_is_capped():
    assert [notifications.backoff_s(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert notifications.backoff_s(20) == notifications.BACKOFF_CAP_S


@pytest.mark.django_db
def test_datadog_event_arrives_on_the_agent_socket(alert, settings):
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(5)
    settings.DATADOG_AGENT_HOST, settings.DATADOG_AGENT_PORT = "127.0.0.1", agent.getsockname()[1]
    settings.DATADOG_ENABLED = True
    try:
        (queued,) = notifications.notifications_queue(
            alert=alert, event="opened"
        )  # no webhook_url: Datadog only
        assert queued.channel == "datadog"
        assert notifications.notification_send(notification_id=queued.pk) == NotificationStatus.SENT
        packet = agent.recv(65535).decode()
    finally:
        agent.close()
    # DogStatsD event datagram: _e{title_len,text_len}:title|text|k:key|s:source|t:type|#tags
    assert packet.startswith("_e{")
    assert (
        "|Ticket summariser: 30% of requests fell back in 15 min|" not in packet
    )  # title sits after the header
    header, rest = packet.split(":", 1)
    title_len, text_len = (int(n) for n in header[3:-1].split(","))
    assert rest[:title_len] == alert.title
    assert rest[title_len + 1 : title_len + 1 + text_len] == alert.message
    fields = rest[title_len + 1 + text_len :]
    assert f"|k:{alert.key}" in fields and "|t:error" in fields and "|s:finops" in fields
    assert "feature:ticket-summary" in fields and "alert_kind:fallback_rate" in fields


@pytest.mark.django_db
def test_a_vanished_notification_is_a_quiet_no_op():
    assert notifications.notification_send(notification_id=987654) == ""


@pytest.mark.django_db
def test_resolved_event_is_a_separate_notification(alert, settings):
    settings.DATADOG_ENABLED = True
    notifications.notifications_queue(alert=alert, event="opened")
    notifications.notifications_queue(alert=alert, event="opened")  # queued twice: still one row
    notifications.notifications_queue(alert=alert, event="resolved")
    assert sorted(Notification.objects.values_list("event", flat=True)) == ["opened", "resolved"]


@pytest.mark.django_db
def test_only_admins_see_the_webhook_secret_on_the_team_budget_panel(client, users, team):
    from django.urls import reverse

    team.webhook_url = "https://hooks.example.test/finops"
    team.save()
    url = reverse("team-budget", args=[team.code])
    client.force_login(users["admin"])
    secret = notifications.channel_for(team).webhook_secret
    assert secret in client.get(url, headers={"HX-Request": "true"}).content.decode()
    client.force_login(users["pm"])
    assert secret not in client.get(url, headers={"HX-Request": "true"}).content.decode()
