"""Feature-key authentication for the proxy (`general_settings.custom_auth`).

The control plane issues feature keys and ships only their SHA-256 hashes in the bundle; a key
maps to one team and feature. Unknown, revoked and expired keys get a 401 that says which.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException
from litellm.proxy._types import UserAPIKeyAuth

from routing.engine.signing import token_hash
from routing.proxy.access import request_route, route_refusal
from routing.proxy.plugin import IDENTITY_KEY
from routing.proxy.runtime import get_runtime


def _reject(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message)


async def user_api_key_auth(request: Any, api_key: str) -> UserAPIKeyAuth:
    runtime = get_runtime()
    bundle = runtime.bundle
    if bundle is None:
        raise HTTPException(status_code=503, detail="routing bundle not loaded yet: retry shortly")
    key = (api_key or "").removeprefix("Bearer ").strip()
    if not key:
        raise _reject(
            "missing feature key: send 'Authorization: Bearer <feature key>' issued by the control plane"
        )
    entry = bundle.keys.get(token_hash(key))
    if entry is None:
        raise _reject("unknown feature key: use a key issued by the control plane for your feature")
    if entry.revoked:
        runtime.blocked.count(entry, "revoked")
        raise _reject(f"feature key for '{entry.team}/{entry.feature}' was revoked: ask for a new key")
    if entry.expires_at is not None and entry.expires_at <= datetime.now(UTC):
        runtime.blocked.count(entry, "expired")
        raise _reject(
            f"feature key for '{entry.team}/{entry.feature}' expired at {entry.expires_at.isoformat()}: ask for a new key"
        )
    refusal = route_refusal(request_route(request))
    if refusal is not None:  # a valid key on a route we cannot meter: refused before any upstream call
        runtime.blocked.count(entry, "endpoint")
        raise refusal
    return UserAPIKeyAuth(
        api_key=entry.key_hash, team_id=entry.team, metadata={IDENTITY_KEY: identity_of(entry)}
    )


def identity_of(entry: Any) -> dict[str, Any]:
    """What the hook learns about the caller: the key's team, features and their public codes."""
    return {
        "team": entry.team,
        "feature": entry.feature,
        "features": list(entry.features),
        "team_code": entry.team_code,
        "feature_code": entry.feature_code,
        "feature_codes": dict(entry.feature_codes),
    }
