"""A `custom_auth` that accepts every key at once: the stock-proxy baseline for the plugin benchmark.

`python -m routing.devtools.proxy_bench` runs one stock LiteLLM proxy with this as its `custom_auth`, so the
plugin's cost can be told apart from the cost of LiteLLM's custom-auth path itself. Never use it
outside that benchmark: it lets anyone in.
"""

from __future__ import annotations

from typing import Any

from litellm.proxy._types import UserAPIKeyAuth


async def user_api_key_auth(request: Any, api_key: str) -> UserAPIKeyAuth:
    return UserAPIKeyAuth(api_key="bench-noop-auth")
