"""Write the stock LiteLLM `config.yaml` that loads the plugin, from a bundle.

    python -m routing.proxy.bootstrap --bundle bundle.json --out config.yaml [--state-dir DIR]

The config carries the bundle's topology (one model group per deployment group), router
settings for an instant fallback (no retries), and the plugin's dotted paths. LiteLLM's own
cooldown is switched off for small-tier deployments (`model_info.cooldown_time: 0`): the plugin's
circuit breaker (routing/proxy/breaker.py) decides when the small model is skipped, on its failure
share, so a few sparse errors never sideline it. Frontier deployments keep LiteLLM's cooldown
(`allowed_fails` failures in a minute), so a frontier outage answers callers with an error at once
instead of calling a dead provider again and again. Provider keys appear only
as `os.environ/NAME` references. With `--state-dir` the bundle is also seeded as the proxy's
last-known-good bundle, so the proxy serves even if the control plane is down when it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from routing.engine import signing
from routing.engine.bundle import Bundle, BundleError
from routing.proxy.runtime import BUNDLE_FILE, key_env_errors
from routing.proxy.settings import allowed_key_envs
from routing.proxy.topology import model_list_for

CALLBACK_PATH = "routing.proxy.entry.finops_router"
CUSTOM_AUTH_PATH = "routing.proxy.entry.user_api_key_auth"
COOLDOWN_EXCEPTIONS = (
    "TimeoutErrorAllowedFails",
    "InternalServerErrorAllowedFails",
    "ServiceUnavailableErrorAllowedFails",
    "BadGatewayErrorAllowedFails",
    "RateLimitErrorAllowedFails",
)


def litellm_config(bundle: Bundle, *, allowed_fails: int = 2, cooldown_s: int = 30) -> dict[str, Any]:
    model_list = model_list_for(bundle)
    return {
        "model_list": model_list,
        "litellm_settings": {
            "callbacks": [CALLBACK_PATH],
            "drop_params": True,  # a fallback to another provider must not fail on an SLM-only parameter
            "num_retries": 0,
            "request_timeout": 600,
        },
        "router_settings": {
            "num_retries": 0,  # the fallback is the retry: a second SLM try would double the worst case
            "retry_policy": {
                "TimeoutErrorRetries": 0,
                "InternalServerErrorRetries": 0,
                "RateLimitErrorRetries": 0,
                "DefaultRetries": 0,
            },
            # frontier only (small deployments set cooldown_time 0): explicit per-exception entries,
            # as LiteLLM never cools down a one-deployment group otherwise
            "allowed_fails_policy": {name: allowed_fails for name in COOLDOWN_EXCEPTIONS},
            "cooldown_time": cooldown_s,
        },
        # the proxy refuses to start without a master key; feature keys go through custom_auth
        "general_settings": {"custom_auth": CUSTOM_AUTH_PATH, "master_key": "os.environ/LITELLM_MASTER_KEY"},
    }


def _trust_problems(doc: dict[str, Any]) -> list[str]:
    """The runtime's signature and key-variable checks, where the proxy's environment sets them up."""
    problems: list[str] = []
    keys_text = os.environ.get("FINOPS_BUNDLE_PUBLIC_KEYS", "").strip()
    if keys_text:
        problem = signing.bundle_signature_problem(doc, signing.bundle_public_keys(keys_text))
        problems += [problem] if problem else []
    if "FINOPS_ALLOWED_KEY_ENVS" in os.environ:
        problems += key_env_errors(doc, allowed_key_envs(os.environ["FINOPS_ALLOWED_KEY_ENVS"]))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a stock LiteLLM config that loads the FinOps plugin.")
    parser.add_argument("--bundle", required=True, help="bundle JSON file (validated first)")
    parser.add_argument("--out", required=True, help="where to write config.yaml")
    parser.add_argument("--state-dir", help="seed this FINOPS_STATE_DIR with the bundle as last-known-good")
    parser.add_argument(
        "--allowed-fails",
        type=int,
        default=2,
        help="frontier failures per minute before LiteLLM cools a frontier deployment down",
    )
    parser.add_argument("--cooldown-s", type=int, default=30)
    args = parser.parse_args(argv)
    try:
        bundle = Bundle.from_file(args.bundle)
    except BundleError as exc:
        for error in exc.errors:
            print(f"bundle error: {error}")
        return 2
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read bundle {args.bundle}: {exc}")
        return 2
    problems = _trust_problems(bundle.document)
    if problems:
        for problem in problems:
            print(f"bundle refused: {problem}")
        return 2
    config = litellm_config(bundle, allowed_fails=args.allowed_fails, cooldown_s=args.cooldown_s)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Generated by routing.proxy.bootstrap from bundle "
        f"{bundle.version} ({bundle.content_hash[:12]}); live policy changes arrive through the plugin.\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    if args.state_dir:
        state_dir = Path(args.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        if not (state_dir / BUNDLE_FILE).exists():
            shutil.copyfile(args.bundle, state_dir / BUNDLE_FILE)
    print(f"wrote {out} for bundle {bundle.version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
