"""Budgets: monthly state from rollups (team timezone), audited edits, bundle budget states, publish on state change, RBAC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from billing import budgets
from billing.models import Budget, BudgetAction, BudgetStatus, FeatureAlertSettings, SpendRollupHourly
from controlplane.models import AuditEntry
from routing.engine.bundle import EXAMPLE_PATH, validate_bundle
from routing.models import Bundle, RoutingPolicy
from tests.factories import FeatureFactory

NOW = datetime(2026, 11, 16, 12, 30, tzinfo=UTC)


def spend(feature, hour: datetime, cost: str, **extra) -> SpendRollupHourly:
    return SpendRollupHourly.objects.create(
        hour=hour,
        team_id=feature.team_id,
        feature=feature,
        route=extra.pop("route", "small"),
        model=extra.pop("model", "slm"),
        requests=extra.pop("requests", 10),
        attempts=10,
        cost_usd=Decimal(cost),
        **extra,
    )


def make_budget(feature=None, *, team=None, amount="100.00", action=BudgetAction.ALERT, **values) -> Budget:
    return budgets.budget_create(
        actor=None,
        team=team or feature.team,
        feature=feature,
        amount_usd=Decimal(amount),
        action=action,
        **values,
    )


@pytest.fixture
def eager_celery():
    """No worker in tests: .delay() runs the task in place (rollouts, budget refreshes)."""
    from controlplane.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous


@pytest.fixture
def provider(settings):
    return settings


# --- state ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_state_counts_this_months_rollups_only(feature):
    spend(feature, datetime(2026, 10, 31, 23, tzinfo=UTC), "500")  # last month
    spend(feature, datetime(2026, 11, 1, 0, tzinfo=UTC), "30")
    spend(feature, datetime(2026, 11, 16, 12, tzinfo=UTC), "30", route="frontier", model="gpt")
    spend(FeatureFactory(team=feature.team), datetime(2026, 11, 2, tzinfo=UTC), "999")  # another feature
    budget = make_budget(feature)
    status = budgets.budget_evaluate(budget=budget, now=NOW)
    assert (status.period, status.spend_usd, status.state, status.enforced) == (
        "2026-11",
        Decimal("60"),
        "ok",
        False,
    )
    assert status.used_pct == Decimal("60.0")


@pytest.mark.django_db
def test_team_timezone_sets_where_the_month_starts(feature):
    feature.team.timezone = "America/New_York"  # Nov 1 00:00 local is 04:00 UTC (still EDT)
    feature.team.save()
    spend(feature, datetime(2026, 11, 1, 3, tzinfo=UTC), "40")  # Oct 31, 23:00 local: last month
    spend(feature, datetime(2026, 11, 1, 4, tzinfo=UTC), "7")
    status = budgets.budget_evaluate(budget=make_budget(feature), now=NOW)
    assert status.spend_usd == Decimal("7")
    period = budgets.period_of(feature.team, datetime(2026, 11, 1, 3, 30, tzinfo=UTC))
    assert period.label == "2026-10"


@pytest.mark.django_db
def test_team_budget_sums_every_feature_of_the_team(feature, other_feature):
    second = FeatureFactory(team=feature.team)
    spend(feature, datetime(2026, 11, 3, tzinfo=UTC), "20")
    spend(second, datetime(2026, 11, 3, tzinfo=UTC), "25")
    spend(other_feature, datetime(2026, 11, 3, tzinfo=UTC), "1000")
    status = budgets.budget_evaluate(budget=make_budget(team=feature.team, amount="40"), now=NOW)
    assert (status.spend_usd, status.state) == (Decimal("45"), "over")


@pytest.mark.django_db
def test_forecast_and_run_out_date_are_stored(feature):
    for day in range(1, 16):  # 10 USD every day of the month so far
        spend(feature, datetime(2026, 11, day, 9, tzinfo=UTC), "10")
    status = budgets.budget_evaluate(budget=make_budget(feature, amount="250"), now=NOW)
    assert status.projection_usd == Decimal("300.00")  # 150 spent + 15 days × 10
    assert status.runs_out_on.isoformat() == "2026-11-25"


# --- edits ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_budget_change_is_audited(feature, users):
    budget = budgets.budget_save(
        actor=users["pm"], team=feature.team, feature=feature, amount_usd=Decimal("100"), thresholds=[50, 80, 100],
        action=BudgetAction.ALERT, is_active=True, fallback_threshold=Decimal("0.3"),
    )  # fmt: skip
    budgets.budget_save(
        actor=users["pm"], team=feature.team, feature=feature, amount_usd=Decimal("150"), thresholds=[50, 80, 100],
        action=BudgetAction.BLOCK, is_active=True, fallback_threshold=Decimal("0.3"),
    )  # fmt: skip
    entries = AuditEntry.objects.filter(object_type="billing.Budget", object_id=str(budget.pk)).order_by("id")
    assert [e.action for e in entries] == ["create", "update"]
    assert entries[1].changes["action"] == ["alert", "block"]
    assert Decimal(entries[1].changes["amount_usd"][1]) == Decimal("150")
    assert entries[1].actor == users["pm"]
    assert FeatureAlertSettings.objects.get(feature=feature).fallback_threshold == Decimal("0.3")
    assert AuditEntry.objects.filter(object_type="billing.FeatureAlertSettings").count() == 1
    assert BudgetStatus.objects.filter(budget=budget).exists()  # evaluated on save


@pytest.mark.django_db
def test_bad_budgets_are_refused_naming_the_field(feature, other_feature):
    with pytest.raises(ValidationError) as exc:
        make_budget(feature, thresholds=[50, 50])
    assert "thresholds" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        make_budget(other_feature, team=feature.team)
    assert "another team" in exc.value.message_dict["feature"][0]
    with pytest.raises(ValidationError) as exc:
        make_budget(feature, amount="0")
    assert "amount_usd" in exc.value.message_dict
    make_budget(feature)
    with pytest.raises(ValidationError) as exc:
        make_budget(feature)
    assert "already has a budget" in exc.value.message_dict["feature"][0]


# --- bundle budget states ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_bundle_states_list_enforced_budgets_only_in_the_bundle_shape(feature, other_feature):
    spend(feature, datetime(2026, 11, 2, tzinfo=UTC), "150")
    spend(other_feature, datetime(2026, 11, 2, tzinfo=UTC), "150")
    make_budget(feature, action=BudgetAction.BLOCK)
    make_budget(other_feature, action=BudgetAction.ALERT)  # over, but alert only: nothing to enforce
    with time_machine.travel(NOW, tick=False):
        budgets.budgets_evaluate(now=NOW)
        states = budgets.budget_states_for_bundle()
    assert states == [
        {
            "team": "support",
            "feature": "ticket-summary",
            "state": "over",
            "spend_usd": "150.00",
            "limit_usd": "100.00",
            "period": "2026-11",
            "action": "block",
        }
    ]
    doc = {**json.loads(EXAMPLE_PATH.read_text()), "budgets": states}
    assert not [e for e in validate_bundle(doc) if "budgets" in e]


@pytest.mark.django_db
def test_a_new_month_lifts_last_months_enforcement(feature):
    spend(feature, datetime(2026, 11, 2, tzinfo=UTC), "150")
    make_budget(feature, action=BudgetAction.BLOCK)
    budgets.budgets_evaluate(now=NOW)
    with time_machine.travel(datetime(2026, 12, 1, 0, 5, tzinfo=UTC), tick=False):
        assert budgets.budget_states_for_bundle() == []


@pytest.mark.django_db
def test_team_budget_over_covers_every_feature_and_block_beats_degrade(feature):
    second = FeatureFactory(team=feature.team, slug="second")
    spend(feature, datetime(2026, 11, 2, tzinfo=UTC), "60")
    spend(second, datetime(2026, 11, 2, tzinfo=UTC), "60")
    make_budget(team=feature.team, amount="100", action=BudgetAction.DEGRADE)
    make_budget(feature, amount="50", action=BudgetAction.BLOCK)
    budgets.budgets_evaluate(now=NOW)
    with time_machine.travel(NOW, tick=False):
        chosen = {e.feature: (e.action, e.limit_usd) for e in budgets.enforcements()}
    assert chosen == {"ticket-summary": ("block", Decimal("50.00")), "second": ("degrade", Decimal("100.00"))}


@pytest.mark.django_db
def test_state_change_publishes_a_bundle_once_and_again_when_lifted(
    feature, provider, eager_celery, django_capture_on_commit_callbacks
):
    from tests.routing.fleet_support import make_routing

    make_routing()
    from routing import services as routing_services

    routing_services.bundle_publish(actor=None, note="first", rollout=False)
    budget = make_budget(feature, action=BudgetAction.DEGRADE)
    spend(feature, datetime(2026, 11, 2, tzinfo=UTC), "150")
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        budgets.budgets_evaluate(now=NOW)  # the rollout (no proxies here) runs on commit and finishes
        budgets.budgets_evaluate(now=NOW)  # idempotent: no second bundle
    published = Bundle.objects.order_by("number")
    assert published.count() == 2
    latest = published.last()
    assert latest.note == "budget state change: support/ticket-summary over → degrade"
    assert latest.created_by is None
    assert [(b["feature"], b["action"]) for b in latest.document["budgets"]] == [
        ("ticket-summary", "degrade")
    ]
    # the budget carries its own action: no routing policy was changed behind the PM's back
    assert not RoutingPolicy.objects.filter(feature=feature).exists()

    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        budgets.budget_update(actor=None, budget=budget, amount_usd=Decimal("200"))
        budgets.budgets_evaluate(now=NOW)
    lifted = Bundle.objects.order_by("number").last()
    assert lifted.number == 3 and lifted.document["budgets"] == []
    assert lifted.note == "budget state change: support/ticket-summary back within budget"


@pytest.mark.django_db
def test_without_a_published_bundle_nothing_is_published(feature, provider):
    spend(feature, datetime(2026, 11, 2, tzinfo=UTC), "150")
    make_budget(feature, action=BudgetAction.BLOCK)
    budgets.budgets_evaluate(now=NOW)
    assert not Bundle.objects.exists()


# --- views and permissions ---------------------------------------------------------------------------

EDIT = {
    "admin": 200,
    "pm": 200,
    "viewer": 403,
    "mlops": 403,
    "team_viewer": 403,
    "outsider": 404,
    "nobody": 404,
}


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(EDIT))
def test_budget_panel_edit_by_role(client, users, feature, role):
    client.force_login(users[role])
    url = reverse("feature-budget", args=[feature.code])
    form = {"amount_usd": "120.00", "thresholds": "50, 90, 100", "action": "block", "is_active": "on"}
    response = client.post(url, form, headers={"HX-Request": "true"})
    assert response.status_code == EDIT[role]
    assert Budget.objects.filter(feature=feature).exists() == (EDIT[role] == 200)
    read = client.get(url, headers={"HX-Request": "true"})
    assert read.status_code == (404 if EDIT[role] == 404 else 200)
    if read.status_code == 200:
        assert (b"Save budget" in read.content) == (EDIT[role] == 200)


@pytest.mark.django_db
def test_budget_panel_shows_errors_next_to_fields(client, users, feature):
    client.force_login(users["pm"])
    url = reverse("feature-budget", args=[feature.code])
    response = client.post(
        url, {"amount_usd": "-3", "thresholds": "fifty", "action": "block"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert "Ensure this value is greater than or equal to 0.01" in body
    assert "Alert thresholds: write whole percentages separated by commas" in body
    assert not Budget.objects.exists()


@pytest.mark.django_db
def test_budget_panel_shows_spend_and_run_out_date(client, users, feature):
    for day in range(1, 16):
        spend(feature, datetime(2026, 11, day, 9, tzinfo=UTC), "10")
    # the whole test runs at NOW: a session created at a frozen date expires 14 days later in real time
    with time_machine.travel(NOW, tick=False):
        budgets.budget_evaluate(budget=make_budget(feature, amount="250"), now=NOW)
        client.force_login(users["team_viewer"])
        response = client.get(reverse("feature-budget", args=[feature.code]), headers={"HX-Request": "true"})
        full = client.get(reverse("feature-budget", args=[feature.code]))
        page = client.get(reverse("feature-detail", args=[feature.code])).content.decode()
    body = response.content.decode()
    assert "$150.00 of $250.00" in body
    assert "runs out on <strong>25 Nov 2026</strong>" in body
    assert "<html" in full.content.decode()  # without htmx: a page around the panel
    assert f'hx-get="{reverse("feature-budget", args=[feature.code])}" hx-trigger="load"' in page


@pytest.mark.django_db
def test_team_budget_edit_needs_the_teams_pm(client, users, team, other_team):
    client.force_login(users["pm"])
    form = {"amount_usd": "1000", "thresholds": "80, 100", "action": "alert", "is_active": "on"}
    assert (
        client.post(
            reverse("team-budget", args=[team.code]), form, headers={"HX-Request": "true"}
        ).status_code
        == 200
    )
    assert client.post(reverse("team-budget", args=[other_team.code]), form).status_code == 404
    assert Budget.objects.get(team=team, feature__isnull=True).thresholds == [80, 100]


# --- end to end through a real LiteLLM proxy with the plugin ---------------------------------------------

E2E_TOKEN = "fpx-test-budget-proxy-0"


@pytest.fixture(scope="module")
def budget_fleet(live_server, tmp_path_factory):
    """One real proxy (plugin loaded) pulling from the live control plane, over two fake upstreams."""
    import os

    from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
    from routing.devtools.harness import ProxyProcess, sample_bundle

    os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")

    upstreams = {name: FakeUpstream(UpstreamBehaviour(name=name)).start() for name in ("slm", "frontier")}
    boot = sample_bundle(
        small_base=upstreams["slm"].base_url, frontier_base=upstreams["frontier"].base_url, keys={}
    )
    proxy = ProxyProcess(
        boot,
        tmp_path_factory.mktemp("budget-proxy"),
        proxy_token=E2E_TOKEN,
        control_plane_url=live_server.url,
        heartbeat_s=1.0,
    )
    try:
        proxy.start()
        print(f"\nproxy started in {proxy.startup_s:.1f}s")
        yield upstreams, proxy
    finally:
        proxy.stop()
        for upstream in upstreams.values():
            upstream.stop()


@pytest.fixture
def fleet_settings(settings, eager_celery):
    settings.FLEET_CANARY_WINDOW_S = 0.5
    settings.FLEET_PUSH_ATTEMPTS = 2
    settings.FLEET_PUSH_BACKOFF_S = 0.1
    settings.FLEET_PUSH_TIMEOUT_S = 5
    return settings


def _fleet_ready(budget_fleet, feature) -> tuple[object, str]:
    from routing import services as routing_services
    from tests.routing.fleet_support import make_routing, register_proxy, wait_until

    upstreams, proxy = budget_fleet
    make_routing(small_base=upstreams["slm"].base_url, frontier_base=upstreams["frontier"].base_url)
    register_proxy(name="budget-proxy", base_url=proxy.url, token=E2E_TOKEN, is_canary=True)
    _, key = routing_services.feature_key_create(actor=None, feature=feature, name="e2e")
    first = routing_services.bundle_publish(actor=None, note="start")
    assert wait_until(lambda: (proxy.status() or {}).get("applied_hash") == first.content_hash, 30), (
        proxy.log_tail()
    )
    return proxy, key


def _wait_for_latest_bundle(proxy) -> Bundle:
    from tests.routing.fleet_support import wait_until

    latest = Bundle.objects.order_by("-number").first()
    assert wait_until(lambda: (proxy.status() or {}).get("applied_hash") == latest.content_hash, 30), (
        proxy.log_tail()
    )
    return latest


needs_postgres = pytest.mark.skipif(
    not django_settings.DATABASE_IS_POSTGRES,
    reason="needs Postgres: the proxy's heartbeats write through the live server while the test writes, "
    "and the shared in-memory SQLite test database answers 'database table is locked'",
)


@pytest.mark.proxy
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fleet_settings")
@needs_postgres
def test_block_end_to_end_spend_past_the_limit_gets_429_naming_feature_spend_and_limit(budget_fleet, feature):
    from django.utils import timezone

    proxy, key = _fleet_ready(budget_fleet, feature)
    status, body, _ = proxy.chat(key, "summarise: the printer is on fire")
    assert status == 200, body

    spend(feature, timezone.now().replace(minute=0, second=0, microsecond=0), "150")
    budgets.budget_create(  # the refresh queued on commit evaluates and publishes (eager Celery here)
        actor=None, team=feature.team, feature=feature, amount_usd=Decimal("100"), action=BudgetAction.BLOCK
    )
    latest = _wait_for_latest_bundle(proxy)
    assert latest.note.startswith("budget state change: support/ticket-summary over")

    status, body, _ = proxy.chat(key, "summarise: the printer is still on fire")
    assert status == 429, body
    message = str(body)
    assert "ticket-summary" in message and "150.00" in message and "100.00" in message
    print(f"\n429 answer: {message[:300]}")

    budget = Budget.objects.get(feature=feature)
    budgets.budget_update(actor=None, budget=budget, amount_usd=Decimal("500"))  # raised: served again
    _wait_for_latest_bundle(proxy)
    status, body, _ = proxy.chat(key, "summarise: fire is out")
    assert status == 200, body


@pytest.mark.proxy
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fleet_settings")
@needs_postgres
def test_degrade_end_to_end_sends_everything_to_the_small_model(budget_fleet, feature):
    from django.utils import timezone

    from routing import services as routing_services

    proxy, key = _fleet_ready(budget_fleet, feature)
    routing_services.policy_create(
        actor=None, feature=feature, threshold=Decimal("0")
    )  # every call to frontier
    routing_services.bundle_publish(actor=None, note="frontier only")
    _wait_for_latest_bundle(proxy)
    status, body, _ = proxy.chat(key, "write a sonnet about invoices")
    assert status == 200 and "answer from frontier" in str(body), body

    spend(feature, timezone.now().replace(minute=0, second=0, microsecond=0), "150")
    budgets.budget_create(
        actor=None, team=feature.team, feature=feature, amount_usd=Decimal("100"), action=BudgetAction.DEGRADE
    )
    latest = _wait_for_latest_bundle(proxy)
    assert [b["action"] for b in latest.document["budgets"]] == ["degrade"]
    status, body, _ = proxy.chat(key, "write another sonnet about invoices")
    assert status == 200 and "answer from slm" in str(body), body


# --- enforcement right after ingest ---------------------------------------------------------------


@pytest.fixture
def budget_check_window():
    """The debounce key lives in the shared cache: start each test without one."""
    from django.core.cache import cache

    from billing.services import enforced_budget_scope_clear
    from billing.tasks import BUDGET_CHECK_KEY

    cache.delete(BUDGET_CHECK_KEY)
    enforced_budget_scope_clear()
    yield BUDGET_CHECK_KEY
    cache.delete(BUDGET_CHECK_KEY)


def crossing_batch(cost: str, n: int = 3) -> list:
    from tests.billing.conftest import make_record

    start = NOW - timedelta(minutes=10)
    return [make_record(start_time=start, cost_usd=Decimal(cost), route="frontier") for _ in range(n)]


@pytest.mark.django_db
def test_spend_that_crosses_a_blocking_budget_is_enforced_right_after_its_ingest(
    feature, provider, eager_celery, django_capture_on_commit_callbacks, budget_check_window
):
    from billing.services import spend_batch_ingest
    from tests.billing.conftest import issue_key
    from tests.routing.fleet_support import make_routing

    make_routing()
    from routing import services as routing_services

    issue_key(feature)
    routing_services.bundle_publish(actor=None, note="first", rollout=False)
    make_budget(feature, amount="100.00", action=BudgetAction.BLOCK)
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        spend_batch_ingest(proxy=None, records=crossing_batch("10"), source="proxy")  # $30 of $100
    assert Bundle.objects.count() == 1  # evaluated, nothing to enforce yet
    with time_machine.travel(NOW, tick=False):
        from django.core.cache import cache

        cache.delete(budget_check_window)  # the next window
        with django_capture_on_commit_callbacks(execute=True):
            spend_batch_ingest(proxy=None, records=crossing_batch("25"), source="proxy")  # +$75: over
    latest = Bundle.objects.order_by("number").last()
    assert Bundle.objects.count() == 2
    assert latest.note == "budget state change: support/ticket-summary over → block"
    assert [(b["feature"], b["state"], b["action"]) for b in latest.document["budgets"]] == [
        ("ticket-summary", "over", "block")
    ]


@pytest.mark.django_db
def test_ingest_queues_one_budget_check_per_window_and_none_for_alert_only_budgets(
    feature, provider, monkeypatch, django_capture_on_commit_callbacks, budget_check_window
):
    from billing import services, tasks
    from tests.billing.conftest import issue_key

    issue_key(feature)
    queued: list[int] = []
    monkeypatch.setattr(tasks.budgets_refresh, "apply_async", lambda countdown: queued.append(countdown))
    alert_only = make_budget(feature, action=BudgetAction.ALERT)
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.spend_batch_ingest(proxy=None, records=crossing_batch("1"), source="proxy")
    assert queued == []  # an alert-only budget is checked by the minute's evaluation
    budgets.budget_update(actor=None, budget=alert_only, action=BudgetAction.DEGRADE)
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            services.spend_batch_ingest(proxy=None, records=crossing_batch("1"), source="proxy")
    assert queued == [tasks.BUDGET_CHECK_AFTER_S]  # one evaluation at the window's end covers all three
