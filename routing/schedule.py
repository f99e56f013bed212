"""Celery beat entries of the routing app: crontab schedules with an expiry (merged in settings)."""

BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
