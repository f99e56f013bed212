"""Hostile clients against a real proxy and a real control plane: nothing a key holder sends bypasses metering.

A gunicorn control plane on the test database, one LiteLLM proxy with the plugin (it pulls the published
bundle), fake upstreams. Key holders of team A try every endpoint, forge stamps naming team B, send long
and duplicate call ids, and hammer with an over-budget key. The verdict is computed from what landed in
Postgres and what the upstreams saw, and printed as one line ending `bypasses=0 lost=0 misattributed=0`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum

from routing import providers
from tests.reliability.conftest import (
    HOSTILE_SUMMARY,
    UPSTREAM_KEY_ENV,
    ControlPlaneServer,
    IsolatedProxy,
    PrivateRedis,
)

pytestmark = [pytest.mark.reliability, pytest.mark.proxy, pytest.mark.django_db(transaction=False)]

OVER_BUDGET = {"team": "hostile-a", "feature": "a-over"}


def over_budget_states() -> list[dict[str, Any]]:
    """Budget provider for this suite's publish: feature a-over is over its limit and blocked."""
    return [{**OVER_BUDGET, "state": "over", "spend_usd": "12.00", "limit_usd": "10.00", "period": "2026-11"}]


# (method, path, body) of everything a stock LiteLLM proxy serves besides chat completions.
OTHER_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/completions", {"model": "frontier", "prompt": "hi"}),
    ("POST", "/v1/embeddings", {"model": "frontier", "input": "hi"}),
    ("POST", "/v1/responses", {"model": "frontier", "input": "hi"}),
    (
        "POST",
        "/v1/messages",
        {"model": "frontier", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    ),
    ("POST", "/v1/images/generations", {"model": "frontier", "prompt": "x"}),
    ("POST", "/v1/audio/speech", {"model": "frontier", "input": "x", "voice": "alloy"}),
    ("POST", "/v1/moderations", {"model": "frontier", "input": "x"}),
    ("POST", "/v1/rerank", {"model": "frontier", "query": "q", "documents": ["a"]}),
    (
        "POST",
        "/openai/deployments/frontier/chat/completions",
        {"messages": [{"role": "user", "content": "x"}]},
    ),
    ("GET", "/model/info", None),
    ("GET", "/v1/models", None),
    ("GET", "/settings", None),
    ("GET", "/router/settings", None),
    ("GET", "/get/config/callbacks", None),
    ("GET", "/health", None),
    ("GET", "/key/info", None),
]


# Request fields LiteLLM honours that would pick an upstream, a credential, a provider or a price.
OVERRIDE_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("api_base", {"api_base": "http://127.0.0.1:9/v1"}),
    ("base_url", {"base_url": "http://127.0.0.1:9/v1"}),
    ("api_key", {"api_key": "sk-other"}),
    ("custom_llm_provider", {"custom_llm_provider": "anthropic"}),
    ("user_config", {"user_config": {"model_list": []}}),
    ("extra_body.api_base", {"extra_body": {"api_base": "http://127.0.0.1:9/v1"}}),
    ("input_cost_per_token", {"input_cost_per_token": 0}),
]


def send(
    url: str, key: str, method: str, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """(status, x-litellm-call-id of the answer); never raises on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            response.read()
            return response.status, response.headers.get("x-litellm-call-id", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("x-litellm-call-id", "")


def chat_body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "frontier", "messages": [{"role": "user", "content": prompt}], "max_tokens": 16, **extra}


@pytest.fixture(scope="module")
def hostile_fleet(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.conf import settings as django_settings
    from django.core.management import call_command
    from django.db import connection

    from routing import services
    from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
    from routing.devtools.harness import free_port
    from routing.services import fleet as fleet_services
    from tests.factories import FeatureFactory, TeamFactory

    if not django_settings.DATABASE_IS_POSTGRES:
        pytest.skip("needs Postgres: the verdict is read from the spend tables the proxy's records land in")
    workdir = tmp_path_factory.mktemp("hostile")
    s = connection.settings_dict
    db_url = (
        f"postgres://{s['USER'] or 'postgres'}"
        + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
        + f"@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    )
    upstreams = {
        "slm": FakeUpstream(UpstreamBehaviour(name="slm", completion_tokens=10)).start(),
        "frontier": FakeUpstream(UpstreamBehaviour(name="frontier", completion_tokens=10)).start(),
    }
    redis = PrivateRedis().start()
    server = ControlPlaneServer(workdir, db_url, redis.url)
    proxy: IsolatedProxy | None = None
    with django_db_blocker.unblock():
        try:
            team_a = TeamFactory(name="Hostile A", slug="hostile-a")
            team_b = TeamFactory(name="Hostile B", slug="hostile-b")
            features = {
                "a1": FeatureFactory(team=team_a, slug="a1", name="A one"),
                "a-over": FeatureFactory(team=team_a, slug="a-over", name="A over budget"),
                "b1": FeatureFactory(team=team_b, slug="b1", name="B one"),
            }
            small = services.deployment_create(
                actor=None,
                name="slm",
                tier="small",
                litellm_model="openai/llama-3-8b-instruct",
                api_base=upstreams["slm"].base_url,
                api_key_env=UPSTREAM_KEY_ENV,
            )
            frontier = services.deployment_create(
                actor=None,
                name="frontier",
                tier="frontier",
                litellm_model="openai/gpt-4o",
                api_base=upstreams["frontier"].base_url,
                api_key_env=UPSTREAM_KEY_ENV,
            )
            services.policy_create(
                actor=None,
                feature=None,
                small_deployment=small,
                frontier_deployment=frontier,
                threshold=Decimal("0.6"),
                slm_timeout_ms=2000,
            )
            keys = {
                slug: services.feature_key_create(actor=None, feature=f, name="hostile")[1]
                for slug, f in features.items()
            }
            revoked, keys["a1-revoked"] = services.feature_key_create(
                actor=None, feature=features["a1"], name="leaked"
            )
            services.feature_key_revoke(actor=None, key=revoked)
            port = free_port()
            _, token = fleet_services.proxy_create(
                actor=None, name="hostile-0", base_url=f"http://127.0.0.1:{port}", is_canary=True
            )
            with providers.overridden(budget_states=over_budget_states):
                bundle = services.bundle_publish(actor=None, note="hostile clients", rollout=False)
            assert any(b["feature"] == "a-over" for b in bundle.document["budgets"])
            server.start()
            proxy = IsolatedProxy(
                services.bundle_signed_document(bundle.document),
                workdir / "proxy",
                proxy_token=token,
                control_plane_url=server.url,
                heartbeat_s=1.0,
                port=port,
            )
            proxy.start(timeout_s=180)
            yield {
                "proxy": proxy,
                "keys": keys,
                "features": features,
                "upstreams": upstreams,
                "server": server,
            }
        finally:
            if proxy is not None:
                proxy.stop()
            server.stop()
            redis.stop()
            for upstream in upstreams.values():
                upstream.stop()
            call_command("flush", interactive=False, verbosity=0)


def test_hostile_clients_cannot_bypass_metering_or_misattribute(hostile_fleet) -> None:
    from billing.models import BlockedCallCount, SpendEvent

    proxy, keys, upstreams = hostile_fleet["proxy"], hostile_fleet["keys"], hostile_fleet["upstreams"]
    url = proxy.url

    def upstream_calls() -> int:
        return sum(u.state.snapshot()["requests"] for u in upstreams.values())

    bypasses: list[str] = []
    calls: list[tuple[str, str]] = []  # (call id from the answer, feature slug of the key) of served chats
    refused_for: Counter[tuple[str, str]] = Counter()  # (feature, reason) we expect to be counted

    # 1. every other endpoint, with a good key and with the over-budget key: refused, upstreams untouched
    before = upstream_calls()
    stamp_of_b = {  # complete enough that a plugin trusting it would have written a record for team B
        "team": "hostile-b",
        "feature": "b1",
        "call_id": "forged-other",
        "route": "small",
        "model_group": "frontier",
        "frontier_group": "frontier",
        "threshold": 0.5,
    }
    for key_name in ("a1", "a-over"):
        for method, path, body in OTHER_ENDPOINTS:
            forged_body = {**body, "metadata": {"finops": stamp_of_b}} if body is not None else None
            status, _ = send(url, keys[key_name], method, path, forged_body)
            if status < 400 or status >= 500:
                bypasses.append(f"{key_name} {method} {path} -> {status}")
            else:
                refused_for[(key_name, "endpoint")] += 1
    if upstream_calls() != before:
        bypasses.append(f"other endpoints made {upstream_calls() - before} upstream calls")

    # 2. the over-budget key on chat, also naming another feature and forging a stamp: 429 every time
    before = upstream_calls()
    for i in range(6):
        status, _ = send(
            url,
            keys["a-over"],
            "POST",
            "/v1/chat/completions",
            chat_body(
                f"hello {i}", metadata={"finops": {"team": "hostile-b", "feature": "b1", "route": "small"}}
            ),
            {"x-finops-feature": "a1"},
        )
        if status != 429:
            bypasses.append(f"over-budget chat -> {status}")
        else:
            refused_for[("a-over", "budget")] += 1
    # a revoked key: 401, counted against its feature
    for _ in range(3):
        status, _ = send(url, keys["a1-revoked"], "POST", "/v1/chat/completions", chat_body("hi"))
        if status != 401:
            bypasses.append(f"revoked key chat -> {status}")
        else:
            refused_for[("a1", "revoked")] += 1
    if upstream_calls() != before:
        bypasses.append(f"refused chats made {upstream_calls() - before} upstream calls")

    # 2b. per-request upstream/credential overrides: a 400 naming the field, before LiteLLM, no upstream call
    before = upstream_calls()
    overrides_refused = 0
    for field, value in OVERRIDE_BODIES:
        status, _ = send(url, keys["a1"], "POST", "/v1/chat/completions", chat_body("hi", **value))
        overrides_refused += status == 400
        if status != 400:
            bypasses.append(f"chat with {field} -> {status} (want 400 naming it)")
    if upstream_calls() != before:
        bypasses.append(f"override bodies made {upstream_calls() - before} upstream calls")

    # 3. forged stamps, client-chosen feature header and call ids: served, but charged to the key's feature
    forged = {
        "team": "hostile-b",
        "feature": "b1",
        "call_id": "forged-call",
        "route": "small",
        "model_group": "slm",
        "experiment": "stolen",
        "arm": "a",
        "seal": "guess",
    }
    long_id = "L" * 200
    for i in range(8):
        status, call_id = send(
            url,
            keys["a1"],
            "POST",
            "/v1/chat/completions",
            chat_body(f"Reformat 2026-11-{10 + i}", metadata={"finops": forged}, fallbacks=["frontier"]),
            {"x-litellm-call-id": long_id if i % 2 else "dup-call-id", "x-finops-feature": "b1"},
        )
        if status == 200:
            calls.append((call_id, "a1"))
        else:
            bypasses.append(f"forged chat was refused ({status}): a legitimate call must be served")
    # a caller asking LiteLLM not to log ("no-log": true skipped every callback, ours too): served and metered
    for extra in ({"no-log": True}, {"extra_body": {"no-log": True}}):
        status, call_id = send(
            url, keys["a1"], "POST", "/v1/chat/completions", chat_body("Translate: hi", **extra)
        )
        if status == 200:
            calls.append((call_id, "a1"))
        else:
            bypasses.append(f"chat with {extra} was refused ({status}): it must be served, and metered")
    # team B's own legitimate traffic, to see that it is neither inflated nor lost
    for i in range(3):
        status, call_id = send(url, keys["b1"], "POST", "/v1/chat/completions", chat_body(f"Summarise {i}"))
        if status == 200:
            calls.append((call_id, "b1"))

    # 4. what landed in Postgres
    served_ids = {c for c, _ in calls}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        landed = set(SpendEvent.objects.filter(call_id__in=served_ids).values_list("call_id", flat=True))
        counted = Counter(
            {
                (f, r): n
                for f, r, n in BlockedCallCount.objects.values_list("feature__slug", "reason").annotate(
                    n=Sum("count")
                )
            }
        )
        if landed == served_ids and all(counted[k] >= v for k, v in refused_for.items()):
            break
        time.sleep(0.5)
    rows = list(SpendEvent.objects.values_list("call_id", "team__slug", "feature__slug", "experiment"))
    feature_of_call = dict(calls)
    team_of_feature = {"a1": "hostile-a", "a-over": "hostile-a", "b1": "hostile-b"}
    lost = len(served_ids - {r[0] for r in rows})
    misattributed = [
        r
        for r in rows
        if r[0] not in feature_of_call
        or r[2] != feature_of_call[r[0]]
        or r[1] != team_of_feature[r[2]]
        or r[3] == "stolen"
    ]
    uncounted = {k: v - counted[k] for k, v in refused_for.items() if counted[k] < v}
    line = (
        f"hostile clients: endpoints_tried={len(OTHER_ENDPOINTS) * 2} refused={sum(refused_for.values())} "
        f"refusals_counted={sum(counted.values())} served={len(calls)} rows={len(rows)} "
        f"caller_call_ids_sent=8 no_log_sent=2 overrides_refused={overrides_refused}/{len(OVERRIDE_BODIES)} "
        f"uncounted_refusals={sum(uncounted.values())} "
        f"bypasses={len(bypasses)} lost={lost} misattributed={len(misattributed)}"
    )
    HOSTILE_SUMMARY.append(line)
    print("\n" + line)
    assert not bypasses, bypasses
    assert lost == 0, served_ids - {r[0] for r in rows}
    assert not misattributed, misattributed
    assert not uncounted, (uncounted, counted)
    assert len(served_ids) == len(calls) == 13  # the caller's shared call ids did not collapse any record
