"""Issue 14 item 6: compose gives proxies only their own variables, never the web service's .env."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker" / "compose.yaml").read_text())
WEB_ONLY = {"SECRET_KEY", "DATABASE_URL", "POSTGRES_PASSWORD", "FINOPS_BUNDLE_SIGNING_KEY", "REDIS_URL"}


def test_proxies_get_only_their_own_variables():
    proxies = {name: svc for name, svc in COMPOSE["services"].items() if name.startswith("proxy")}
    assert len(proxies) >= 2
    for name, svc in proxies.items():
        assert "env_file" not in svc, f"{name} reads the whole env file (SECRET_KEY, database password)"
        env = svc.get("environment") or {}
        assert not WEB_ONLY & set(env), f"{name} gets control-plane secrets: {sorted(WEB_ONLY & set(env))}"
        assert {"FINOPS_BUNDLE_PUBLIC_KEYS", "FINOPS_ALLOWED_KEY_ENVS", "FINOPS_PROXY_TOKEN"} <= set(env)
    tokens = {svc["environment"]["FINOPS_PROXY_TOKEN"] for svc in proxies.values()}
    assert len(tokens) == len(proxies)  # each proxy its own token
