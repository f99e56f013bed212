"""What a stock LiteLLM proxy loads by dotted path.

    litellm_settings:
      callbacks: ["routing.proxy.entry.finops_router"]
    general_settings:
      custom_auth: routing.proxy.entry.user_api_key_auth

Importing this module starts the plugin's runtime (last-known-good bundle, shipper, heartbeat)
and adds its endpoints to the proxy's FastAPI app.
"""

from __future__ import annotations

import litellm

from routing.proxy.auth import user_api_key_auth
from routing.proxy.endpoints import register
from routing.proxy.overrides import install as install_override_guard
from routing.proxy.plugin import FinOpsRouter
from routing.proxy.runtime import get_runtime

# A call whose request says "no-log": true skips every callback but LiteLLM's own cost trackers, ours
# included: it would be answered and never metered. Callers' "no-log" is also scrubbed (stamps.py).
litellm.global_disable_no_log_param = True
finops_router = FinOpsRouter(get_runtime)
get_runtime()  # start now so heartbeats and the spool run before the first request
get_runtime().install_abandoning()  # before LiteLLM builds its first OpenAI client


def _register_endpoints() -> None:
    from litellm.proxy.proxy_server import app

    register(app)
    install_override_guard(app)  # per-request upstream/credential overrides: 400 before LiteLLM reads them


_register_endpoints()

__all__ = ["finops_router", "user_api_key_auth"]
