"""Background shipper: moves spend records from the request path to the spool, and the spool to the control plane.

Request handlers only `enqueue` (a lock-free queue put). One daemon thread writes queued records
to the SQLite spool in small transactions; before a caller gets an answer, the plugin awaits
`until_written` for that call's record, so an answer a client received is on disk even if the
proxy is SIGKILLed a millisecond later. A second daemon thread ships the spool's oldest records
in signed batches (a slow control plane never delays the writes); records leave the spool only
after a 2xx. A 2xx may list records the control plane
refused one by one (`rejected`: index, field, reason): only those move to dead letters, the rest
are delivered. Failures back off exponentially; a 400 (the body itself refused) dead-letters the
batch; a 413 splits it. Tallies of refused calls (`drain`) are spooled like records, once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from routing.proxy.control_plane import ControlPlaneClient, encode_batch_from_bodies
from routing.proxy.spool import SpendSpool, holder_name

log = logging.getLogger("finops.shipper")

MAX_BACKOFF_S = 30.0
WRITE_EVERY_S = 0.05  # how long a record nobody waits for may sit in memory before it is on disk
DRAIN_EVERY_S = 1.0  # how often refused-call tallies become counter records
PUBLISH_EVERY_S = 1.0  # how often this worker's state goes to the spool for the proxy's status
SHIP_LEASE_S = 30.0  # a shipping worker that stops renewing (killed) is replaced after this long


class SpendShipper:
    def __init__(
        self,
        spool: SpendSpool,
        client: ControlPlaneClient | None,
        *,
        batch_size: int = 200,
        interval_s: float = 1.0,
        drain: Callable[[], list[dict[str, Any]]] | None = None,
        publish: Callable[[], None] | None = None,
    ) -> None:
        self.spool = spool
        self.client = client
        self.batch_size = batch_size
        self.interval_s = interval_s
        self._queue: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()  # the writer: a caller waits for its record
        self._ship_wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._ship_thread: threading.Thread | None = None
        self._sequence = itertools.count(1)  # next() is atomic under the GIL: safe from any thread
        self.written_seq = 0  # every record enqueued up to this number has been through a spool write
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer at a time keeps written_seq in queue order
        self._backoff_s = 0.0
        self._next_ship_at = 0.0
        self.last_ship_at: datetime | None = None
        self.last_error = ""
        self.shipped = 0
        self.rejected = 0  # records the control plane refused one by one (now in dead letters)
        self._drain = drain
        self._next_drain_at = 0.0
        self._publish = publish
        self._next_publish_at = 0.0
        self.enqueued = 0  # records this worker put on its queue since it started
        self.holder = holder_name(uuid.uuid4().hex[:8])  # this worker, for the shipping lease
        self.is_shipping = False  # holds the spool's shipping lease

    # -- request path ------------------------------------------------------------------------
    def enqueue(self, record: dict[str, Any]) -> int:
        """Queue a record for the spool; return its sequence number for `until_written`."""
        self.enqueued += 1
        seq = next(self._sequence)
        self._queue.put((seq, record))
        return seq

    async def until_written(self, seq: int, timeout_s: float) -> bool:
        """Wait (without blocking the event loop) until record `seq` went through a spool write.

        True once written; False after `timeout_s` (the caller then answers anyway and says so). A
        write that failed (disk full) also ends the wait: the loss is counted in the spool's `dropped`.
        """
        if self.written_seq >= seq:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiters_lock:
            self._waiters.append((seq, loop, future))
        if self.written_seq >= seq:  # written between the check and the registration
            self._settle_waiters()
        self._wake.set()  # write now, not at the next 50 ms tick
        if self._thread is None:  # no writer thread (tests, benches): write in a worker thread
            await asyncio.to_thread(self.write_queued)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
            return True
        except TimeoutError:
            return False

    def _settle_waiters(self) -> None:
        with self._waiters_lock:
            done = [w for w in self._waiters if w[0] <= self.written_seq]
            self._waiters = [w for w in self._waiters if w[0] > self.written_seq]
        for _, loop, future in done:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

    # -- background thread -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_writer, name="finops-spool-writer", daemon=True)
            self._thread.start()
        if self._ship_thread is None:
            self._ship_thread = threading.Thread(target=self._run_shipper, name="finops-shipper", daemon=True)
            self._ship_thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._ship_wake.set()
        for thread in (self._thread, self._ship_thread):
            if thread is not None:
                thread.join(timeout_s)
        self.write_queued(force_drain=True)
        if self.is_shipping:
            self.spool.release_shipping(self.holder)
            self.is_shipping = False

    def ship_soon(self) -> None:
        """Ship on the next tick regardless of the interval (tests, shutdown, heartbeat nudges)."""
        self._next_ship_at = 0.0
        self._backoff_s = 0.0
        self._ship_wake.set()

    def _run_writer(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(WRITE_EVERY_S)
            self._wake.clear()
            try:
                self.write_queued()
                if self._publish is not None and time.monotonic() >= self._next_publish_at:
                    self._next_publish_at = time.monotonic() + PUBLISH_EVERY_S
                    self._publish()
            except Exception as exc:  # the writer must outlive any one bad tick
                self.last_error = f"spool writer: {type(exc).__name__}: {exc}"
                log.exception("finops spool write failed")
                time.sleep(0.1)

    def _run_shipper(self) -> None:
        while not self._stop.is_set():
            self._ship_wake.wait(max(0.01, min(1.0, self._next_ship_at - time.monotonic())))
            self._ship_wake.clear()
            if self._stop.is_set() or time.monotonic() < self._next_ship_at:
                continue
            try:
                self.ship_pending()
            except Exception as exc:  # the shipper must outlive any one bad tick
                self.last_error = f"shipper: {type(exc).__name__}: {exc}"
                log.exception("finops shipper tick failed")
                self._next_ship_at = time.monotonic() + 1.0

    def write_queued(self, *, force_drain: bool = False) -> int:
        """Write every queued record to the spool in one transaction; return how many were admitted."""
        with self._write_lock:
            rows: list[tuple[str, str]] = []
            if self._drain is not None and (force_drain or time.monotonic() >= self._next_drain_at):
                self._next_drain_at = time.monotonic() + DRAIN_EVERY_S
                for counter in self._drain():
                    self._queue.put((0, counter))
            last_seq = 0
            while True:
                try:
                    seq, record = self._queue.get_nowait()
                except queue.Empty:
                    break
                last_seq = max(last_seq, seq)
                rows.append(
                    (str(record["event_id"]), json.dumps(record, separators=(",", ":"), ensure_ascii=False))
                )
            try:
                return self.spool.append(rows) if rows else 0
            finally:  # written, or lost to a failed write (counted by the spool): either way nobody waits on
                if last_seq:
                    self.written_seq = max(self.written_seq, last_seq)
                    self._settle_waiters()

    def ship_pending(self) -> None:
        """Send batches until the spool is empty or the control plane stops accepting."""
        if self.client is None or not self.client.configured:
            self._next_ship_at = time.monotonic() + self.interval_s
            return
        while not self._stop.is_set():
            self.is_shipping = self.spool.claim_shipping(self.holder, SHIP_LEASE_S)
            if not self.is_shipping:
                break  # another worker of this proxy ships the spool
            batch = self.spool.peek(self.batch_size)
            if not batch:
                break
            if not self._ship(batch):
                self._backoff_s = min(MAX_BACKOFF_S, max(0.5, self._backoff_s * 2))
                self._next_ship_at = time.monotonic() + self._backoff_s
                return
            self._backoff_s = 0.0
            if len(batch) < self.batch_size:
                break
        self._next_ship_at = time.monotonic() + self.interval_s

    def _ship(self, batch: list[tuple[int, str]]) -> bool:
        """Ship one batch; True when every record in it was settled (delivered or dead-lettered)."""
        assert self.client is not None
        ids = [row_id for row_id, _ in batch]
        reply = self.client.post_spend(body=encode_batch_from_bodies([body for _, body in batch]))
        if 200 <= reply.status < 300:
            refused = _refused_rows(batch, reply.body)
            if refused:
                for row_id, reasons in refused.items():
                    self.spool.dead_letter([row_id], f"HTTP {reply.status} rejected: {reasons}"[:2000])
                self.rejected += len(refused)
                self.last_error = (
                    f"ingest refused {len(refused)} of {len(ids)} records one by one; moved to dead letters: "
                    f"{next(iter(refused.values()))[:300]}"
                )
            delivered = [row_id for row_id in ids if row_id not in refused]
            self.spool.delete(delivered)
            self.shipped += len(delivered)
            self.last_ship_at = datetime.now(UTC)
            if not refused:
                self.last_error = ""
            return True
        if reply.status == 413 and len(batch) > 1:
            half = len(batch) // 2
            return self._ship(batch[:half]) and self._ship(batch[half:])
        if reply.status in (400, 413):
            # malformed (or a single record too large): retrying would fail forever
            self.spool.dead_letter(ids, f"HTTP {reply.status}: {json.dumps(reply.body)[:1500]}")
            self.last_error = (
                f"ingest rejected {len(ids)} records with HTTP {reply.status}; moved to dead letters"
            )
            return True
        if reply.status == 401:
            self.last_error = (
                "ingest answered 401: check FINOPS_PROXY_TOKEN matches this proxy in the control plane"
            )
        elif reply.status == 0:
            self.last_error = f"control plane unreachable: {reply.error}"
        else:
            self.last_error = f"ingest answered HTTP {reply.status}"
        return False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _refused_rows(batch: list[tuple[int, str]], body: Any) -> dict[int, str]:
    """Spool row ids the control plane refused one by one (`rejected[].index` into the batch), with why."""
    rejected = body.get("rejected") if isinstance(body, dict) else None
    if not isinstance(rejected, list):
        return {}
    refused: dict[int, str] = {}
    for entry in rejected:
        if not isinstance(entry, dict):
            continue
        index = entry.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(batch):
            continue
        row_id = batch[index][0]
        reason = f"{entry.get('field', '')}: {entry.get('reason', '')}"
        refused[row_id] = f"{refused[row_id]}; {reason}" if row_id in refused else reason
    return refused
