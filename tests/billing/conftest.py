"""Spend fixtures: a proxy with a known token, record builders and a signed-POST helper."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from routing.engine import signing
from routing.engine.spend import SpendRecord
from tests.factories import ProxyFactory

INGEST_URL = "/api/v1/ingest/spend"
PROXY_TOKEN = "test-proxy-token-5c1f0e2d9b8a7"


@pytest.fixture
def proxy(db, feature):
    """A proxy, and a key for `feature`: proxies report only for features that were issued a key."""
    issue_key(feature)
    return ProxyFactory(token=PROXY_TOKEN, name="proxy-a")


def issue_key(feature) -> str:
    from routing.services import feature_key_create

    return feature_key_create(actor=None, feature=feature, name="ingest tests")[1]


def make_record(**overrides: Any) -> SpendRecord:
    """A valid attempt record (SLM, success) for feature ticket-summary of team support; override any field."""
    start = overrides.pop("start_time", datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5))
    latency = overrides.pop("latency_ms", 120)
    values: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "call_id": uuid.uuid4().hex,
        "attempt": 1,
        "team": "support",
        "feature": "ticket-summary",
        "start_time": start,
        "end_time": start + timedelta(milliseconds=latency),
        "route": "small",
        "model_group": "slm",
        "deployment": "openai/llama-3-8b",
        "status": "success",
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": Decimal("0.0000120000"),
        "baseline_cost_usd": Decimal("0.0006000000"),
        "score": 0.25,
        "threshold": 0.6,
        "decision_reason": "score below threshold",
        "bundle_version": "v1",
    }
    values.update(overrides)
    return SpendRecord(**values)


def batch_body(records: list[SpendRecord | dict[str, Any]]) -> bytes:
    items = [r.to_json() if isinstance(r, SpendRecord) else r for r in records]
    return json.dumps({"records": items}, separators=(",", ":")).encode()


def signed_headers(body: bytes, *, token: str = PROXY_TOKEN, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = signing.ingest_key(token)  # the whole credential signs; only its token half travels
    return {
        "Authorization": f"Bearer {signing.split_credential(token)[0]}",
        signing.TIMESTAMP_HEADER: ts,
        signing.SIGNATURE_HEADER: signing.sign(key, ts, body),
    }


def post_batch(
    client, records=None, *, body: bytes | None = None, headers: dict[str, str] | None = None, **kw
):
    body = body if body is not None else batch_body(records or [])
    headers = headers if headers is not None else signed_headers(body, **kw)
    return client.post(INGEST_URL, data=body, content_type="application/json", headers=headers)
