"""The fake upstream's fault switches the scenario benchmark relies on: even faults, down, schedules."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour


def chat(upstream: FakeUpstream, timeout: float = 5.0) -> int:
    """Status of one chat call; 0 when the connection was refused or dropped."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(upstream.base_url + "/chat/completions", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@pytest.fixture
def upstream():
    started = FakeUpstream(UpstreamBehaviour(name="slm")).start()
    yield started
    started.stop()


def test_even_faults_hit_exactly_the_rate(upstream: FakeUpstream) -> None:
    upstream.apply({"error_rate": 0.25, "even_faults": True})
    statuses = [chat(upstream) for _ in range(40)]
    assert statuses.count(500) == 10 and statuses.count(200) == 30
    assert statuses[:4].count(500) == 1  # spread out, not bunched


def test_down_refuses_connections_until_it_is_up_again(upstream: FakeUpstream) -> None:
    assert chat(upstream) == 200
    upstream.apply({"down": True})
    assert chat(upstream) == 0
    upstream.apply({"down": False})
    assert chat(upstream) == 200
    assert upstream.state.snapshot()["requests"] == 2


@pytest.mark.realclock
def test_a_schedule_switches_faults_at_set_times(upstream: FakeUpstream) -> None:
    upstream.schedule([(0.3, {"error_rate": 1.0}), (0.6, {"error_rate": 0.0})])
    assert chat(upstream) == 200
    deadline = time.monotonic() + 5
    while upstream.state.snapshot()["behaviour"]["error_rate"] != 1.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert chat(upstream) == 500
    while upstream.state.snapshot()["behaviour"]["error_rate"] != 0.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert chat(upstream) == 200
