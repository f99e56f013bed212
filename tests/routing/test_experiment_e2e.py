"""End to end through a real LiteLLM proxy: an experiment compiled by the control plane splits live traffic.

The control plane compiles the bundle (the experiment enters through the compiler hook), a stock
proxy with our plugin serves it, its spend records come back through the control-plane double and
are ingested; the two arms get the configured share of end users, every record carries its arm,
and the arm analysis counts them.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")

from billing.services import spend_batch_ingest  # noqa: E402
from routing import services  # noqa: E402
from routing.compiler import compile_bundle  # noqa: E402
from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour  # noqa: E402
from routing.devtools.harness import ControlPlaneDouble, ProxyProcess, dev_signed  # noqa: E402
from routing.engine.bundle import Bundle as EngineBundle  # noqa: E402
from routing.engine.decision import assign_arm  # noqa: E402
from routing.engine.spend import parse_spend_batch  # noqa: E402
from routing.services import experiments  # noqa: E402
from tests.routing.fleet_support import make_routing, wait_until  # noqa: E402

pytestmark = [pytest.mark.proxy, pytest.mark.django_db]

PROXY_TOKEN = "proxy-token-experiment-e2e"
USERS = 300


@pytest.fixture
def upstreams():
    started = {name: FakeUpstream(UpstreamBehaviour(name=name)).start() for name in ("slm", "frontier")}
    yield started
    for upstream in started.values():
        upstream.stop()


def test_two_arms_get_their_share_of_end_users_and_every_event_carries_its_arm(
    feature, users, upstreams, tmp_path
):
    make_routing(
        small_base=upstreams["slm"].base_url,
        frontier_base=upstreams["frontier"].base_url,
        actor=users["admin"],
    )
    _, plaintext = services.feature_key_create(actor=users["admin"], feature=feature, name="e2e")
    experiment = experiments.experiment_create(
        actor=users["mlops"],
        feature=feature,
        name="e2e",
        arms=[
            {"name": "control", "threshold": "0", "weight": 70},  # everything to the frontier
            {"name": "small", "threshold": "1", "weight": 30},  # everything to the small model
        ],
    )
    experiments.experiment_start(actor=users["mlops"], experiment=experiment, publish=False)
    compiled = compile_bundle(version="e2e-1", created_at="2026-11-28T00:00:00+00:00")
    assert compiled.errors == []
    doc = dev_signed(compiled.document)
    assert doc["experiments"][0]["id"] == experiment.slug

    control_plane = ControlPlaneDouble(PROXY_TOKEN).start()
    control_plane.set_bundle(doc)
    proxy = ProxyProcess(
        doc,
        tmp_path,
        proxy_token=PROXY_TOKEN,
        control_plane_url=control_plane.url,
        heartbeat_s=1.0,
    )
    proxy.start()
    try:
        for i in range(USERS):
            status, body, _ = proxy.chat(
                plaintext, f"Summarise ticket {i}: printer offline", user=f"user-{i}"
            )
            assert status == 200, body
        for i in range(20):  # returning users stay in their arm
            status, body, _ = proxy.chat(plaintext, f"Follow-up {i}", user=f"user-{i}")
            assert status == 200, body
        expected = USERS + 20
        assert wait_until(lambda: len(control_plane.records_for(feature=feature.slug)) >= expected, 30), (
            proxy.log_tail()
        )
    finally:
        proxy.stop()
        control_plane.stop()

    raw = control_plane.records_for(feature=feature.slug)
    assert len(raw) == expected
    assert {r["experiment"] for r in raw} == {experiment.slug}
    engine_experiment = EngineBundle.from_json(doc).experiments[feature.slug]
    arm_of_user: dict[str, str] = {}
    for record in raw:
        user = record["end_user"]
        assert record["arm"] == assign_arm(engine_experiment, user).name  # the proxy's sticky weighted hash
        assert arm_of_user.setdefault(user, record["arm"]) == record["arm"]  # sticky across calls
        assert record["route"] == ("frontier" if record["arm"] == "control" else "small")
    shares = Counter(arm_of_user.values())
    assert sum(shares.values()) == USERS
    assert abs(shares["small"] / USERS - 0.30) < 0.09  # 300 users: sd 2.6 points, so 3.4 sd
    print(f"\narm split over {USERS} end users: {dict(shares)}")

    records, errors = parse_spend_batch({"records": raw})
    assert errors == []
    spend_batch_ingest(proxy=None, records=records)
    data = {a.name: a for a in experiments.experiment_arm_data(experiment=experiment)}
    per_arm_calls = Counter(r["arm"] for r in raw)
    assert data["control"].requests == per_arm_calls["control"]
    assert data["small"].requests == per_arm_calls["small"]
    assert data["small"].small.mean() == 1.0 and data["control"].small.mean() == 0.0
    analysis = experiments.experiment_evaluate(experiment=experiment, auto_stop=False)
    assert analysis["srm"]["mismatch"] is False
