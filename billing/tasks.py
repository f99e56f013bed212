"""Celery tasks of the billing app: thin wrappers around services, idempotent, taking ids."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing import alerts, budgets, datadog, notifications, partitions


@shared_task(ignore_result=True)
def spend_batch_mirror(batch_id: int) -> int:
    """Mirror one ingested batch to Datadog (claimed once; a vanished batch is a no-op)."""
    return datadog.spend_batch_mirror(batch_id=batch_id)


@shared_task(ignore_result=True)
def spend_mirror_catch_up() -> int:
    """Mirror batches whose task never ran (broker down at ingest); the claim keeps each batch mirrored once."""
    return sum(datadog.spend_batch_mirror(batch_id=batch_id) for batch_id in datadog.spend_mirror_backlog())


@shared_task(ignore_result=True)
def spend_partitions_maintain() -> dict[str, list[str]]:
    """Create next months' spend partitions and drop raw ones past FINOPS_RAW_RETENTION_MONTHS."""
    return partitions.partitions_maintain()


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


def budgets_refresh_queue(sender: object, **kwargs: object) -> None:
    """Receiver of billing.signals.budgets_changed (connected in BillingConfig.ready())."""
    budgets_refresh.delay()


def notifications_send_queue(sender: object, *, notification_ids: list[int], **kwargs: object) -> None:
    """Receiver of billing.signals.notifications_created (connected in BillingConfig.ready())."""
    for notification_id in notification_ids:
        notification_send.delay(notification_id)


@shared_task(ignore_result=True)
def notifications_send_due() -> int:
    """Retry sweep: send pending notifications whose backoff has elapsed."""
    return notifications.notifications_send_due()
