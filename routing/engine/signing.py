"""Proxy credentials and request signing shared by the proxy plugin and the control plane.

A proxy holds one secret token. The control plane stores only `token_hash(token)` (to look the
proxy up) and `signing_key(token)` (to verify HMAC signatures); neither reveals the token.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-FinOps-Signature"
TIMESTAMP_HEADER = "X-FinOps-Timestamp"
PROXY_HEADER = "X-FinOps-Proxy"
SIGNATURE_SCHEME = "v1"


def token_hash(token: str) -> str:
    """Lookup hash of a proxy or feature key token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def signing_key(token: str) -> str:
    """Key both sides use for HMAC signatures, derived from the token so the token itself is never stored."""
    return hmac.new(token.encode("utf-8"), b"finops-spend-signing-v1", hashlib.sha256).hexdigest()


def sign(key: str, timestamp: str, body: bytes) -> str:
    """`v1=<hex>`: HMAC-SHA256 over `<timestamp>.<body>`."""
    mac = hmac.new(key.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={mac.hexdigest()}"


def verify(key: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time check of a `v1=<hex>` signature."""
    return hmac.compare_digest(sign(key, timestamp, body), signature or "")
