"""Fleet services: registering proxies, their push credential, heartbeats, and derived health.

A proxy authenticates to us with `Authorization: Bearer <token>`; we keep `token_hash` (lookup) and
`signing_key` (spend signatures). To push bundles we must present the same token to the proxy's
plugin, so we also keep it encrypted at rest (Fernet, key derived from SECRET_KEY with a
purpose label): a database dump alone does not reveal it. Rotating SECRET_KEY makes pushes fail
until the proxy's token is rotated; proxies still heal by pulling.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.models import AuditAction
from controlplane.services import _apply, audit_record, snapshot, stored_snapshot
from routing.engine import signing
from routing.models import Proxy

PROXY_FIELDS = ("name", "base_url", "pool", "is_canary", "is_active")
TOKEN_PREFIX = "fpx-"


# --- push credential -------------------------------------------------------------------------------


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"finops-proxy-push-credential-v1:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_token(token: str) -> str:
    return _fernet().encrypt(token.encode()).decode()


def decrypt_token(ciphertext: str) -> str | None:
    """The proxy's token, or None when it cannot be decrypted (no credential, or SECRET_KEY changed)."""
    if not ciphertext:
        return None
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return None


def _set_token(proxy: Proxy) -> str:
    """A new credential `<token>.<ingest secret>` (FINOPS_PROXY_TOKEN), shown once.

    We keep the token's hash (lookup) and the token encrypted (pushes), and of the ingest secret only the
    HMAC key derived from it: the secret itself never travels, so a token read off the wire, out of a
    push or out of our database cannot sign spend."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ingest_secret = signing.INGEST_SECRET_PREFIX + secrets.token_urlsafe(32)
    proxy.token_hash = signing.token_hash(token)
    proxy.signing_key = signing.signing_key(ingest_secret)
    proxy.push_credential = encrypt_token(token)
    return token + signing.CREDENTIAL_SEPARATOR + ingest_secret


def proxy_has_legacy_credential(proxy: Proxy) -> bool:
    """True when the proxy's spend key derives from its token (issued before ingest secrets): rotate it."""
    token = decrypt_token(proxy.push_credential)
    return token is not None and proxy.signing_key == signing.signing_key(token)


# --- where the token may travel --------------------------------------------------------------------


def _host_listed(host: str, listed: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for item in listed:
        item = item.strip().lower()
        if address is not None and "/" in item:
            try:
                if address in ipaddress.ip_network(item, strict=False):
                    return True
            except ValueError:
                continue
        elif host == item:
            return True
    return False


def proxy_base_url_problem(url: str) -> str | None:
    """Why the control plane must not send a proxy token to `url`, or None when it may.

    Pushes carry the proxy token, so plain http:// is for loopback, hosts listed in FINOPS_HTTP_PROXY_HOSTS
    (a compose network's service names) or FINOPS_ALLOW_HTTP_PROXIES=true only."""
    parts = urlsplit(str(url or "").strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return "Enter the proxy's address as https://host:port (or http:// on a network you trust)."
    if scheme == "https":
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    if settings.FINOPS_ALLOW_HTTP_PROXIES:
        return None
    if _host_listed(host, list(settings.FINOPS_HTTP_PROXY_HOSTS)):
        return None
    return (
        f"Plain http:// would send the proxy token to {host} unencrypted: use https://{parts.netloc}, "
        f"or, on a private network you trust (e.g. a compose network), add {host} to the control plane's "
        "FINOPS_HTTP_PROXY_HOSTS setting (comma-separated host names, IPs or CIDRs) or set "
        "FINOPS_ALLOW_HTTP_PROXIES=true."
    )


def _check_base_url(values: dict[str, Any]) -> None:
    if "base_url" in values:
        problem = proxy_base_url_problem(values["base_url"])
        if problem:
            raise ValidationError({"base_url": problem})


# --- services ------------------------------------------------------------------------------------


@transaction.atomic
def proxy_create(*, actor: Any, **values: Any) -> tuple[Proxy, str]:
    """Register a proxy; returns it and its token (shown once, stored only hashed and encrypted)."""
    _check_base_url(values)
    proxy = Proxy()
    token = _set_token(proxy)
    _apply(proxy, values)
    audit_record(actor=actor, action=AuditAction.CREATE, obj=proxy, after=snapshot(proxy, PROXY_FIELDS))
    return proxy, token


@transaction.atomic
def proxy_update(*, actor: Any, proxy: Proxy, **values: Any) -> Proxy:
    if values.get("base_url", proxy.base_url) != proxy.base_url:
        _check_base_url(values)
    before = stored_snapshot(proxy, PROXY_FIELDS)
    _apply(proxy, values)
    after = snapshot(proxy, PROXY_FIELDS)
    if before != after:
        audit_record(actor=actor, action=AuditAction.UPDATE, obj=proxy, before=before, after=after)
    return proxy


@transaction.atomic
def proxy_rotate_token(*, actor: Any, proxy: Proxy) -> str:
    token = _set_token(proxy)
    proxy.save(update_fields=["token_hash", "signing_key", "push_credential", "updated_at"])
    audit_record(actor=actor, action=AuditAction.UPDATE, obj=proxy, note="token rotated")
    return token


def proxy_by_token(token: str) -> Proxy | None:
    """The proxy whose bearer token this is (never the whole credential: its secret half must not travel)."""
    if not token:
        return None
    return (
        Proxy.objects.select_related("target_bundle")
        .filter(token_hash=signing.token_hash(token), is_active=True)
        .first()
    )


REPORT_FIELDS = (
    "spool_depth",
    "dead_letters",
    "last_ship_at",
    "errors",
    "restart_required",
    "plugin_version",
    "breakers",  # over all the proxy's workers (each keeps its own breaker; `by_worker` is not kept)
    "workers",
    "pid",
)


def proxy_heartbeat(*, proxy: Proxy, report: dict[str, Any]) -> Proxy:
    """Record what the proxy says it runs (no audit: it is telemetry, not a change a user made)."""
    errors = report.get("errors") or []
    proxy.last_heartbeat_at = timezone.now()
    proxy.applied_version = str(report.get("applied_version") or "")[:80]
    proxy.applied_hash = str(report.get("applied_hash") or "")[:80]
    proxy.last_report = {name: report.get(name) for name in REPORT_FIELDS if name in report} | {
        "errors": [str(e)[:500] for e in errors[:20]] if isinstance(errors, list) else []
    }
    Proxy.objects.filter(pk=proxy.pk).update(
        last_heartbeat_at=proxy.last_heartbeat_at,
        applied_version=proxy.applied_version,
        applied_hash=proxy.applied_hash,
        last_report=proxy.last_report,
    )
    return proxy
