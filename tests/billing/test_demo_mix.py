"""The demo's seeded history is drawn from its live traffic: the overview shows the live mix's figures."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse

from billing.services import spend_seed
from billing.synthetic import demo_mix, synthetic_records
from routing.devtools.traffic import COMPLEX, ROUTINE
from routing.engine.scorer import default_version
from routing.engine.spend import SLM_UNAVAILABLE

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
FAULTS = 0.05  # the demo's fake SLM: 3 % errors + 2 % hangs past the timeout


def mix():
    return demo_mix(
        threshold=0.268,
        slm_timeout_ms=2000,
        error_rate=0.03,
        hang_rate=0.02,
        scorer_weights=default_version(),
    )


def expected(m) -> tuple[float, float]:
    """Small-route share and per-token savings the mix implies: SLM answers are free, a fallback pays the frontier price."""
    baseline = cost = Decimal(0)
    small = 0.0
    for weight, score, tokens in m.prompts:
        price = m.frontier_price[0] * tokens + m.frontier_price[1] * m.output_tokens
        baseline += Decimal(str(weight)) * price
        if score < m.threshold:
            small += weight
            cost += Decimal(str(weight * FAULTS)) * price
        else:
            cost += Decimal(str(weight)) * price
    return small, float(1 - cost / baseline)


def test_the_mix_is_the_demo_traffic_scored_as_its_proxies_score_it():
    m = mix()
    assert len(m.prompts) == len(ROUTINE) + len(COMPLEX)
    assert sum(w for w, _, _ in m.prompts) == pytest.approx(1.0)
    routine_small = [s < m.threshold for _, s, _ in m.prompts[: len(ROUTINE)]]
    complex_small = [s < m.threshold for _, s, _ in m.prompts[len(ROUTINE) :]]
    assert all(routine_small) and sum(complex_small) == 1  # what the demo's policy comment says
    assert m.frontier_price == (Decimal("0.0000025"), Decimal("0.00001"))  # gpt-4o in litellm's map


def test_an_incident_is_an_open_breaker_not_a_wave_of_fallbacks():
    start = NOW - timedelta(hours=4)
    incident = (NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    records = list(
        synthetic_records(
            events=3000, start=start, end=NOW, features=[("t", "f")], incidents=[incident], mix=mix()
        )
    )
    during = [r for r in records if incident[0] <= r.start_time < incident[1] and r.attempt == 1]
    skipped = [r for r in during if r.decision_reason == SLM_UNAVAILABLE]
    assert during and skipped
    assert all(r.route == "frontier" and r.model_group == "gpt-4o" and not r.fallback for r in skipped)
    assert all(r.fallback_reason == SLM_UNAVAILABLE and r.cost_usd == r.baseline_cost_usd for r in skipped)
    assert not any(r.fallback for r in records if incident[0] <= r.start_time < incident[1])
    assert not any(r.route == "small" for r in during)


@pytest.mark.django_db
def test_the_overview_of_a_seeded_demo_shows_the_live_mix(client):
    """Through the overview page: small share, fallback rate and gross savings are the mix's own."""
    m = mix()
    small, savings = expected(m)
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", stdout=io.StringIO())
        spend_seed(events=8000, days=2, end=NOW, mix=m)
        client.login(username="vp", password="demo-vp-pass")
        start = (NOW - timedelta(days=2)).date().isoformat()
        response = client.get(reverse("overview"), {"start": start, "end": NOW.date().isoformat()})
    assert response.status_code == 200
    data = response.context["data"]
    summary = data.summary
    assert summary.requests > 6000
    shown_savings = float(data.gross_savings_usd / data.baseline_usd)
    print(
        f"overview: small_share={summary.small_share:.3f} (mix {small:.3f}) "
        f"fallback_rate={summary.fallback_rate:.4f} (mix {small * FAULTS:.4f}) "
        f"gross_savings={shown_savings:.4f} (mix {savings:.4f})"
    )
    assert summary.small_share == pytest.approx(small, abs=0.02)
    assert summary.fallback_rate == pytest.approx(small * FAULTS, abs=0.008)
    assert summary.fallback_rate / summary.small_share == pytest.approx(FAULTS, abs=0.004)  # even per hour
    assert shown_savings == pytest.approx(savings, abs=0.015)
    assert summary.slm_unavailable == 0
