"""The plugin's settings, read from the proxy's environment (never from Django)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    proxy_token: str
    heartbeat_s: float = 10.0
    bundle_file: Path | None = None  # seed bundle when the state dir holds none yet
    ship_timeout_s: float = 10.0
    plugin_version: str = PLUGIN_VERSION

    @classmethod
    def from_env(cls) -> ProxySettings:
        bundle_file = os.environ.get("FINOPS_BUNDLE_FILE", "").strip()
        return cls(
            state_dir=Path(os.environ.get("FINOPS_STATE_DIR", "var/finops-proxy")).resolve(),
            control_plane_url=os.environ.get("FINOPS_CONTROL_PLANE_URL", "").strip().rstrip("/"),
            proxy_token=os.environ.get("FINOPS_PROXY_TOKEN", "").strip(),
            heartbeat_s=_env_float("FINOPS_HEARTBEAT_S", 10.0),
            bundle_file=Path(bundle_file) if bundle_file else None,
            ship_timeout_s=_env_float("FINOPS_SHIP_TIMEOUT_S", 10.0),
        )
