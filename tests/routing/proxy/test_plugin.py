"""The pre-call hook and record building, called directly (no proxy process)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import HTTPException

from routing.devtools.harness import dev_public_key, dev_signed
from routing.engine.bundle import example_bundle, with_content_hash
from routing.proxy.plugin import IDENTITY_KEY, FinOpsRouter
from routing.proxy.records import STAMP_KEY, build_record
from routing.proxy.runtime import ProxyRuntime
from routing.proxy.settings import ProxySettings


@pytest.fixture
def runtime(tmp_path: Path) -> ProxyRuntime:
    runtime = ProxyRuntime(
        ProxySettings(
            state_dir=tmp_path,
            control_plane_url="",
            proxy_token="t",
            bundle_public_keys=dev_public_key(),
            allowed_key_envs=frozenset({"SLM_API_KEY", "SLM_API_BASE", "ANTHROPIC_API_KEY"}),
        )
    )
    doc = example_bundle()
    doc["attribution"] = {"header": True, "metadata": False}
    runtime.apply_bundle(dev_signed(with_content_hash(doc)), source="test")
    assert runtime.bundle is not None
    runtime.router_topology = runtime.bundle.topology  # no LiteLLM router in these tests
    return runtime


def caller(team: str, feature: str, *features: str) -> Any:
    return SimpleNamespace(
        metadata={IDENTITY_KEY: {"team": team, "feature": feature, "features": list(features)}}
    )


def run_hook(runtime: ProxyRuntime, who: Any, **data: Any) -> dict[str, Any]:
    data.setdefault("messages", [{"role": "user", "content": "hello"}])
    data.setdefault("litellm_call_id", "call-1")
    plugin = FinOpsRouter(lambda: runtime)
    return asyncio.run(plugin.async_pre_call_hook(who, None, data, "acompletion"))


def test_hook_rewrites_the_model_and_stamps_the_decision(runtime: ProxyRuntime) -> None:
    data = run_hook(runtime, caller("support", "other"), user="end-user-9")
    stamp = data["metadata"][STAMP_KEY]
    assert data["model"] in ("slm", "frontier")
    assert stamp["team"] == "support" and stamp["feature"] == "other" and stamp["end_user"] == "end-user-9"
    assert stamp["bundle_version"] == "2026-11-27.1"
    assert stamp["call_id"] != "call-1" and len(stamp["call_id"]) == 32  # minted here, not the caller's
    assert stamp["threshold"] == 0.5 and 0.0 <= stamp["score"] <= 1.0
    if data["model"] == "slm":
        assert data["timeout"] == 2.0 and data["fallbacks"] == ["frontier"]


def test_hook_blocks_an_over_budget_feature_with_429(runtime: ProxyRuntime) -> None:
    with pytest.raises(HTTPException) as blocked:
        run_hook(runtime, caller("search", "doc-summary"))
    assert blocked.value.status_code == 429 and "doc-summary" in str(blocked.value.detail)


def test_header_attribution_only_to_features_the_key_may_use(runtime: ProxyRuntime) -> None:
    headers = {"proxy_server_request": {"headers": {"x-finops-feature": "doc-qa"}}}
    allowed = run_hook(runtime, caller("search", "doc-summary", "doc-qa"), **headers)
    assert allowed["metadata"][STAMP_KEY]["feature"] == "doc-qa"
    with pytest.raises(HTTPException):  # not in the key's features: stays on its own (blocked) feature
        run_hook(runtime, caller("search", "doc-summary"), **headers)


TEAM_CODE = "11111111-1111-4111-8111-111111111111"
OWN_CODE = "22222222-2222-4222-8222-222222222222"
EXTRA_CODE = "33333333-3333-4333-8333-333333333333"


def test_records_for_a_keys_extra_feature_carry_its_code(tmp_path: Path) -> None:
    """A call charged to one of the key's extra features (X-FinOps-Feature) names it by UUID, like its own."""
    from routing.engine.bundle import validate_bundle
    from routing.proxy.auth import identity_of

    doc = example_bundle()
    doc["attribution"] = {"header": True, "metadata": False}
    doc["budgets"] = []
    key = doc["keys"][1]
    key.update(team_code=TEAM_CODE, feature_code=OWN_CODE, feature_codes={"doc-qa": EXTRA_CODE})
    runtime = ProxyRuntime(
        ProxySettings(
            state_dir=tmp_path,
            control_plane_url="",
            proxy_token="t",
            bundle_public_keys=dev_public_key(),
            allowed_key_envs=frozenset({"SLM_API_KEY", "SLM_API_BASE", "ANTHROPIC_API_KEY"}),
        )
    )
    runtime.apply_bundle(dev_signed(with_content_hash(doc)), source="test")
    runtime.router_topology = runtime.bundle.topology
    who = SimpleNamespace(metadata={IDENTITY_KEY: identity_of(runtime.bundle.keys[key["key_hash"]])})
    headers = {"proxy_server_request": {"headers": {"x-finops-feature": "doc-qa"}}}
    extra = run_hook(runtime, who, **headers)["metadata"][STAMP_KEY]
    own = run_hook(runtime, who)["metadata"][STAMP_KEY]
    assert (extra["feature"], extra["team_code"], extra["feature_code"]) == ("doc-qa", TEAM_CODE, EXTRA_CODE)
    assert (own["feature"], own["team_code"], own["feature_code"]) == ("doc-summary", TEAM_CODE, OWN_CODE)
    kwargs = {
        "litellm_params": {"metadata": {STAMP_KEY: extra, "model_group": extra["model_group"]}},
        "standard_logging_object": {"prompt_tokens": 10, "completion_tokens": 1, "response_cost": 0.001},
    }
    wire = build_record(kwargs, None, status="success", bundle=runtime.bundle).to_json()
    assert (wire["feature"], wire["feature_code"], wire["team_code"]) == ("doc-qa", EXTRA_CODE, TEAM_CODE)

    # a bundle that gives the key's own feature a code must give every extra feature one
    del key["feature_codes"]
    assert any("feature_codes" in e and "'doc-qa'" in e for e in validate_bundle(with_content_hash(doc)))


def test_record_from_litellm_kwargs(runtime: ProxyRuntime) -> None:
    data = run_hook(runtime, caller("support", "other"))
    stamp = data["metadata"][STAMP_KEY]
    kwargs = {
        "litellm_params": {
            "metadata": {
                STAMP_KEY: stamp,
                "model_group": "frontier",
                "deployment": "anthropic/claude-sonnet-4-5",
                "previous_models": [{"exception_type": "Timeout"}],
            }
        },
        "standard_logging_object": {
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "response_cost": 0.0045,
            "startTime": 1_800_000_000.0,
            "endTime": 1_800_000_001.5,
            "completionStartTime": 1_800_000_000.5,
        },
    }
    record = build_record(kwargs, None, status="success", bundle=runtime.bundle)
    assert record is not None
    wire = record.to_json()
    assert wire["cost_usd"] == "0.0045000000" and wire["input_tokens"] == 1000
    if stamp["route"] == "small":
        assert (record.attempt, record.fallback, record.fallback_reason) == (2, True, "timeout")
    assert record.latency_ms == 1500.0
    from routing.engine.spend import parse_spend_record

    assert parse_spend_record(wire)[1] == []


def test_records_without_a_stamp_are_skipped() -> None:
    assert build_record({"litellm_params": {"metadata": {}}}, None, status="error", bundle=None) is None


def test_hook_is_cheap(runtime: ProxyRuntime) -> None:
    plugin = FinOpsRouter(lambda: runtime)
    who = caller("support", "other")

    async def many() -> float:
        started = time.perf_counter()
        for i in range(500):
            data = {
                "messages": [{"role": "user", "content": f"Summarise ticket {i} in one line."}],
                "litellm_call_id": str(i),
            }
            await plugin.async_pre_call_hook(who, None, data, "acompletion")
        return (time.perf_counter() - started) / 500 * 1000

    per_call_ms = asyncio.run(many())
    print(f"\npre-call hook: {per_call_ms:.3f} ms per call")
    assert per_call_ms < 1.0


def test_a_cooled_down_small_model_is_recorded_as_the_failed_first_attempt(runtime: ProxyRuntime) -> None:
    from litellm.types.router import RouterRateLimitError

    data = run_hook(runtime, caller("support", "other"))
    stamp = dict(data["metadata"][STAMP_KEY], route="small", model_group="small")
    skipped = {
        # LiteLLM logs the refusal under the group it fell back to
        "litellm_params": {"metadata": {STAMP_KEY: stamp, "model_group": "frontier"}},
        "exception": RouterRateLimitError(
            model="small", cooldown_time=5, enable_pre_call_checks=False, cooldown_list=[]
        ),
        "standard_logging_object": {"startTime": 1_800_000_000.0, "endTime": 1_800_000_000.001},
    }
    record = build_record(skipped, None, status="error", bundle=runtime.bundle)
    assert record is not None
    assert (record.attempt, record.model_group, record.fallback, record.status) == (
        1,
        "small",
        False,
        "error",
    )
    assert record.error_class == "RouterRateLimitError"


# -- hostile callers (issue 14) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "call_type", ["aembedding", "atext_completion", "aresponses", "anthropic_messages", "aimage_generation"]
)
def test_every_call_type_but_chat_is_refused_naming_it(runtime: ProxyRuntime, call_type: str) -> None:
    plugin = FinOpsRouter(lambda: runtime)
    data = {"model": "frontier", "input": "hello", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(HTTPException) as refused:
        asyncio.run(plugin.async_pre_call_hook(caller("support", "other"), None, data, call_type))
    assert refused.value.status_code == 403 and call_type in str(refused.value.detail)
    assert data["model"] == "frontier" and STAMP_KEY not in (data.get("metadata") or {})
    assert runtime.blocked.drain()[0]["reason"] == "endpoint"


def test_chat_without_messages_is_a_400(runtime: ProxyRuntime) -> None:
    plugin = FinOpsRouter(lambda: runtime)
    with pytest.raises(HTTPException) as refused:
        asyncio.run(
            plugin.async_pre_call_hook(caller("support", "other"), None, {"model": "x"}, "acompletion")
        )
    assert refused.value.status_code == 400 and "messages" in str(refused.value.detail)


def test_a_client_stamp_and_model_overrides_are_replaced(runtime: ProxyRuntime) -> None:
    forged = {"team": "search", "feature": "doc-summary", "call_id": "forged", "route": "small"}
    data = run_hook(
        runtime,
        caller("support", "other"),
        metadata={STAMP_KEY: forged, "previous_models": [{"exception_type": "Timeout"}], "tag": "kept"},
        fallbacks=["some-raw-frontier-group"],
        api_base="http://127.0.0.1:1/steal",
        mock_response="free answer",
        user_config={"model_list": [{"model_name": "x", "litellm_params": {"model": "openai/gpt-4o"}}]},
    )
    stamp = data["metadata"][STAMP_KEY]
    assert (stamp["team"], stamp["feature"]) == ("support", "other") and stamp["call_id"] != "forged"
    assert "previous_models" not in data["metadata"] and data["metadata"]["tag"] == "kept"
    assert "api_base" not in data and "mock_response" not in data and "user_config" not in data
    assert data["fallbacks"] in ([], ["frontier"])


def test_only_sealed_stamps_are_recorded(runtime: ProxyRuntime) -> None:
    """A stamp that reached the logging callback without our hook writing it is never recorded."""
    plugin = FinOpsRouter(lambda: runtime)
    ours = run_hook(runtime, caller("support", "other"))["metadata"][STAMP_KEY]
    forged = {k: v for k, v in ours.items() if k != "seal"} | {"team": "search", "feature": "doc-summary"}
    payload = {"startTime": 1_800_000_000.0, "endTime": 1_800_000_001.0}
    for stamp in (forged, dict(forged, seal="guessed")):
        kwargs = {"litellm_params": {"metadata": {STAMP_KEY: stamp}}, "standard_logging_object": payload}
        plugin._record(kwargs, None, "success", None, None)
    assert runtime.shipper.write_queued() == 0
    kwargs = {"litellm_params": {"metadata": {STAMP_KEY: ours}}, "standard_logging_object": payload}
    plugin._record(kwargs, None, "success", None, None)
    assert runtime.shipper.write_queued() == 1


def test_five_calls_with_one_caller_call_id_make_five_records(runtime: ProxyRuntime) -> None:
    plugin = FinOpsRouter(lambda: runtime)
    payload = {"startTime": 1_800_000_000.0, "endTime": 1_800_000_001.0}
    for _ in range(5):
        data = run_hook(runtime, caller("support", "other"), litellm_call_id="same-id-from-the-caller")
        kwargs = {"litellm_params": {"metadata": data["metadata"]}, "standard_logging_object": payload}
        plugin._record(kwargs, None, "success", None, None)
    assert runtime.shipper.write_queued() == 5


def test_budget_refusals_are_counted_per_feature(runtime: ProxyRuntime) -> None:
    for _ in range(3):
        with pytest.raises(HTTPException):
            run_hook(runtime, caller("search", "doc-summary"))
    (counter,) = runtime.blocked.drain()
    assert (counter["team"], counter["feature"], counter["reason"], counter["count"]) == (
        "search",
        "doc-summary",
        "budget",
        3,
    )
    assert runtime.blocked.drain() == []
