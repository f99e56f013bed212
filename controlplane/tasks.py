"""Control-plane periodic tasks."""

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone


@shared_task(ignore_result=True)
def beat_heartbeat() -> None:
    """Marks that beat and a worker are alive; /readyz and the UI read it."""
    cache.set("controlplane:beat-heartbeat", timezone.now().isoformat(), timeout=600)
