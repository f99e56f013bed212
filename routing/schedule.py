"""Celery beat entries of the routing app: crontab schedules with an expiry (merged in settings)."""

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "routing-rollout-reap": {
        "task": "routing.tasks.rollout_reap",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 240},
    },
}
BEAT_SCHEDULE["routing-experiments-evaluate"] = {
    "task": "routing.tasks.experiments_evaluate",
    "schedule": crontab(minute="*"),  # guardrails: a harmful arm stops within a minute
    "options": {"expires": 50},
}
BEAT_SCHEDULE["routing-revocations-sync"] = {
    "task": "routing.tasks.revocations_sync",
    "schedule": crontab(minute="*"),  # a revocation that met a running rollout goes out within a minute
    "options": {"expires": 50},
}
BEAT_SCHEDULE["routing-adjustments-propose"] = {
    "task": "routing.tasks.adjustments_propose",
    "schedule": crontab(
        minute=17, hour=3
    ),  # daily, off the hour: proposals wait for MLOps, never applied here
    "options": {"expires": 3600},
}
