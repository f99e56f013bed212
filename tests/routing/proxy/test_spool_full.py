"""The spool's full policy through a real proxy with a tiny limit (issue 19 part 2: disk full on the spool).

The control plane is down (its port refuses), so every spend record waits in the proxy's spool, bounded
by the bundle's `shipping.max_spool_records` (100, the least a bundle may set). `drop_newest` refuses what
comes after the limit and keeps the backlog; `drop_oldest` deletes the oldest to admit new ones. The
heartbeat document (`/finops/v1/status`, what the proxy sends to the control plane) reports the depth and
"spool full: N spend records dropped (policy)"; once the control plane is back it gets exactly the kept
records, each once, and the heartbeat it receives says how many were dropped."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from routing.devtools.harness import ControlPlaneDouble, ProxyProcess, free_port, rehash
from tests.routing.proxy.conftest import PROXY_TOKEN, fleet_bundle

pytestmark = pytest.mark.proxy

LIMIT = 100  # the smallest max_spool_records a bundle may set
EXTRA = 15


def wait_for(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def _call(proxy: ProxyProcess, key: str, i: int) -> str:
    body = json.dumps(
        {"model": "auto", "messages": [{"role": "user", "content": f"spool full {i}"}]}
    ).encode()
    request = urllib.request.Request(
        proxy.url + "/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        assert response.status == 200
        return response.headers["x-litellm-call-id"]


def _bundle(upstreams: dict[str, Any], version: str, policy: str) -> dict[str, Any]:
    doc = fleet_bundle(upstreams, version=version)
    shipping = {"batch_size": 20, "interval_ms": 200, "max_spool_records": LIMIT, "spool_full_policy": policy}
    return rehash({k: v for k, v in doc.items() if k != "signature"}, shipping=shipping)


@pytest.fixture(scope="module")
def tiny_spool_proxy(upstreams, tmp_path_factory):
    double = ControlPlaneDouble(PROXY_TOKEN, port=free_port())  # not started: the control plane is down
    bundle = _bundle(upstreams, "full-1", "drop_newest")
    double.set_bundle(bundle)
    proxy = ProxyProcess(
        bundle,
        tmp_path_factory.mktemp("spool-full"),
        proxy_token=PROXY_TOKEN,
        control_plane_url=double.url,
        heartbeat_s=1.0,
    )
    proxy.start()
    try:
        yield proxy, double
    finally:
        proxy.stop()
        double.stop()


def _fill(proxy: ProxyProcess, n: int) -> list[str]:
    ids = [_call(proxy, "fk-spool", i) for i in range(n)]
    assert len(set(ids)) == n
    return ids


def _delivered(double: ControlPlaneDouble) -> set[str]:
    return {r["call_id"] for r in double.records_for(feature="spool")}


def test_drop_newest_keeps_the_backlog_and_reports_what_it_refused(tiny_spool_proxy):
    proxy, double = tiny_spool_proxy
    ids = _fill(proxy, LIMIT + EXTRA)
    assert wait_for(lambda: proxy.status()["spool_depth"] == LIMIT, 10), proxy.status()
    time.sleep(0.5)  # nothing further arrives
    status = proxy.status()
    assert status["spool_depth"] == LIMIT
    full = [e for e in status["errors"] if e.startswith("spool full")]
    assert full == [f"spool full: {EXTRA} spend records dropped (drop_newest)"], status["errors"]

    double.start()
    assert wait_for(lambda: len(_delivered(double)) >= LIMIT and proxy.status()["spool_depth"] == 0, 30)
    time.sleep(1.5)  # a duplicate would arrive within a shipping interval
    assert _delivered(double) == set(ids[:LIMIT]), "drop_newest must keep the first records, refuse the rest"
    assert double.duplicates == 0
    assert wait_for(lambda: any("spool full" in " ".join(h.get("errors", [])) for h in double.heartbeats), 10)
    last = [h for h in double.heartbeats if "spool full" in " ".join(h.get("errors", []))][-1]
    assert f"spool full: {EXTRA} spend records dropped (drop_newest)" in last["errors"]


def test_drop_oldest_admits_the_newest_and_counts_what_it_deleted(tiny_spool_proxy, upstreams):
    proxy, double = tiny_spool_proxy
    double.stop()
    bundle = _bundle(upstreams, "full-2", "drop_oldest")
    double.set_bundle(bundle)  # what a heartbeat pull would fetch once the control plane is back
    assert proxy.push_bundle(bundle)[0] == 200
    before = set(_delivered(double))
    ids = _fill(proxy, LIMIT + EXTRA)
    assert wait_for(lambda: proxy.status()["spool_depth"] == LIMIT, 10), proxy.status()
    time.sleep(0.5)
    status = proxy.status()
    assert status["spool_depth"] == LIMIT
    # the counter is the proxy's lifetime total: the first test's EXTRA plus this one's
    assert f"spool full: {2 * EXTRA} spend records dropped (drop_oldest)" in status["errors"], status[
        "errors"
    ]

    double.start()
    assert wait_for(
        lambda: len(_delivered(double) - before) >= LIMIT and proxy.status()["spool_depth"] == 0, 30
    )
    time.sleep(1.5)
    assert _delivered(double) - before == set(ids[-LIMIT:]), "drop_oldest must keep the newest records"
    assert double.duplicates == 0


# -- the disk itself full (a tiny tmpfs under the spool) ------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs for the spool, mounted for this test only (needs root, as in CI)."""
    import os
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs to fill (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        os.sync()


def test_disk_full_refuses_and_counts_keeps_what_is_on_disk_and_recovers(tiny_disk):
    import os

    from routing.proxy.control_plane import ControlPlaneClient
    from routing.proxy.shipper import SpendShipper
    from routing.proxy.spool import SpendSpool
    from tests.routing.proxy.test_spool_and_shipper import TOKEN, record

    double = ControlPlaneDouble(TOKEN)  # down: nothing leaves the spool while the disk fills
    spool = SpendSpool(tiny_disk / "spool.sqlite3")
    shipper = SpendShipper(spool, ControlPlaneClient(double.url, TOKEN, timeout_s=2), batch_size=50)
    stats = os.statvfs(tiny_disk)
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - 200_000))  # ~200 KB left

    sent, errors = 0, []
    for i in range(2000):
        shipper.enqueue(record(i))
        sent += 1
        if i % 20 == 19:
            try:
                shipper.write_queued()
            except Exception as exc:  # what the shipper thread catches and reports as last_error
                errors.append(f"{type(exc).__name__}: {exc}")
    kept = spool.depth()
    print(
        f"\ndisk full: {sent} records, {kept} kept on disk, {spool.dropped()} refused, {len(errors)} failed writes"
    )
    assert errors, "the disk never filled: the test did not test anything"
    assert 0 < kept < sent
    assert all("database or disk is full" in e for e in errors), errors[:3]  # the cause, not a rollback error
    assert spool.dropped() == sent - kept, "every record the full disk refused is counted"

    ballast.unlink()  # space again: the spool writes and ships as before
    shipper.enqueue(record(sent))
    assert shipper.write_queued() == 1
    double.start()
    try:
        shipper.ship_pending()
        assert len(double.records) == kept + 1 and double.duplicates == 0 and spool.depth() == 0
    finally:
        double.stop()
        spool.close()
