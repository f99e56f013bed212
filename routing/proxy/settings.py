"""The plugin's settings, read from the proxy's environment (never from Django)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from routing.engine.signing import split_credential

PLUGIN_VERSION = "0.1.0"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc


@dataclass(frozen=True)
class ProxySettings:
    """Where the plugin keeps its state and how it reaches the control plane."""

    state_dir: Path
    control_plane_url: str  # "" runs the proxy stand-alone on its bundle file
    proxy_token: str  # the bearer half of FINOPS_PROXY_TOKEN
    heartbeat_s: float = 10.0
    bundle_file: Path | None = None  # seed bundle when the state dir holds none yet
    ship_timeout_s: float = 10.0
    plugin_version: str = PLUGIN_VERSION
    bundle_public_keys: str = (
        ""  # FINOPS_BUNDLE_PUBLIC_KEYS: the control plane's Ed25519 key(s); none: apply nothing
    )
    allowed_key_envs: frozenset[str] = frozenset()  # FINOPS_ALLOWED_KEY_ENVS: variables a bundle may name
    ingest_secret: str = ""  # the half of FINOPS_PROXY_TOKEN that signs spend and never travels; "": legacy

    @classmethod
    def from_env(cls) -> ProxySettings:
        bundle_file = os.environ.get("FINOPS_BUNDLE_FILE", "").strip()
        control_plane_url = os.environ.get("FINOPS_CONTROL_PLANE_URL", "").strip().rstrip("/")
        check_control_plane_url(control_plane_url, allow_http=_env_flag("FINOPS_ALLOW_HTTP_CONTROL_PLANE"))
        token, ingest_secret = split_credential(os.environ.get("FINOPS_PROXY_TOKEN", ""))
        return cls(
            state_dir=Path(os.environ.get("FINOPS_STATE_DIR", "var/finops-proxy")).resolve(),
            control_plane_url=control_plane_url,
            proxy_token=token,
            ingest_secret=ingest_secret if ingest_secret != token else "",
            heartbeat_s=_env_float("FINOPS_HEARTBEAT_S", 10.0),
            bundle_file=Path(bundle_file) if bundle_file else None,
            ship_timeout_s=_env_float("FINOPS_SHIP_TIMEOUT_S", 10.0),
            bundle_public_keys=os.environ.get("FINOPS_BUNDLE_PUBLIC_KEYS", "").strip(),
            allowed_key_envs=allowed_key_envs(os.environ.get("FINOPS_ALLOWED_KEY_ENVS", "")),
        )


def allowed_key_envs(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def check_control_plane_url(url: str, *, allow_http: bool) -> None:
    """Refuse a plain-HTTP control plane off this host unless explicitly allowed (the token would travel in clear)."""
    if not url or url.startswith("https://"):
        return
    if not url.startswith("http://"):
        raise ValueError(f"FINOPS_CONTROL_PLANE_URL={url!r}: use an https:// URL")
    host = url.removeprefix("http://").split("/", 1)[0].rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]", 1)[0] + "]"
    if host in ("127.0.0.1", "localhost", "[::1]") or allow_http:
        return
    raise ValueError(
        f"FINOPS_CONTROL_PLANE_URL={url!r} is plain HTTP: use https://, or set "
        "FINOPS_ALLOW_HTTP_CONTROL_PLANE=true on a private network you trust (see docs/security.md)"
    )
