"""Hostile feature-key holders against a real proxy with the plugin (issue 14, items 1, 2, 4, 5, 14).

Each test names the attack; it failed on the plugin before the fix (the call reached an upstream,
or the record carried what the caller chose).
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from routing.devtools.harness import http_json
from tests.routing.proxy.conftest import TEAM, Fleet

pytestmark = pytest.mark.proxy

# Every call type a stock LiteLLM proxy serves that the plugin does not meter, and its management routes.
INFERENCE_ENDPOINTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/completions", {"model": "frontier", "prompt": "hi"}),
    ("/completions", {"model": "frontier", "prompt": "hi"}),
    ("/v1/embeddings", {"model": "frontier", "input": "hi"}),
    ("/v1/responses", {"model": "frontier", "input": "hi"}),
    ("/v1/messages", {"model": "frontier", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/images/generations", {"model": "frontier", "prompt": "a cat"}),
    ("/v1/moderations", {"model": "frontier", "input": "hi"}),
    ("/v1/rerank", {"model": "frontier", "query": "q", "documents": ["a"]}),
    ("/openai/deployments/frontier/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/engines/frontier/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
]
MANAGEMENT_ROUTES = [
    "/model/info",
    "/v1/model/info",
    "/settings",
    "/router/settings",
    "/get/config/callbacks",
    "/health",
    "/v1/models",
    "/key/info",
    "/spend/logs",
    "/global/spend",
]


def upstream_calls(fleet: Fleet) -> int:
    return sum(fleet.requests_to(name) for name in fleet.upstreams)


def wait_for(predicate: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


@pytest.mark.parametrize("key", ["fk-routine", "fk-blocked"])
def test_no_endpoint_but_chat_reaches_an_upstream(fleet: Fleet, key: str) -> None:
    """Item 1: an over-budget key got 200 from the frontier model on completions, embeddings, responses, messages."""
    before = upstream_calls(fleet)
    for path, body in INFERENCE_ENDPOINTS:
        status, answer, _ = http_json(
            "POST", fleet.proxy.url + path, body, headers={"Authorization": f"Bearer {key}"}
        )
        assert status in (400, 403), (path, status, answer)
        message = str(answer["error"]["message"])
        assert path in message and "/v1/chat/completions" in message, (path, message)
    assert upstream_calls(fleet) == before


def test_feature_keys_reach_no_management_route(fleet: Fleet) -> None:
    """Item 14: model info, settings, callbacks and /health (real unmetered calls) were open to feature keys."""
    before = upstream_calls(fleet)
    for path in MANAGEMENT_ROUTES:
        status, answer, _ = http_json(
            "GET", fleet.proxy.url + path, headers={"Authorization": "Bearer fk-routine"}, timeout=10
        )
        assert status == 403, (path, status, str(answer)[:200])
        assert path in str(answer["error"]["message"])
    assert upstream_calls(fleet) == before


def test_chat_still_works_on_both_routes(fleet: Fleet) -> None:
    for path in ("/chat/completions", "/v1/chat/completions"):
        status, body, _ = http_json(
            "POST",
            fleet.proxy.url + path,
            {"model": "frontier", "messages": [{"role": "user", "content": "Reformat 2026-11-27"}]},
            headers={"Authorization": "Bearer fk-routine"},
        )
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == "answer from slm"  # policy, not the caller's model


def chat_with_headers(
    fleet: Fleet, key: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, str]:
    request = urllib.request.Request(
        fleet.proxy.url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        response.read()
        return response.status, response.headers.get("x-litellm-call-id", "")


def test_forged_stamp_and_caller_call_ids_change_nothing(fleet: Fleet) -> None:
    """Items 2 and 4: the caller's stamp was copied into records; five calls sharing a call id made one record."""
    forged = {
        "team": "team-b",
        "feature": "complex",
        "call_id": "forged",
        "route": "frontier",
        "model_group": "frontier",
        "experiment": "exp",
        "arm": "a",
    }
    caller_id = "dup-" + "x" * 196  # 200 characters: LiteLLM accepts it, our schema would not
    call_ids = []
    for _ in range(5):
        status, call_id = chat_with_headers(
            fleet,
            "fk-hostile",
            {
                "model": "frontier",
                "messages": [{"role": "user", "content": "Reformat 2026-11-27"}],
                "metadata": {"finops": forged, "previous_models": [{"exception_type": "Timeout"}]},
                "fallbacks": ["frontier"],
            },
            {"x-litellm-call-id": caller_id},
        )
        assert status == 200
        call_ids.append(call_id)
    assert len(set(call_ids)) == 5 and caller_id not in call_ids
    assert wait_for(lambda: len(fleet.control_plane.records_for(feature="hostile")) >= 5)
    records = fleet.control_plane.records_for(feature="hostile")
    assert sorted(r["call_id"] for r in records) == sorted(call_ids)  # the answer's header is the record's id
    assert {(r["team"], r["route"], r["attempt"], r["experiment"]) for r in records} == {
        (TEAM, "small", 1, "")
    }
    assert fleet.control_plane.records_for(call_id="forged") == []
    assert not [r for r in fleet.control_plane.rejected if r.get("feature") == "hostile"]


OVERRIDES: list[tuple[str, dict[str, Any]]] = [
    ("api_base", {"api_base": "http://127.0.0.1:9/v1"}),
    ("base_url", {"base_url": "http://127.0.0.1:9/v1"}),
    ("api_key", {"api_key": "sk-caller-own"}),
    ("api_version", {"api_version": "2024-01-01"}),
    ("custom_llm_provider", {"custom_llm_provider": "anthropic"}),
    (
        "user_config",
        {
            "user_config": {
                "model_list": [{"model_name": "frontier", "litellm_params": {"model": "openai/gpt-4o"}}]
            }
        },
    ),
    ("model_list", {"model_list": []}),
    ("input_cost_per_token", {"input_cost_per_token": 0}),
    ("extra_body.api_base", {"extra_body": {"api_base": "http://127.0.0.1:9/v1"}}),
    ("metadata.api_base", {"metadata": {"api_base": "http://127.0.0.1:9/v1"}}),
    ("litellm_metadata.base_url", {"litellm_metadata": {"base_url": "http://127.0.0.1:9/v1"}}),
]


@pytest.mark.parametrize(("field", "override"), OVERRIDES, ids=[o[0] for o in OVERRIDES])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
def test_request_overrides_get_a_400_naming_the_field(
    fleet: Fleet, field: str, override: dict[str, Any], path: str
) -> None:
    """LiteLLM answered a body with api_base (base_url, user_config, ...) with a 500, and let api_key,
    api_version and custom_llm_provider through to the hook; now each is a 400 naming the field, and no
    upstream is called."""
    before = upstream_calls(fleet)
    status, answer, _ = http_json(
        "POST",
        fleet.proxy.url + path,
        {"model": "frontier", "messages": [{"role": "user", "content": "hi"}], "input": "hi", **override},
        headers={"Authorization": "Bearer fk-routine"},
    )
    assert status == 400, (status, answer)
    assert answer["error"]["param"] == field and repr(field) in answer["error"]["message"], answer
    assert upstream_calls(fleet) == before


def test_a_form_encoded_override_is_refused_too(fleet: Fleet) -> None:
    """LiteLLM reads form bodies as parameters: `api_base=` in a form must not slip past the guard."""
    import urllib.error

    before = upstream_calls(fleet)
    request = urllib.request.Request(
        fleet.proxy.url + "/v1/chat/completions",
        data=b"model=frontier&api_base=http%3A%2F%2F127.0.0.1%3A9%2Fv1",
        method="POST",
        headers={"Authorization": "Bearer fk-routine", "Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["param"] == "api_base"
    assert upstream_calls(fleet) == before


def test_a_plain_chat_still_passes_the_override_guard(fleet: Fleet) -> None:
    """The guard replays the body it read: an ordinary call (with harmless metadata) is served."""
    status, answer, _ = http_json(
        "POST",
        fleet.proxy.url + "/v1/chat/completions",
        {"model": "x", "messages": [{"role": "user", "content": "hi"}], "metadata": {"client_id": "mine"}},
        headers={"Authorization": "Bearer fk-routine"},
    )
    assert status == 200, answer


def test_refused_calls_are_counted_per_feature_and_reason(fleet: Fleet) -> None:
    """Item 5: 401 and 429 answers left no trace."""
    for _ in range(3):
        assert fleet.proxy.chat("fk-blocked", "hello")[0] == 429
    for _ in range(2):
        assert fleet.proxy.chat("fk-revoked", "hello")[0] == 401
    assert fleet.proxy.chat("fk-not-issued", "hello")[0] == 401  # no feature to charge it to

    def counted() -> dict[tuple[str, str], int]:
        totals: dict[tuple[str, str], int] = {}
        for r in fleet.control_plane.blocked_for():
            totals[(r["feature"], r["reason"])] = totals.get((r["feature"], r["reason"]), 0) + r["count"]
        return totals

    assert wait_for(
        lambda: counted().get(("blocked", "budget"), 0) >= 3 and ("routine", "revoked") in counted()
    )
    totals = counted()
    assert totals[("routine", "revoked")] >= 2 and totals[("blocked", "budget")] >= 3
