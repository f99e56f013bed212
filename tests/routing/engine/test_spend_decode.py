"""The compiled ingest decoder accepts only what the reference parser accepts, and builds the same records."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.engine import spend_decode
from routing.engine.spend import ParsedBatch, SpendRecord, parse_spend_items


def wire(i: int = 0, **changes: Any) -> dict[str, Any]:
    record = {
        "schema": 1,
        "event_id": f"ev-{i}",
        "call_id": f"call-{i}",
        "attempt": 1,
        "team": "support",
        "feature": "ticket-summary",
        "start_time": "2026-11-20T10:00:00.123456+00:00",
        "end_time": "2026-11-20T10:00:01.5+00:00",
        "first_token_time": None,
        "route": "small",
        "model_group": "slm",
        "deployment": "openai/llama-3-8b",
        "status": "success",
        "input_tokens": 120,
        "output_tokens": 40,
        "cost_usd": "0.0000123",
        "baseline_cost_usd": "0.0012",
        "error_class": "",
        "fallback": False,
        "fallback_reason": "",
        "score": 0.31,
        "threshold": 0.56,
        "decision_reason": "score",
        "bundle_version": "v12",
        "experiment": "",
        "arm": "",
        "end_user": "",
        "stream": False,
        "confidence": None,
        "team_code": "0b6c2f9e-7d4a-4f1e-9a55-3c2d1e0f9a8b",
        "feature_code": "",
        "signals": {"quantitative_task": 0.6931, "transform_task": 0.0},
    }
    record.update(changes)
    return record


def body(*records: dict[str, Any]) -> bytes:
    return json.dumps({"records": list(records)}).encode()


def reference(raw: bytes) -> Any:
    """What ingest's reference path makes of a body: (parsed batch, body-level errors)."""
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # e.g. Infinity: ingest answers 400 for the body
        return ParsedBatch(), [str(exc)]
    return parse_spend_items(decoded)


def test_wire_fields_are_the_record_fields():
    spend_decode.decode_spend_batch(body(wire()), max_records=10)  # builds the decoder
    record_fields = {f.name for f in dataclasses.fields(SpendRecord)}
    assert set(spend_decode.WIRE_FIELDS) - {"schema", "kind"} == record_fields


def test_valid_batch_gives_the_reference_records():
    raw = body(
        wire(0),
        wire(1, route="frontier", fallback=True, fallback_reason="timeout", status="error", score=None),
        wire(2, start_time="2026-11-20T11:00:00+02:00", end_time="2026-11-20T09:00:02Z", cost_usd=3),
        wire(
            3,
            deployment=None,
            error_class=None,
            team_code=None,
            first_token_time="2026-11-20T10:00:00.5+00:00",
        ),
    )
    fast = spend_decode.decode_spend_batch(raw, max_records=10)
    slow, errors = reference(raw)
    assert fast is not None and not errors and not slow.rejected
    assert fast.spend == slow.spend
    # times are normalised to UTC, as the reference does
    assert fast.spend[2][1].start_time.utcoffset().total_seconds() == 0
    assert fast.spend[2][1].start_time.hour == 9


def test_declines_what_the_reference_refuses_or_treats_apart():
    cases = {
        "bad record": body(wire(0), wire(1, attempt=0)),
        "counter record": body(wire(0), {"kind": "blocked", "event_id": "b"}),
        "NUL escape": body(wire(0, end_user="a\u0000b")),
        "lone surrogate": b'{"records": [' + json.dumps(wire(0))[:-1].encode() + b', "arm": "\\ud800"}]}',
        "naive time": body(wire(0, start_time="2026-11-20T10:00:00")),
        "end before start": body(wire(0, end_time="2026-11-20T09:00:00+00:00")),
        "fallback without reason": body(wire(0, fallback=True)),
        "money as float": body(wire(0, cost_usd=0.1)),
        "money not a number": body(wire(0, cost_usd="1e")),
        "too many records": body(wire(0), wire(1), wire(2)),
        "not JSON": b"{records",
        "unknown signal": body(wire(0, signals={"__class__": 1.0})),
        "signal as text": body(wire(0, signals={"quantitative_task": "1"})),
        "signal as bool": body(wire(0, signals={"quantitative_task": True})),
        "signal too large": body(wire(0, signals={"quantitative_task": 1e7})),
        "signals not an object": body(wire(0, signals=[1.0])),
        "too many signals": body(wire(0, signals={f"{n}": 0.0 for n in range(17)})),
    }
    for name, raw in cases.items():
        assert spend_decode.decode_spend_batch(raw, max_records=2) is None, name


# Values a broken or hostile proxy could send for any field.
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.sampled_from(
        [
            "",
            "a" * 201,
            "UPPER",
            "small",
            "frontier",
            "error",
            "timeout",
            "2026-11-20T10:00:00+00:00",
            "2026-11-20 10:00:00Z",
            "2026-11-20T10:00:00.1234567+00:00",
            "1e3",
            " 1.5 ",
            "NaN",
            "-0",
            "0b6c2f9e-7d4a-4f1e-9a55-3c2d1e0f9a8b",
            "0B6C2F9E-7D4A-4F1E-9A55-3C2D1E0F9A8B",
            "x\n",
        ]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FIELDS = list(wire().keys()) + ["kind", "extra"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(FIELDS), ODD_VALUES, max_size=4),
            st.sets(st.sampled_from(FIELDS), max_size=2),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_never_more_lenient_than_the_reference(changes: list[tuple[dict[str, Any], set[str]]]):
    records = []
    for i, (change, dropped) in enumerate(changes):
        record = wire(i, **change)
        for name in dropped:
            record.pop(name, None)
        records.append(record)
    raw = json.dumps({"records": records}).encode()
    fast = spend_decode.decode_spend_batch(raw, max_records=5000)
    slow, errors = reference(raw)
    if fast is not None:
        assert not errors and not slow.rejected and not slow.blocked
        assert fast.spend == slow.spend
