"""Hourly rollups: exact incremental counts, rebuild equals incremental, dashboard selectors, partitions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from billing import partitions, selectors
from billing.models import LATENCY_BUCKETS, SpendEvent, SpendRollupHourly
from billing.synthetic import synthetic_records
from tests.billing.conftest import issue_key, make_record, post_batch

pytestmark = pytest.mark.django_db

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def snapshot() -> list[dict]:
    rows = SpendRollupHourly.objects.order_by(
        "hour", "team_id", "feature_id", "route", "model", "fallback_reason", "experiment", "arm"
    ).values()
    return [{k: v for k, v in row.items() if k != "id"} for row in rows]


def test_incremental_rollup_is_exact(client, proxy, feature):
    at = HOUR + timedelta(minutes=10)
    records = [
        make_record(call_id="a", start_time=at, latency_ms=5, score=0.05),  # bucket 0 (<10 ms)
        make_record(call_id="b", start_time=at, latency_ms=120, score=0.95),  # [100, 150)
        make_record(
            call_id="c", start_time=at, latency_ms=1500, status="error", cost_usd=Decimal("0"), score=1.0
        ),
        make_record(
            call_id="c",
            attempt=2,
            start_time=at + timedelta(seconds=2),
            latency_ms=70000,  # open last bucket
            fallback=True,
            fallback_reason="timeout",
            score=1.0,
        ),
    ]
    post_batch(client, records[:2])
    post_batch(client, records[2:])
    rows = {(r.model, r.fallback_reason): r for r in SpendRollupHourly.objects.all()}
    plain = rows[("openai/llama-3-8b", "")]
    fallback = rows[("openai/llama-3-8b", "timeout")]
    assert plain.hour == HOUR
    assert (plain.requests, plain.attempts, plain.errors, plain.fallbacks) == (3, 3, 1, 0)
    assert (fallback.requests, fallback.attempts, fallback.errors, fallback.fallbacks) == (0, 1, 0, 1)
    assert plain.cost_usd == Decimal("0.0000240000")
    assert plain.baseline_cost_usd == Decimal("0.0012000000")  # the failed attempt carries no baseline
    assert plain.input_tokens == 300 and plain.output_tokens == 60
    assert (plain.lat_b00, plain.lat_b05, plain.lat_b11) == (1, 1, 1)  # 5, 120 and 1500 ms
    assert fallback.lat_b19 == 1 and sum(getattr(fallback, b) for b in LATENCY_BUCKETS) == 1
    assert (plain.score_b0, plain.score_b9) == (1, 2)  # 0.95 and 1.0 both land in the last bucket
    assert fallback.score_b9 == 0  # scores count once per request, on attempt 1


def _post_synthetic(client, *, events: int, seed: int) -> list:
    features = [("support", "ticket-summary"), ("growth", "email-copy")]
    records = list(
        synthetic_records(
            events=events, start=HOUR - timedelta(hours=30), end=HOUR, features=features, seed=seed
        )
    )
    random.Random(seed).shuffle(records)  # attempts of one call land in different batches
    for i in range(0, len(records), 40):
        assert post_batch(client, records[i : i + 40]).status_code == 200
    post_batch(client, records[:60])  # a re-sent stretch: duplicates only
    return records


def test_rebuild_equals_incremental(client, proxy, feature, other_feature):
    issue_key(other_feature)
    records = _post_synthetic(client, events=600, seed=11)
    incremental = snapshot()
    assert sum(r["attempts"] for r in incremental) == len(records) == SpendEvent.objects.count()
    assert sum(r["requests"] for r in incremental) == len({r.call_id for r in records})
    SpendRollupHourly.objects.update(requests=0, cost_usd=0)  # damage them, then rebuild
    start, end = (HOUR - timedelta(hours=31)).isoformat(), (HOUR + timedelta(hours=1)).isoformat()
    call_command("rebuild_rollups", "--start", start, "--end", end)
    assert snapshot() == incremental


def test_seed_spend_writes_events_and_matching_rollups(feature, other_feature):
    call_command("seed_spend", "--events", "400", "--days", "2")
    assert SpendEvent.objects.count() >= 400
    seeded = snapshot()
    assert sum(r["attempts"] for r in seeded) == SpendEvent.objects.count()
    assert {r["route"] for r in seeded} == {"small", "frontier"}
    assert {"timeout", "low_confidence"} <= {r["fallback_reason"] for r in seeded}
    now = datetime.now(UTC)
    call_command(
        "rebuild_rollups", "--start", (now - timedelta(days=3)).isoformat(), "--end", now.isoformat()
    )
    assert snapshot() == seeded


def test_percentile_interpolates_inside_a_bucket():
    counts = [0] * len(LATENCY_BUCKETS)
    counts[9] = 10  # [600, 1000)
    assert selectors.percentile_from_buckets(counts, 0.5) == pytest.approx(800)
    assert selectors.percentile_from_buckets([0] * len(LATENCY_BUCKETS), 0.5) is None


@pytest.mark.skipif(not settings.DATABASE_IS_POSTGRES, reason="needs Postgres: declarative partitions")
def test_partitions_created_ahead_and_dropped_past_retention(settings):
    settings.FINOPS_RAW_RETENTION_MONTHS = 3
    now = datetime(2026, 11, 15, tzinfo=UTC)
    partitions.partitions_ensure([datetime(2026, 7, 3, tzinfo=UTC), datetime(2026, 8, 3, tzinfo=UTC)])
    result = partitions.partitions_maintain(now=now, ahead=3)
    present = partitions.existing_partitions()
    assert {"billing_spendevent_p202612", "billing_spendevent_p202701", "billing_spendevent_p202702"} <= set(
        present
    )
    assert "billing_spendevent_p202607" in result["dropped"]  # ends 2026-08-01, before the cutoff 2026-08-01
    assert "billing_spendevent_p202607" not in present
    assert "billing_spendevent_p202608" in present  # still inside the three months kept
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'billing_spendevent'")
        assert cursor.fetchone()[0] == "p"  # partitioned table


def test_rebuild_keeps_rollups_older_than_raw_retention(client, proxy, feature, settings):
    settings.FINOPS_RAW_RETENTION_MONTHS = 1
    old_hour = partitions.retention_cutoff() - timedelta(days=20)
    SpendRollupHourly.objects.create(
        hour=old_hour, team=feature.team, feature=feature, route="small", model="slm", requests=7, attempts=7
    )
    post_batch(client, [make_record()])
    recent = snapshot()
    call_command(
        "rebuild_rollups", "--start", (old_hour - timedelta(days=1)).isoformat(), "--end", HOUR.isoformat()
    )
    assert SpendRollupHourly.objects.get(hour=old_hour).requests == 7  # raw data for it is gone: kept
    assert snapshot() == recent


def test_rebuild_rejects_an_empty_range():
    with pytest.raises(CommandError, match="must be after start"):
        call_command("rebuild_rollups", "--start", HOUR.isoformat(), "--end", HOUR.isoformat())


@pytest.mark.skipif(not settings.DATABASE_IS_POSTGRES, reason="needs Postgres: declarative partitions")
def test_ingest_creates_a_missing_month_partition(client, proxy, feature, settings):
    settings.FINOPS_RAW_RETENTION_MONTHS = 13
    moment = partitions.month_start(datetime.now(UTC), -6) + timedelta(days=3)
    name = partitions.partition_name(moment)
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE IF EXISTS "{name}"')
    partitions._known.discard(name)
    assert post_batch(client, [make_record(start_time=moment)]).json()["accepted"] == 1
    assert name in partitions.existing_partitions()
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{name}"')
        assert cursor.fetchone()[0] == 1
