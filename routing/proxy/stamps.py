"""Keeping the caller out of attribution: scrub what the caller sent, mint the call id, seal our stamp.

The decision stamp in request metadata decides who pays for a call. Everything in a request body
is the caller's, so the pre-call hook (1) drops every metadata key the plugin or LiteLLM's
attempt bookkeeping reads, (2) mints the call id on the proxy (a caller's `x-litellm-call-id`
is ignored, and the answer's `x-litellm-call-id` header carries ours), and (3) seals the stamp
with a per-process secret. Spend is recorded only from stamps that carry the seal, so a stamp
that reached the logging callbacks any other way is never trusted.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from typing import Any

from routing.proxy.records import STAMP_KEY

SEAL_KEY = "seal"
# Metadata keys the plugin (records.py, plugin.py) or LiteLLM's attempt bookkeeping reads back.
CLIENT_FORBIDDEN_METADATA = frozenset(
    {STAMP_KEY, "model_group", "deployment", "previous_models", "model_info", "api_base", "caching_groups"}
)
# Request parameters that would choose models, upstreams or retries behind the routing decision.
CLIENT_FORBIDDEN_PARAMS = frozenset(
    {
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "default_fallbacks",
        "model_list",
        "num_retries",
        "max_retries",
        "mock_response",
        "mock_testing_fallbacks",
        "mock_timeout",
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "custom_llm_provider",
        "input_cost_per_token",
        "output_cost_per_token",
        "litellm_metadata",
        "user_config",  # a client-built router: any model list, any upstream
        "router_settings_override",
        "fastest_response",
        "no-log",  # LiteLLM would skip our callback: an answered call with no spend record
    }
)

_SEAL = secrets.token_hex(16)  # per process: no caller can know it, and it never leaves the proxy


def scrub_client_request(data: dict[str, Any]) -> None:
    """Drop what a caller may not set: our stamp, attempt bookkeeping, model/upstream overrides."""
    for name in CLIENT_FORBIDDEN_PARAMS:
        data.pop(name, None)
    for outer in ("extra_body", "litellm_embedding_config"):  # spread into the outbound call by LiteLLM
        inner = data.get(outer)
        if isinstance(inner, dict):
            for name in CLIENT_FORBIDDEN_PARAMS:
                inner.pop(name, None)
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        for name in CLIENT_FORBIDDEN_METADATA:
            metadata.pop(name, None)
    elif metadata is not None:
        data["metadata"] = {}


def mint_call_id(data: dict[str, Any]) -> str:
    """A fresh call id, made here; also given to LiteLLM so the answer's x-litellm-call-id header shows it."""
    call_id = uuid.uuid4().hex
    data["litellm_call_id"] = call_id
    logging_obj = data.get("litellm_logging_obj")
    if logging_obj is not None and hasattr(logging_obj, "litellm_call_id"):
        logging_obj.litellm_call_id = call_id
        details = getattr(logging_obj, "model_call_details", None)
        if isinstance(details, dict):
            details["litellm_call_id"] = call_id
    return call_id


def seal(stamp: dict[str, Any]) -> dict[str, Any]:
    stamp[SEAL_KEY] = _SEAL
    return stamp


def is_sealed(stamp: Any) -> bool:
    """Did this process's pre-call hook write this stamp?"""
    return isinstance(stamp, dict) and hmac.compare_digest(str(stamp.get(SEAL_KEY, "")), _SEAL)
