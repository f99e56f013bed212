"""Issue 18 in a real browser (Debian chromium via Playwright), on every page rather than only the landing:

- the dark theme follows the system setting (Playwright's color_scheme="dark"): background and text
  colours change, body text keeps a WCAG contrast of at least 4.5:1 against what is behind it, and chart
  text (titles, ticks, legends, annotations) stays readable on the chart's background;
- at 390 px every page each demo role can open fits the viewport: the document never scrolls
  sideways (wide tables scroll inside their own container).

Screenshots: var/artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse

from billing.alerts import alerts_evaluate
from billing.budgets import budget_evaluate
from billing.models import Budget
from billing.services import spend_seed
from controlplane.models import Feature

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "screenshots"
PASSWORDS = {"vp": "demo-vp-pass", "mlops": "demo-mlops-pass", "pm-support": "demo-pm-pass"}
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)

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
    """The demo organisation, 30 days of spend, routing, an experiment, a fleet of one proxy with a
    bundle and a finished rollout, and a budget that is crossed (so alerts exist)."""
    from routing import services
    from routing.models import Experiment, Rollout
    from routing.services import experiments
    from tests.routing.fleet_support import make_routing, register_proxy

    call_command("seed_demo", stdout=io.StringIO())
    spend_seed(events=3000, days=30, end=NOW - timedelta(minutes=5))
    make_routing()
    feature = Feature.objects.get(slug="ticket-summary")
    budget = Budget.objects.create(
        team=feature.team, feature=feature, amount_usd=Decimal("5"), action="block"
    )
    budget_evaluate(budget=budget, now=NOW)
    alerts_evaluate(now=NOW)  # the alerts page has rows, with their snooze forms
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
    register_proxy(name="edge-eu-1", base_url="http://127.0.0.1:9", token="t" * 40, is_canary=True)
    bundle = services.bundle_publish(actor=None, note="first bundle")
    Rollout.objects.filter(bundle=bundle).update(status="succeeded", finished_at=NOW)
    return {"feature": feature, "experiment": experiment, "bundle": bundle}


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


def _failed(request, errors: list[str]) -> None:
    """A poll cut short by navigating away is aborted, not failed; a request to another host that the
    page's Content-Security-Policy stopped never left the machine (Redoc's bundle asks for its logo)."""
    failure = request.failure or ""
    host = urlsplit(request.url).hostname
    if "ABORTED" in failure or (
        (failure == "csp" or "BLOCKED_BY_CSP" in failure) and host not in ("localhost", "127.0.0.1")
    ):
        return
    errors.append(f"{request.url}: {failure}")


def _login(browser, live_server, username, *, width=1440, color_scheme="light"):
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=color_scheme)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: _failed(req, errors))
    page.on("response", lambda r: errors.append(f"{r.url}: {r.status}") if r.status >= 400 else None)
    page.goto(f"{live_server.url}{reverse('login')}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORDS[username])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.errors = errors
    return page


def _pages(username: str, seeded: dict) -> list[tuple[str, str]]:
    """(name, path) of every page the role can open, with real objects for the detail pages."""
    from routing.models import ModelDeployment, Proxy, Rollout, RoutingPolicy

    feature, experiment, bundle = seeded["feature"], seeded["experiment"], seeded["bundle"]
    everyone = [
        ("overview", reverse("overview")),
        ("overview-1-day", reverse("overview") + "?start=2026-11-19&end=2026-11-19"),
        ("features", reverse("feature-list")),
        ("feature-detail", reverse("feature-detail", args=[feature.code])),
        ("feature-budget", reverse("feature-budget", args=[feature.code])),
        ("team-budget", reverse("team-budget", args=[feature.team.code])),
        ("alerts", reverse("alerts")),
        ("requests", reverse("request-log")),
        ("teams", reverse("team-list")),
        ("team-detail", reverse("team-detail", args=[feature.team.code])),
        ("audit", reverse("audit-list")),
        ("api-docs", reverse("api-docs")),
    ]
    fleet = [
        ("fleet", reverse("fleet")),
        ("fleet-proxy", reverse("fleet-proxy", args=[Proxy.objects.get().code])),
        ("fleet-rollout", reverse("fleet-rollout", args=[Rollout.objects.get().code])),
        ("bundles", reverse("bundle-list")),
        ("bundle-detail", reverse("bundle-detail", args=[bundle.code])),
    ]
    tuning = [
        ("routing", reverse("routing")),
        ("policy-detail", reverse("routing-policy", args=[RoutingPolicy.objects.first().code])),
        (
            "deployment-detail",
            reverse("routing-deployment", args=[ModelDeployment.objects.get(tier="small").code]),
        ),
        ("routing-analytics", reverse("routing-analytics")),
        ("whatif-index", reverse("whatif-index")),
        ("whatif", reverse("whatif", args=[feature.code])),
        ("experiments", reverse("experiments")),
        ("experiment-detail", reverse("experiment-detail", args=[experiment.code])),
        ("experiment-new", reverse("experiment-create")),
    ]
    return {
        "vp": everyone + fleet,
        "pm-support": everyone,
        "mlops": everyone + fleet + tuning,
    }[username]


# --- 390 px on every page -------------------------------------------------------------------------

# The widest element that pokes out of the viewport, so a failure names what to fix.
WIDEST = """() => {
  const vw = document.documentElement.clientWidth;
  let worst = null;
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= vw + 0.5) continue;
    // inside a container that scrolls sideways on its own: that is allowed
    let p = el.parentElement, contained = false;
    while (p && p !== document.body) {
      const s = getComputedStyle(p);
      if ((s.overflowX === 'auto' || s.overflowX === 'scroll' || s.overflowX === 'hidden') &&
          p.getBoundingClientRect().right <= vw + 0.5) { contained = true; break; }
      p = p.parentElement;
    }
    if (contained) continue;
    if (!worst || r.right > worst.right)
      worst = {right: Math.round(r.right), tag: el.tagName.toLowerCase(), cls: el.className && el.className.baseVal === undefined ? el.className : '', text: (el.textContent || '').trim().slice(0, 60)};
  }
  return worst;
}"""


def _sections_loaded(page) -> None:
    """Sections a page loads by hx-get after it (the feature page's spend and routing) are in place."""
    if page.query_selector("#feature-spend-loader"):
        page.wait_for_selector("#feature-spend-loader", state="detached", timeout=20_000)
        page.wait_for_selector(".feature-spend", timeout=20_000)


@pytest.mark.parametrize("username", ["vp", "pm-support", "mlops"])
def test_every_page_fits_a_390px_phone(browser, live_server, seeded, username):
    page = _login(browser, live_server, username, width=390)
    problems = []
    for name, path in _pages(username, seeded):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, f"{username} {name} {path}: {response.status}"
        page.wait_for_load_state("load")
        _sections_loaded(page)
        if page.query_selector(".js-chart"):
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
        if name == "api-docs":
            page.wait_for_selector("h1", timeout=20_000)  # redoc renders the schema client-side
        page.wait_for_timeout(150)  # htmx `load` triggers (budget panel, badge) swap in
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 390:
            problems.append(f"{name} ({path}) is {width} px wide; widest: {page.evaluate(WIDEST)}")
            page.screenshot(path=str(SHOTS / f"overflow-{username}-{name}-390.png"), full_page=True)
    assert not problems, "\n".join(problems)
    page.screenshot(path=str(SHOTS / f"every-page-{username}-390-last.png"), full_page=True)
    assert not page.errors, page.errors


# --- dark theme ---------------------------------------------------------------------------------------

# WCAG 2.x relative luminance and contrast; the background behind an element is the first opaque
# background among its ancestors, with translucent ones composited over it.
CONTRAST = """
(() => {
  function rgba(s) {
    const m = s.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function over(top, bottom) {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  }
  function background(el) {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let colour = [255, 255, 255, 1];  // the canvas when nothing is opaque
    if (layers.length && layers[layers.length - 1][3] >= 1) colour = layers.pop();
    else if (matchMedia('(prefers-color-scheme: dark)').matches) colour = [18, 18, 18, 1];
    while (layers.length) colour = over(layers.pop(), colour);
    return colour;
  }
  function lum(c) {
    const v = c.slice(0, 3).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  }
  function ratio(a, b) { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); }
  window.__contrast = { rgba, background, ratio, over };
})();
"""

# Every visible element that holds text of its own: its colour against what is behind it.
TEXT_CONTRAST = """() => {
  const {rgba, background, ratio, over} = window.__contrast;
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg, script, style, noscript, .js-plotly-plot')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    if (!r.width || !r.height || s.visibility === 'hidden' || s.display === 'none') continue;
    if (el.closest('[disabled], :disabled')) continue;  // WCAG exempts disabled controls
    const bg = background(el);
    const fg = rgba(s.color);
    const colour = fg[3] < 1 ? over(fg, bg) : fg;
    out.push({tag: el.tagName.toLowerCase(), cls: String(el.className || ''), text: el.textContent.trim().slice(0, 40),
              ratio: Math.round(ratio(colour, bg) * 100) / 100, fg: s.color, bg: 'rgb(' + bg.slice(0, 3).join(',') + ')'});
  }
  return out;
}"""

# Chart text (titles, ticks, legend entries, annotations) against the chart's own background.
CHART_CONTRAST = """() => {
  const {rgba, background, ratio} = window.__contrast;
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const paper = plot.querySelector('.main-svg .bg') || null;
    let bg = background(plot);
    const fill = plot.querySelector('.main-svg');
    const paperFill = rgba(getComputedStyle(fill).backgroundColor || '') ;
    if (paperFill && paperFill[3] >= 1) bg = paperFill;
    const texts = plot.querySelectorAll('.gtitle, .xtick text, .ytick text, .legendtext, .annotation-text, .g-xtitle text, .g-ytitle text');
    for (const t of texts) {
      const c = rgba(getComputedStyle(t).fill);
      if (!c || !t.textContent.trim()) continue;
      out.push({text: t.textContent.trim().slice(0, 30), ratio: Math.round(ratio(c, bg) * 100) / 100,
                fill: getComputedStyle(t).fill, bg: 'rgb(' + bg.slice(0, 3).join(',') + ')'});
    }
  }
  return out;
}"""


def _colours(page) -> dict:
    return page.evaluate(
        """() => { const b = getComputedStyle(document.body);
                  const card = document.querySelector('.card, .kpi, .table');
                  return {bg: b.backgroundColor, ink: b.color,
                          card: card ? getComputedStyle(card).backgroundColor : null}; }"""
    )


def test_dark_theme_follows_the_system_and_keeps_text_and_charts_readable(browser, live_server, seeded):
    feature = seeded["feature"]
    light = _login(browser, live_server, "mlops", color_scheme="light")
    light_colours = _colours(light)
    dark = _login(browser, live_server, "mlops", color_scheme="dark")
    dark_colours = _colours(dark)
    assert dark_colours["bg"] != light_colours["bg"] and dark_colours["ink"] != light_colours["ink"]
    assert dark_colours["card"] != light_colours["card"]
    dark.add_init_script(CONTRAST)
    dark.goto(f"{live_server.url}{reverse('overview')}")
    # the measure itself: black on white is 21:1, #777 on white just under 4.5:1, and the dark page's
    # background is dark and its text light
    assert dark.evaluate("window.__contrast.ratio([0,0,0,1],[255,255,255,1])") == pytest.approx(21)
    assert 4.4 < dark.evaluate("window.__contrast.ratio([119,119,119,1],[255,255,255,1])") < 4.5
    lums = dark.evaluate(
        """() => { const {rgba, background} = window.__contrast;
                   const lum = c => c.slice(0, 3).reduce((a, b) => a + b, 0) / 765;
                   return [lum(background(document.querySelector('main'))),
                           lum(rgba(getComputedStyle(document.body).color))]; }"""
    )
    assert lums[0] < 0.25 and lums[1] > 0.75, lums
    problems = []
    checked_text = checked_chart = 0
    for name, path in (
        ("overview", reverse("overview")),
        ("feature", reverse("feature-detail", args=[feature.code])),
        ("routing-analytics", reverse("routing-analytics")),
        ("whatif", reverse("whatif", args=[feature.code])),
        ("requests", reverse("request-log")),
        ("routing", reverse("routing")),
        ("experiment", reverse("experiment-detail", args=[seeded["experiment"].code])),
        ("alerts", reverse("alerts")),
        ("fleet", reverse("fleet")),
        ("audit", reverse("audit-list")),
    ):
        dark.goto(f"{live_server.url}{path}")
        _sections_loaded(dark)
        if dark.query_selector(".js-chart"):
            dark.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
        dark.wait_for_timeout(150)
        texts = dark.evaluate(TEXT_CONTRAST)
        checked_text += len(texts)
        problems += [f"{name}: text {t}" for t in texts if t["ratio"] < 4.5]
        charts = dark.evaluate(CHART_CONTRAST)
        checked_chart += len(charts)
        problems += [f"{name}: chart text {t}" for t in charts if t["ratio"] < 4.5]
        if name in ("overview", "feature", "routing-analytics"):
            assert charts, f"{name}: no chart text found to check"
            dark.screenshot(path=str(SHOTS / f"dark-{name}-1440.png"), full_page=True)
    assert checked_text > 200 and checked_chart > 30, (checked_text, checked_chart)
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} in all)"
    # the light theme holds the same bar
    light.add_init_script(CONTRAST)
    light.goto(f"{live_server.url}{reverse('overview')}")
    light.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
    light_problems = [
        t for t in light.evaluate(TEXT_CONTRAST) + light.evaluate(CHART_CONTRAST) if t["ratio"] < 4.5
    ]
    assert not light_problems, light_problems[:20]
    light.screenshot(path=str(SHOTS / "light-overview-1440.png"), full_page=True)
    assert not dark.errors and not light.errors, dark.errors + light.errors
