"""Billing's services queue their tasks through billing.signals (connected in BillingConfig.ready()): the task
runs once the change commits, and not before."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import budgets, notifications
from billing.models import Alert, AlertKind, BudgetAction, BudgetStatus, NotificationStatus
from tests.billing.test_notifications import T0, WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager_celery():
    """Run queued tasks inline, so a task queued on commit runs inside the test."""
    from controlplane.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def test_a_budget_edit_refreshes_budget_states_once_it_commits(feature, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as pending:
        budget = budgets.budget_create(
            actor=None,
            team=feature.team,
            feature=feature,
            amount_usd=Decimal("100"),
            action=BudgetAction.ALERT,
        )
    assert not BudgetStatus.objects.filter(budget=budget).exists()  # nothing runs before the commit
    for callback in pending:
        callback()
    assert BudgetStatus.objects.get(budget=budget).state == "ok"  # budgets_refresh evaluated it


def test_a_new_notification_is_sent_once_it_commits(feature, settings, django_capture_on_commit_callbacks):
    settings.DATADOG_ENABLED = False
    alert = Alert.objects.create(
        key=f"fallback_rate:feature:{feature.pk}",
        kind=AlertKind.FALLBACK_RATE,
        team=feature.team,
        feature=feature,
        title="Ticket summariser falls back",
        opened_at=T0,
        last_seen_at=T0,
    )
    with WebhookReceiver() as receiver:
        feature.team.webhook_url = receiver.url
        feature.team.save()
        with django_capture_on_commit_callbacks(execute=False) as pending:
            (queued,) = notifications.notifications_queue(alert=alert, event="opened")
        assert receiver.received == []
        for callback in pending:
            callback()
        queued.refresh_from_db()
        assert queued.status == NotificationStatus.SENT  # notification_send ran
        assert len(receiver.received) == 1
