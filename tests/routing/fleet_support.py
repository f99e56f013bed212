"""Shared builders for the routing and fleet tests (not collected: no test_ prefix)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from routing import services
from routing.models import ModelDeployment, RoutingPolicy


def make_routing(
    *,
    small_base: str = "http://127.0.0.1:9/v1",
    frontier_base: str = "http://127.0.0.1:9/v1",
    actor: Any = None,
) -> tuple[ModelDeployment, ModelDeployment, RoutingPolicy]:
    """Two deployments (an SLM and a frontier model on OpenAI-compatible servers) and a default policy."""
    small = services.deployment_create(
        actor=actor,
        name="slm",
        tier="small",
        litellm_model="openai/llama-3-8b-instruct",
        api_base=small_base,
        api_key_env="FINOPS_TEST_UPSTREAM_KEY",
        context_window=4096,
        supports_logprobs=True,
        input_price_per_mtok=Decimal("0.10"),
        output_price_per_mtok=Decimal("0.20"),
        monthly_hosting_usd=Decimal("450.00"),
    )
    frontier = services.deployment_create(
        actor=actor,
        name="frontier",
        tier="frontier",
        litellm_model="openai/gpt-4o",
        api_base=frontier_base,
        api_key_env="FINOPS_TEST_UPSTREAM_KEY",
        context_window=128000,
        supports_tools=True,
        supports_vision=True,
        supports_structured_output=True,
        timeout_s=Decimal("30"),
    )
    policy = services.policy_create(
        actor=actor,
        feature=None,
        small_deployment=small,
        frontier_deployment=frontier,
        threshold=Decimal("1.01"),
    )
    return small, frontier, policy


def register_proxy(
    *, name: str, base_url: str, token: str, is_canary: bool = False, pool: str = "default"
) -> Any:
    """A Proxy row for an already-running proxy process whose token the test chose."""
    from routing.engine import signing
    from routing.models import Proxy
    from routing.services.fleet import encrypt_token

    return Proxy.objects.create(
        name=name,
        base_url=base_url,
        pool=pool,
        is_canary=is_canary,
        token_hash=signing.token_hash(token),
        signing_key=signing.signing_key(token),
        push_credential=encrypt_token(token),
    )


def wait_until(predicate: Any, timeout_s: float, step_s: float = 0.1) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())
