"""Alert notifications: a Datadog event (DogStatsD) and a signed, Slack-compatible webhook per team.

Each message is a Notification row, queued on commit and sent by a Celery task; a failure records
the error and schedules another attempt with exponential backoff (a beat sweep picks up due rows),
so sending never blocks or fails alert evaluation. A send is claimed with a conditional UPDATE
(a short lease), so two workers never send the same row at once.

Webhook signature: header `X-FinOps-Timestamp` (Unix seconds) and `X-FinOps-Signature:
sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` under the team's secret (AlertChannel).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import signals
from billing.datadog import statsd_client
from billing.models.budgets import (
    Alert,
    AlertChannel,
    AlertSeverity,
    Notification,
    NotificationChannel,
    NotificationStatus,
)
from controlplane import outbound
from controlplane.models import Team

log = logging.getLogger("finops.notifications")

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 30
BACKOFF_CAP_S = 3600
LEASE_S = 60
WEBHOOK_TIMEOUT_S = 5.0


def backoff_s(attempts: int) -> int:
    """Seconds before the next attempt after `attempts` failures: 30, 60, 120, … capped at an hour."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))


def channel_for(team: Team) -> AlertChannel:
    channel, _ = AlertChannel.objects.get_or_create(team=team)
    return channel


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-FinOps-Signature value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: int = 300) -> bool:
    """What a receiver does: recompute the signature and refuse old timestamps (replays)."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def notifications_queue(*, alert: Alert, event: str) -> list[Notification]:
    """Create the alert's notifications for `event` (opened/resolved) and send them after commit."""
    now = timezone.now()
    channels = []
    if getattr(settings, "DATADOG_ENABLED", True):
        channels.append(NotificationChannel.DATADOG)
    if alert.team_id and alert.team.webhook_url:
        channels.append(NotificationChannel.WEBHOOK)
    created = []
    for channel in channels:
        notification, new = Notification.objects.get_or_create(
            alert=alert, channel=channel, event=event, defaults={"created_at": now, "next_attempt_at": now}
        )
        if new:
            created.append(notification)
    if created:
        ids = [n.pk for n in created]
        transaction.on_commit(
            lambda: signals.notifications_created.send(sender=Notification, notification_ids=ids)
        )
    return created


def slack_escape(text: str) -> str:
    """Slack's three control characters, so a feature name cannot write <!channel> or a disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _text(alert: Alert, event: str) -> str:
    mark = "RESOLVED" if event == "resolved" else alert.get_severity_display().upper()
    return slack_escape(f"[{mark}] {alert.title}\n{alert.message}")


def send_datadog(notification: Notification) -> None:

    alert = notification.alert
    if notification.event == "resolved":
        alert_type = "success"
    else:
        alert_type = "error" if alert.severity == AlertSeverity.CRITICAL else "warning"
    tags = [f"alert_kind:{alert.kind}"]
    if alert.team_id:
        tags.append(f"team:{alert.team.slug}")
    if alert.feature_id:
        tags.append(f"feature:{alert.feature.slug}")
    if alert.proxy_id:
        tags.append(f"proxy:{alert.proxy.name}")
    statsd = statsd_client()
    try:
        statsd.event(
            title=f"{'Resolved: ' if notification.event == 'resolved' else ''}{alert.title}",
            message=alert.message,
            alert_type=alert_type,
            aggregation_key=alert.key,
            source_type_name="finops",
            tags=tags,
        )
        statsd.flush()
    finally:
        statsd.close_socket()


def webhook_payload(alert: Alert, event: str) -> bytes:
    return json.dumps(
        {
            "text": _text(alert, event),
            "alert": {
                "code": str(alert.code),
                "event": event,
                "kind": alert.kind,
                "severity": alert.severity,
                "status": alert.status,
                "key": alert.key,
                "title": alert.title,
                "team": alert.team.slug if alert.team_id else None,
                "feature": alert.feature.slug if alert.feature_id else None,
                "opened_at": alert.opened_at.isoformat(),
                "details": alert.details,
            },
        },
        sort_keys=True,
    ).encode()


def send_webhook(notification: Notification) -> None:
    alert = notification.alert
    team = alert.team
    if team is None or not team.webhook_url:
        return  # the team removed its webhook since: nothing to send
    channel = channel_for(team)
    if not channel.webhook_enabled:
        return
    body = webhook_payload(alert, notification.event)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "finops-alerts/1",
        "X-FinOps-Timestamp": timestamp,
        "X-FinOps-Signature": sign(channel.webhook_secret, timestamp, body),
    }
    # checked target, pinned address, no redirects: the URL is user input (controlplane.outbound)
    result = outbound.post(team.webhook_url, body, headers=headers, timeout_s=WEBHOOK_TIMEOUT_S)
    if result.status >= 400:
        raise RuntimeError(f"webhook answered HTTP {result.status}")


SENDERS = {NotificationChannel.DATADOG: send_datadog, NotificationChannel.WEBHOOK: send_webhook}


def notification_send(*, notification_id: int, now: datetime | None = None) -> str:
    """Send one due notification once; returns its status afterwards ('' when gone or not due)."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, status=NotificationStatus.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + timedelta(seconds=LEASE_S))
    if claimed != 1:
        return ""
    notification = Notification.objects.select_related("alert__team", "alert__feature", "alert__proxy").get(
        pk=notification_id
    )
    notification.attempts += 1
    try:
        SENDERS[NotificationChannel(notification.channel)](notification)
    except Exception as exc:  # any failure is recorded and retried later
        notification.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if notification.attempts >= MAX_ATTEMPTS:
            notification.status = NotificationStatus.FAILED
            log.error("notification %s failed for good: %s", notification.pk, notification.last_error)
        else:
            notification.next_attempt_at = now + timedelta(seconds=backoff_s(notification.attempts))
            log.warning("notification %s failed, retrying: %s", notification.pk, notification.last_error)
    else:
        notification.status = NotificationStatus.SENT
        notification.sent_at = now
        notification.last_error = ""
    notification.save(update_fields=["attempts", "last_error", "status", "next_attempt_at", "sent_at"])
    return notification.status


def notifications_send_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Send every pending notification whose attempt is due (the retry sweep); returns how many were tried."""
    now = now or timezone.now()
    ids = list(
        Notification.objects.filter(status=NotificationStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in ids:
        notification_send(notification_id=pk, now=now)
    return len(ids)
