"""Dashboards in a real browser: Debian's chromium driven by Playwright against the live server.

Every role opens every dashboard page on seeded data and gets charts with traces; filters go through
htmx without a full reload and the URL carries them (back, forward and reload restore them); a PM edits
its own feature's budget and cannot reach another team's. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import io
import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse

from controlplane.models import Feature

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORDS = {
    "vp": "demo-vp-pass",
    "mlops": "demo-mlops-pass",
    "pm-support": "demo-pm-pass",
    "admin": "demo-admin-pass",
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]


NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def mid_month():
    """Month-to-date figures need a month with days behind it: on the 1st they hold only a few hours."""
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def seeded(db):
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_spend", events=1500, days=20, stdout=io.StringIO())


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


def _page(browser, live_server, username):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "requestfailed",  # a poll cut short by navigating away is aborted, not failed
        lambda req: None if "ABORTED" in (req.failure or "") else errors.append(f"{req.url}: {req.failure}"),
    )
    page.goto(f"{live_server.url}{reverse('login')}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORDS[username])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.errors = errors
    return page


def _traces(page) -> list[int]:
    """Number of plotted traces of every rendered chart on the page (waits for plotly first)."""
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=15_000)
    return page.eval_on_selector_all(".js-plotly-plot", "plots => plots.map(p => (p.data || []).length)")


def test_every_role_sees_charts_with_data_on_every_page(browser, live_server, seeded):
    own_feature = Feature.objects.get(slug="ticket-summary")
    for username in ("vp", "mlops", "pm-support"):
        page = _page(browser, live_server, username)
        for name, url in (
            ("overview", reverse("overview")),
            ("routing-analytics", reverse("routing-analytics")),
            ("feature", reverse("feature-detail", args=[own_feature.code])),
        ):
            page.goto(f"{live_server.url}{url}")
            traces = _traces(page)
            expected = len(page.query_selector_all(".js-chart"))
            assert expected and len(traces) == expected, (
                f"{username} {name}: {traces} of {expected} charts drawn"
            )
            assert all(n > 0 for n in traces), f"{username} {name}: a chart has no traces"
            assert page.query_selector_all(".js-plotly-plot text")  # value labels and legends are text
            page.screenshot(path=str(ARTIFACTS / f"dashboards-{username}-{name}.png"), full_page=True)
        assert not page.errors, page.errors
        page.close()


def test_overview_filters_swap_through_htmx_and_history_restores_them(browser, live_server, seeded):
    page = _page(browser, live_server, "vp")
    _traces(page)
    page.evaluate("window.__marker = 1")
    with page.expect_response(lambda r: "team=growth" in r.url):
        page.select_option("select[name=team]", "growth")
    page.wait_for_url(re.compile(r".*[?&]team=growth"))
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0")
    assert page.evaluate("window.__marker") == 1, "the filter reloaded the whole page"
    rows = page.eval_on_selector_all(
        "section:has(h2:text('Spend by feature')) tbody td:first-child",
        "cells => cells.map(c => c.textContent)",
    )
    assert {r.split("\n")[0].strip() for r in rows} == {"Email copywriter", "Churn analyst"}
    assert all(n > 0 for n in _traces(page))
    page.screenshot(path=str(ARTIFACTS / "dashboards-overview-filtered.png"), full_page=True)

    page.go_back()
    page.wait_for_function("!location.search.includes('team=growth')")
    page.wait_for_function("document.querySelector('select[name=team]').value === ''")
    assert page.evaluate("window.__marker") == 1
    assert all(n > 0 for n in _traces(page))
    page.go_forward()
    page.wait_for_url(re.compile(r".*[?&]team=growth"))
    page.wait_for_function("document.querySelector('select[name=team]').value === 'growth'")
    page.reload()  # a fresh load of the URL rebuilds the same filtered view
    assert page.input_value("select[name=team]") == "growth"
    assert all(n > 0 for n in _traces(page))
    assert not page.errors, page.errors


def test_feature_page_date_filter_swaps_only_the_sections(browser, live_server, seeded):
    feature = Feature.objects.get(slug="ticket-summary")
    page = _page(browser, live_server, "pm-support")
    page.goto(f"{live_server.url}{reverse('feature-detail', args=[feature.code])}")
    _traces(page)
    page.evaluate("window.__marker = 1")
    page.fill(".dashboard-filters input[name=start]", "2020-01-01")
    page.fill(".dashboard-filters input[name=end]", "2020-01-31")
    with page.expect_response(lambda r: "end=2020-01-31" in r.url):
        page.click(".dashboard-filters button[type=submit]")
    page.wait_for_selector("text=No requests in this range")
    assert page.evaluate("window.__marker") == 1
    assert "start=2020-01-01" in page.url
    assert page.query_selector("h1").text_content().startswith(feature.name)  # the page around it stayed
    assert not page.errors, page.errors


def test_pm_edits_own_feature_budget_but_not_another_teams(browser, live_server, seeded):
    own = Feature.objects.get(slug="ticket-summary")
    other = Feature.objects.get(slug="email-copy")
    page = _page(browser, live_server, "pm-support")
    page.goto(f"{live_server.url}{reverse('feature-detail', args=[own.code])}")
    page.wait_for_selector(".budget-panel input[name=amount_usd]")  # the budget panel loaded into its slot
    page.fill(".budget-panel input[name=amount_usd]", "123.45")
    page.click(".budget-panel button[type=submit]")
    page.wait_for_selector(".budget-panel >> text=Budget saved.")
    page.screenshot(path=str(ARTIFACTS / "dashboards-pm-budget-saved.png"), full_page=True)
    assert own.budgets.get().amount_usd == Decimal("123.45")

    response = page.goto(f"{live_server.url}{reverse('feature-detail', args=[other.code])}")
    assert response.status == 404
    status = page.evaluate(
        """async (url) => {
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken='));
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token ? token.split('=')[1] : ''},
                                        body: new URLSearchParams({amount_usd: '1', thresholds: '100', action: 'alert'})});
            return r.status;
        }""",
        reverse("feature-budget", args=[other.code]),
    )
    assert status == 404
    assert not other.budgets.exists()
