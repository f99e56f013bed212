"""Smoke-test data, run inside the web container by docker/smoke.sh (`manage.py shell < this file`).

Creates an admin with an API token, two deployments on the fake upstream container, the org policy, one team,
one feature and a key, and publishes bundle v1 for the proxies to boot from, through the same services the UI uses; prints one JSON line for smoke.sh. The
proxies, bundle and rollout go through the HTTP API afterwards, as an operator would."""

import json
import os
from decimal import Decimal

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from controlplane import services as cp
from routing import services
from routing.models import ModelDeployment

upstream = os.environ["SMOKE_UPSTREAM"]  # e.g. http://upstream.finops.internal:9100/v1
admin = get_user_model().objects.create_superuser("smoke-admin", "smoke@example.invalid", None)
token = Token.objects.create(user=admin).key
common = {"api_base": upstream, "api_key_env": "SLM_API_KEY"}
small = services.deployment_create(
    actor=admin,
    name="smoke-small",
    tier="small",
    litellm_model="openai/llama-3-8b-instruct",
    context_window=8192,
    supports_logprobs=True,
    **common,
)
frontier = services.deployment_create(
    actor=admin,
    name="smoke-frontier",
    tier="frontier",
    litellm_model="openai/gpt-4o",
    context_window=128000,
    **common,
)
services.policy_create(
    actor=admin,
    feature=None,
    small_deployment=small,
    frontier_deployment=frontier,
    threshold=Decimal("0.560"),
    slm_timeout_ms=5000,
)
team = cp.team_create(actor=admin, name="Smoke", slug="smoke")
feature = cp.feature_create(actor=admin, team=team, name="Smoke chat", slug="smoke-chat")
services.feature_key_create(actor=admin, feature=feature, name="bootstrap")
assert ModelDeployment.objects.count() == 2
# v1, not rolled out (no proxy runs yet): the proxies start from it; smoke.sh then publishes v2 over the API
bundle = services.bundle_publish(actor=admin, note="smoke bootstrap", rollout=False)
with open(os.environ["SMOKE_BUNDLE_OUT"], "w", encoding="utf-8") as fh:
    json.dump(services.bundle_signed_document(bundle.document), fh)
print("SMOKE_SETUP " + json.dumps({"api_token": token, "bootstrap": bundle.version}))
