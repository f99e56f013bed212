"""Spool durability and bounds; the shipper's signed batches, retries, splits and dead letters."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from routing.devtools.harness import ControlPlaneDouble
from routing.engine import signing
from routing.proxy.control_plane import ControlPlaneClient
from routing.proxy.shipper import SpendShipper
from routing.proxy.spool import SpendSpool

TOKEN = "proxy-token-unit"


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{i:032x}",
        "call_id": f"call-{i}",
        "attempt": 1,
        "team": "team-a",
        "feature": "feat",
        "start_time": "2026-11-27T10:00:00+00:00",
        "end_time": "2026-11-27T10:00:01+00:00",
        "route": "small",
        "model_group": "slm",
        "deployment": "openai/llama",
        "status": "success",
        "schema": 1,
        **extra,
    }


def rows(n: int, start: int = 0) -> list[tuple[str, str]]:
    return [(record(i)["event_id"], json.dumps(record(i))) for i in range(start, start + n)]


def test_spool_survives_reopening(tmp_path: Path) -> None:
    spool = SpendSpool(tmp_path / "s.sqlite3")
    assert spool.append(rows(5)) == 5
    spool.close()
    reopened = SpendSpool(tmp_path / "s.sqlite3")
    assert reopened.depth() == 5
    assert [json.loads(body)["call_id"] for _, body in reopened.peek(2)] == ["call-0", "call-1"]


def test_spool_ignores_a_repeated_event_id(tmp_path: Path) -> None:
    spool = SpendSpool(tmp_path / "s.sqlite3")
    spool.append(rows(3))
    assert spool.append(rows(3)) == 0 and spool.depth() == 3


def test_full_spool_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = SpendSpool(tmp_path / "s.sqlite3", max_records=10)
    spool.append(rows(8))
    spool.append(rows(5, start=8))
    assert spool.depth() == 10 and spool.dropped() == 3
    assert json.loads(spool.peek(1)[0][1])["call_id"] == "call-3"


def test_full_spool_drop_newest_keeps_the_backlog(tmp_path: Path) -> None:
    spool = SpendSpool(tmp_path / "s.sqlite3", max_records=10, full_policy="drop_newest")
    spool.append(rows(8))
    assert spool.append(rows(5, start=8)) == 2
    assert spool.dropped() == 3 and json.loads(spool.peek(1)[0][1])["call_id"] == "call-0"


def test_workers_sharing_a_spool_keep_every_record_that_fits(tmp_path: Path) -> None:
    """Two workers of one proxy open one spool file: one writes, the other ships and deletes.

    Each worker used to count the depth in its own memory; the writer's count only grew, and once it
    passed the bound the writer deleted "oldest" records that were still waiting to be shipped.
    """
    writer = SpendSpool(tmp_path / "s.sqlite3", max_records=10)
    shipper = SpendSpool(tmp_path / "s.sqlite3", max_records=10)
    delivered: list[str] = []
    for round_ in range(6):  # 24 records through a spool bounded at 10, never more than 4 waiting
        assert writer.append(rows(4, start=round_ * 4)) == 4
        batch = shipper.peek(10)
        delivered += [json.loads(body)["call_id"] for _, body in batch]
        shipper.delete([row_id for row_id, _ in batch])
    assert writer.append(rows(4, start=24)) == 4
    assert writer.depth() == shipper.depth() == 4  # both see every worker's records
    assert writer.dropped() == 0
    delivered += [json.loads(body)["call_id"] for _, body in shipper.peek(10)]
    assert delivered == [f"call-{i}" for i in range(28)]


def test_the_bound_counts_every_workers_records(tmp_path: Path) -> None:
    first = SpendSpool(tmp_path / "s.sqlite3", max_records=10)
    second = SpendSpool(tmp_path / "s.sqlite3", max_records=10)
    first.append(rows(6))
    second.append(rows(6, start=6))
    assert first.depth() == second.depth() == 10 and first.dropped() == 2
    assert json.loads(first.peek(1)[0][1])["call_id"] == "call-2"


def test_one_worker_ships_a_shared_spool_at_a_time(tmp_path: Path) -> None:
    double = ControlPlaneDouble(TOKEN).start()
    try:
        first, second = make_shipper(tmp_path, double.url), make_shipper(tmp_path, double.url)
        for i in range(15):
            (first if i % 2 else second).enqueue(record(i))
        first.write_queued()
        second.write_queued()
        first.ship_pending()
        second.ship_pending()  # the first holds the lease: nothing is sent twice
        assert first.is_shipping and not second.is_shipping
        assert len(double.records) == 15 and double.duplicates == 0 and first.spool.depth() == 0
        second.enqueue(record(15))
        second.write_queued()
        first.stop()  # releases the lease: the other worker takes over at once
        second.ship_pending()
        assert second.is_shipping and len(double.records) == 16 and double.duplicates == 0
    finally:
        double.stop()


def test_signature_covers_timestamp_and_body() -> None:
    key = signing.signing_key(TOKEN)
    body = b'{"records":[]}'
    signature = signing.sign(key, "1700000000", body)
    assert signing.verify(key, "1700000000", body, signature)
    assert not signing.verify(key, "1700000001", body, signature)
    assert not signing.verify(key, "1700000000", body + b" ", signature)


def make_shipper(tmp_path: Path, url: str, **kwargs: Any) -> SpendShipper:
    spool = SpendSpool(tmp_path / "s.sqlite3")
    return SpendShipper(
        spool, ControlPlaneClient(url, TOKEN, timeout_s=2), batch_size=kwargs.get("batch_size", 10)
    )


def test_shipper_delivers_signed_batches_and_empties_the_spool(tmp_path: Path) -> None:
    double = ControlPlaneDouble(TOKEN).start()
    try:
        shipper = make_shipper(tmp_path, double.url)
        for i in range(25):
            shipper.enqueue(record(i))
        shipper.write_queued()
        shipper.ship_pending()
        assert len(double.records) == 25 and double.batches == [10, 10, 5]
        assert shipper.spool.depth() == 0 and shipper.last_ship_at is not None
    finally:
        double.stop()


def test_shipper_keeps_records_while_the_control_plane_is_down_then_delivers_once(tmp_path: Path) -> None:
    double = ControlPlaneDouble(TOKEN)  # not started: connection refused
    shipper = make_shipper(tmp_path, double.url)
    for i in range(12):
        shipper.enqueue(record(i))
    shipper.write_queued()
    shipper.ship_pending()
    assert shipper.spool.depth() == 12 and "unreachable" in shipper.last_error
    double.start()
    try:
        shipper.ship_pending()
        assert len(double.records) == 12 and double.duplicates == 0 and shipper.spool.depth() == 0
    finally:
        double.stop()


def test_413_splits_the_batch(tmp_path: Path) -> None:
    double = ControlPlaneDouble(TOKEN).start()
    double.max_batch_records = 3
    try:
        shipper = make_shipper(tmp_path, double.url)
        for i in range(10):
            shipper.enqueue(record(i))
        shipper.write_queued()
        shipper.ship_pending()
        assert len(double.records) == 10 and max(double.batches) <= 3
    finally:
        double.stop()


def test_400_moves_the_batch_to_dead_letters(tmp_path: Path) -> None:
    double = ControlPlaneDouble(TOKEN).start()
    try:
        shipper = make_shipper(tmp_path, double.url)
        shipper.enqueue(record(1, attempt=0))  # invalid: attempts start at 1
        shipper.write_queued()
        shipper.ship_pending()
        assert shipper.spool.depth() == 0 and shipper.spool.dead_letter_count() == 1
        assert "dead letters" in shipper.last_error
        shipper.enqueue(record(2))
        shipper.write_queued()
        shipper.ship_pending()
        assert list(double.records) == [record(2)["event_id"]]
    finally:
        double.stop()


def test_wrong_token_is_refused_and_kept(tmp_path: Path) -> None:
    double = ControlPlaneDouble("another-token").start()
    try:
        shipper = make_shipper(tmp_path, double.url)
        shipper.enqueue(record(1))
        shipper.write_queued()
        shipper.ship_pending()
        assert shipper.spool.depth() == 1 and "401" in shipper.last_error
    finally:
        double.stop()


@pytest.mark.realclock
def test_background_thread_ships_without_being_asked(tmp_path: Path) -> None:
    double = ControlPlaneDouble(TOKEN).start()
    shipper = make_shipper(tmp_path, double.url)
    shipper.interval_s = 0.05
    shipper.start()
    try:
        started = time.perf_counter()
        for i in range(5):
            shipper.enqueue(record(i))
        assert (time.perf_counter() - started) < 0.01  # enqueue never waits on disk or network
        deadline = time.monotonic() + 5
        while len(double.records) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(double.records) == 5
    finally:
        shipper.stop()
        double.stop()


def test_until_written_returns_once_the_record_is_in_the_spool_file(tmp_path: Path) -> None:
    spool = SpendSpool(tmp_path / "spool.sqlite3")
    shipper = SpendShipper(spool, None)  # nobody ships: the spool keeps what was written
    shipper.start()
    try:

        async def answer() -> tuple[bool, int]:
            seqs = [shipper.enqueue(record(i)) for i in range(3)]
            written = await shipper.until_written(seqs[-1], 5.0)
            reader = SpendSpool(tmp_path / "spool.sqlite3")  # another connection: the file, not memory
            try:
                return written, reader.depth()
            finally:
                reader.close()

        assert asyncio.run(answer()) == (True, 3)
    finally:
        shipper.stop()


def test_until_written_gives_up_after_its_timeout_and_later_writes_still_land(tmp_path: Path) -> None:
    spool = SpendSpool(tmp_path / "spool.sqlite3")
    shipper = SpendShipper(spool, None)
    shipper.start()
    try:

        async def answer() -> bool:
            seq = shipper.enqueue(record(1))
            return await shipper.until_written(seq, 0.2)

        with shipper._write_lock:  # a stalled disk: the writer cannot write
            assert asyncio.run(answer()) is False
        assert asyncio.run(shipper.until_written(shipper.enqueue(record(2)), 5.0)) is True
        assert spool.depth() == 2
    finally:
        shipper.stop()


def test_only_the_records_ingest_refuses_are_dead_lettered(tmp_path: Path) -> None:
    """A 129-256 character call id (LiteLLM allows it, the schema does not) costs that record, not the batch."""
    double = ControlPlaneDouble(TOKEN).start()
    try:
        shipper = make_shipper(tmp_path, double.url)
        bad = {3: {"call_id": "c" * 200}, 7: {"feature": "Not A Slug"}}
        for i in range(10):
            shipper.enqueue(record(i, **bad.get(i, {})))
        shipper.write_queued()
        shipper.ship_pending()
        assert shipper.spool.depth() == 0 and shipper.spool.dead_letter_count() == 2
        assert sorted(double.records) == sorted(record(i)["event_id"] for i in range(10) if i not in bad)
        assert shipper.shipped == 8 and shipper.rejected == 2
        assert "refused 2 of 10" in shipper.last_error and "call_id" in shipper.last_error
    finally:
        double.stop()


def test_refused_call_tallies_are_shipped_as_counter_records(tmp_path: Path) -> None:
    from routing.engine.bundle import FeatureKey
    from routing.proxy.blocked import BlockedCalls

    double = ControlPlaneDouble(TOKEN).start()
    try:
        blocked = BlockedCalls()
        spool = SpendSpool(tmp_path / "spool.sqlite3")
        client = ControlPlaneClient(double.url, TOKEN, timeout_s=5.0)
        shipper = SpendShipper(spool, client, batch_size=50, interval_s=0.1, drain=blocked.drain)
        key = FeatureKey("0" * 64, "team-a", "feat", None, True)
        for _ in range(250):
            blocked.count(key, "revoked")
        shipper.write_queued(force_drain=True)
        shipper.ship_pending()
        (counter,) = double.blocked_for(feature="feat")
        assert (counter["reason"], counter["count"]) == ("revoked", 250)
        assert spool.depth() == 0 and spool.dead_letter_count() == 0
    finally:
        double.stop()


def test_a_lease_held_by_a_process_that_is_gone_is_taken_at_once(tmp_path: Path) -> None:
    """A restarted proxy ships at once instead of waiting out the dead worker's lease."""
    import subprocess
    import sys

    from routing.proxy.spool import holder_name, process_start

    spool = SpendSpool(tmp_path / "s.sqlite3")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        alive = f"{child.pid}-{process_start(child.pid)}-old"
        assert spool.claim_shipping(alive, 30.0)
        assert not spool.claim_shipping(holder_name("new"), 30.0)  # its holder still runs: the lease holds
    finally:
        child.kill()
        child.wait()
    assert spool.claim_shipping(holder_name("new"), 30.0)  # the holder is gone: taken at once
    # a holder that had this very pid before (a container restart reuses pids) is gone too
    reused = f"{os.getpid()}-1-previous"
    spool.release_shipping(holder_name("new"))
    assert spool.claim_shipping(reused, 30.0)
    assert spool.claim_shipping(holder_name("newer"), 30.0)
