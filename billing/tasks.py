"""Celery tasks of the billing app: thin wrappers around services, idempotent, taking ids."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from billing import alerts, budgets, datadog, notifications, partitions

log = logging.getLogger(__name__)


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


# Spend that crosses a blocking or degrading budget is enforced within seconds of its ingest, not at
# the next minute's evaluation: at a burst's rate a minute of calls past the limit is real money.
BUDGET_CHECK_AFTER_S = 2  # one evaluation covers every batch of this window (it runs at the window's end)
BUDGET_CHECK_KEY = "finops:budget-check-queued"


def budgets_check_queue(sender: object, **kwargs: object) -> None:
    """Receiver of billing.signals.enforced_spend_ingested: one budget evaluation at the end of a 2 s window."""
    try:
        if not cache.add(BUDGET_CHECK_KEY, 1, timeout=BUDGET_CHECK_AFTER_S):
            return  # an evaluation is already queued for the end of this window: it sees this batch too
        budgets_refresh.apply_async(countdown=BUDGET_CHECK_AFTER_S)
    except Exception:  # a cache or broker outage must not fail an ingest that already committed
        log.exception("could not queue the budget check after a spend batch (the minute's evaluation will)")


def notifications_send_queue(sender: object, *, notification_ids: list[int], **kwargs: object) -> None:
    """Receiver of billing.signals.notifications_created (connected in BillingConfig.ready())."""
    for notification_id in notification_ids:
        notification_send.delay(notification_id)


@shared_task(ignore_result=True)
def notifications_send_due() -> int:
    """Retry sweep: send pending notifications whose backoff has elapsed."""
    return notifications.notifications_send_due()
