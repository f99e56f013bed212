"""Issue 18: each role's landing answer, navigation per role, request log, error pages and formats."""

from __future__ import annotations

import html
import io
import math
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.template.loader import render_to_string
from django.urls import reverse

from billing.budgets import budget_evaluate
from billing.models import Budget, BudgetAction, SpendEvent, SpendRollupHourly
from billing.services import spend_seed
from controlplane.context_processors import NAVIGATION
from controlplane.models import Feature
from routing.compiler import Change
from routing.services.experiment_stats import Summary, sequential_difference

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


def _body(response) -> str:
    return html.unescape(response.content.decode())


# Per-role landing --------------------------------------------------------------------------------------------------


def test_pm_lands_on_their_features_spend_against_budget_run_out_and_what_happens_at_100(
    client, db, feature, other_feature, users, frozen
):
    rollup(feature, datetime(2026, 11, 3, 10, tzinfo=UTC), cost="30")
    rollup(feature, datetime(2026, 11, 18, 10, tzinfo=UTC), cost="50")
    rollup(feature, datetime(2026, 10, 30, 10, tzinfo=UTC), cost="999")  # last month: not this month's spend
    rollup(other_feature, datetime(2026, 11, 3, 10, tzinfo=UTC), cost="70")  # another team's
    budget = Budget.objects.create(
        team=feature.team, feature=feature, amount_usd=Decimal("100"), action=BudgetAction.DEGRADE
    )
    budget_evaluate(budget=budget, now=NOW)
    client.force_login(users["pm"])
    response = client.get(reverse("overview"))
    landing = response.context["landing"]
    assert landing["role"] == "pm"
    (row,) = landing["pm"]  # only the PM's own team's feature
    assert row.feature == feature and row.spend_usd == Decimal("80") and row.budget_usd == 100
    assert row.used == pytest.approx(0.8)
    body = _body(response)
    assert 'data-landing="pm"' in body and "Your features this month" in body
    assert "$80.00" in body and "80.0%" in body
    assert "Degrade to the small model" in body and "complex prompts may get weaker ones" in body
    assert body.index('data-landing="pm"') < body.index(
        'data-kpi="total-cost"'
    )  # the PM's answer comes first
    assert other_feature.name not in body


def test_mlops_lands_on_fallback_rate_and_small_share_per_feature_with_the_worst_flagged(
    client, db, feature, other_feature, users, frozen
):
    hour = datetime(2026, 11, 19, 10, tzinfo=UTC)
    rollup(feature, hour, requests=90, fallbacks=27, fallback_reason="timeout")  # 30 % of 100
    rollup(feature, hour, route="frontier", model="gpt", requests=10)
    rollup(other_feature, hour, requests=100, fallbacks=5, fallback_reason="error")  # 5 %
    client.force_login(users["mlops"])
    response = client.get(reverse("overview"))
    m = response.context["landing"]["mlops"]
    assert [f.feature_slug for f in m.features] == ["ticket-summary", "email-copy"]
    worst = m.worst
    assert worst.feature_slug == "ticket-summary" and worst.fallback_rate == pytest.approx(0.27)
    assert worst.small_share == pytest.approx(0.9) and m.worst_over_line
    body = _body(response)
    assert "Above the 20.0% line" in body and "27.0%" in body and "90.0%" in body
    assert reverse("whatif", args=[feature.code]) in body
    assert f"{reverse('routing-analytics')}?feature=ticket-summary" in body


def test_org_viewer_lands_on_the_vp_answer(client, db, feature, users, frozen):
    rollup(feature, datetime(2026, 11, 19, 10, tzinfo=UTC))
    client.force_login(users["viewer"])
    response = client.get(reverse("overview"))
    assert response.context["landing"]["role"] == "vp"
    assert 'data-landing="' not in response.content.decode()
    assert 'data-kpi="net-saving"' in response.content.decode()


# Navigation -------------------------------------------------------------------------------------------------------


def _nav(body: str) -> list[str]:
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', body, re.S).group(1)
    return re.findall(r'href="([^"]+)"', nav)


@pytest.mark.parametrize(
    ("who", "hidden"),
    [
        ("pm", {"routing", "routing-analytics", "whatif-index", "experiments", "fleet"}),
        ("team_viewer", {"routing", "routing-analytics", "whatif-index", "experiments", "fleet"}),
        ("viewer", {"routing", "routing-analytics", "whatif-index", "experiments"}),
        ("mlops", set()),
        ("admin", set()),
    ],
)
def test_navigation_shows_each_role_the_pages_it_can_use_and_every_link_answers_200(
    client, db, feature, users, frozen, who, hidden
):
    client.force_login(users[who])
    links = _nav(client.get(reverse("overview")).content.decode())
    expected = [reverse(name) for name, _, _ in NAVIGATION if name not in hidden]
    assert links == expected
    for url in links:
        assert client.get(url).status_code == 200, url
    for name in hidden:
        assert reverse(name) not in links


def test_routing_analytics_and_whatif_are_reachable_from_the_policy_form(client, db, feature, users, frozen):
    from routing.models import RoutingPolicy

    policy = RoutingPolicy.objects.create(feature=feature, threshold=Decimal("0.5"))
    client.force_login(users["mlops"])
    body = client.get(reverse("routing-policy", args=[policy.code])).content.decode()
    assert reverse("whatif", args=[feature.code]) in body
    assert reverse("routing-analytics") in body
    assert "more fallbacks" in body  # the threshold's trade-off is stated next to it
    assert 'name="over_budget"' not in body  # over-budget behaviour lives on the budget only


# Request log ------------------------------------------------------------------------------------------------------


@pytest.fixture
def seeded(db, frozen):
    call_command("seed_demo", stdout=io.StringIO())
    spend_seed(events=800, days=2, end=NOW)
    return Feature.objects.select_related("team")


def test_request_log_lists_the_newest_calls_and_filters_by_model_and_fallback(client, seeded):
    client.login(username="vp", password="demo-vp-pass")
    params = {"start": "2026-11-19", "end": "2026-11-20"}
    rows = client.get(reverse("request-log"), params).context["rows"]
    assert 0 < len(rows) <= 100
    starts = [r.started_at for r, _ in rows]
    assert starts == sorted(starts, reverse=True)
    newest = SpendEvent.objects.filter(attempt=1).order_by("-start_time").first()
    assert rows[0][0].call_id == newest.call_id
    fallbacks = client.get(reverse("request-log"), {**params, "fallback": "1"}).context["rows"]
    assert fallbacks and all(r.fallback and r.fallback_reason for r, _ in fallbacks)
    model = rows[0][0].served_model
    by_model = client.get(reverse("request-log"), {**params, "model": model}).context["rows"]
    assert by_model and all(r.served_model == model for r, _ in by_model)
    body = _body(client.get(reverse("request-log"), {**params, "fallback": "1"}))
    assert fallbacks[0][0].fallback_reason in body and " ms" in body


def test_request_log_is_scoped_to_the_users_teams(client, seeded):
    client.login(username="pm-support", password="demo-pm-pass")
    rows = client.get(reverse("request-log"), {"start": "2026-11-19", "end": "2026-11-20"}).context["rows"]
    assert rows and {f.team.slug for _, f in rows} == {"support"}


def test_date_presets_cover_24h_7d_30d_and_month_to_date(client, db, feature, users, frozen):
    client.force_login(users["viewer"])
    presets = client.get(reverse("overview")).context["filters"].presets
    assert [p["label"] for p in presets] == ["24 h", "7 d", "30 d", "Month to date"]
    assert [p["query"] for p in presets] == [
        "start=2026-11-19&end=2026-11-20",
        "start=2026-11-14&end=2026-11-20",
        "start=2026-10-22&end=2026-11-20",
        "start=2026-11-01&end=2026-11-20",
    ]
    assert [p["active"] for p in presets] == [False, False, False, True]  # the default range is MTD


# Error pages, favicon, API docs -------------------------------------------------------------------------------------


def test_403_page_is_styled_with_the_reason_and_a_way_back(client, db, users, frozen):
    client.force_login(users["pm"])
    response = client.post(reverse("routing-publish"), {"note": "x"})
    assert response.status_code == 403
    body = _body(response)
    assert "Only MLOps engineers and admins publish bundles." in body
    assert 'href="/"' in body and "Back" in body and "app.css" in body


def test_404_page_is_styled_with_a_way_back(client, db, users, frozen):
    client.force_login(users["pm"])
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    body = _body(response)
    assert "Page not found" in body and "Go to the overview" in body and "app.css" in body


def test_favicon_and_api_docs_load_nothing_from_the_internet(client, db, users):
    assert client.get("/favicon.ico").status_code == 301
    client.force_login(users["viewer"])
    body = client.get(reverse("api-docs")).content.decode()
    assert "fonts.googleapis" not in body and "fonts.gstatic" not in body
    assert "https://" not in body.replace("https://github.com", "")


# Formats ----------------------------------------------------------------------------------------------------------


def test_rate_difference_intervals_stay_within_minus_one_and_one():
    control, treatment = Summary.of([0, 1, 0]), Summary.of([1, 1, 0])
    free = sequential_difference(control, treatment, min_samples=2)
    assert free.low < -1 or free.high > 1  # the unbounded sequence is wider than possible at n=3
    bounded = sequential_difference(control, treatment, min_samples=2, bounds=(-1.0, 1.0))
    assert bounded.low == max(free.low, -1.0) and bounded.high == min(free.high, 1.0)
    assert -1 <= bounded.low <= bounded.estimate <= bounded.high <= 1
    empty = sequential_difference(Summary.of([]), Summary.of([]), bounds=(-1.0, 1.0))
    assert (empty.low, empty.high) == (-1.0, 1.0) and math.isnan(empty.estimate)


def test_bundle_diffs_show_json_not_python_reprs():
    changes = [
        Change(path="$.policies[0].rule_tools", kind="changed", before=True, after=None),
        Change(path="$.keys[0]", kind="added", before=None, after={"name": "web", "revoked": False}),
    ]
    body = html.unescape(render_to_string("routing/_bundle_changes.html", {"changes": changes}))
    assert "true" in body and "null" in body and '{"name": "web", "revoked": false}' in body
    assert "True" not in body and "None" not in body and "'" not in body


def test_money_and_percent_labels():
    from billing.charts import pct_label, usd_label

    assert usd_label(Decimal("1234.6")) == "$1,235"
    assert usd_label(Decimal("12.5")) == "$12.50"
    assert usd_label(Decimal("0.089115")) == "$0.0891"  # not "$0.089115"
    assert usd_label(Decimal("0.000123")) == "$0.000123"  # tiny amounts keep 3 significant digits
    assert usd_label(Decimal("-0.5")) == "−$0.5000"
    assert pct_label(0.349) == "34.9%"


def test_publish_preview_lists_the_changes_before_publishing(client, db, feature, users):
    from tests.routing.fleet_support import make_routing

    make_routing(actor=users["admin"])
    client.force_login(users["mlops"])
    routing_page = client.get(reverse("routing")).content.decode()
    assert reverse("routing-publish-preview") in routing_page and "hx-confirm=" in routing_page
    body = _body(client.get(reverse("routing-publish-preview")))
    assert "against nothing (this would be the first bundle)" in body
    assert "$.deployments" in body and "'" not in re.sub(r"<[^>]+>", "", body).replace("’", "")
    client.force_login(users["pm"])
    assert client.get(reverse("routing-publish-preview")).status_code == 403


def test_budget_status_on_the_first_hours_of_a_month_says_not_enough_data(client, db, feature, users):
    budget = Budget.objects.create(team=feature.team, feature=feature, amount_usd=Decimal("100"))
    first_hour = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)  # the test team keeps its months in UTC
    rollup(feature, datetime(2026, 12, 1, 5, tzinfo=UTC), cost="2")
    status = budget_evaluate(budget=budget, now=first_hour.replace(hour=1))
    assert status.projection_usd is None and status.runs_out_on is None
    html_text = render_to_string("billing/budget_status.html", {"status": status, "budget": budget})
    assert "Not enough data yet" in html_text and "Not this month" not in html_text
    later = budget_evaluate(budget=budget, now=first_hour)  # 6.5 hours seen: a run-rate projection
    assert later.projection_usd is not None and later.projection_usd > Decimal("2")


# Forms ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ("-50, 500", "Alert thresholds: -50, 500 are outside 1–200 %"),
        ("0", "Alert thresholds: 0 is outside 1–200 %"),
        ("50, fifty", "Alert thresholds: write whole percentages"),
        ("80, 80", "Alert thresholds: a percentage repeats"),
    ],
)
def test_budget_thresholds_outside_the_range_are_refused_naming_the_field(
    client, db, feature, users, thresholds, message
):
    client.force_login(users["pm"])
    response = client.post(
        reverse("feature-budget", args=[feature.code]),
        {"amount_usd": "100", "thresholds": thresholds, "action": "alert", "is_active": "on"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert message in _body(response)
    assert not Budget.objects.filter(feature=feature).exists()


def test_budget_form_says_what_each_at_100_choice_does_to_users(client, db, feature, users):
    client.force_login(users["pm"])
    body = _body(client.get(reverse("feature-budget", args=[feature.code]), headers={"HX-Request": "true"}))
    assert 'type="radio"' in body
    assert "Nothing changes for users" in body
    assert "users of the feature get an error" in body
    assert "complex prompts may get weaker ones" in body
    assert "only place over-budget behaviour is set" in body


def test_admin_adds_a_member_to_a_team_from_the_ui(client, db, team, users):
    from controlplane.models import AuditEntry, Membership
    from tests.factories import UserFactory

    newcomer = UserFactory(username="jane", email="jane@example.com")
    client.force_login(users["admin"])
    page = client.get(reverse("team-detail", args=[team.code])).content.decode()
    assert "Add a member" in page
    url = reverse("team-member-add", args=[team.code])
    bad = client.post(url, {"username": "nobody-here", "role": "pm"}, headers={"HX-Request": "true"})
    assert bad.status_code == 422 and "User: no account 'nobody-here'" in _body(bad)
    ok = client.post(url, {"username": "jane@example.com", "role": "pm"}, headers={"HX-Request": "true"})
    assert ok.status_code == 200 and ok["HX-Redirect"] == reverse("team-detail", args=[team.code])
    assert Membership.objects.get(user=newcomer, team=team).role == "pm"
    assert AuditEntry.objects.filter(object_type__icontains="membership").exists()
    again = client.post(url, {"username": "jane", "role": "viewer"}, headers={"HX-Request": "true"})
    assert again.status_code == 422 and "already a member" in _body(again)
    client.force_login(users["pm"])
    assert "Add a member" not in client.get(reverse("team-detail", args=[team.code])).content.decode()
    assert client.post(url, {"username": "jane", "role": "pm"}).status_code == 403


def test_search_on_features_and_the_audit_log(client, db, feature, other_feature, users):
    from controlplane import services

    client.force_login(users["admin"])
    found = client.get(reverse("feature-list"), {"q": "summar"}).context["features"]
    assert list(found) == [feature]
    rows = client.get(
        reverse("feature-list"), {"q": "email"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert other_feature.name in rows and feature.name not in rows
    services.feature_update(actor=users["admin"], feature=feature, description="renamed for search")
    services.feature_update(actor=users["admin"], feature=other_feature, description="other")
    entries = client.get(reverse("audit-list"), {"q": "ticket"}).context["page"]
    assert entries.object_list and all("Ticket" in e.object_repr for e in entries.object_list)
    assert not client.get(reverse("audit-list"), {"q": "no-such-thing"}).context["page"].object_list


def test_timestamps_are_written_for_people_and_todays_overview_refreshes_itself(client, db, users, frozen):
    from billing.templatetags.billing_dashboard import when

    assert when("2026-11-20T12:30:05+00:00") == "20 Nov 2026, 12:30 UTC"
    assert when(datetime(2026, 11, 3, 9, 5, tzinfo=UTC)) == "3 Nov 2026, 09:05 UTC"
    client.force_login(users["viewer"])
    live = client.get(reverse("overview")).content.decode()
    assert 'hx-trigger="every 60s' in live
    past = client.get(reverse("overview"), {"start": "2026-10-01", "end": "2026-10-31"}).content.decode()
    assert 'hx-trigger="every 60s' not in past  # a closed range does not change


def test_an_alert_links_to_the_chart_that_shows_it(client, db, feature, users, frozen):
    from billing.models import Alert, AlertKind

    Alert.objects.create(
        key="fb",
        kind=AlertKind.FALLBACK_RATE,
        status="open",
        team=feature.team,
        feature=feature,
        title="fallback rate 31 %",
        opened_at=NOW,
        last_seen_at=NOW,
    )
    client.force_login(users["viewer"])
    body = client.get(reverse("alerts")).content.decode()
    link = re.search(r'class="alert-chart" href="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert link == (
        f"{reverse('overview')}?feature=ticket-summary&start=2026-11-20&end=2026-11-20#chart-fallback-trend"
    )
    chart = client.get(link.partition("#")[0])  # one day: the hourly fallback chart of that feature
    assert chart.status_code == 200 and chart.context["data"].granularity == "hour"
