"""Refuse per-request upstream and credential overrides before LiteLLM sees the request.

LiteLLM honours request-body fields that pick where and how a call goes (`api_base`, `base_url`,
`api_key`, `custom_llm_provider`, `user_config`, per-token prices, ...). Its own check refuses some of
them, but before our `custom_auth` and with an error its handler answers as a 500; others (`api_key`,
`api_version`, `custom_llm_provider`) it lets through. This ASGI guard sits in front of the whole
app: a JSON body carrying any of them, at the top level or inside `metadata`, `litellm_metadata`,
`extra_body` or `litellm_embedding_config`, gets a 400 that names the field, and the request never
reaches LiteLLM. The pre-call hook strips the same fields again (`stamps.scrub_client_request`) in
case a request reaches it some other way.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

# Fields that choose an upstream, a credential, a provider or a price for one request.
OVERRIDE_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "custom_llm_provider",
        "user_config",
        "model_list",
        "organization",
        "azure_ad_token",
        "azure_ad_token_provider",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_region_name",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "extra_headers",
        "headers",
        "input_cost_per_token",
        "output_cost_per_token",
    }
)
# Dicts LiteLLM spreads into the outbound call or reads integrations' settings from.
NESTED_KEYS = ("metadata", "litellm_metadata", "extra_body", "litellm_embedding_config")
GUARDED_METHODS = frozenset({"POST", "PUT", "PATCH"})
OWN_PREFIX = "/finops/"  # the plugin's own endpoints (a pushed bundle names api_base legitimately)


def _litellm_banned() -> frozenset[str]:
    """LiteLLM's own list of refused body fields, when this version has one (it grows with releases)."""
    try:
        from litellm.proxy.auth.auth_utils import _BANNED_REQUEST_BODY_PARAMS
    except Exception:  # a LiteLLM without it: our list still holds
        return frozenset()
    return frozenset(str(name) for name in _BANNED_REQUEST_BODY_PARAMS)


def _litellm_allowed_in_metadata() -> frozenset[str]:
    try:
        from litellm.proxy.auth.auth_utils import _BANNED_PARAMS_ALLOWED_IN_METADATA
    except Exception:
        return frozenset()
    return frozenset(str(name) for name in _BANNED_PARAMS_ALLOWED_IN_METADATA)


def forbidden_fields() -> frozenset[str]:
    return OVERRIDE_FIELDS | _litellm_banned()


def override_in(
    body: Any, forbidden: frozenset[str], in_metadata: frozenset[str] | None = None
) -> str | None:
    """The first override field `body` carries, as a dotted path (`extra_body.api_base`), or None."""
    if not isinstance(body, dict):
        return None
    for name in body:
        if name in forbidden:
            return str(name)
    for outer in NESTED_KEYS:
        inner = body.get(outer)
        if isinstance(inner, dict):
            banned = in_metadata if in_metadata is not None and "metadata" in outer else forbidden
            for name in inner:
                if name in banned:
                    return f"{outer}.{name}"
    return None


def refusal_body(field: str) -> bytes:
    shown = field[:80]
    message = (
        f"request field {shown!r} is not allowed: this proxy chooses the model, upstream, credentials and "
        f"prices from its routing policy; remove {shown!r} from the request"
    )
    return json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": shown, "code": "400"}}
    ).encode()


def _content_type(scope: dict[str, Any]) -> bytes:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"content-type":
            return bytes(value.split(b";", 1)[0].strip().lower())
    return b""


def _may_be_json(scope: dict[str, Any]) -> bool:
    """Multipart bodies (files, audio) stream through unread: LiteLLM's own check and the hook's strip cover them."""
    return not _content_type(scope).startswith(b"multipart/")


def _parse(body: bytes, content_type: bytes) -> Any:
    if content_type == b"application/x-www-form-urlencoded":  # LiteLLM reads form fields as parameters
        return {name: values for name, values in parse_qs(body.decode("latin-1")).items()}
    return json.loads(body)


class OverrideGuard:
    """ASGI wrapper: buffers a JSON body, refuses overrides with 400, replays the body otherwise."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.forbidden = forbidden_fields()
        # LiteLLM lets a few credential names through in metadata (a caller's own ids); so do we
        self.in_metadata = self.forbidden - _litellm_allowed_in_metadata()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = str(scope.get("path") or "")
        if (
            scope.get("type") != "http"
            or scope.get("method") not in GUARDED_METHODS
            or path.startswith(OWN_PREFIX)
            or not _may_be_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        messages: list[dict[str, Any]] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message.get("type") != "http.request":
                break  # a disconnect: hand over what we have
            chunks.append(message.get("body", b"") or b"")
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            field = override_in(_parse(body, _content_type(scope)), self.forbidden, self.in_metadata)
        except (ValueError, RecursionError):
            field = None  # not JSON: LiteLLM answers that itself
        if field is not None:
            payload = refusal_body(field)
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        pending = list(messages)

        async def replay() -> dict[str, Any]:
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replay, send)


def install(app: Any) -> None:
    """Put the guard in front of the proxy's app, once, whether or not its middleware is built yet."""
    if getattr(app.state, "finops_override_guard", False):
        return
    app.state.finops_override_guard = True
    if app.middleware_stack is None:
        from starlette.middleware import Middleware

        app.user_middleware.insert(0, Middleware(OverrideGuard))
    else:  # the proxy already serves (the plugin is imported at startup): wrap the built stack
        app.middleware_stack = OverrideGuard(app.middleware_stack)
