"""Celery tasks of the billing app: thin wrappers around services, idempotent, taking ids."""

from __future__ import annotations

from celery import shared_task

from billing import datadog, partitions


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


from billing.alert_tasks import alerts_evaluate, budgets_refresh, notification_send, notifications_send_due  # noqa: E402, F401
