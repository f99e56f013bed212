"""Issue 18 in a real browser (Debian chromium via Playwright): each role's landing answer at 1440 px
and 390 px, per-role navigation, chart ticks on 1-day and 30-day ranges, no horizontal overflow on a
phone, and confirm dialogs before publish and stop. Screenshots: var/artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import io
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Q, Sum
from django.urls import reverse

from billing.budgets import budget_evaluate
from billing.charts import pct_label, usd_label
from billing.models import Budget, SpendRollupHourly
from billing.services import spend_seed
from controlplane.context_processors import NAVIGATION
from controlplane.models import Feature

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "screenshots"
PASSWORDS = {"vp": "demo-vp-pass", "mlops": "demo-mlops-pass", "pm-support": "demo-pm-pass"}
WIDTHS = (1440, 390)
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
HIDDEN = {  # navigation items each demo role must not see
    "vp": {"routing", "routing-analytics", "whatif-index", "experiments"},
    "pm-support": {"routing", "routing-analytics", "whatif-index", "experiments", "fleet"},
    "mlops": set(),
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]


@pytest.fixture(autouse=True)
def mid_month():
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def seeded(db):
    call_command("seed_demo", stdout=io.StringIO())
    spend_seed(events=3000, days=30, end=NOW - timedelta(minutes=5))
    from tests.routing.fleet_support import make_routing

    make_routing()
    feature = Feature.objects.get(slug="ticket-summary")
    budget = Budget.objects.create(
        team=feature.team, feature=feature, amount_usd=Decimal("5"), action="block"
    )
    budget_evaluate(budget=budget, now=NOW)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield browser
        browser.close()


def _page(browser, live_server, username, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "requestfailed",
        lambda req: None if "ABORTED" in (req.failure or "") else errors.append(f"{req.url}: {req.failure}"),
    )
    page.on("response", lambda r: errors.append(f"{r.url}: {r.status}") if r.status >= 400 else None)
    page.goto(f"{live_server.url}{reverse('login')}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORDS[username])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.errors = errors
    return page


def _no_horizontal_overflow(page, what):
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"{what}: the page is {width} px wide in a {viewport} px viewport"


def _rollups(**q):
    return SpendRollupHourly.objects.filter(**q)


def _month():
    return {"hour__gte": NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)}


def _text(page, selector):
    return " ".join(page.inner_text(selector).split())


@pytest.mark.parametrize("width", WIDTHS)
def test_vp_landing_cards_match_the_rollups(browser, live_server, seeded, width):
    page = _page(browser, live_server, "vp", width)
    page.wait_for_selector(".js-plotly-plot .main-svg")
    spend = _rollups(**_month()).aggregate(c=Sum("cost_usd"), b=Sum("baseline_cost_usd"))
    total = _text(page, "[data-kpi=total-cost]")
    assert f"API spend {usd_label(spend['c'])}" in total
    assert f"of the {usd_label(spend['b'])} all-frontier cost" in _text(page, "[data-kpi=net-saving]")
    assert "requests/month" in _text(page, "[data-kpi=break-even]")
    # the features that drive spend, by name, each a link to its page, above the charts
    top = page.eval_on_selector_all(
        "[data-table=top-features] tbody tr td:first-child a", "as => as.map(a => [a.textContent, a.href])"
    )
    by_cost = (
        _rollups(**_month())
        .values("feature__name")
        .annotate(c=Sum("cost_usd"))
        .order_by("-c", "feature__name")
    )
    assert [name for name, _ in top] == [r["feature__name"] for r in by_cost][: len(top)]
    assert all("/features/" in href for _, href in top)
    box = page.locator("[data-table=top-features]").bounding_box()
    assert width < 1000 or box["y"] < 900, "the features table is below the fold on a desktop"
    _no_horizontal_overflow(page, f"vp overview at {width}")
    page.screenshot(path=str(SHOTS / f"landing-vp-{width}.png"), full_page=True)
    assert not page.errors, page.errors


@pytest.mark.parametrize("width", WIDTHS)
def test_pm_landing_shows_their_budgets_against_the_rollups(browser, live_server, seeded, width):
    page = _page(browser, live_server, "pm-support", width)
    page.wait_for_selector("[data-landing=pm]")
    for feature in Feature.objects.filter(team__slug="support"):
        spent = _rollups(feature=feature, **_month()).aggregate(c=Sum("cost_usd"))["c"] or 0
        cell = _text(page, f"[data-landing=pm] tr[data-feature={feature.slug}] [data-cell=spend]")
        assert cell == usd_label(spent), feature.slug
    over = _text(page, "[data-landing=pm] tr[data-feature=ticket-summary]")
    assert "Block (429)" in over and "get an error" in over
    assert "Email copywriter" not in page.content()  # another team's feature
    _no_horizontal_overflow(page, f"pm overview at {width}")
    page.screenshot(path=str(SHOTS / f"landing-pm-{width}.png"), full_page=True)
    assert not page.errors, page.errors


@pytest.mark.parametrize("width", WIDTHS)
def test_mlops_landing_shows_fallback_rate_and_share_per_feature(browser, live_server, seeded, width):
    page = _page(browser, live_server, "mlops", width)
    page.wait_for_selector("[data-landing=mlops]")
    for row in (
        _rollups(**_month())
        .values("feature__slug")
        .annotate(r=Sum("requests"), f=Sum("fallbacks"), s=Sum("requests", filter=Q(route="small")))
    ):
        selector = f"[data-landing=mlops] tr[data-feature={row['feature__slug']}]"
        assert _text(page, f"{selector} [data-cell=fallback-rate]") == pct_label(row["f"] / row["r"])
        assert _text(page, f"{selector} [data-cell=small-share]") == pct_label(row["s"] / row["r"])
    worst = page.get_attribute("[data-worst]", "data-worst")
    assert worst and page.locator(".callout a", has_text="What-if").count() == 1
    _no_horizontal_overflow(page, f"mlops overview at {width}")
    page.screenshot(path=str(SHOTS / f"landing-mlops-{width}.png"), full_page=True)
    assert not page.errors, page.errors


@pytest.mark.parametrize("username", ["vp", "pm-support", "mlops"])
def test_navigation_links_answer_200_and_hidden_ones_are_absent(browser, live_server, seeded, username):
    page = _page(browser, live_server, username, 390)
    hrefs = page.eval_on_selector_all("nav[aria-label=Main] a", "as => as.map(a => a.getAttribute('href'))")
    expected = [reverse(name) for name, _, _ in NAVIGATION if name not in HIDDEN[username]]
    assert hrefs == expected
    for href in hrefs:
        response = page.goto(f"{live_server.url}{href}")
        assert response.status == 200, href
        page.wait_for_load_state("networkidle")
        _no_horizontal_overflow(page, f"{username} {href} at 390")
    for name in HIDDEN[username]:
        assert page.locator(f"nav[aria-label=Main] a[href='{reverse(name)}']").count() == 0
    assert not page.errors, page.errors


def _ticks(page) -> list[str]:
    page.wait_for_selector("figure[aria-label='Daily spend by served model'] .xtick text")
    return page.eval_on_selector_all(
        "figure[aria-label='Daily spend by served model'] .xtick text", "ts => ts.map(t => t.textContent)"
    )


def test_chart_ticks_are_hours_on_one_day_and_days_on_thirty(browser, live_server, seeded):
    page = _page(browser, live_server, "vp", 1440)
    page.goto(f"{live_server.url}/?start=2026-11-19&end=2026-11-19")
    ticks = _ticks(page)
    assert ticks and all(re.fullmatch(r"\d\d:00(Nov \d+)?", t) for t in ticks), ticks
    assert 6 <= len(ticks) <= 9  # every 3 hours
    assert page.locator("h2", has_text="Hourly spend by served model").count() == 1
    page.locator("figure[aria-label='Daily spend by served model']").screenshot(
        path=str(SHOTS / "chart-1-day.png")
    )
    page.goto(f"{live_server.url}/?start=2026-10-22&end=2026-11-20")
    ticks = _ticks(page)
    assert ticks and all(re.fullmatch(r"(Oct|Nov) \d{1,2}", t) for t in ticks), ticks
    assert 8 <= len(ticks) <= 12
    page.locator("figure[aria-label='Daily spend by served model']").screenshot(
        path=str(SHOTS / "chart-30-days.png")
    )
    assert not page.errors, page.errors


def test_publish_and_stop_ask_for_confirmation(browser, live_server, seeded):
    from routing.models import Bundle, Experiment
    from routing.services import experiments

    feature = Feature.objects.get(slug="ticket-summary")
    experiment = experiments.experiment_create(
        actor=None,
        feature=feature,
        name="threshold test",
        arms=[
            {"name": "control", "threshold": "0.6", "weight": 50},
            {"name": "lower", "threshold": "0.45", "weight": 50},
        ],
    )
    Experiment.objects.filter(pk=experiment.pk).update(status="running", started_at=NOW)
    page = _page(browser, live_server, "mlops", 1440)
    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.goto(f"{live_server.url}{reverse('routing')}")
    page.fill("input[name=note]", "browser test")
    assert page.locator("button:text('Publish and roll out')").count() == 0  # the diff comes first
    page.click("button:text('Preview changes')")
    page.wait_for_selector("#publish-preview dl.bundle-diff")
    page.click("button:text('Publish and roll out')")
    page.wait_for_timeout(300)
    assert dialogs and "Publish a new bundle" in dialogs[-1]
    assert not Bundle.objects.exists()  # dismissed: nothing published
    page.goto(f"{live_server.url}{reverse('experiment-detail', args=[experiment.code])}")
    assert page.is_disabled("button:text('Ship winner')")
    page.click("button:text('Stop')")
    page.wait_for_timeout(300)
    assert "Stop threshold test?" in dialogs[-1]
    experiment.refresh_from_db()
    assert experiment.status == "running"
    page.screenshot(path=str(SHOTS / "experiment-ship-disabled.png"), full_page=True)
    assert not page.errors, page.errors
