"""Hostile input: fuzzed spend records and bodies, fuzzed query strings on every API list endpoint (no 5xx).

Hypothesis-based (schemathesis is not installed). Examples per property: FINOPS_RELIABILITY_EXAMPLES
(default 40). Fuzzed bundles pushed to a live plugin are in test_load_and_faults.py (they need a proxy).
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import SpendEvent
from tests.billing.conftest import PROXY_TOKEN, issue_key, make_record, post_batch
from tests.factories import ProxyFactory

pytestmark = [pytest.mark.reliability, pytest.mark.django_db]
EXAMPLES = int(os.environ.get("FINOPS_RELIABILITY_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["", "NaN", "-1", "1e400", "0.0000000000001", "2099-01-01T00:00:00Z", "x" * 5000]),
)
RECORD_FIELDS = sorted(make_record().to_json())


@pytest.fixture
def ingest_proxy(db, feature):
    issue_key(feature)  # proxies report only for features that were issued a key
    return ProxyFactory(token=PROXY_TOKEN, name="proxy-a")


@FUZZ
@given(field=st.sampled_from(RECORD_FIELDS), value=junk, drop=st.booleans())
def test_mutated_spend_record_is_refused_alone_with_field_errors_or_stored(
    client, ingest_proxy, feature, field, value, drop
):
    good = make_record().to_json()
    bad = dict(good)
    if drop:
        bad.pop(field)
    else:
        bad[field] = value
    before = SpendEvent.objects.count()
    response = post_batch(client, [make_record(), bad])
    assert response.status_code == 200, (field, value, response.status_code, response.content[:300])
    rejected = response.json()["rejected"]
    if rejected:  # the mutated record is refused on its own; the good one beside it is stored
        assert {e["index"] for e in rejected} == {1}, rejected
        assert all(e["field"] and e["reason"] for e in rejected), rejected
        assert SpendEvent.objects.count() == before + 1
    else:
        assert SpendEvent.objects.count() == before + 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(document=json_values | st.fixed_dictionaries({"records": json_values}))
def test_arbitrary_json_body_is_refused_and_stores_nothing(client, ingest_proxy, feature, document):
    body = json.dumps(document).encode()
    response = post_batch(client, body=body)
    if isinstance(document, dict) and isinstance(document.get("records"), list):
        # a batch: each junk record is refused on its own, by index
        assert response.status_code == 200, (document, response.status_code)
        refused = {e["index"] for e in response.json()["rejected"]}
        assert refused == set(range(len(document["records"]))), (document, response.json())
    else:
        assert response.status_code == 400, (document, response.status_code)
        assert response.json()["errors"]
    assert not SpendEvent.objects.exists()


def _list_endpoints(client) -> list[str]:
    schema = client.get("/api/schema/", {"format": "json"}).json()
    return sorted(p for p, ops in schema["paths"].items() if "get" in ops and "{" not in p)


def test_every_api_list_endpoint_survives_fuzzed_query_strings(client, users):
    client.force_login(users["admin"])
    paths = _list_endpoints(client)
    assert paths, "the OpenAPI schema lists no GET endpoints"
    query = st.dictionaries(
        st.sampled_from(
            ["page", "page_size", "ordering", "search", "team", "feature", "since", "until", "format", "x"]
        ),
        st.text(max_size=40) | st.integers().map(str),
        max_size=4,
    )

    @FUZZ
    @given(path=st.sampled_from(paths), params=query)
    def probe(path: str, params: dict[str, str]) -> None:
        response = client.get(path, params)
        assert response.status_code < 500, (path, params, response.status_code)

    probe()


def test_end_time_weeks_after_start_is_refused_naming_end_time(client, ingest_proxy, feature):
    """Found by the fuzzer above: latency (end - start) overflowed the integer column and ingest answered 500."""
    from datetime import timedelta

    record = make_record()
    bad = make_record(start_time=record.start_time, latency_ms=0).to_json()
    bad["end_time"] = (record.start_time + timedelta(days=30)).isoformat()
    response = post_batch(client, [bad])
    assert response.status_code == 200, (response.status_code, response.content[:300])
    assert [e["field"] for e in response.json()["rejected"]] == ["end_time"]
    assert not SpendEvent.objects.exists()
