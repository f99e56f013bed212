"""Load and faults through two real proxies into a real control plane: every call stored exactly once."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db.models import Count, Sum

from routing.devtools.traffic import COMPLEX, ROUTINE
from tests.reliability.conftest import CLIENTS, FAULTS, SECONDS, TALLY, record_fault

pytestmark = [pytest.mark.reliability, pytest.mark.proxy, pytest.mark.django_db(transaction=False)]


@dataclass
class Call:
    call_id: str
    proxy: int
    status: int
    done_at: float


@dataclass
class Load:
    calls: list[Call] = field(default_factory=list)
    failures: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # answers that were not a success, by status
    lock: threading.Lock = field(default_factory=threading.Lock)


def _send(proxy_url: str, key: str, prompt: str, user: str) -> tuple[int, str]:
    body = json.dumps(
        {"model": "auto", "messages": [{"role": "user", "content": prompt}], "user": user, "max_tokens": 32}
    ).encode()
    request = urllib.request.Request(
        proxy_url + "/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            response.read()
            return response.status, response.headers.get("x-litellm-call-id", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("x-litellm-call-id", "")
    except OSError:
        return 0, ""


def run_load(fleet: dict[str, Any], seconds: float, *, during: Any = None) -> Load:
    """CLIENTS threads send back to back through both proxies for `seconds`; `during(load)` runs alongside."""
    load = Load()
    stop = threading.Event()
    proxies = fleet["proxies"]

    def client(index: int) -> None:
        rng = random.Random(index)
        n = 0
        while not stop.is_set():
            which = (index + n) % len(proxies)
            n += 1
            prompt = rng.choice(COMPLEX if rng.random() < 0.3 else ROUTINE)
            status, call_id = _send(proxies[which].url, rng.choice(fleet["keys"]), prompt, f"u{index}")
            with load.lock:
                TALLY["requests sent"] += 1
                if status >= 500:
                    TALLY["five_xx"] += 1
                if status == 200 and call_id:
                    load.calls.append(Call(call_id, which, status, time.monotonic()))
                else:
                    load.failures += 1
                    load.statuses[status] = load.statuses.get(status, 0) + 1
                    if status == 0:
                        time.sleep(0.05)  # a proxy is down: do not spin

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        if during is not None:
            during(load)
        else:
            time.sleep(seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(40)
    return load


def wait_drained(fleet: dict[str, Any], timeout_s: float = 90) -> None:
    """Until every proxy reports an empty spool (and its in-memory queue had time to reach it)."""
    from routing.devtools.harness import http_json
    from routing.engine import signing

    time.sleep(1.0)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        depths = []
        for proxy in fleet["proxies"]:
            status, body, _ = http_json(
                "GET",
                proxy.url + "/finops/v1/status",
                headers={"Authorization": f"Bearer {signing.split_credential(proxy.proxy_token)[0]}"},
            )
            depths.append(body.get("spool_depth") if status == 200 and isinstance(body, dict) else None)
        if all(d == 0 for d in depths):
            return
        time.sleep(0.5)
    raise AssertionError(f"spools did not drain within {timeout_s:.0f} s: {depths}")


def check_exactly_once(load: Load) -> dict[str, int]:
    """Every client-observed success is stored once (one success attempt per call id, no repeated attempt)."""
    from billing.models import SpendEvent

    ids = [c.call_id for c in load.calls]
    assert len(ids) == len(set(ids)), "the proxies returned a call id twice"
    rows = SpendEvent.objects.filter(call_id__in=ids)
    events = rows.values("event_id").annotate(n=Count("id")).filter(n__gt=1)
    doubled_events = list(events[:5])
    successes = dict(
        rows.filter(status="success").values("call_id").annotate(n=Count("id")).values_list("call_id", "n")
    )
    lost = [i for i in ids if i not in successes]
    TALLY["client successes"] += len(ids)
    TALLY["recorded (calls)"] += len(successes)
    TALLY["recorded (attempt rows)"] += rows.count()
    TALLY["duplicates"] += events.count() + sum(1 for n in successes.values() if n > 1)
    TALLY["lost"] += len(lost)
    assert not doubled_events, f"spend records stored twice: {doubled_events}"
    assert all(n == 1 for n in successes.values()), "a call has two successful attempts"
    assert not lost, f"{len(lost)} successful calls never reached Postgres: {lost[:5]}"
    return {"calls": len(ids), "rows": rows.count(), "lost": lost}


def check_rollups_exact() -> None:
    from billing.models import SpendEvent, SpendRollupHourly

    raw = SpendEvent.objects.aggregate(
        attempts=Count("id"),
        cost=Sum("cost_usd"),
        tokens_in=Sum("input_tokens"),
        tokens_out=Sum("output_tokens"),
        latency=Sum("latency_ms"),
    )
    raw["requests"] = SpendEvent.objects.filter(attempt=1).count()
    raw["errors"] = SpendEvent.objects.filter(status="error").count()
    rolled = SpendRollupHourly.objects.aggregate(
        attempts=Sum("attempts"),
        cost=Sum("cost_usd"),
        tokens_in=Sum("input_tokens"),
        tokens_out=Sum("output_tokens"),
        latency=Sum("latency_ms_sum"),
        requests=Sum("requests"),
        errors=Sum("errors"),
    )
    assert raw == rolled, f"rollups drifted from the raw events: raw={raw} rollups={rolled}"


def test_load_every_call_stored_exactly_once(fleet):
    load = run_load(fleet, SECONDS)
    wait_drained(fleet)
    result = check_exactly_once(load)
    assert result["calls"] > 0, "no call succeeded under load"
    check_rollups_exact()


def test_control_plane_killed_and_restarted_under_load(fleet):
    server = fleet["server"]

    def outage(load: Load) -> None:
        time.sleep(SECONDS / 3)
        server.kill()
        record_fault("control plane (gunicorn) SIGKILLed under load, down 3 s, restarted")
        time.sleep(3)
        server.start()
        time.sleep(SECONDS / 3)

    load = run_load(fleet, SECONDS, during=outage)
    wait_drained(fleet)
    check_exactly_once(load)
    check_rollups_exact()


def test_proxy_killed_mid_stream_and_restarted(fleet):
    victim = fleet["proxies"][1]
    killed_at: list[float] = []

    def crash(load: Load) -> None:
        time.sleep(SECONDS / 3)
        killed_at.append(time.monotonic())
        victim.process.kill()  # SIGKILL: no shutdown hook runs, the spool on disk is all that survives
        victim.process.wait(10)
        record_fault("proxy SIGKILLed with requests in flight, restarted on its spool")
        victim.start(timeout_s=180)
        time.sleep(SECONDS / 3)

    load = run_load(fleet, SECONDS, during=crash)
    wait_drained(fleet)
    # an answer leaves the proxy only once its record is in the spool file, so a SIGKILL loses no
    # answered call; the calls answered in the last second before the kill are the ones that prove it
    last_second = [c for c in load.calls if c.proxy == 1 and killed_at[0] - 1.0 <= c.done_at <= killed_at[0]]
    check_exactly_once(load)
    FAULTS.append(f"  {len(last_second)} calls answered in the last second before the kill, all stored")
    check_rollups_exact()


def test_redis_down_ingest_still_works(fleet):
    from billing.models import IngestBatch

    redis = fleet["redis"]
    before = IngestBatch.objects.count()

    def outage(load: Load) -> None:
        time.sleep(SECONDS / 4)
        redis.stop()
        record_fault("Redis (cache + Celery broker of the control plane) stopped under load, restarted")
        time.sleep(SECONDS / 2)
        redis.start()

    load = run_load(fleet, SECONDS, during=outage)
    wait_drained(fleet)
    check_exactly_once(load)
    check_rollups_exact()
    assert IngestBatch.objects.count() > before


@pytest.fixture(scope="module")
def two_worker_proxy(fleet, django_db_blocker):
    """A third proxy of the fleet, started with `--num_workers 2` (both workers share its spool file)."""
    from routing import services
    from routing.devtools.harness import free_port
    from routing.services import fleet as fleet_services
    from tests.reliability.conftest import IsolatedProxy

    port = free_port()
    with django_db_blocker.unblock():  # committed: the gunicorn control plane must see the proxy
        _, token = fleet_services.proxy_create(
            actor=None, name="rel-two-workers", base_url=f"http://127.0.0.1:{port}", is_canary=False
        )
    proxy = IsolatedProxy(
        services.bundle_signed_document(fleet["bundle"].document),
        fleet["workdir"] / "proxy-two-workers",
        proxy_token=token,
        control_plane_url=fleet["server"].url,
        heartbeat_s=2.0,
        port=port,
        workers=2,
    )
    proxy.start(timeout_s=240)
    try:
        yield proxy
    finally:
        proxy.stop()


def test_a_two_worker_proxy_stores_every_call_exactly_once(fleet, two_worker_proxy):
    """Both workers write one spool file and one ships it: each call's records land in Postgres once."""
    from concurrent.futures import ThreadPoolExecutor

    from billing.models import SpendEvent

    proxy = two_worker_proxy
    deadline = time.monotonic() + 90
    while len(proxy.status()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)  # each worker writes its state to the shared spool once it runs
    assert len(proxy.status()["workers"]) == 2, "the second worker never came up"

    def one(i: int) -> tuple[int, str]:
        prompt = (COMPLEX if i % 3 == 0 else ROUTINE)[i % 10]
        return _send(proxy.url, fleet["keys"][i % len(fleet["keys"])], prompt, f"two-workers-{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent: the workers' event loops share the calls
        answers = list(pool.map(one, range(240)))
    TALLY["requests sent"] += len(answers)
    load = Load(calls=[Call(call_id, 2, status, time.monotonic()) for status, call_id in answers if call_id])
    assert [status for status, _ in answers] == [200] * len(answers)

    time.sleep(1.5)  # queues reach the spool within 50 ms; worker states are written once a second
    deadline = time.monotonic() + 90
    while proxy.status()["spool_depth"] and time.monotonic() < deadline:
        time.sleep(0.5)
    status = proxy.status()
    assert status["spool_depth"] == 0 and not any("spool full" in e for e in status["errors"])
    workers = status["workers"]
    print(
        "\ntwo workers: "
        + ", ".join(f"pid {w['pid']} wrote {w['records']} records, shipping={w['shipping']}" for w in workers)
    )
    assert all(w["records"] > 0 for w in workers), "one worker served no call"
    assert sum(1 for w in workers if w["shipping"]) == 1, "exactly one worker ships the shared spool"
    result = check_exactly_once(load)
    assert result["calls"] == len(answers) and not result["lost"]
    rows = SpendEvent.objects.filter(call_id__in=[c.call_id for c in load.calls])
    assert rows.count() == sum(w["records"] for w in workers)  # every record either worker wrote, once
    check_rollups_exact()


def test_each_call_has_one_row_per_attempt_number_starting_at_1(fleet):
    """Over everything the load and fault tests above stored: attempts numbered 1 (decided) and 2 (fallback)."""
    from billing.models import SpendEvent

    repeated = SpendEvent.objects.values("call_id", "attempt").annotate(n=Count("id")).filter(n__gt=1)
    calls = SpendEvent.objects.values("call_id").distinct().count()
    first = SpendEvent.objects.filter(attempt=1).values("call_id").distinct().count()
    TALLY["attempt-numbering anomalies (calls)"] = repeated.count() + (calls - first)
    assert calls > 0
    assert not repeated.exists(), (
        f"{repeated.count()} calls repeat an attempt number, e.g. {list(repeated[:2])}"
    )
    assert first == calls, f"{calls - first} calls have no attempt 1"


def test_fuzzed_bundles_are_refused_and_the_old_one_kept(fleet):
    """Pushes mutated bundles (valid content hash, so validation itself is exercised) to a live plugin."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from routing.devtools.harness import dev_signed, rehash
    from tests.reliability.test_hostile_input import EXAMPLES, junk

    proxy = fleet["proxies"][0]
    good = proxy.status()["applied_hash"]
    document = dev_signed(fleet["bundle"].document)  # as the control plane serves it
    refused = accepted = 0

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        section=st.sampled_from(["deployments", "policies", "keys", "shipping", "schema", "budgets"]),
        value=junk,
    )
    def push(section: str, value: Any) -> None:
        nonlocal refused, accepted
        status, body, _ = proxy.push_bundle(rehash(document, **{section: value}))
        assert status in (200, 400, 422), (section, value, status, body)
        if status == 200:  # a harmless mutation (e.g. an empty budget list): put the real one back
            accepted += 1
            assert proxy.push_bundle(document)[0] == 200
        else:
            refused += 1
            assert isinstance(body, dict) and body.get("errors"), body
        assert proxy.status()["applied_hash"] == good

    push()
    assert refused > 0
    status, _, _ = proxy.chat(fleet["keys"][0], "What is the capital of Canada?")
    assert status == 200, "the proxy stopped serving after the fuzzed pushes"


def test_no_feature_key_or_proxy_token_in_any_log(fleet):
    """Runs after the load and fault tests of this module: greps every log they produced."""
    logs = sorted(fleet["workdir"].rglob("*.log"))
    assert any("control-plane" in p.name for p in logs) and any("proxy-" in p.name for p in logs)
    secrets_ = [*fleet["keys"], *fleet["tokens"], "sk-fake-upstream"]
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in secrets_:
            assert secret not in text, f"{path.name} contains a secret starting {secret[:6]}"
