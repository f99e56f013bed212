"""What a feature key may reach on the proxy: a deny-by-default allow-list of routes and call types.

Only calls the plugin can route, budget-check and meter are served to feature keys: chat
completions. Every other LiteLLM route (text completions, embeddings, responses, Anthropic
messages, model info, settings, health checks that call every deployment, ...) is refused with
a 403 that names the endpoint, before any upstream is called. Widening the list means teaching
the pre-call hook and `records.build_record` that call type first (docs/security.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

# Routes a feature key may call, as FastAPI dispatches them (scope path, root path stripped).
FEATURE_KEY_ROUTES = frozenset({"/chat/completions", "/v1/chat/completions"})
# LiteLLM call types the pre-call hook routes; anything else never reaches an upstream.
ROUTED_CALL_TYPES = frozenset({"completion", "acompletion"})
SERVED = "POST /v1/chat/completions"


def request_route(request: Any) -> str:
    """The route FastAPI dispatches on (never the Host-dependent `url.path`)."""
    scope = getattr(request, "scope", None) or {}
    path = str(scope.get("path") or "")
    root = str(scope.get("root_path") or "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    if len(path) > 1:
        path = path.rstrip("/")
    return path


def route_refusal(route: str) -> HTTPException | None:
    """None when a feature key may call `route`, else the 403 to answer."""
    if route in FEATURE_KEY_ROUTES:
        return None
    shown = route[:120]
    return HTTPException(
        status_code=403,
        detail=(
            f"endpoint {shown!r} is not available to feature keys: this proxy routes, budget-checks and "
            f"meters only {SERVED}; send the call there"
        ),
    )


def call_type_name(call_type: Any) -> str:
    return str(getattr(call_type, "value", call_type) or "")


def call_type_refusal(call_type: Any, data: dict[str, Any]) -> HTTPException | None:
    """None when the pre-call hook can route this call, else the 4xx to answer."""
    name = call_type_name(call_type)
    if name not in ROUTED_CALL_TYPES:
        return HTTPException(
            status_code=403,
            detail=(
                f"call type {name[:60]!r} is not routed, budget-checked or metered by this proxy: "
                f"feature keys may call only {SERVED}"
            ),
        )
    if not isinstance(data.get("messages"), list) or not data["messages"]:
        return HTTPException(
            status_code=400,
            detail="messages is required: send a non-empty list of chat messages",
        )
    return None
