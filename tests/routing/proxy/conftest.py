"""Fixtures for the proxy tests: fake upstreams, the control-plane double, one shared real proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")

from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour  # noqa: E402
from routing.devtools.harness import ControlPlaneDouble, ProxyProcess, dev_signed  # noqa: E402
from routing.engine.bundle import with_content_hash  # noqa: E402
from routing.engine.signing import token_hash  # noqa: E402

PROXY_TOKEN = "proxy-token-for-tests"
TEAM = "team-a"

# raw feature key -> (feature slug, extra key fields)
KEYS: dict[str, tuple[str, dict[str, Any]]] = {
    "fk-routine": ("routine", {}),
    "fk-complex": ("complex", {}),
    "fk-blocked": ("blocked", {}),
    "fk-degrade": ("degrade", {}),
    "fk-hang": ("hang", {}),
    "fk-error": ("error", {}),
    "fk-dead": ("dead", {}),
    "fk-lowconf": ("lowconf", {}),
    "fk-spool": ("spool", {}),
    "fk-durable": ("durable", {}),
    "fk-nolog": ("nolog", {}),
    "fk-stream": ("stream", {}),
    "fk-stream-error": ("stream-error", {}),
    "fk-topo": ("topo", {}),
    "fk-hostile": ("hostile", {}),  # test_hostile_callers.py: its records stay apart from the others
    "fk-revoked": ("routine", {"revoked": True}),
    "fk-expired": ("routine", {"expires_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()}),
}

UPSTREAMS = ("slm", "slm-hang", "slm-error", "slm-dead", "slm-lowconf", "frontier")
LATE_UPSTREAMS = ("slm-b",)  # only in bundles that change the topology live


class Fleet:
    """Everything the proxy tests share: upstreams by name, the control-plane double, the proxy."""

    def __init__(
        self, upstreams: dict[str, FakeUpstream], control_plane: ControlPlaneDouble, proxy: ProxyProcess
    ):
        self.upstreams = upstreams
        self.control_plane = control_plane
        self.proxy = proxy

    def requests_to(self, name: str) -> int:
        return self.upstreams[name].state.snapshot()["requests"]


def fleet_bundle(
    upstreams: dict[str, FakeUpstream],
    *,
    version: str = "v1",
    routine_threshold: float = 1.01,
    late_groups: tuple[str, ...] = (),
) -> dict[str, Any]:
    def small(group: str, **extra: Any) -> dict[str, Any]:
        return {
            "model_group": group,
            "model": "openai/llama-3-8b-instruct",
            "tier": "small",
            "api_base": upstreams[group].base_url,
            "api_key": "os.environ/FINOPS_TEST_UPSTREAM_KEY",
            "context_window": 4096,
            "supports_logprobs": True,
            "input_cost_per_token": "0.0000001",
            "output_cost_per_token": "0.0000002",
            **extra,
        }

    doc = {
        "schema": 1,
        "version": version,
        "deployments": [
            *(small(g) for g in UPSTREAMS if g != "frontier"),
            *(small(g) for g in late_groups),
            {
                "model_group": "frontier",
                "model": "openai/gpt-4o",
                "tier": "frontier",
                "api_base": upstreams["frontier"].base_url,
                "api_key": "os.environ/FINOPS_TEST_UPSTREAM_KEY",
                "context_window": 128000,
                "timeout_s": 30,
            },
        ],
        "policies": {
            "default": {
                "small_model": "slm",
                "frontier_model": "frontier",
                "threshold": 1.01,
                "slm_timeout_ms": 2000,
            },
            "routine": {"threshold": routine_threshold},
            "complex": {"threshold": 0.0},
            "blocked": {"over_budget": "block"},
            "degrade": {"threshold": 0.0, "over_budget": "degrade"},
            "hang": {"small_model": "slm-hang", "slm_timeout_ms": 1000},
            "error": {"small_model": "slm-error"},
            "dead": {"small_model": "slm-dead", "slm_timeout_ms": 300},
            "lowconf": {"small_model": "slm-lowconf", "confidence_floor": 0.5},
            "stream-error": {"small_model": "slm-error"},
            **({"topo": {"small_model": late_groups[0]}} if late_groups else {}),
        },
        "budgets": [
            {
                "team": TEAM,
                "feature": "blocked",
                "state": "over",
                "spend_usd": "120.50",
                "limit_usd": "100.00",
                "period": "2026-11",
            },
            {
                "team": TEAM,
                "feature": "degrade",
                "state": "over",
                "spend_usd": "80.00",
                "limit_usd": "75.00",
                "period": "2026-11",
            },
        ],
        "experiments": [],
        "keys": [
            {
                "key_hash": token_hash(raw),
                "team": TEAM,
                "feature": feature,
                "expires_at": extra.get("expires_at"),
                "revoked": extra.get("revoked", False),
            }
            for raw, (feature, extra) in KEYS.items()
        ],
        "shipping": {"batch_size": 20, "interval_ms": 200, "max_spool_records": 100000},
    }
    return dev_signed(with_content_hash(doc))


@pytest.fixture(scope="session")
def upstreams() -> Iterator[dict[str, FakeUpstream]]:
    behaviours = {
        "slm-hang": UpstreamBehaviour(name="slm-hang", hang_rate=1.0, hang_s=20),
        "slm-error": UpstreamBehaviour(name="slm-error", error_rate=1.0, error_status=500),
        "slm-dead": UpstreamBehaviour(name="slm-dead", hang_rate=1.0, hang_s=20),
        "slm-lowconf": UpstreamBehaviour(name="slm-lowconf", logprob=-3.0),
    }
    started = {
        name: FakeUpstream(behaviours.get(name, UpstreamBehaviour(name=name))).start()
        for name in UPSTREAMS + LATE_UPSTREAMS
    }
    yield started
    for upstream in started.values():
        upstream.stop()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlaneDouble]:
    double = ControlPlaneDouble(PROXY_TOKEN).start()
    yield double
    double.stop()


@pytest.fixture(scope="session")
def fleet(
    upstreams: dict[str, FakeUpstream],
    control_plane: ControlPlaneDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    bundle = fleet_bundle(upstreams)
    control_plane.set_bundle(bundle)
    workdir: Path = tmp_path_factory.mktemp("proxy")
    proxy = ProxyProcess(
        bundle, workdir, proxy_token=PROXY_TOKEN, control_plane_url=control_plane.url, heartbeat_s=1.0
    )
    proxy.start()
    print(f"\nproxy started in {proxy.startup_s:.2f}s")
    try:
        yield Fleet(upstreams, control_plane, proxy)
    finally:
        proxy.stop()
