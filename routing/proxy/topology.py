"""The LiteLLM deployments a bundle describes, as the router's `model_list` (the proxy's config at start
and the runtime's live topology changes both build it here)."""

from __future__ import annotations

from typing import Any

from routing.engine.bundle import Bundle


def model_list_for(bundle: Bundle) -> list[dict[str, Any]]:
    """LiteLLM `model_list` entries for the bundle's deployments (also used for live topology changes)."""
    model_list: list[dict[str, Any]] = []
    for deployment in bundle.deployments:
        params: dict[str, Any] = {"model": deployment.model}
        if deployment.api_base:
            params["api_base"] = deployment.api_base
        if deployment.api_key:
            params["api_key"] = deployment.api_key
        if deployment.timeout_s:
            params["timeout"] = deployment.timeout_s
        if deployment.input_cost_per_token is not None:
            params["input_cost_per_token"] = float(deployment.input_cost_per_token)
        if deployment.output_cost_per_token is not None:
            params["output_cost_per_token"] = float(deployment.output_cost_per_token)
        model_info: dict[str, Any] = {
            "finops_tier": deployment.tier,
            "max_input_tokens": deployment.context_window,
        }
        if deployment.tier == "small":
            model_info["cooldown_time"] = 0  # our breaker owns the SLM's health, not LiteLLM's cooldown
        model_list.append(
            {"model_name": deployment.model_group, "litellm_params": params, "model_info": model_info}
        )
    return model_list
