"""In a real browser (Debian chromium via Playwright): the routing analytics page loads the proposed score
adjustment with its what-if, MLOps approves it into the policy draft and lands on the publish page; a PM sees
it without the approve button; at 390 px the section does not scroll the page sideways."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse

from controlplane.models import Feature
from routing.models import AdjustmentProposal, AdjustmentStatus, RoutingPolicy
from tests.routing.fleet_support import make_routing
from tests.routing.test_adjustment_views import ADJUSTMENT, SIDE

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread

CHROMIUM = "/usr/bin/chromium"
PASSWORDS = {"mlops": "demo-mlops-pass", "pm-support": "demo-pm-pass"}
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def proposal(db):
    call_command("seed_demo", stdout=io.StringIO())
    make_routing()
    feature = Feature.objects.get(slug="ticket-summary")
    return AdjustmentProposal.objects.create(
        feature=feature,
        adjustment=ADJUSTMENT,
        scorer_weights="complexity-v3",
        labels=80,
        needed_labels=40,
        window_start=NOW - timedelta(days=30),
        window_end=NOW,
        whatif={
            "threshold": 0.5,
            "calls": 120,
            "current": SIDE,
            "proposed": {**SIDE, "small_share": 0.5, "fallback_rate": 0.04, "needed_kept_small": 0.1},
        },
    )


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield browser
        browser.close()


def _login(browser, live_server, username, *, width=1440):
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.url}: {r.status}") if r.status >= 400 else None)
    page.goto(f"{live_server.url}{reverse('login')}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORDS[username])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.errors = errors
    return page


def test_mlops_sees_the_whatif_and_approves_into_the_policy_draft(browser, live_server, proposal):
    page = _login(browser, live_server, "mlops")
    page.goto(f"{live_server.url}{reverse('routing-analytics')}")
    section = page.locator("#score-adjustments")
    section.wait_for()
    text = section.inner_text()
    assert "Support / Ticket summariser" in text or "Ticket summariser" in text
    assert "With this adjustment" in text and "Current policy" in text
    assert "quantitative_task 1.400" in text
    page.get_by_role("button", name="Approve into the policy draft").click()
    page.wait_for_url(f"{live_server.url}{reverse('routing')}")
    assert "preview and publish to ship it" in page.content()
    assert RoutingPolicy.objects.get(feature=proposal.feature).scorer_adjustment == ADJUSTMENT
    assert AdjustmentProposal.objects.get(pk=proposal.pk).status == AdjustmentStatus.APPROVED
    assert page.errors == []


def test_a_pm_sees_the_proposal_without_deciding_and_it_fits_390_px(browser, live_server, proposal):
    page = _login(browser, live_server, "pm-support", width=390)
    page.goto(f"{live_server.url}{reverse('routing-analytics')}")
    section = page.locator("#score-adjustments")
    section.wait_for()
    assert "Waits for an MLOps engineer or admin" in section.inner_text()
    assert page.get_by_role("button", name="Approve into the policy draft").count() == 0
    scroll = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert scroll <= 0, f"the page scrolls sideways by {scroll}px at 390 px"
    assert page.errors == []
