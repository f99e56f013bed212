"""Model and end-user filters on the dashboards (overview, feature page, routing analytics), not only the
request log: choices come from the data in range and scope, figures match the raw attempts, bad values are
a clear error naming the field. Time is frozen for every test (they log in)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Count, Sum
from django.urls import reverse

from billing.models import SpendAttemptMeasures, SpendEvent, SpendRollupHourly
from billing.rollups import KEY, MEASURES
from billing.services import spend_seed
from controlplane.models import Feature

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
pytestmark = pytest.mark.django_db
RANGE = {"start": "2026-11-01", "end": "2026-11-20"}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def seeded(client):
    call_command("seed_demo", stdout=io.StringIO())
    spend_seed(events=2500, days=19, end=NOW - timedelta(minutes=5))
    return client


def _login(client, username):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username=username))
    return client


def _busiest_end_user(**q):
    return (
        SpendEvent.objects.filter(**q)
        .exclude(end_user="")
        .values("end_user")
        .annotate(n=Count("id"))
        .order_by("-n", "end_user")
        .first()["end_user"]
    )


def test_summing_the_attempt_view_gives_the_rollups(seeded):
    """The view the end-user filter reads is the rollup aggregate in per-row form: same sums on every key."""
    keys = [k if not k.endswith("_id") else k for k in KEY]
    view = {
        tuple(r[k] for k in keys): r
        for r in SpendAttemptMeasures.objects.values(*keys).annotate(**{f"s_{m}": Sum(m) for m in MEASURES})
    }
    rollups = {
        tuple(r[k] for k in keys): r
        for r in SpendRollupHourly.objects.values(*keys).annotate(**{f"s_{m}": Sum(m) for m in MEASURES})
    }
    assert len(rollups) > 100 and view.keys() == rollups.keys()
    for key, row in rollups.items():
        for m in MEASURES:
            assert Decimal(view[key][f"s_{m}"] or 0) == Decimal(row[f"s_{m}"] or 0), (key, m)


def test_overview_filters_by_model_and_by_end_user(seeded):
    client = _login(seeded, "vp")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    models = sorted(set(SpendRollupHourly.objects.filter(hour__gte=start).values_list("model", flat=True)))
    page = client.get(reverse("overview"), RANGE)
    assert page.status_code == 200
    assert page.context["filters"].model_choices == models and len(models) >= 2
    body = page.content.decode()
    assert all(f'<option value="{m}"' in body for m in models) and 'list="end-user-choices"' in body

    model = models[0]
    page = client.get(reverse("overview"), {**RANGE, "model": model})
    expected = SpendRollupHourly.objects.filter(hour__gte=start, model=model).aggregate(c=Sum("cost_usd"))[
        "c"
    ]
    assert page.status_code == 200
    assert page.context["data"].summary.cost_usd == pytest.approx(expected)
    assert f'<option value="{model}" selected' in page.content.decode()

    user = _busiest_end_user(start_time__gte=start)
    page = client.get(reverse("overview"), {**RANGE, "end_user": user})
    raw = SpendEvent.objects.filter(start_time__gte=start, end_user=user)
    assert page.status_code == 200
    summary = page.context["data"].summary
    assert summary.cost_usd == pytest.approx(raw.aggregate(c=Sum("cost_usd"))["c"])
    assert summary.requests == raw.filter(attempt=1).count()
    assert user in page.context["filters"].end_user_choices
    assert f'value="{user}"' in page.content.decode()
    # presets keep the filters
    assert all(f"end_user={user}" in p["query"] for p in page.context["filters"].presets)


def test_feature_page_and_analytics_take_the_same_filters(seeded):
    client = _login(seeded, "mlops")
    feature = Feature.objects.get(slug="ticket-summary")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    user = _busiest_end_user(start_time__gte=start, feature=feature)
    page = client.get(reverse("feature-spend", args=[feature.code]), {**RANGE, "end_user": user})
    assert page.status_code == 200
    raw = SpendEvent.objects.filter(start_time__gte=start, end_user=user, feature=feature)
    body = page.content.decode()
    assert f'value="{user}"' in body and "end_user:" not in body
    model = SpendRollupHourly.objects.filter(feature=feature).values_list("model", flat=True).first()
    page = client.get(reverse("routing-analytics"), {**RANGE, "model": model})
    assert page.status_code == 200 and f'<option value="{model}" selected' in page.content.decode()
    assert raw.exists()


@pytest.mark.parametrize(
    ("page", "values", "message"),
    [
        (
            "overview",
            {"model": "gpt-nonexistent"},
            "model: no calls were served by &#x27;gpt-nonexistent&#x27;",
        ),
        (
            "overview",
            {"end_user": "nobody-at-all"},
            "end_user: no calls from end user &#x27;nobody-at-all&#x27;",
        ),
        ("overview", {"end_user": "x" * 200}, "end_user: at most 128 characters"),
        (
            "routing-analytics",
            {"model": "<b>x</b>"},
            "model: no calls were served by &#x27;&lt;b&gt;x&lt;/b&gt;&#x27;",
        ),
        ("feature", {"end_user": "nobody-at-all"}, "end_user: no calls from end user"),
    ],
)
def test_bad_filter_values_are_an_error_naming_the_field(seeded, page, values, message):
    client = _login(seeded, "mlops")
    if page == "feature":
        url = reverse("feature-spend", args=[Feature.objects.get(slug="ticket-summary").code])
    else:
        url = reverse(page)
    response = client.get(url, {**RANGE, **values})
    body = response.content.decode()
    assert message in body, body[:400]
    assert response.status_code == 400
    htmx = client.get(url, {**RANGE, **values}, headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and message in htmx.content.decode()


def test_an_end_user_of_another_team_is_not_a_choice(seeded):
    """A PM sees only their team's end users: another team's user is refused like an unknown one."""
    client = _login(seeded, "pm-support")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    theirs = set(
        SpendEvent.objects.filter(start_time__gte=start, team__slug="support").values_list(
            "end_user", flat=True
        )
    )
    other = (
        SpendEvent.objects.filter(start_time__gte=start)
        .exclude(team__slug="support")
        .exclude(end_user__in=theirs)
        .values_list("end_user", flat=True)
        .first()
    )
    response = client.get(reverse("overview"), {**RANGE, "end_user": other})
    assert response.status_code == 400 and "end_user: no calls from end user" in response.content.decode()
    assert other not in response.context["filters"].end_user_choices
