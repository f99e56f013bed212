"""The plugin runtime without a proxy: apply, persist, reload, reject, and report topology changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from routing.devtools.harness import dev_public_key, dev_signed
from routing.engine.bundle import example_bundle, with_content_hash
from routing.proxy.bootstrap import model_list_for
from routing.proxy.runtime import BUNDLE_FILE, ProxyRuntime
from routing.proxy.settings import ProxySettings

EXAMPLE_KEY_ENVS = frozenset(
    {"SLM_API_KEY", "SLM_API_BASE", "ANTHROPIC_API_KEY"}
)  # what bundle_example.json names


def runtime_in(state_dir: Path, **settings: object) -> ProxyRuntime:
    settings.setdefault("bundle_public_keys", dev_public_key())
    settings.setdefault("allowed_key_envs", EXAMPLE_KEY_ENVS)
    return ProxyRuntime(ProxySettings(state_dir=state_dir, control_plane_url="", proxy_token="t", **settings))  # type: ignore[arg-type]


def test_applied_bundle_is_persisted_and_reloaded(tmp_path: Path) -> None:
    runtime = runtime_in(tmp_path)
    doc = example_bundle()
    assert runtime.apply_bundle(dev_signed(doc), source="test") == []
    assert json.loads((tmp_path / BUNDLE_FILE).read_text())["content_hash"] == doc["content_hash"]
    reloaded = runtime_in(tmp_path)
    reloaded.load_last_known_good()
    assert reloaded.bundle is not None and reloaded.bundle.content_hash == doc["content_hash"]


def test_invalid_bundle_keeps_the_old_one_and_says_why(tmp_path: Path) -> None:
    runtime = runtime_in(tmp_path)
    good = example_bundle()
    runtime.apply_bundle(dev_signed(good), source="test")
    bad = with_content_hash({**good, "version": ""})
    errors = runtime.apply_bundle(dev_signed(bad), source="push")
    assert errors == ["$.version: must be a non-empty string, got ''"]
    assert runtime.bundle is not None and runtime.bundle.content_hash == good["content_hash"]
    assert json.loads((tmp_path / BUNDLE_FILE).read_text())["content_hash"] == good["content_hash"]
    assert "rejected bundle from push" in runtime.status()["errors"][0]


def test_seed_bundle_file_is_used_when_the_state_dir_is_empty(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(dev_signed(example_bundle())))
    runtime = runtime_in(tmp_path / "state", bundle_file=seed)
    runtime.load_last_known_good()
    assert runtime.bundle is not None and (tmp_path / "state" / BUNDLE_FILE).exists()


class FakeRouter:
    def __init__(self, model_list: list[dict[str, Any]], fail: bool = False) -> None:
        self.model_list = model_list
        self.fail = fail
        self.set_calls = 0

    def set_model_list(self, model_list: list[dict[str, Any]]) -> None:
        if self.fail:
            raise RuntimeError("router refused")
        self.set_calls += 1
        self.model_list = model_list


def test_router_follows_topology_changes_and_reports_failures(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("SLM_API_BASE", "http://127.0.0.1:1/v1")
    runtime = runtime_in(tmp_path)
    doc = example_bundle()
    runtime.apply_bundle(dev_signed(doc), source="start")
    assert runtime.bundle is not None
    router = FakeRouter(model_list_for(runtime.bundle))
    for entry in router.model_list:  # LiteLLM resolves os.environ/ references in api_base
        base = entry["litellm_params"].get("api_base", "")
        if base.startswith("os.environ/"):
            entry["litellm_params"]["api_base"] = "http://127.0.0.1:1/v1"
    runtime.sync_router(runtime.bundle, router)
    assert router.set_calls == 0  # the config was built from this bundle: nothing to change

    changed = json.loads(json.dumps(doc))
    changed["deployments"][0]["model"] = "openai/llama-3.1-8b-instruct"
    runtime.apply_bundle(dev_signed(with_content_hash(changed)), source="push")
    runtime.sync_router(runtime.bundle, router)
    assert router.set_calls == 1 and runtime.status()["restart_required"] is False
    assert router.model_list[0]["litellm_params"]["model"] == "openai/llama-3.1-8b-instruct"

    changed["deployments"][0]["context_window"] = 4096
    runtime.apply_bundle(dev_signed(with_content_hash(changed)), source="push")
    runtime.sync_router(runtime.bundle, FakeRouter([], fail=True))
    status = runtime.status()
    assert status["restart_required"] is True and any("restart the proxy" in e for e in status["errors"])


def test_status_has_the_heartbeat_fields(tmp_path: Path) -> None:
    status = runtime_in(tmp_path).status()
    assert set(status) == {
        "applied_version",
        "applied_hash",
        "spool_depth",
        "dead_letters",
        "blocked_calls",
        "last_ship_at",
        "errors",
        "restart_required",
        "plugin_version",
        "breakers",
        "workers",
        "pid",
    }


def test_status_covers_every_worker_sharing_the_state_dir(tmp_path: Path) -> None:
    """Workers of one proxy share the state dir: any worker's status shows all of them."""
    first, second = runtime_in(tmp_path), runtime_in(tmp_path)
    for _ in range(5):
        first.breakers.breaker("slm").record("hard_failure", started_at=0.0)
    second.breakers.breaker("slm").admit()
    first.publish_worker_state()
    status = second.status()
    assert len(status["workers"]) == 2
    [slm] = status["breakers"]
    assert (slm["state"], slm["workers"], slm["workers_open"]) == ("open", 2, 1)
    assert sorted(w["state"] for w in slm["by_worker"]) == ["closed", "open"]
    assert slm["open_since"] is not None and slm["transitions"][-1]["to"] == "open"


def test_a_proxy_without_an_assigned_bundle_says_so_instead_of_failing(tmp_path: Path, caplog: Any) -> None:
    import logging

    from routing.devtools.harness import ControlPlaneDouble

    double = ControlPlaneDouble("t").start()  # answers 404 "no bundle published" until one is set
    try:
        runtime = ProxyRuntime(
            ProxySettings(
                state_dir=tmp_path,
                control_plane_url=double.url,
                proxy_token="t",
                bundle_public_keys=dev_public_key(),
                allowed_key_envs=EXAMPLE_KEY_ENVS,
            )
        )
        with caplog.at_level(logging.INFO, logger="finops.runtime"):
            assert runtime.pull_bundle() is False
            assert runtime.pull_bundle() is False
            runtime.apply_bundle(dev_signed(example_bundle()), source="last-known-good")
            assert runtime.pull_bundle() is False
        said = [r.getMessage() for r in caplog.records if "no bundle assigned" in r.getMessage()]
        assert said == [
            "finops: the control plane has no bundle assigned to this proxy yet; "
            "waiting for one (calls get 503 until then)",
            "finops: the control plane has no bundle assigned to this proxy yet; "
            "serving last-known-good bundle 2026-11-27.1",
        ]
        assert not any("bundle pull failed" in e for e in runtime.status()["errors"])
        assert not any("HTTP 404" in r.getMessage() for r in caplog.records)
    finally:
        double.stop()


def test_litellm_never_cools_down_a_small_deployment_but_still_cools_down_the_frontier() -> None:
    from routing.engine.bundle import Bundle
    from routing.proxy.bootstrap import litellm_config

    config = litellm_config(Bundle.from_json(example_bundle()))
    info = {entry["model_name"]: entry["model_info"] for entry in config["model_list"]}
    assert info["slm"]["cooldown_time"] == 0  # the breaker decides when the SLM is skipped
    assert "cooldown_time" not in info["frontier"]
    assert config["router_settings"]["cooldown_time"] == 30
    assert config["router_settings"]["allowed_fails_policy"]["TimeoutErrorAllowedFails"] == 2


def test_the_applied_bundle_picks_the_scorer_weights_it_pins(tmp_path: Path) -> None:
    from routing.engine.scorer import ComplexityScorer

    runtime = runtime_in(tmp_path)
    ask = [{"role": "user", "content": "Design a rate limiter for 50 gateways with per-tenant quotas."}]
    for version in ("complexity-v3", "complexity-v4", "complexity-v1"):
        doc = example_bundle()
        doc["scorer_weights"] = version
        assert runtime.apply_bundle(dev_signed(with_content_hash(doc)), source="test") == []
        assert runtime.bundle is not None and runtime.bundle.scorer_weights == version
        assert runtime.score_fn()(ask, None) == ComplexityScorer.for_version(version).score(ask)
