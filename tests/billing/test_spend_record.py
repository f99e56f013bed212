"""One spend record: the wire dataclass, the SpendEvent model, the COPY columns and types, the rollup's source
columns and every field list that reads stored attempts (FOCUS export, Datadog mirror) stay in step."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from billing import datadog, exports, rollups, services
from billing.models import SpendEvent
from billing.selectors import routing as spend_reads
from routing import providers
from routing.engine import spend
from routing.engine.spend import SpendRecord

MODEL_COLUMNS = {f.attname for f in SpendEvent._meta.concrete_fields if not f.primary_key}
RECORD_FIELDS = {f.name for f in dataclasses.fields(SpendRecord)}


def _model_path_exists(path: str) -> bool:
    """Is `team__slug` / `cost_usd` a path the ORM can read from SpendEvent?"""
    model = SpendEvent
    for part in path.split("__"):
        field = model._meta.get_field(part)
        model = field.related_model if field.is_relation else None
    return True


def test_every_record_field_is_a_column_or_resolved_at_ingest():
    # A new SpendRecord field needs a SpendEvent column (or to be declared resolved at ingest) and the reverse.
    assert RECORD_FIELDS - set(services.RECORD_COLUMNS) == set(services.RECORD_ONLY_FIELDS)
    assert not set(services.RECORD_ONLY_FIELDS) & MODEL_COLUMNS
    assert set(services.INGEST_COLUMNS) == MODEL_COLUMNS - RECORD_FIELDS


def test_copy_columns_are_the_model_columns_once_each():
    assert sorted(services.EVENT_COLUMNS) == sorted(MODEL_COLUMNS)
    assert len(services.EVENT_TYPES) == len(services.EVENT_COLUMNS)


@pytest.mark.django_db
def test_copy_types_are_the_table_column_types():
    if connection.vendor != "postgresql":
        pytest.skip("binary COPY types only exist on Postgres; this run uses " + connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = %s",
            [rollups.EVENTS],
        )
        table = dict(cursor.fetchall())
    assert dict(zip(services.EVENT_COLUMNS, services.EVENT_TYPES, strict=True)) == {
        column: table[column] for column in services.EVENT_COLUMNS
    }


def test_event_row_puts_every_value_in_its_own_column():
    start = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    distinct = {
        str: lambda name: f"v-{name}",
        int: lambda name: 7 + len(name),
        bool: lambda name: True,
        float: lambda name: len(name) / 100,
        Decimal: lambda name: Decimal(len(name)) / 1000,
        dict: lambda name: {"quantitative_task": len(name) / 10},
    }
    values = {}
    for f in dataclasses.fields(SpendRecord):
        kind = {"datetime": datetime, "datetime | None": datetime, "float | None": float}.get(f.type)
        kind = kind or {
            "str": str,
            "int": int,
            "bool": bool,
            "Decimal": Decimal,
            "dict[str, float]": dict,
        }.get(f.type)
        assert kind is not None, f"{f.name}: type {f.type} unknown to this test; add it"
        values[f.name] = (
            start + timedelta(seconds=len(f.name)) if kind is datetime else distinct[kind](f.name)
        )
    record = SpendRecord(**values)
    row = dict(
        zip(
            services.EVENT_COLUMNS,
            services.event_row(record, batch_id=1, proxy_id=2, team_id=3, feature_id=4),
            strict=True,
        )
    )
    assert {k: row[k] for k in ("batch_id", "proxy_id", "team_id", "feature_id")} == {
        "batch_id": 1,
        "proxy_id": 2,
        "team_id": 3,
        "feature_id": 4,
    }
    assert row["latency_ms"] == round(record.latency_ms)
    assert {c: row[c] for c in services.RECORD_COLUMNS} == {c: values[c] for c in services.RECORD_COLUMNS}


def test_rollup_export_and_mirror_read_stored_columns():
    assert set(rollups.SOURCE_COLUMNS) <= set(services.EVENT_COLUMNS)
    assert len(set(rollups.SOURCE_COLUMNS)) == len(rollups.SOURCE_COLUMNS)
    assert set(exports.EVENT_FIELDS) <= MODEL_COLUMNS
    for path in datadog.MIRROR_FIELDS:
        assert _model_path_exists(path), path


@pytest.mark.django_db
def test_counting_rules_have_the_same_answer_in_sql_and_python():
    cases = [
        (status, reason, fallback, deployment, attempt)
        for status in spend.STATUSES
        for reason in spend.FALLBACK_REASONS
        for fallback in (False, True)
        for deployment in ("", "openai/gpt-4o")
        for attempt in (1, 2)
    ]
    rules = (rollups.BASELINE_ROW, rollups.SMALL_MODEL_FALLBACK_ROW, rollups.MODEL_SQL, rollups.REQUEST_ROW)
    with connection.cursor() as cursor:
        for status, reason, fallback, deployment, attempt in cases:
            cursor.execute(
                f"SELECT {', '.join(f'({rule})' for rule in rules)} FROM (SELECT %s AS status, "
                "%s AS fallback_reason, %s AS fallback, %s AS deployment, 'group' AS model_group, "
                "%s AS attempt) AS t",
                [status, reason, fallback, deployment, attempt],
            )
            in_sql = tuple(cursor.fetchone())
            in_python = (
                spend.counts_toward_baseline(status, reason),
                spend.counts_against_small_model(fallback, reason),
                spend.model_name(deployment, "group"),
                attempt == spend.REQUEST_ATTEMPT,
            )
            assert tuple(bool(v) if i != 2 else v for i, v in enumerate(in_sql)) == in_python, (
                status,
                reason,
                fallback,
                deployment,
                attempt,
            )


def test_routing_reads_spend_through_the_reader_billing_registers():
    assert providers.spend_reader() is spend_reads
