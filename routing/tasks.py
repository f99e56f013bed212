"""Celery tasks of the routing app: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from routing import services
from routing.models import Rollout


@shared_task(ignore_result=True, acks_late=True)
def rollout_run(rollout_id: int) -> None:
    """Push a rollout's bundle to its proxies (canary first); quiet when the rollout is gone or already ran."""
    if not Rollout.objects.filter(pk=rollout_id).exists():
        return
    services.rollout_execute(rollout_id=rollout_id)


@shared_task(ignore_result=True)
def rollout_reap() -> None:
    """Fail rollouts whose worker died, so they do not block the next publish."""
    services.rollout_reap()


@shared_task(ignore_result=True)
def revocations_sync() -> None:
    """Ship revoked keys that did not reach the fleet's bundle yet (their publish met a running rollout)."""
    services.revocations_sync()


from routing.experiment_tasks import *  # noqa: E402,F403
