"""Dashboards: overview, the feature page's spend sections and routing analytics (figures, filters, htmx,
CSV, permissions, query counts)."""

from __future__ import annotations

import csv
import html
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import Alert, AlertKind, SpendEvent, SpendRollupHourly
from billing.services import spend_seed
from controlplane.models import Feature, Team
from routing.models import ModelDeployment, RoutingPolicy
from tests.factories import FeatureFactory

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def rollup(feature, hour, *, route="small", model="slm", cost="1", baseline="5", requests=10, **extra):
    return SpendRollupHourly.objects.create(
        hour=hour,
        team=feature.team,
        feature=feature,
        route=route,
        model=model,
        requests=requests,
        attempts=requests,
        cost_usd=Decimal(cost),
        baseline_cost_usd=Decimal(baseline),
        **extra,
    )


@pytest.fixture
def seeded(db, frozen):
    """The demo organisation with a little synthetic spend over the last 25 days (rollups included)."""
    call_command("seed_demo", stdout=io.StringIO())
    spend_seed(events=1200, days=25, end=NOW)
    return Feature.objects.select_related("team")


def _login(client, username):
    client.login(username=username, password="demo-vp-pass" if username == "vp" else "demo-pm-pass")


# Overview ---------------------------------------------------------------------------------------------------------


def test_overview_figures_match_raw_events(client, seeded):
    _login(client, "vp")
    response = client.get(reverse("overview"))
    assert response.status_code == 200
    data = response.context["data"]
    month_start = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raw = SpendEvent.objects.filter(start_time__gte=month_start, start_time__lt=NOW + timedelta(days=1))
    expected = {
        row["feature__slug"]: row["cost"]
        for row in raw.values("feature__slug").annotate(cost=Sum("cost_usd"))
    }
    shown = {row.feature_slug: row.cost_usd for row in data.by_feature}
    assert shown == pytest.approx(expected)
    assert data.month_to_date == pytest.approx(sum(expected.values()))
    assert sum(r.cost_usd for r in data.by_team) == data.summary.cost_usd
    assert data.projected_month_end >= data.month_to_date
    assert data.open_alerts == 0
    body = response.content.decode()
    assert "Daily spend by served model" in body and 'type="application/json"' in body
    assert "vendor/plotly/plotly.min.js" in body and "cdn" not in body.lower()


def _small_deployment(monthly="300.00", *, since=datetime(2026, 10, 1, tzinfo=UTC)):
    deployment = ModelDeployment.objects.create(
        name="llama", tier="small", litellm_model="openai/llama-3-8b", monthly_hosting_usd=Decimal(monthly)
    )
    ModelDeployment.objects.filter(pk=deployment.pk).update(created_at=since)
    return deployment


def test_overview_net_savings_subtract_prorated_small_model_hosting(client, db, feature, users, frozen):
    _small_deployment()
    ModelDeployment.objects.create(
        name="sonnet",
        tier="frontier",
        litellm_model="anthropic/claude",
        monthly_hosting_usd=Decimal("999.00"),
    )
    rollup(feature, datetime(2026, 11, 10, 9, tzinfo=UTC), cost="40", baseline="500")
    client.force_login(users["viewer"])
    data = client.get(reverse("overview"), {"start": "2026-11-01", "end": "2026-11-10"}).context["data"]
    assert data.gross_savings_usd == Decimal("460")
    assert data.hosting_usd == Decimal("100.00")  # 10 of November's 30 days of $300, small tier only
    assert data.net_savings_usd == Decimal("360")
    assert data.net_savings_pct == pytest.approx(360 / 500)
    assert data.baseline_usd == Decimal("500")  # the stated base of the percentage
    assert data.total_cost_usd == Decimal("140")  # API spend 40 + hosting 100
    # 10 requests saved $460 in all: $46 a request, so $300 a month of hosting pays for itself at 7 a month
    assert data.break_even_requests == 7


def test_hosting_is_charged_from_the_deployments_start_and_never_past_now(client, db, feature, users, frozen):
    _small_deployment(since=datetime(2026, 11, 5, tzinfo=UTC))
    rollup(feature, datetime(2026, 11, 10, 9, tzinfo=UTC), cost="40", baseline="500")
    client.force_login(users["viewer"])
    data = client.get(reverse("overview"), {"start": "2026-11-01", "end": "2026-11-10"}).context["data"]
    assert data.hosting_usd == Decimal("60.00")  # Nov 5-10: 6 of 30 days, none before it existed
    data = client.get(reverse("overview"), {"start": "2026-10-01", "end": "2026-10-31"}).context["data"]
    assert data.hosting_usd == Decimal("0.00")  # October: not deployed yet
    # today, at 12:30: 12.5 of November's 720 hours, not the whole day
    data = client.get(reverse("overview"), {"start": "2026-11-20", "end": "2026-11-20"}).context["data"]
    assert data.hosting_usd == (Decimal(300) * Decimal("12.5") / 720).quantize(Decimal("0.01"))
    assert data.hosted_hours == pytest.approx(12.5)


def test_overview_page_states_total_cost_the_savings_base_and_break_even(client, db, feature, users, frozen):
    _small_deployment()
    rollup(feature, datetime(2026, 11, 10, 9, tzinfo=UTC), cost="40", baseline="500")
    client.force_login(users["viewer"])
    body = html.unescape(
        client.get(reverse("overview"), {"start": "2026-11-01", "end": "2026-11-10"}).content.decode()
    )
    assert "Total cost" in body and "$140.00" in body
    assert "72.0% of the $500.00 all-frontier cost" in body
    assert "7 <small>requests/month</small>" in body
    # features by name, each linking to its page, before the charts
    link = reverse("feature-detail", args=[feature.code])
    assert f'href="{link}"' in body and body.index(link) < body.index("Daily spend by served model")
    assert feature.name in body


def test_short_ranges_chart_hourly_buckets_with_hour_ticks(client, db, feature, users, frozen):
    for hour in (3, 9, 10):
        rollup(feature, datetime(2026, 11, 19, hour, tzinfo=UTC), requests=10, fallbacks=1)
    client.force_login(users["viewer"])
    response = client.get(reverse("overview"), {"start": "2026-11-19", "end": "2026-11-19"})
    data, figure = response.context["data"], response.context["charts"]["daily"]
    assert data.granularity == "hour"
    assert [p.at.hour for p in data.fallback_trend] == [3, 9, 10]
    axis = figure["layout"]["xaxis"]
    assert axis["type"] == "date" and axis["dtick"] == 3 * 3600 * 1000
    assert axis["range"] == ["2026-11-19 00:00", "2026-11-20 00:00"]
    assert figure["data"][0]["x"] == ["2026-11-19 03:00", "2026-11-19 09:00", "2026-11-19 10:00"]
    month = client.get(reverse("overview"), {"start": "2026-10-22", "end": "2026-11-20"}).context
    assert month["data"].granularity == "day"
    assert month["charts"]["daily"]["layout"]["xaxis"]["dtick"] == 3 * 86400 * 1000  # 30 days: every 3rd


def test_calls_an_open_breaker_skipped_are_shown_apart_from_fallbacks(client, db, feature, users, frozen):
    hour = datetime(2026, 11, 10, 9, tzinfo=UTC)
    rollup(feature, hour, requests=70, fallbacks=7, fallback_reason="timeout")
    rollup(feature, hour, route="frontier", model="frontier", requests=30, fallback_reason="slm_unavailable")
    client.force_login(users["viewer"])
    range_ = {"start": "2026-11-01", "end": "2026-11-10"}
    response = client.get(reverse("overview"), range_)
    summary = response.context["data"].summary
    assert summary.fallback_rate == pytest.approx(0.07)  # 7 of 100: the 30 skipped calls are no fallbacks
    assert summary.slm_unavailable == 30 and summary.slm_unavailable_share == pytest.approx(0.3)
    assert "30 (30.0%) sent to frontier while the small model was unavailable" in html.unescape(
        response.content.decode()
    )
    analytics = client.get(reverse("routing-analytics"), range_).context["data"]
    (row,) = analytics.features
    assert row.fallback_rate == pytest.approx(0.07) and row.slm_unavailable == 30
    assert [r.reason for r in row.reasons] == ["timeout"]
    page = client.get(reverse("feature-spend", args=[feature.code]), range_)
    assert "(30 while the small model was unavailable)" in page.content.decode()


def test_scoped_overview_carries_its_share_of_hosting(client, db, feature, other_feature, users, frozen):
    _small_deployment()
    rollup(feature, datetime(2026, 11, 10, 9, tzinfo=UTC), requests=30)
    rollup(other_feature, datetime(2026, 11, 10, 9, tzinfo=UTC), requests=10)
    client.force_login(users["viewer"])
    params = {"start": "2026-11-01", "end": "2026-11-10", "team": feature.team.slug}
    data = client.get(reverse("overview"), params).context["data"]
    assert data.hosting_usd == Decimal("75.00")  # 30 of the 40 small-model requests


def test_movers_compare_the_last_seven_days_with_the_seven_before(
    client, db, feature, other_feature, users, frozen
):
    rollup(feature, NOW - timedelta(days=2), cost="30")
    rollup(feature, NOW - timedelta(days=9), cost="10")
    rollup(other_feature, NOW - timedelta(days=3), cost="5")
    rollup(other_feature, NOW - timedelta(days=10), cost="6")
    rollup(other_feature, NOW - timedelta(days=20), cost="500")  # outside both weeks
    client.force_login(users["viewer"])
    movers = client.get(reverse("overview"), {"start": "2026-11-15"}).context["data"].movers
    assert [(m.feature_slug, m.change) for m in movers] == [
        (feature.slug, Decimal("20")),
        (other_feature.slug, Decimal("-1")),
    ]
    assert movers[0].change_pct == pytest.approx(2.0)


def test_a_past_range_keeps_this_months_figures_apart(client, db, feature, users, frozen):
    rollup(feature, datetime(2026, 9, 5, 10, tzinfo=UTC), cost="7")
    rollup(feature, datetime(2026, 10, 15, 10, tzinfo=UTC), cost="1000")  # between the two windows
    rollup(feature, datetime(2026, 11, 3, 10, tzinfo=UTC), cost="2")
    client.force_login(users["viewer"])
    with CaptureQueriesContext(connection) as ctx:
        data = client.get(reverse("overview"), {"start": "2026-09-01", "end": "2026-09-10"}).context["data"]
    assert data.summary.cost_usd == Decimal("7")
    assert data.month_to_date == Decimal("2")
    assert [(m.this_week, m.last_week) for m in data.movers] == [(Decimal("7"), Decimal("0"))]
    rollup_reads = [q for q in ctx.captured_queries if "spendrolluphourly" in q["sql"]]
    # the model filter's choices: the models of the September range only
    (choices,) = [
        q for q in rollup_reads if q["sql"].startswith('SELECT "billing_spendrolluphourly"."model"')
    ]
    assert "2026-09-01" in choices["sql"] and "2026-09-11" in choices["sql"]
    assert len(rollup_reads) == 3  # and the September range and November, not the months between


def test_open_alerts_count_unresolved_alerts_in_scope(client, db, feature, other_feature, users, frozen):
    for key, target, status in (
        ("a", feature, "open"),
        ("b", other_feature, "acknowledged"),
        ("c", feature, "resolved"),
    ):
        Alert.objects.create(
            key=key,
            kind=AlertKind.FALLBACK_RATE,
            status=status,
            team=target.team,
            feature=target,
            title=key,
            opened_at=NOW,
            last_seen_at=NOW,
        )
    client.force_login(users["viewer"])
    assert client.get(reverse("overview")).context["data"].open_alerts == 2
    assert client.get(reverse("overview"), {"team": feature.team.slug}).context["data"].open_alerts == 1
    client.force_login(users["pm"])  # a team PM sees its own team's alerts only
    assert client.get(reverse("overview")).context["data"].open_alerts == 1


def test_team_members_see_only_their_teams(client, seeded):
    _login(client, "pm-support")
    data = client.get(reverse("overview")).context["data"]
    assert {r.team_slug for r in data.by_feature} == {"support"}
    response = client.get(reverse("overview"), {"feature": "email-copy"})
    assert response.status_code == 400
    assert "feature: no feature 'email-copy' you can see" in html.unescape(response.content.decode())
    assert {r.team_slug for r in response.context["data"].by_feature} == {"support"}


def test_filters_narrow_every_figure(client, seeded):
    _login(client, "vp")
    data = client.get(
        reverse("overview"), {"team": "growth", "start": "2026-11-05", "end": "2026-11-12"}
    ).context["data"]
    assert {r.team_slug for r in data.by_feature} == {"growth"}
    assert all(date(2026, 11, 5) <= r.day <= date(2026, 11, 12) for r in data.daily_by_model)
    feature = client.get(reverse("overview"), {"feature": "email-copy"}).context["data"]
    assert [r.feature_slug for r in feature.by_feature] == ["email-copy"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "start: 'yesterday' is not a date; use YYYY-MM-DD"),
        ({"start": "2026-11-10", "end": "2026-11-01"}, "start: 2026-11-10 is after end 2026-11-01"),
        ({"team": "nope"}, "team: no team 'nope' you can see"),
        ({"team": "growth", "feature": "ticket-summary"}, "feature: ticket-summary belongs to team support"),
    ],
)
def test_bad_filters_say_which_field_and_how_to_fix_it(client, seeded, params, message):
    _login(client, "vp")
    response = client.get(reverse("overview"), params)
    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())


def test_htmx_gets_the_fragment_and_history_restore_gets_the_page(client, seeded):
    _login(client, "vp")
    fragment = client.get(reverse("overview"), {"team": "support"}, headers={"HX-Request": "true"})
    body = fragment.content.decode()
    assert body.lstrip().startswith('<div class="dashboard-view">') and "<html" not in body
    assert 'value="support" selected' in body  # the filter form comes along, showing the URL's filters
    restore = client.get(
        reverse("overview"),
        {"team": "support"},
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert "<html" in restore.content.decode()
    assert 'value="support" selected' in restore.content.decode()  # the form is restored from the URL


def test_htmx_gets_bad_filter_messages_with_a_swappable_status(client, seeded):
    _login(client, "vp")
    response = client.get(reverse("overview"), {"start": "nope"}, headers={"HX-Request": "true"})
    assert response.status_code == 200  # htmx swaps 2xx only; the message must reach the page
    assert "start: 'nope' is not a date" in html.unescape(response.content.decode())


def test_filter_form_pushes_the_url_and_targets_the_body_relatively(client, seeded):
    _login(client, "vp")
    body = client.get(reverse("overview")).content.decode()
    assert 'hx-push-url="true"' in body and 'hx-target="closest .dashboard-view"' in body


def test_anonymous_users_are_sent_to_log_in(client, db):
    for name in ("overview", "routing-analytics", "focus-export"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and reverse("login") in response["Location"]


def test_empty_overview_says_what_to_do(client, db, users, frozen):
    client.force_login(users["viewer"])
    body = client.get(reverse("overview")).content.decode()
    assert "No traffic yet: send requests to a proxy with a feature key" in body
    assert "js-chart" not in body


# CSV --------------------------------------------------------------------------------------------------------------


def _csv(response):
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


@pytest.mark.parametrize("table", ["teams", "features", "daily", "fallbacks", "movers"])
def test_every_overview_table_exports_as_csv(client, seeded, table):
    _login(client, "vp")
    rows = _csv(client.get(reverse("overview"), {"format": "csv", "table": table}))
    assert rows, f"{table} exported no rows"


def test_csv_totals_match_the_page(client, seeded):
    _login(client, "vp")
    page = client.get(reverse("overview"), {"team": "support"}).context["data"]
    rows = _csv(client.get(reverse("overview"), {"team": "support", "format": "csv", "table": "features"}))
    assert {r["team"] for r in rows} == {"support"}
    assert sum(Decimal(r["cost_usd"]) for r in rows) == page.summary.cost_usd


def test_unknown_csv_table_names_the_choices(client, seeded):
    _login(client, "vp")
    response = client.get(reverse("overview"), {"format": "csv", "table": "nope"})
    assert response.status_code == 400
    assert (
        "table: unknown table 'nope'; use one of daily, fallbacks, features, movers, teams"
        in html.unescape(response.content.decode())
    )


@pytest.mark.parametrize("table", ["features", "reasons", "scores", "latency", "fallback_by_score"])
def test_routing_analytics_tables_export(client, seeded, table):
    _login(client, "vp")
    assert _csv(client.get(reverse("routing-analytics"), {"format": "csv", "table": table}))


def test_the_feature_page_names_its_own_tables_for_one_it_does_not_have(client, seeded):
    """fallback_by_score is routing analytics' table: the feature page answered 500 for it."""
    _login(client, "pm-support")
    feature = Feature.objects.get(slug="ticket-summary")
    response = client.get(
        reverse("feature-spend", args=[feature.code]), {"format": "csv", "table": "fallback_by_score"}
    )
    assert response.status_code == 400
    assert "use one of daily, fallbacks, latency" in html.unescape(response.content.decode())


@pytest.mark.parametrize("table", ["daily", "fallbacks", "latency"])
def test_feature_page_tables_export(client, seeded, table):
    _login(client, "pm-support")
    feature = Feature.objects.get(slug="ticket-summary")
    assert _csv(client.get(reverse("feature-spend", args=[feature.code]), {"format": "csv", "table": table}))
    # an export link to the feature page itself (as bookmarked before the sections loaded apart) still works
    old = client.get(reverse("feature-detail", args=[feature.code]), {"format": "csv", "table": table})
    assert old.status_code == 302 and old["Location"].startswith(
        reverse("feature-spend", args=[feature.code])
    )
    assert _csv(client.get(old["Location"]))


# Feature page -----------------------------------------------------------------------------------------------------


def test_feature_page_shows_spend_sections_from_rollups(client, seeded):
    _login(client, "pm-support")
    feature = Feature.objects.get(slug="ticket-summary")
    page = client.get(
        reverse("feature-detail", args=[feature.code]), {"start": "2026-11-01", "end": "2026-11-20"}
    )
    spend_url = reverse("feature-spend", args=[feature.code])
    # the page loads its spend sections from billing's own URL, with the page's filters
    assert f'hx-get="{spend_url}?start=2026-11-01&amp;end=2026-11-20"' in page.content.decode()
    response = client.get(spend_url, {"start": "2026-11-01", "end": "2026-11-20"})
    assert response.status_code == 200
    spend = response.context["spend"]
    raw = SpendEvent.objects.filter(
        feature=feature,
        start_time__gte=datetime(2026, 11, 1, tzinfo=UTC),
        start_time__lt=datetime(2026, 11, 21, tzinfo=UTC),
    )
    assert spend.requests == raw.filter(attempt=1).count()
    assert spend.cost_usd == pytest.approx(raw.aggregate(c=Sum("cost_usd"))["c"])
    assert spend.small_requests == raw.filter(attempt=1, route="small").count()
    reasons = {r.reason: r.fallbacks for r in spend.fallbacks}
    fallen = raw.filter(fallback=True).values_list("fallback_reason", flat=True)
    assert reasons == {reason: list(fallen).count(reason) for reason in set(fallen)}
    assert {r.model for r in spend.latency} == set(raw.values_list("deployment", flat=True))
    body = response.content.decode()
    for heading in (
        "Budget burn-down",
        "Volume and route split",
        "Cost per request",
        "Fallback rate by reason",
        "Latency per model",
    ):
        assert heading in body
    assert reverse("feature-budget", args=[feature.code]) in page.content.decode()  # the budget panel slot
    assert "No budget is set for this feature yet" in body


def test_feature_burn_down_uses_the_budget_and_forecast(client, db, feature, users, frozen):
    from billing.models import Budget

    Budget.objects.create(team=feature.team, feature=feature, amount_usd=Decimal("50.00"))
    for day in range(1, 20):
        rollup(feature, datetime(2026, 11, day, 10, tzinfo=UTC), cost=str(day % 7 + 1))
    client.force_login(users["pm"])
    response = client.get(reverse("feature-spend", args=[feature.code]))
    burn = response.context["spend"].burn_down
    assert burn.budget_usd == Decimal("50.00")
    assert burn.days[-1].day == date(2026, 11, 20)
    assert burn.month_to_date == sum(Decimal(day % 7 + 1) for day in range(1, 20))
    assert burn.projection[-1].day == date(2026, 11, 30)
    assert burn.projection[-1].cost_usd == pytest.approx(burn.projected_month_end, abs=Decimal("0.01"))
    assert burn.band and all(
        b.low <= p.cost_usd <= b.high for b, p in zip(burn.band, burn.projection, strict=True)
    )
    chart = response.context["spend_charts"]["burn_down"]
    assert chart["layout"]["shapes"][0]["y0"] == 50.0


def test_feature_page_htmx_filter_returns_the_sections_fragment(client, seeded):
    _login(client, "pm-support")
    feature = Feature.objects.get(slug="ticket-summary")
    response = client.get(
        reverse("feature-spend", args=[feature.code]),
        {"start": "2026-11-10"},
        headers={"HX-Request": "true"},
    )
    # a filter swaps the sections; the address bar shows the feature page with the filter, not this URL
    assert response["HX-Push-Url"] == f"{reverse('feature-detail', args=[feature.code])}?start=2026-11-10"
    first = client.get(
        reverse("feature-spend", args=[feature.code]),
        headers={"HX-Request": "true", "HX-Trigger": "feature-spend-loader"},
    )
    assert first.status_code == 200 and "HX-Push-Url" not in first  # the page's own load pushes nothing
    body = response.content.decode()
    assert (
        body.lstrip().startswith('<section class="feature-spend dashboard-view"')
        and "Edit feature" not in body
    )
    assert 'value="2026-11-10"' in body


def test_other_teams_feature_page_is_not_found(client, seeded):
    _login(client, "pm-support")
    feature = Feature.objects.get(slug="email-copy")
    assert client.get(reverse("feature-detail", args=[feature.code])).status_code == 404
    assert client.get(reverse("feature-spend", args=[feature.code])).status_code == 404
    assert (
        client.get(
            reverse("feature-spend", args=[feature.code]), {"format": "csv", "table": "daily"}
        ).status_code
        == 404
    )


# Routing analytics ------------------------------------------------------------------------------------------------


def test_routing_analytics_marks_each_features_threshold(client, seeded):
    feature = Feature.objects.get(slug="ticket-summary")
    RoutingPolicy.objects.create(feature=feature, threshold=Decimal("0.550"))
    RoutingPolicy.objects.create(feature=None, threshold=Decimal("0.600"))
    client.login(username="mlops", password="demo-mlops-pass")
    response = client.get(reverse("routing-analytics"))
    assert response.status_code == 200
    rows = {f.feature_slug: f for f in response.context["data"].features}
    assert rows["ticket-summary"].threshold == 0.55
    assert rows["email-copy"].threshold == 0.6  # inherits the default policy
    charts = {f.feature_slug: figure for f, figure in response.context["score_charts"]}
    assert charts["ticket-summary"]["layout"]["shapes"][0]["x0"] == 0.55
    raw_first = SpendEvent.objects.filter(
        feature=feature, attempt=1, start_time__gte=datetime(2026, 11, 1, tzinfo=UTC)
    )
    assert sum(rows["ticket-summary"].score_histogram) == raw_first.count()
    assert rows["ticket-summary"].small_requests == raw_first.filter(route="small").count()
    # fallback rate by score bucket, from rollups, equals the raw count (fallback rows by their call's score)
    raw_all = SpendEvent.objects.filter(feature=feature, start_time__gte=datetime(2026, 11, 1, tzinfo=UTC))
    buckets = rows["ticket-summary"].fallback_by_score
    for k, bucket in enumerate(buckets):
        scored = {"score__gte": k / 10} | ({"score__lt": (k + 1) / 10} if k < 9 else {})
        assert bucket.requests == raw_first.filter(**scored).count()
        assert bucket.fallbacks == raw_all.filter(fallback=True, **scored).count()
    assert sum(b.fallbacks for b in buckets) > 0  # the seeded traffic has fallbacks to split
    assert "Fallback rate by score bucket" in html.unescape(response.content.decode())


# Query counts: no N+1 ---------------------------------------------------------------------------------------------


def _queries(client, url, params=None):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, params or {}).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("page", ["overview", "routing-analytics", "feature-spend"])
def test_query_count_does_not_grow_with_features(
    client, db, users, frozen, page, django_assert_max_num_queries
):
    team = Team.objects.create(name="Solo", slug="solo")
    first = FeatureFactory(team=team)
    rollup(first, NOW - timedelta(hours=3))
    RoutingPolicy.objects.create(feature=first, threshold=Decimal("0.5"))
    client.force_login(users["admin"])
    url = reverse(page, args=[first.code]) if page == "feature-spend" else reverse(page)
    one = _queries(client, url)
    for _ in range(12):
        extra = FeatureFactory(team=team)
        rollup(
            extra,
            NOW - timedelta(hours=3),
            route="frontier",
            model="sonnet",
            fallback_reason="timeout",
            fallbacks=2,
        )
        RoutingPolicy.objects.create(feature=extra, threshold=Decimal("0.4"))
    many = _queries(client, url)
    assert many == one, f"{page}: {one} queries with 1 feature, {many} with 13"
    with django_assert_max_num_queries(25):
        client.get(url)
