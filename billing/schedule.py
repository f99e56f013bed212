"""Celery beat entries of the billing app: crontab schedules with an expiry (merged in settings)."""

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # 4 times a day: next months' spend partitions exist long before they start; retention drops old ones
    "billing-spend-partitions": {
        "task": "billing.tasks.spend_partitions_maintain",
        "schedule": crontab(minute=17, hour="*/6"),
        "options": {"expires": 3600},
    },
    "billing-spend-mirror-catch-up": {
        "task": "billing.tasks.spend_mirror_catch_up",
        "schedule": crontab(minute="*/2"),  # batches whose mirror task was lost reach Datadog within minutes
        "options": {"expires": 110},
    },
    "billing-alerts-evaluate": {
        "task": "billing.tasks.alerts_evaluate",
        "schedule": crontab(minute="*"),  # budgets and alerts every minute (docs/alerts.md)
        "options": {"expires": 55},  # a run that could not start within the minute is superseded by the next
    },
    "billing-notifications-retry": {
        "task": "billing.tasks.notifications_send_due",
        "schedule": crontab(minute="*"),
        "options": {"expires": 55},
    },
}
