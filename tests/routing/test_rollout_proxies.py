"""Rollouts against three real LiteLLM proxies running the plugin, pulling from a live control plane."""

from __future__ import annotations

import os
import threading
import time
from decimal import Decimal

import pytest
from django.conf import settings

from routing import services
from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
from routing.devtools.harness import ProxyProcess, sample_bundle
from routing.engine.bundle import with_content_hash
from routing.models import Bundle, Proxy, RolloutStatus, RoutingPolicy, TargetStatus
from tests.routing.fleet_support import make_routing, register_proxy, wait_until

pytestmark = [
    pytest.mark.proxy,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.DATABASE_IS_POSTGRES,
        reason="needs Postgres: the proxies' heartbeats write through the live server while the test writes, "
        "and the shared in-memory SQLite test database answers 'database table is locked'",
    ),
]

os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")


TOKENS = [f"fpx-test-rollout-proxy-{i}" for i in range(3)]


class Fleet:
    def __init__(self, upstreams: dict[str, FakeUpstream], proxies: list[ProxyProcess]) -> None:
        self.upstreams = upstreams
        self.proxies = proxies

    def applied_hash(self, i: int) -> str | None:
        try:
            return (self.proxies[i].status() or {}).get("applied_hash")
        except OSError:
            return None


@pytest.fixture(scope="module")
def fleet(live_server, tmp_path_factory):
    upstreams = {name: FakeUpstream(UpstreamBehaviour(name=name)).start() for name in ("slm", "frontier")}
    boot = sample_bundle(
        small_base=upstreams["slm"].base_url, frontier_base=upstreams["frontier"].base_url, keys={}
    )
    proxies = [
        ProxyProcess(
            boot,
            tmp_path_factory.mktemp(f"proxy{i}"),
            proxy_token=token,
            control_plane_url=live_server.url,
            heartbeat_s=1.0,
        )
        for i, token in enumerate(TOKENS)
    ]
    failures: list[BaseException] = []

    def start(proxy: ProxyProcess) -> None:
        try:
            proxy.start()
        except BaseException as exc:  # reported below, after every start returned
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in proxies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if failures:
            raise failures[0]
        print("\nproxies started in " + ", ".join(f"{p.startup_s:.1f}s" for p in proxies))
        yield Fleet(upstreams, proxies)
    finally:
        for proxy in proxies:
            proxy.stop()
        for upstream in upstreams.values():
            upstream.stop()


@pytest.fixture(autouse=True)
def eager_celery(settings):
    from controlplane.celery import app

    settings.FLEET_CANARY_WINDOW_S = 0.5
    settings.FLEET_PUSH_ATTEMPTS = 2
    settings.FLEET_PUSH_BACKOFF_S = 0.1
    settings.FLEET_PUSH_TIMEOUT_S = 5
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def _setup(fleet: Fleet):
    _, _, default = make_routing(
        small_base=fleet.upstreams["slm"].base_url, frontier_base=fleet.upstreams["frontier"].base_url
    )
    rows = [
        register_proxy(name=f"proxy-{i}", base_url=p.url, token=TOKENS[i], is_canary=i == 0)
        for i, p in enumerate(fleet.proxies)
    ]
    return default, rows


def test_dead_proxy_makes_rollout_partial_and_heals_on_its_next_pull(fleet):
    default, rows = _setup(fleet)
    first = services.bundle_publish(actor=None, note="v1")
    assert first.rollouts.get().status == RolloutStatus.SUCCEEDED
    assert [fleet.applied_hash(i) for i in range(3)] == [first.content_hash] * 3

    fleet.proxies[2].stop()
    services.policy_update(actor=None, policy=default, threshold=Decimal("0.5"))
    second = services.bundle_publish(actor=None, note="v2")
    rollout = second.rollouts.get()
    assert rollout.status == RolloutStatus.PARTIAL
    statuses = {t.proxy.name: t.status for t in rollout.targets.select_related("proxy")}
    assert statuses == {
        "proxy-0": TargetStatus.APPLIED,
        "proxy-1": TargetStatus.APPLIED,
        "proxy-2": TargetStatus.UNREACHABLE,
    }
    assert "proxy-2" in rollout.error
    assert fleet.applied_hash(0) == fleet.applied_hash(1) == second.content_hash

    started = time.perf_counter()
    fleet.proxies[2].start()
    assert wait_until(lambda: fleet.applied_hash(2) == second.content_hash, 20), fleet.proxies[2].log_tail()
    # and its heartbeat tells the control plane
    assert wait_until(lambda: Proxy.objects.get(name="proxy-2").applied_hash == second.content_hash, 10)
    print(f"\nrestarted proxy converged {time.perf_counter() - started:.1f}s after its restart began")


def test_canary_rejecting_a_bundle_rolls_back_automatically(fleet):
    _, rows = _setup(fleet)
    good = services.bundle_publish(actor=None, note="v1")
    assert good.rollouts.get().status == RolloutStatus.SUCCEEDED
    # a bundle this plugin cannot read (a newer schema), stored as if a newer control plane had compiled it
    doc = dict(good.document, version="v2", schema=2)
    doc = with_content_hash({k: v for k, v in doc.items() if k != "content_hash"})
    bad = Bundle.objects.create(
        number=2,
        version="v2",
        content_hash=doc["content_hash"],
        source_hash="x",
        document=doc,
        config_yaml="",
    )
    rollout = services.rollout_start(actor=None, bundle=bad, note="newer schema")
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert "$.schema" in rollout.error
    canary = rollout.targets.get(is_canary=True)
    assert canary.status == TargetStatus.ROLLED_BACK  # refused v2, then took v1 again
    assert "$.schema" in canary.error and "back on v1" in canary.error
    assert set(rollout.targets.filter(is_canary=False).values_list("status", flat=True)) == {
        TargetStatus.SKIPPED
    }
    assert [fleet.applied_hash(i) for i in range(3)] == [good.content_hash] * 3
    assert Proxy.objects.get(name="proxy-0").target_bundle_id == good.pk


def test_revoking_a_key_reaches_every_proxy_within_the_rollout(fleet, feature):
    """Issue 14 item 12: revocation publishes a revocation-only bundle at once; no one has to publish."""
    _setup(fleet)
    key, plaintext = services.feature_key_create(actor=None, feature=feature, name="web")
    services.bundle_publish(actor=None, note="with key")
    status, body, _ = fleet.proxies[1].chat(plaintext, "Summarise: the printer is out of toner.")
    assert status == 200, body
    default = RoutingPolicy.objects.get(feature__isnull=True)
    services.policy_update(actor=None, policy=default, threshold=Decimal("0.2"))  # staged, unpublished
    started = time.perf_counter()
    services.feature_key_revoke(actor=None, key=key)
    revocation = Bundle.objects.order_by("-number").first()
    assert "revocation only" in revocation.note
    assert revocation.rollouts.get().status == RolloutStatus.SUCCEEDED
    assert revocation.document["policies"]["default"]["threshold"] == 1.01  # the staged edit did not ship
    for proxy in fleet.proxies:
        status, body, _ = proxy.chat(plaintext, "Summarise again.")
        assert status == 401, body
        assert "revoked" in str(body)
    print(
        f"\nrevocation refused on all {len(fleet.proxies)} proxies {time.perf_counter() - started:.2f}s after revoke"
    )


def test_keys_of_an_inactive_feature_leave_the_bundle(fleet, feature):
    _setup(fleet)
    _, plaintext = services.feature_key_create(actor=None, feature=feature, name="web")
    services.bundle_publish(actor=None, note="with key")
    assert fleet.proxies[0].chat(plaintext, "hello")[0] == 200
    feature.is_active = False
    feature.save()
    bundle = services.bundle_publish(actor=None, note="feature off")
    assert bundle.document["keys"] == []
    status, body, _ = fleet.proxies[0].chat(plaintext, "hello")
    assert status == 401 and "unknown feature key" in str(body)
