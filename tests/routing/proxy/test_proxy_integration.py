"""The plugin inside a real, stock LiteLLM proxy: routing, fallbacks, bundle pushes, spend delivery.

One proxy (and its fake upstreams and control-plane double) is shared by the whole module; the
tests that take the control plane down or restart the proxy run last.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from typing import Any

import pytest

from routing.devtools.harness import rehash
from routing.proxy.spool import SPOOL_FILE
from tests.routing.proxy.conftest import TEAM, Fleet, fleet_bundle

pytestmark = pytest.mark.proxy


def answer_of(body: Any) -> str:
    return body["choices"][0]["message"]["content"]


def wait_for(predicate: Any, timeout_s: float = 10.0, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return bool(predicate())


def records_of(
    fleet: Fleet, call_feature: str, expected: int, timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    wait_for(lambda: len(fleet.control_plane.records_for(feature=call_feature)) >= expected, timeout_s)
    return fleet.control_plane.records_for(feature=call_feature)


# -- routing ----------------------------------------------------------------------------------


def test_routine_prompt_goes_to_the_small_model(fleet: Fleet) -> None:
    status, body, _ = fleet.proxy.chat("fk-routine", "Reformat this date: 2026-11-27")
    assert status == 200, body
    assert answer_of(body) == "answer from slm"


def test_complex_prompt_goes_to_the_frontier_model(fleet: Fleet) -> None:
    status, body, _ = fleet.proxy.chat("fk-complex", "Prove that there are infinitely many primes.")
    assert status == 200, body
    assert answer_of(body) == "answer from frontier"
    records = records_of(fleet, "complex", 1)
    assert records[0]["route"] == "frontier" and records[0]["decision_reason"] == "score"
    assert records[0]["threshold"] == 0.0 and records[0]["bundle_version"] == "v1"


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
                ]
            },
            "tools",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}},
                }
            },
            "structured_output",
        ),
    ],
)
def test_hard_rules_send_what_the_slm_cannot_serve_to_the_frontier(
    fleet: Fleet, extra: dict[str, Any], rule: str
) -> None:
    status, body, _ = fleet.proxy.chat("fk-routine", f"rule check {rule}", **extra)
    assert status == 200, body
    assert answer_of(body) == "answer from frontier"


def test_image_rule(fleet: Fleet) -> None:
    content = [
        {"type": "text", "text": "what is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    status, body, _ = fleet.proxy.chat("fk-routine", "", messages=[{"role": "user", "content": content}])
    assert status == 200, body
    assert answer_of(body) == "answer from frontier"


def test_prompt_longer_than_the_slm_context_goes_to_the_frontier(fleet: Fleet) -> None:
    status, body, _ = fleet.proxy.chat("fk-routine", "word " * 5000)  # ~6 000 tokens > 4 096
    assert status == 200, body
    assert answer_of(body) == "answer from frontier"


def test_budget_block_answers_429_naming_feature_spend_and_limit(fleet: Fleet) -> None:
    status, body, _ = fleet.proxy.chat("fk-blocked", "hello")
    assert status == 429
    message = body["error"]["message"]
    assert "'blocked'" in message and "$120.50" in message and "$100.00" in message


def test_budget_degrade_keeps_the_feature_on_the_small_model(fleet: Fleet) -> None:
    status, body, _ = fleet.proxy.chat("fk-degrade", "would normally go to the frontier (threshold 0)")
    assert status == 200, body
    assert answer_of(body) == "answer from slm"
    [record] = records_of(fleet, "degrade", 1)
    assert record["route"] == "small" and record["fallback"] is True and record["fallback_reason"] == "budget"


# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "phrase"),
    [("fk-nobody", "unknown feature key"), ("fk-revoked", "revoked"), ("fk-expired", "expired")],
)
def test_bad_keys_are_rejected_with_401(fleet: Fleet, key: str, phrase: str) -> None:
    status, body, _ = fleet.proxy.chat(key, "hello")
    assert status == 401
    assert phrase in body["error"]["message"]


# -- fallback ---------------------------------------------------------------------------------


def test_hanging_slm_falls_back_within_its_timeout(fleet: Fleet) -> None:
    status, body, elapsed = fleet.proxy.chat("fk-hang", "hello")
    assert status == 200, body
    assert answer_of(body) == "answer from frontier"
    print(f"\nhang fallback: {elapsed * 1000:.0f} ms (SLM timeout 1000 ms)")
    assert elapsed < 1.0 + 0.5
    records = sorted(records_of(fleet, "hang", 2), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"], r["model_group"]) for r in records] == [
        (1, "error", "slm-hang"),
        (2, "success", "frontier"),
    ]
    assert records[1]["fallback"] is True and records[1]["fallback_reason"] == "timeout"
    assert "Timeout" in records[0]["error_class"]


def test_failing_slm_falls_back_at_once(fleet: Fleet) -> None:
    status, body, elapsed = fleet.proxy.chat("fk-error", "hello")
    assert status == 200, body
    assert answer_of(body) == "answer from frontier"
    print(f"\nerror fallback: {elapsed * 1000:.0f} ms")
    assert elapsed < 0.5
    records = sorted(records_of(fleet, "error", 2), key=lambda r: r["attempt"])
    assert records[1]["fallback_reason"] == "error" and records[0]["status"] == "error"


def test_repeatedly_failing_slm_is_skipped(fleet: Fleet) -> None:
    # five timeouts in a row with no answer in between open the breaker (consecutive_failures=5)
    for _ in range(5):
        status, body, _ = fleet.proxy.chat("fk-dead", "hello")
        assert status == 200 and answer_of(body) == "answer from frontier"
    seen_by_slm = fleet.requests_to("slm-dead")
    # the same call straight to the frontier, measured now, is the yardstick on a busy 2-core machine
    direct = sorted(fleet.proxy.chat("fk-complex", "hello")[2] for _ in range(3))[1]
    timings = []
    for _ in range(3):
        status, body, elapsed = fleet.proxy.chat("fk-dead", "hello")
        assert status == 200 and answer_of(body) == "answer from frontier"
        timings.append(elapsed)
    skip = sorted(timings)[1]
    print(
        f"\nopen breaker skips the SLM: {[round(t * 1000) for t in timings]} ms (direct frontier {direct * 1000:.0f} ms)"
    )
    assert fleet.requests_to("slm-dead") == seen_by_slm  # the SLM never saw them
    assert skip < 0.1 or skip - direct < 0.1  # skipping costs under 100 ms
    # the five that waited are a failed SLM attempt plus a timeout fallback; the three skipped are
    # one frontier attempt each, reason slm_unavailable, and not a fallback
    records = records_of(fleet, "dead", 13)
    by_call: dict[str, list[tuple[int, str, str, bool, str]]] = {}
    for r in records:
        by_call.setdefault(r["call_id"], []).append(
            (r["attempt"], r["model_group"], r["status"], r["fallback"], r["fallback_reason"])
        )
    shapes = sorted(tuple(sorted(v)) for v in by_call.values())
    print(f"attempt shapes: {set(shapes)}")
    assert len(by_call) == 8
    assert (
        shapes.count(((1, "slm-dead", "error", False, ""), (2, "frontier", "success", True, "timeout"))) == 5
    )
    assert shapes.count(((1, "frontier", "success", False, "slm_unavailable"),)) == 3
    skipped = [r for r in records if r["fallback_reason"] == "slm_unavailable"]
    assert {(r["route"], r["decision_reason"]) for r in skipped} == {("frontier", "slm_unavailable")}
    [breaker] = [b for b in fleet.proxy.status()["breakers"] if b["model_group"] == "slm-dead"]
    assert breaker["state"] == "open" and breaker["skipped"] == 3
    assert breaker["transitions"][-1]["why"] == "5 hard failures in a row"


def test_low_confidence_slm_answer_is_replaced_by_the_frontier(fleet: Fleet) -> None:
    status, body, _ = fleet.proxy.chat("fk-lowconf", "hello")
    assert status == 200, body
    assert answer_of(body) == "answer from frontier"
    records = sorted(records_of(fleet, "lowconf", 2), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["model_group"], r["status"]) for r in records] == [
        (1, "slm-lowconf", "success"),
        (2, "frontier", "success"),
    ]
    assert records[0]["confidence"] == pytest.approx(0.0498, abs=1e-3)
    assert records[1]["fallback"] is True and records[1]["fallback_reason"] == "low_confidence"
    assert records[0]["call_id"] == records[1]["call_id"]


def stream_text(fleet: Fleet, key: str, content: str) -> tuple[int, str]:
    """Send a streaming chat call; return the status and the concatenated streamed text."""
    body = json.dumps({"model": "auto", "stream": True, "messages": [{"role": "user", "content": content}]})
    request = urllib.request.Request(fleet.proxy.url + "/chat/completions", data=body.encode(), method="POST")
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = ""
        for line in response.read().decode().splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    text += (choice.get("delta") or {}).get("content") or ""
        return response.status, text


def test_streaming_call_is_routed_and_recorded(fleet: Fleet) -> None:
    status, text = stream_text(fleet, "fk-stream", "hello there")
    assert status == 200 and text == "answer from slm"
    [record] = records_of(fleet, "stream", 1)
    assert record["stream"] is True and record["first_token_time"] is not None
    assert record["start_time"] <= record["first_token_time"] <= record["end_time"]


def test_streaming_call_falls_back_before_the_first_token(fleet: Fleet) -> None:
    status, text = stream_text(fleet, "fk-stream-error", "hello there")
    assert status == 200 and text == "answer from frontier"
    records = sorted(records_of(fleet, "stream-error", 2), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"]) for r in records] == [(1, "error"), (2, "success")]
    assert records[1]["fallback_reason"] == "error" and records[1]["stream"] is True


# -- bundles ----------------------------------------------------------------------------------


def test_pushed_bundle_changes_the_next_request_without_failing_traffic(fleet: Fleet) -> None:
    proxy = fleet.proxy
    errors: list[Any] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            status, body, _ = proxy.chat("fk-routine", "background traffic")
            if status != 200:
                errors.append((status, body))

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.3)
        v2 = fleet_bundle(fleet.upstreams, version="v2", routine_threshold=0.0)
        fleet.control_plane.set_bundle(v2)  # publish, then push: the heartbeat would otherwise pull v1 back
        status, body, _ = proxy.push_bundle(v2)
        assert status == 200, body
        assert body == {"applied_version": "v2", "applied_hash": v2["content_hash"]}
        status, answer, _ = proxy.chat("fk-routine", "same prompt, new threshold")
        assert answer_of(answer) == "answer from frontier"
        time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert errors == []


def test_topology_change_is_applied_live_through_the_router(fleet: Fleet) -> None:
    v3 = fleet_bundle(fleet.upstreams, version="v3", routine_threshold=0.0, late_groups=("slm-b",))
    fleet.control_plane.set_bundle(v3)
    status, body, _ = fleet.proxy.push_bundle(v3)
    assert status == 200, body
    status, body, _ = fleet.proxy.chat("fk-topo", "served by a model group the proxy did not start with")
    assert status == 200, body
    assert answer_of(body) == "answer from slm-b"
    assert fleet.proxy.chat("fk-routine", "old groups still served")[1]["choices"][0]["message"][
        "content"
    ] == ("answer from frontier")
    assert fleet.proxy.status()["restart_required"] is False


def test_a_missed_push_heals_on_the_heartbeat(fleet: Fleet) -> None:
    v4 = fleet_bundle(fleet.upstreams, version="v4", routine_threshold=0.0, late_groups=("slm-b",))
    fleet.control_plane.set_bundle(v4)  # published but never pushed
    assert wait_for(lambda: fleet.proxy.status()["applied_version"] == "v4", 5)
    beat = fleet.control_plane.heartbeats[-1]
    assert beat["plugin_version"] and beat["spool_depth"] >= 0 and "restart_required" in beat


def test_invalid_bundle_is_rejected_and_the_old_one_kept(fleet: Fleet) -> None:
    before = fleet.proxy.status()
    broken = rehash(fleet_bundle(fleet.upstreams, version="v-broken"), policies={"default": {"threshold": 7}})
    status, body, _ = fleet.proxy.push_bundle(broken)
    assert status == 422
    assert any(e.startswith("$.policies.default.small_model") for e in body["errors"])
    assert any(e.startswith("$.policies.default.threshold") for e in body["errors"])
    after = fleet.proxy.status()
    assert after["applied_hash"] == before["applied_hash"]
    assert any("rejected bundle" in e for e in after["errors"])


def test_push_needs_the_proxy_token(fleet: Fleet) -> None:
    from routing.devtools.harness import http_json

    status, _, _ = http_json(
        "PUT", fleet.proxy.url + "/finops/v1/bundle", {}, headers={"Authorization": "Bearer nope"}
    )
    assert status == 401


# -- spend delivery (takes the control plane down: keep these last) ----------------------------


def metered(fleet: Fleet, feature: str) -> set[str]:
    """Event ids of a feature's records on the proxy's disk (spool) or already delivered, read in that order.

    A record leaves the spool only after the control plane acknowledged it, so reading the spool first
    and the deliveries second sees every record that was on disk when the read began.
    """
    spool = fleet.proxy.state_dir / SPOOL_FILE
    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute("SELECT event_id, body FROM spool").fetchall()
    ids = {event_id for event_id, body in rows if json.loads(body).get("feature") == feature}
    return ids | {r["event_id"] for r in fleet.control_plane.records_for(feature=feature)}


def test_a_caller_cannot_turn_off_the_spend_record(fleet: Fleet) -> None:
    """LiteLLM skips every callback of a call whose body says "no-log": true: that call went unmetered."""
    for i, extra in enumerate(({"no-log": True}, {"extra_body": {"no-log": True}}, {"no-log": "true"})):
        status, body, _ = fleet.proxy.chat("fk-nolog", f"please do not log this {i}", **extra)
        assert status == 200, body
        assert len(metered(fleet, "nolog")) == i + 1, f"a call with {extra} left no spend record"
    records = records_of(fleet, "nolog", 3)
    assert len({r["call_id"] for r in records}) == 3


def test_an_answer_leaves_the_proxy_only_once_its_spend_record_is_on_disk(fleet: Fleet) -> None:
    # read the instant each answer arrives: a record still in the proxy's memory would be lost to a
    # SIGKILL right then (the 50 ms write interval alone missed most of these reads)
    for i in range(12):
        status, body, _ = fleet.proxy.chat("fk-durable", f"metered before it is answered {i}")
        assert status == 200, body
        assert len(metered(fleet, "durable")) == i + 1, f"call {i} answered before its record was spooled"
    for i in range(4):
        status, text = stream_text(fleet, "fk-durable", f"a streamed answer, metered before [DONE] {i}")
        assert status == 200 and text
        assert len(metered(fleet, "durable")) == 12 + i + 1, f"stream {i} ended before its record was spooled"
    assert "before their spend record reached the spool" not in json.dumps(fleet.proxy.status()["errors"])


def test_control_plane_outage_and_restart_lose_no_record(fleet: Fleet) -> None:
    proxy, control_plane = fleet.proxy, fleet.control_plane
    control_plane.stop()
    try:
        calls = 15
        for i in range(calls):
            status, body, _ = proxy.chat("fk-spool", f"while the control plane is down {i}")
            assert status == 200, body
        assert wait_for(lambda: proxy.status()["spool_depth"] >= calls, 5)

        # restart while the control plane is still down: the proxy serves with its last-known-good bundle
        applied = proxy.status()["applied_hash"]
        proxy.stop()
        proxy.start()
        print(f"\nproxy restarted in {proxy.startup_s:.2f}s")
        status_after = proxy.status()
        assert status_after["applied_hash"] == applied
        assert status_after["spool_depth"] >= calls
        status, body, _ = proxy.chat("fk-routine", "after restart")
        assert status == 200 and answer_of(body) == "answer from frontier"  # v2's threshold 0.0 survived
        for i in range(5):
            assert proxy.chat("fk-spool", f"after restart {i}")[0] == 200
    finally:
        control_plane.start()
    assert wait_for(lambda: len(control_plane.records_for(feature="spool")) >= calls + 5, 20)
    time.sleep(1.5)  # a duplicate would arrive within a shipping interval
    records = control_plane.records_for(feature="spool")
    assert len(records) == calls + 5
    assert len({r["call_id"] for r in records}) == calls + 5
    assert control_plane.duplicates == 0
    assert wait_for(lambda: proxy.status()["spool_depth"] == 0, 5)
    assert all(r["team"] == TEAM for r in records)
