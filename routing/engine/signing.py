"""Proxy credentials and request signing shared by the proxy plugin and the control plane.

A proxy's credential is `<token>.<ingest secret>` (one value, FINOPS_PROXY_TOKEN). The token is the
bearer for bundle pulls, heartbeats, pushes and ingest; it travels on every request and the control
plane keeps it encrypted to push. The ingest secret never leaves the proxy: only HMAC signatures made
with `signing_key(ingest secret)` do, and the control plane stores only that derived key. So a leaked
token alone cannot forge spend. A credential without the `.` (issued before ingest secrets existed)
signs with a key derived from the token itself until it is rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from routing.engine.bundle import content_hash

SIGNATURE_HEADER = "X-FinOps-Signature"
TIMESTAMP_HEADER = "X-FinOps-Timestamp"
PROXY_HEADER = "X-FinOps-Proxy"
SIGNATURE_SCHEME = "v1"


def token_hash(token: str) -> str:
    """Lookup hash of a proxy or feature key token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


CREDENTIAL_SEPARATOR = "."  # never in a token_urlsafe token
TOKEN_PREFIX = "fpx-"
INGEST_SECRET_PREFIX = "fps-"


def split_credential(credential: str) -> tuple[str, str]:
    """(bearer token, ingest secret) of a proxy credential; a legacy one-part credential is both."""
    token, separator, secret = (credential or "").strip().partition(CREDENTIAL_SEPARATOR)
    return token, (secret if separator else token)


def ingest_key(credential: str) -> str:
    """The HMAC key a proxy signs spend batches with, from its whole credential."""
    return signing_key(split_credential(credential)[1])


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


# --- bundle signatures (Ed25519) ------------------------------------------------------------------
# The control plane signs every bundle it serves with its private key; proxies hold only public keys
# (FINOPS_BUNDLE_PUBLIC_KEYS, set in the proxy's own environment) and apply nothing they cannot verify.
# The signature covers `content_hash`, which the plugin recomputes from the content, so it binds every field.

BUNDLE_SIGNATURE_FIELD = "signature"
BUNDLE_SIGNATURE_SCHEME = "ed25519"
_BUNDLE_CONTEXT = b"finops-bundle-v1:"
# Development only: a published seed anyone can sign with. Settings accept it only with DEBUG or in tests.
DEV_BUNDLE_SIGNING_SEED = base64.b64encode(
    hashlib.sha256(b"finops dev bundle key - never in production").digest()
).decode()


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional; raises ValueError on anything else."""
    clean = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(clean + "=" * (-len(clean) % 4), validate=True)


def bundle_private_key(seed_b64: str) -> Ed25519PrivateKey:
    """The signing key from its base64 32-byte seed (`python -m routing.engine.signing new-key` makes one)."""
    raw = _b64decode(seed_b64)
    if len(raw) != 32:
        raise ValueError(
            f"an Ed25519 seed is 32 bytes, got {len(raw)}: generate one with python -m routing.engine.signing new-key"
        )
    return Ed25519PrivateKey.from_private_bytes(raw)


def bundle_public_key_b64(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def bundle_public_keys(text: str) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id, from a comma-separated list of base64 raw keys (old and new while rotating)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        raw = _b64decode(part)
        if len(raw) != 32:
            raise ValueError(
                f"FINOPS_BUNDLE_PUBLIC_KEYS: {part[:12]}… is not a base64 32-byte Ed25519 public key"
            )
        keys[_key_id(raw)] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


def sign_bundle(doc: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of the bundle with `signature` = `ed25519:<key id>:<base64 signature of its content hash>`."""
    digest = content_hash(doc)
    public_raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    signature = base64.b64encode(private_key.sign(_BUNDLE_CONTEXT + digest.encode("ascii"))).decode()
    return {**doc, BUNDLE_SIGNATURE_FIELD: f"{BUNDLE_SIGNATURE_SCHEME}:{_key_id(public_raw)}:{signature}"}


def bundle_signature_problem(doc: Any, public_keys: dict[str, Ed25519PublicKey]) -> str | None:
    """Why the bundle's signature does not verify against the trusted keys; None when it does."""
    if not public_keys:
        return "$.signature: this proxy trusts no signing key (set FINOPS_BUNDLE_PUBLIC_KEYS to the control plane's public key)"
    if not isinstance(doc, dict) or not isinstance(doc.get(BUNDLE_SIGNATURE_FIELD), str):
        return "$.signature: missing: only bundles signed by the control plane are applied (download a signed bundle)"
    scheme, _, rest = doc[BUNDLE_SIGNATURE_FIELD].partition(":")
    key_id, _, signature = rest.partition(":")
    if scheme != BUNDLE_SIGNATURE_SCHEME or key_id not in public_keys:
        return f"$.signature: signed by key {key_id or '?'!r}, which this proxy does not trust (check FINOPS_BUNDLE_PUBLIC_KEYS)"
    try:
        public_keys[key_id].verify(_b64decode(signature), _BUNDLE_CONTEXT + content_hash(doc).encode("ascii"))
    except (InvalidSignature, ValueError):
        return "$.signature: does not match the bundle's content (changed after signing, or forged)"
    return None


def _main(argv: list[str]) -> int:
    if argv[:1] == ["new-key"]:
        private = Ed25519PrivateKey.generate()
        seed = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        print(f"FINOPS_BUNDLE_SIGNING_KEY={base64.b64encode(seed).decode()}  # control plane only (a secret)")
        print(f"FINOPS_BUNDLE_PUBLIC_KEYS={bundle_public_key_b64(private)}  # every proxy")
        return 0
    if argv[:1] == ["public-key"] and len(argv) == 2:
        print(bundle_public_key_b64(bundle_private_key(argv[1])))
        return 0
    print("usage: python -m routing.engine.signing new-key | public-key <FINOPS_BUNDLE_SIGNING_KEY>")
    return 2


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
