"""The demo's month of history (issue 18): diurnal and weekly shape, incidents, a feature over budget."""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Count, Q, Sum

from billing.models import Budget, BudgetState, SpendEvent, SpendRollupHourly
from controlplane.management.commands.demo import Command
from routing.models import ModelDeployment

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_demo_seeds_a_month_with_shape_incidents_and_a_feature_over_budget():
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", stdout=io.StringIO())
        command = Command(stdout=io.StringIO())
        command._seed_history(30, 20_000)
        small = ModelDeployment.objects.create(
            name="llama-3-8b", tier="small", litellm_model="openai/llama", monthly_hosting_usd=Decimal("450")
        )
        command._backdate_hosting()
        again = Command(stdout=io.StringIO())
        again._seed_history(30, 20_000)  # a restart keeps the seeded month
    firsts = SpendEvent.objects.filter(attempt=1)
    assert SpendEvent.objects.count() >= 20_000 and SpendEvent.objects.values("batch").distinct().count() == 1
    oldest = firsts.order_by("start_time").first().start_time
    assert oldest < NOW - timedelta(days=29)

    by_hour, by_weekday = defaultdict(int), defaultdict(int)
    for row in SpendRollupHourly.objects.values("hour").annotate(n=Sum("requests")):
        by_hour[row["hour"].hour] += row["n"]
        by_weekday[row["hour"].weekday() >= 5] += row["n"]
    assert by_hour[15] > 2.5 * by_hour[3]  # afternoon peak, quiet night
    assert by_weekday[False] / 5 > 2 * by_weekday[True] / 2  # a weekday carries over twice a weekend day

    incident = (NOW - timedelta(days=9)).replace(hour=14, minute=0, second=0, microsecond=0)
    window = Q(start_time__gte=incident, start_time__lt=incident + timedelta(hours=3))

    def timeout_share(q):
        counts = SpendEvent.objects.filter(q, attempt=1, route="small").aggregate(
            n=Count("pk"), t=Count("pk", filter=Q(status="error", error_class="Timeout"))
        )
        return counts["t"] / counts["n"]

    assert timeout_share(window) > 0.35 and timeout_share(~window) < 0.08

    budget = Budget.objects.select_related("status", "feature").get()
    assert budget.feature.slug == "reply-draft" and budget.status.state == BudgetState.OVER
    small.refresh_from_db()
    assert small.created_at == NOW - timedelta(days=30)  # hosting is charged for the seeded month
