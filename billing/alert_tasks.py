"""Celery tasks for budgets, alerts and notifications: thin, idempotent wrappers (imported by billing.tasks)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing import alerts, budgets, notifications


@shared_task(ignore_result=True)
def alerts_evaluate() -> dict[str, dict[str, int]]:
    """Every minute: budget states (publishing enforcement changes), then every alert check."""
    return alerts.alerts_evaluate(now=timezone.now())


@shared_task(ignore_result=True)
def budgets_refresh() -> int:
    """After a budget edit: re-evaluate budgets now instead of at the next minute."""
    return len(budgets.budgets_evaluate(now=timezone.now()))


@shared_task(ignore_result=True)
def notification_send(notification_id: int) -> str:
    """Send one notification (a vanished, already sent or not yet due one is a no-op)."""
    return notifications.notification_send(notification_id=notification_id)


@shared_task(ignore_result=True)
def notifications_send_due() -> int:
    """Retry sweep: send pending notifications whose backoff has elapsed."""
    return notifications.notifications_send_due()
