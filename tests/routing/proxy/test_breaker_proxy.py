"""The breaker inside a real LiteLLM proxy, against fake upstreams: every transition.

Each test drives its own small model group (own fake upstream, own feature), so the breakers do not
share state. The bundle shortens the breaker (10 attempts, 3 in a row, 1 s cool-off, probe one in 2,
close after 2) so a transition takes a dozen calls, not hundreds.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
from routing.devtools.harness import ControlPlaneDouble, ProxyProcess, dev_signed
from routing.engine.bundle import with_content_hash
from routing.engine.signing import token_hash
from tests.routing.proxy.conftest import PROXY_TOKEN, TEAM

pytestmark = pytest.mark.proxy

GROUPS = ("slm-share", "slm-streak", "slm-probe", "slm-inflight", "slm-frozen")
INFLIGHT_TIMEOUT_MS = 20_000  # the in-flight test's SLM timeout: waiting it out would be unmistakable
BREAKER = {
    "window_s": 30,
    "failure_share": 0.5,
    "min_attempts": 10,
    "consecutive_failures": 3,
    "cool_off_s": 1.0,
    "max_cool_off_s": 4.0,
    "probe_one_in": 2,
    "close_after": 2,
}


def key_of(group: str) -> str:
    return f"fk-{group}"


def feature_of(group: str) -> str:
    return group.removeprefix("slm-")


def breaker_bundle(upstreams: dict[str, FakeUpstream]) -> dict[str, Any]:
    def small(group: str) -> dict[str, Any]:
        return {
            "model_group": group,
            "model": "openai/llama-3-8b-instruct",
            "tier": "small",
            "api_base": upstreams[group].base_url,
            "api_key": "os.environ/FINOPS_TEST_UPSTREAM_KEY",
            "input_cost_per_token": "0.0000001",
            "output_cost_per_token": "0.0000002",
        }

    doc = {
        "schema": 1,
        "version": "breaker-1",
        "deployments": [
            *(small(g) for g in GROUPS),
            {
                "model_group": "frontier",
                "model": "openai/gpt-4o",
                "tier": "frontier",
                "api_base": upstreams["frontier"].base_url,
                "api_key": "os.environ/FINOPS_TEST_UPSTREAM_KEY",
                "timeout_s": 30,
            },
        ],
        "policies": {
            "default": {
                "small_model": GROUPS[0],
                "frontier_model": "frontier",
                "threshold": 1.01,
                "slm_timeout_ms": 1000,
                "breaker": BREAKER,
            },
            **{feature_of(g): {"small_model": g} for g in GROUPS},
            feature_of("slm-inflight"): {
                "small_model": "slm-inflight",
                "slm_timeout_ms": INFLIGHT_TIMEOUT_MS,
            },
        },
        "budgets": [],
        "experiments": [],
        "keys": [
            {
                "key_hash": token_hash(key_of(g)),
                "team": TEAM,
                "feature": feature_of(g),
                "expires_at": None,
                "revoked": False,
            }
            for g in GROUPS
        ],
        "shipping": {"batch_size": 20, "interval_ms": 200, "max_spool_records": 100000},
    }
    return dev_signed(with_content_hash(doc))


class Rig:
    def __init__(
        self, upstreams: dict[str, FakeUpstream], control_plane: ControlPlaneDouble, proxy: ProxyProcess
    ) -> None:
        self.upstreams, self.control_plane, self.proxy = upstreams, control_plane, proxy

    def call(self, group: str) -> str:
        """One routine call for the group's feature; returns the upstream that answered."""
        status, body, _ = self.proxy.chat(key_of(group), "hello")
        assert status == 200, body
        return body["choices"][0]["message"]["content"].removeprefix("answer from ")

    def breaker(self, group: str) -> dict[str, Any]:
        found = [b for b in self.proxy.status()["breakers"] if b["model_group"] == group]
        return found[0] if found else {"state": "closed", "transitions": []}

    def slm_requests(self, group: str) -> int:
        snapshot = self.upstreams[group].state.snapshot()
        return int(snapshot["requests"] + snapshot["refused"])

    def records(self, group: str, expected: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = self.control_plane.records_for(feature=feature_of(group))
            if len(found) >= expected:
                return found
            time.sleep(0.1)
        return self.control_plane.records_for(feature=feature_of(group))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    upstreams = {name: FakeUpstream(UpstreamBehaviour(name=name)).start() for name in (*GROUPS, "frontier")}
    control_plane = ControlPlaneDouble(PROXY_TOKEN).start()
    bundle = breaker_bundle(upstreams)
    control_plane.set_bundle(bundle)
    workdir: Path = tmp_path_factory.mktemp("breaker-proxy")
    proxy = ProxyProcess(
        bundle, workdir, proxy_token=PROXY_TOKEN, control_plane_url=control_plane.url, heartbeat_s=1.0
    )
    proxy.start()
    try:
        yield Rig(upstreams, control_plane, proxy)
    finally:
        proxy.stop()
        control_plane.stop()
        for upstream in upstreams.values():
            upstream.stop()


def test_closed_to_open_on_the_failure_share(rig: Rig) -> None:
    group = "slm-share"
    # 5xx are soft failures: never a streak, so only the share can open the breaker
    rig.upstreams[group].apply({"error_rate": 1.0, "error_status": 500})
    for i in range(9):
        assert rig.call(group) == "frontier"
        assert rig.breaker(group)["state"] == "closed", f"opened after {i + 1} attempts (minimum 10)"
    assert rig.slm_requests(group) == 9
    assert rig.call(group) == "frontier"
    breaker = rig.breaker(group)
    assert breaker["state"] == "open"
    assert breaker["transitions"][-1]["why"] == "10 of 10 attempts failed in 30 s"
    assert rig.call(group) == "frontier"
    assert rig.slm_requests(group) == 10  # the open breaker kept the 11th call off the SLM
    records = rig.records(group, 21)
    skipped = [r for r in records if r["decision_reason"] == "slm_unavailable"]
    assert [(r["model_group"], r["fallback"], r["fallback_reason"]) for r in skipped] == [
        ("frontier", False, "slm_unavailable")
    ]
    assert sum(1 for r in records if r["fallback"] and r["fallback_reason"] == "error") == 10


def test_open_on_consecutive_hard_failures(rig: Rig) -> None:
    group = "slm-streak"
    assert rig.call(group) == group
    rig.upstreams[group].apply({"down": True})  # connection refused
    for _ in range(3):
        assert rig.call(group) == "frontier"
    breaker = rig.breaker(group)
    assert breaker["state"] == "open"
    assert breaker["transitions"][-1]["why"] == "3 hard failures in a row"
    assert breaker["open_since"] is not None
    before = rig.slm_requests(group)
    started = time.perf_counter()
    assert rig.call(group) == "frontier"
    print(f"\nskipped call: {(time.perf_counter() - started) * 1000:.0f} ms")
    assert rig.slm_requests(group) == before
    records = rig.records(group, 1 + 3 * 2 + 1)
    refused = [
        r for r in records if r["attempt"] == 1 and r["model_group"] == group and r["status"] == "error"
    ]
    assert len(refused) == 3, refused


def test_a_frozen_proxy_does_not_take_a_healthy_slm_out_of_service(rig: Rig) -> None:
    """The proxy stopped (SIGSTOP) for 2.5 s with SLM attempts in flight: the timeouts are its own stall."""
    group = "slm-frozen"
    for _ in range(3):
        assert rig.call(group) == group
    rig.upstreams[group].apply({"latency_ms": 400})  # the attempts are still waiting when the proxy stops
    assert rig.proxy.process is not None
    pid = rig.proxy.process.pid
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            calls = [pool.submit(rig.call, group) for _ in range(4)]
            time.sleep(0.25)
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(2.5)  # well past the 1 s SLM timeout: to the proxy every attempt timed out
            finally:
                os.kill(pid, signal.SIGCONT)
            served = [call.result() for call in calls]
    finally:
        rig.upstreams[group].apply({"latency_ms": 0})
    breaker = rig.breaker(group)
    print(f"\nin flight across the freeze, served by: {served}; excused timeouts: {breaker.get('excused')}")
    # four timeouts in a row would open it ("3 hard failures in a row"); none of them was the SLM's doing
    assert breaker["state"] == "closed", breaker["transitions"]
    assert breaker["excused"] == served.count("frontier") >= 1
    assert [rig.call(group) for _ in range(3)] == [group] * 3


def test_half_open_probe_then_close(rig: Rig) -> None:
    group = "slm-probe"
    upstream = rig.upstreams[group]
    upstream.apply({"hang_rate": 1.0, "hang_s": 10})  # timeouts (1 s) are hard failures too
    for _ in range(3):
        assert rig.call(group) == "frontier"
    assert rig.breaker(group)["state"] == "open"

    # still dead after the cool-off: the probe fails and the breaker opens again, waiting twice as long
    time.sleep(1.1)
    before = rig.slm_requests(group)
    assert rig.call(group) == "frontier"  # the probe, after waiting out the SLM timeout
    assert rig.slm_requests(group) == before + 1
    breaker = rig.breaker(group)
    assert breaker["state"] == "open" and breaker["cool_off_s"] == 2.0
    assert [t["to"] for t in breaker["transitions"][-2:]] == ["half_open", "open"]
    assert breaker["transitions"][-1]["why"].startswith("probe failed")

    upstream.apply({"hang_rate": 0.0})
    time.sleep(1.2)
    assert rig.call(group) == "frontier"  # 1.2 s < the doubled cool-off: no probe yet
    time.sleep(1.0)
    before = rig.slm_requests(group)
    served = [rig.call(group) for _ in range(4)]
    # half-open: one call in 2 probes; two answered probes close it
    assert served == [group, "frontier", group, group], served
    assert rig.slm_requests(group) == before + 3
    breaker = rig.breaker(group)
    assert breaker["state"] == "closed" and breaker["open_since"] is None
    assert [t["to"] for t in breaker["transitions"][-2:]] == ["half_open", "closed"]
    assert all(rig.call(group) == group for _ in range(3))


def test_attempts_in_flight_fall_back_at_once_when_the_breaker_opens(rig: Rig) -> None:
    """SLM attempts waiting on a hung SLM are cut off when the breaker opens, not left to their timeout."""
    group, in_flight = "slm-inflight", 6
    upstream = rig.upstreams[group]
    assert rig.call(group) == group
    upstream.apply({"hang_rate": 1.0, "hang_s": 60})
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        started = time.perf_counter()
        waiting = [pool.submit(rig.proxy.chat, key_of(group), f"hello {i}") for i in range(in_flight)]
        deadline = time.monotonic() + 10
        while upstream.state.snapshot()["hangs"] < in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream.state.snapshot()["hangs"] == in_flight, "the calls never reached the SLM"
        upstream.apply({"down": True})  # new calls are refused: three in a row open the breaker
        for _ in range(BREAKER["consecutive_failures"]):
            assert rig.call(group) == "frontier"
        opened_at = time.perf_counter()
        assert rig.breaker(group)["state"] == "open"
        answers = [future.result() for future in waiting]
        finished = time.perf_counter()
    served = [body["choices"][0]["message"]["content"] for status, body, _ in answers if status == 200]
    assert served == ["answer from frontier"] * in_flight, answers
    print(
        f"\n{in_flight} calls in flight: breaker opened {opened_at - started:.2f} s after they started; "
        f"all answered by the frontier {finished - opened_at:.2f} s later (SLM timeout {INFLIGHT_TIMEOUT_MS / 1000:g} s)"
    )
    assert finished - opened_at < 3.0, "the in-flight attempts waited instead of falling back"
    assert rig.breaker(group)["abandoned"] == in_flight

    records = rig.records(group, 2 + 2 * BREAKER["consecutive_failures"] + 2 * in_flight)
    abandoned = [r for r in records if r["error_class"] == "CircuitBreakerOpen"]
    assert len(abandoned) == in_flight
    assert all((r["attempt"], r["model_group"], r["status"]) == (1, group, "error") for r in abandoned)
    by_call = {(r["call_id"], r["attempt"]): r for r in records}
    rescues = [by_call.get((r["call_id"], 2)) for r in abandoned]
    assert [(r["model_group"], r["status"], r["fallback"], r["fallback_reason"]) for r in rescues if r] == [
        ("frontier", "success", True, "slm_unavailable")
    ] * in_flight
    # the refused calls that opened it are ordinary error fallbacks; nothing else was recorded twice
    assert len(records) == len({(r["call_id"], r["attempt"]) for r in records})
    assert sum(1 for r in records if r["fallback_reason"] == "error") == BREAKER["consecutive_failures"]


def test_a_multi_worker_proxy_learns_per_worker_and_still_skips_a_dead_slm(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Each worker process has its own breaker: at most workers × K calls try a dead SLM, then none."""
    workers, group = 2, "slm-share"
    upstreams = {name: FakeUpstream(UpstreamBehaviour(name=name)).start() for name in (*GROUPS, "frontier")}
    control_plane = ControlPlaneDouble(PROXY_TOKEN).start()
    bundle = breaker_bundle(upstreams)
    control_plane.set_bundle(bundle)
    proxy = ProxyProcess(
        bundle,
        tmp_path_factory.mktemp("breaker-workers"),
        proxy_token=PROXY_TOKEN,
        control_plane_url=control_plane.url,
        heartbeat_s=1.0,
        workers=workers,
    )
    proxy.start()

    def breaker_of(status: dict[str, Any]) -> dict[str, Any]:
        return next(b for b in status["breakers"] if b["model_group"] == group)

    try:
        deadline = time.monotonic() + 60
        while len(proxy.status()["workers"]) < workers and time.monotonic() < deadline:
            time.sleep(0.5)  # the second worker finishes starting after the first one answers
        assert len(proxy.status()["workers"]) == workers
        rig = Rig(upstreams, control_plane, proxy)
        assert rig.call(group) == group
        upstreams[group].apply({"hang_rate": 1.0, "hang_s": 5})  # every try waits out the 1 s timeout
        before = rig.slm_requests(group)
        with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent, so both workers get calls
            served = list(pool.map(lambda _: rig.call(group), range(60)))
        assert set(served) == {"frontier"}
        tried = rig.slm_requests(group) - before
        # any worker's status covers both: each worker's breaker, and the sum over them; the other
        # worker's part is what it last wrote to the shared spool (once a second), so wait until it has
        deadline = time.monotonic() + 15
        breaker = breaker_of(proxy.status())
        while breaker["skipped"] + tried < 60 and time.monotonic() < deadline:
            time.sleep(0.5)
            breaker = breaker_of(proxy.status())
        print(
            f"\n{tried} of 60 calls tried the hanging SLM; per worker: "
            + ", ".join(f"{w['pid']}: {w['state']}, skipped {w['skipped']}" for w in breaker["by_worker"])
        )
        # each worker opens its own breaker after K timeouts in a row (a few more may already be in flight)
        assert tried <= workers * (BREAKER["consecutive_failures"] + 4)
        # uvicorn hands connections to workers as it likes: a worker that got fewer than K calls has not
        # opened, so the combined view is "open" on the workers that saw the dead SLM, and skips the rest
        assert (breaker["state"], breaker["workers"]) == ("open", workers)
        assert 1 <= breaker["workers_open"] <= workers
        assert breaker["workers_open"] == sum(w["state"] == "open" for w in breaker["by_worker"])
        assert len({w["pid"] for w in breaker["by_worker"]}) == workers
        assert breaker["skipped"] == sum(w["skipped"] for w in breaker["by_worker"])
        # every call either reached the SLM or skipped it, except one admitted just before its worker's
        # breaker opened and cut off before it was sent (routing.proxy.abandon): abandoned, never tried
        assert 60 - tried - breaker["abandoned"] <= breaker["skipped"] <= 60 - tried
        # the same answer from whichever worker is asked, once each has read the other's latest state
        # (each worker writes its part to the shared spool once a second, so a read may lag by that)
        settled = ("open", breaker["skipped"])
        deadline = time.monotonic() + 10
        again = breaker_of(proxy.status())
        while (again["state"], again["skipped"]) != settled and time.monotonic() < deadline:
            time.sleep(0.5)
            again = breaker_of(proxy.status())
        assert (again["state"], again["skipped"]) == settled
    finally:
        proxy.stop()
        control_plane.stop()
        for upstream in upstreams.values():
            upstream.stop()
