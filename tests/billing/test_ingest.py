"""The spend ingest endpoint: authentication, validation, limits, idempotency and concurrency."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client

from billing.models import IngestBatch, SpendEvent, SpendRollupHourly
from routing.engine import signing
from tests.billing.conftest import PROXY_TOKEN, batch_body, issue_key, make_record, post_batch, signed_headers
from tests.factories import ProxyFactory

pytestmark = pytest.mark.django_db


def test_accepts_a_signed_batch_and_rolls_it_up(client, proxy, feature):
    records = [make_record() for _ in range(3)]
    response = post_batch(client, records)
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": [], "blocked_accepted": 0}
    assert SpendEvent.objects.filter(proxy=proxy).count() == 3
    rollup = SpendRollupHourly.objects.get()
    assert (rollup.requests, rollup.attempts, rollup.feature_id) == (3, 3, feature.pk)
    batch = IngestBatch.objects.get()
    assert (batch.accepted, batch.duplicates, batch.proxy_id) == (3, 0, proxy.pk)


def test_duplicate_batch_is_counted_once(client, proxy, feature):
    body = batch_body([make_record(), make_record()])
    assert post_batch(client, body=body).json()["accepted"] == 2
    again = post_batch(client, body=body)
    assert again.status_code == 200
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 2)
    assert SpendEvent.objects.count() == 2
    assert SpendRollupHourly.objects.get().requests == 2


def test_duplicates_inside_one_batch_and_partial_overlap(client, proxy, feature):
    first, second = make_record(), make_record()
    post_batch(client, [first])
    response = post_batch(client, [first, second, second])
    assert (response.json()["accepted"], response.json()["duplicates"]) == (1, 2)
    assert SpendRollupHourly.objects.get().attempts == 2


def test_bad_signature_is_401(client, proxy, feature):
    body = batch_body([make_record()])
    headers = signed_headers(body)
    headers[signing.SIGNATURE_HEADER] = "v1=" + "0" * 64
    response = post_batch(client, body=body, headers=headers)
    assert response.status_code == 401
    error = response.json()["errors"][0]
    assert error["field"] == signing.SIGNATURE_HEADER
    assert error["message"].startswith("bad signature")
    assert not SpendEvent.objects.exists()


def test_body_changed_after_signing_is_401(client, proxy, feature):
    body = batch_body([make_record()])
    headers = signed_headers(body)
    response = post_batch(
        client, body=body.replace(b'"input_tokens":100', b'"input_tokens":1'), headers=headers
    )
    assert response.status_code == 401
    assert "bad signature" in response.json()["errors"][0]["message"]


def test_unknown_token_is_401(client, proxy, feature):
    response = post_batch(client, [make_record()], token="not-a-registered-token")
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"].startswith("unknown proxy token")


def test_missing_token_is_401(client, proxy, feature):
    body = batch_body([make_record()])
    headers = signed_headers(body)
    del headers["Authorization"]
    response = post_batch(client, body=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["field"] == "Authorization"


def test_deactivated_proxy_is_401(client, feature):
    ProxyFactory(token="retired-token-123", is_active=False, name="retired")
    response = post_batch(client, [make_record()], token="retired-token-123")
    assert response.status_code == 401
    assert "deactivated" in response.json()["errors"][0]["message"]


def test_stale_timestamp_replay_is_401(client, proxy, feature):
    body = batch_body([make_record()])
    assert post_batch(client, body=body, timestamp=int(time.time()) - 200).status_code == 200
    replay = post_batch(client, body=body, timestamp=int(time.time()) - 301)
    assert replay.status_code == 401
    error = replay.json()["errors"][0]
    assert error["field"] == signing.TIMESTAMP_HEADER
    assert error["message"].startswith("stale timestamp")
    assert "at most 300 s" in error["message"]


def test_future_timestamp_is_401(client, proxy, feature):
    response = post_batch(client, [make_record()], timestamp=int(time.time()) + 400)
    assert response.status_code == 401
    assert "in the future" in response.json()["errors"][0]["message"]


def test_malformed_record_is_refused_alone_and_the_rest_stored(client, proxy, feature):
    bad = make_record().to_json()
    bad["cost_usd"] = 0.5  # a float: money must be a decimal string
    good = make_record()
    response = post_batch(client, [good, bad])
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {
            "index": 1,
            "field": "cost_usd",
            "reason": 'must be a decimal string in USD such as "0.0012" (not a float)',
        }
    ]
    assert response.json()["accepted"] == 1
    assert list(SpendEvent.objects.values_list("event_id", flat=True)) == [good.event_id]


def test_not_json_is_400(client, proxy, feature):
    response = post_batch(client, body=b"{not json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "body"


def test_unknown_feature_slug_is_refused_alone(client, proxy, feature):
    good = make_record()
    response = post_batch(client, [good, make_record(feature="no-such-feature")])
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {
            "index": 1,
            "field": "feature",
            "reason": "unknown feature 'no-such-feature': create it in the control plane first",
        }
    ]
    assert list(SpendEvent.objects.values_list("event_id", flat=True)) == [good.event_id]


def test_record_older_than_raw_retention_is_refused_alone(client, proxy, feature, settings):
    settings.FINOPS_RAW_RETENTION_MONTHS = 2
    old = make_record(start_time=datetime.now(UTC) - timedelta(days=100))
    good = make_record()
    response = post_batch(client, [old, good])
    assert response.status_code == 200
    (error,) = response.json()["rejected"]
    assert (error["index"], error["field"]) == (0, "start_time")
    assert "FINOPS_RAW_RETENTION_MONTHS=2" in error["reason"]
    assert list(SpendEvent.objects.values_list("event_id", flat=True)) == [good.event_id]


def test_oversize_body_is_413_with_the_limit(client, proxy, feature, settings):
    settings.FINOPS_INGEST_MAX_BYTES = 2000
    response = post_batch(client, [make_record() for _ in range(5)])
    assert response.status_code == 413
    assert "at most 2000 bytes" in response.json()["errors"][0]["message"]
    assert not SpendEvent.objects.exists()


def test_too_many_records_is_413_with_the_limit(client, proxy, feature, settings):
    settings.FINOPS_INGEST_MAX_RECORDS = 3
    response = post_batch(client, [make_record() for _ in range(4)])
    assert response.status_code == 413
    assert response.json()["errors"][0]["message"] == "holds 4 records: send at most 3 a batch"


def test_get_is_405(client):
    assert client.get("/api/v1/ingest/spend").status_code == 405


def test_endpoint_is_in_the_openapi_schema(client, users):
    client.force_login(users["admin"])
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/ingest/spend"]["post"]
    assert operation["operationId"] == "ingest_spend"
    assert set(operation["responses"]) == {"200", "400", "401", "413"}


@pytest.mark.skipif(
    not settings.DATABASE_IS_POSTGRES, reason="needs Postgres: concurrent writers and ON CONFLICT"
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_store_each_record_once(team, feature, settings):
    settings.DATADOG_ENABLED = False  # keep the shared broker out of it
    ProxyFactory(token=PROXY_TOKEN, name="proxy-a")
    issue_key(feature)
    records = [make_record(attempt=1) for _ in range(120)]
    # four overlapping batches, each posted by two threads at once: 120 distinct records in all
    batches = [batch_body(records[i : i + 60]) for i in range(0, 120, 20)]
    statuses: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def ship(body: bytes) -> None:
        try:
            response = post_batch(Client(), body=body)
            with lock:
                statuses.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=ship, args=(body,)) for body in batches for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(status == 200 for status, _ in statuses), statuses
    assert sum(reply["accepted"] for _, reply in statuses) == 120
    assert (
        sum(reply["accepted"] + reply["duplicates"] for _, reply in statuses)
        == sum(len(records[i : i + 60]) for i in range(0, 120, 20)) * 2
    )
    assert SpendEvent.objects.count() == 120
    rollup_requests = sum(SpendRollupHourly.objects.values_list("requests", flat=True))
    assert rollup_requests == 120
    cost = sum(SpendRollupHourly.objects.values_list("cost_usd", flat=True))
    assert cost == sum(r.cost_usd for r in records)
    incremental = list(SpendRollupHourly.objects.order_by("hour", "model").values())
    start = min(r.start_time for r in records) - timedelta(hours=1)
    call_command("rebuild_rollups", "--start", start.isoformat(), "--end", datetime.now(UTC).isoformat())
    rebuilt = list(SpendRollupHourly.objects.order_by("hour", "model").values())
    assert [{**r, "id": 0} for r in rebuilt] == [{**r, "id": 0} for r in incremental]


def test_an_attempt_longer_than_a_day_is_refused_naming_end_time(client, proxy, feature):
    from datetime import timedelta

    bad = make_record().to_json()
    start = datetime.fromisoformat(bad["start_time"])
    bad["end_time"] = (start + timedelta(days=30)).isoformat()  # would overflow the latency column
    response = post_batch(client, [bad])
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {
            "index": 0,
            "field": "end_time",
            "reason": "is more than 24 hours after start_time: no attempt lasts that long; send its real end",
        }
    ]
    assert not SpendEvent.objects.exists()


@pytest.mark.django_db
def test_a_record_with_nan_or_infinity_is_refused_alone(client, feature):
    """Python's json writes NaN/Infinity; orjson refuses them: the record holding one goes, not its batch."""
    issue_key(feature)
    ProxyFactory(token=PROXY_TOKEN, name="proxy-nan")
    good = make_record().to_json()
    bad = dict(make_record().to_json(), score=float("inf"), confidence=float("nan"))
    response = post_batch(client, [good, bad])
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["accepted"] == 1
    assert {e["index"] for e in body["rejected"]} == {1}
    assert {e["field"] for e in body["rejected"]} == {"score", "confidence"}


@pytest.mark.django_db
def test_the_staging_table_is_empty_after_each_batch(client, feature):
    """Batches stage their rows in a per-connection table: nothing of one batch is left for the next."""
    if connection.vendor != "postgresql":
        pytest.skip("the staging table exists on Postgres only (SQLite inserts directly)")
    from billing import services

    issue_key(feature)
    ProxyFactory(token=PROXY_TOKEN, name="proxy-stage")
    for _ in range(2):
        response = post_batch(client, [make_record(), make_record()])
        assert response.status_code == 200 and response.json()["accepted"] == 2
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {services.STAGE}")
            assert cursor.fetchone()[0] == 0
    assert SpendEvent.objects.count() == 4
