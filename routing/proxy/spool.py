"""Durable local spool of spend records: a SQLite file that outlives proxy restarts and control-plane outages.

Records wait here until the control plane acknowledges them with a 2xx. A batch the control
plane rejects as malformed (400) moves to `dead_letters` so it is never retried forever. The
spool is bounded: when full, `drop_oldest` deletes the oldest waiting records to admit new ones,
`drop_newest` refuses new ones; either way the count is kept in `dropped` and reported.

Every worker process of a proxy (`--num_workers N`) opens the same file. So nothing a decision depends
on lives in one process's memory: the depth is a counter in the file kept exact by triggers (a depth
counted per process went stale when another worker shipped and deleted, and the bound then deleted
records that were still waiting), and one worker at a time ships, under a lease row, so the others
do not send the same batches again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

SPOOL_FILE = "spend-spool.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    error TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    holder TEXT PRIMARY KEY,
    updated_at REAL NOT NULL,
    report TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS spool_depth_up AFTER INSERT ON spool BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'depth';
END;
CREATE TRIGGER IF NOT EXISTS spool_depth_down AFTER DELETE ON spool BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'depth';
END;
"""
SHIPPER_LEASE = "shipper"
WORKER_FORGOTTEN_S = 3600.0  # reports of workers gone this long are deleted


class SpendSpool:
    """A bounded FIFO of serialized spend records; safe to share between threads."""

    def __init__(
        self, path: str | Path, *, max_records: int = 100_000, full_policy: str = "drop_oldest"
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_records = max_records
        self.full_policy = full_policy
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL + NORMAL survives a process crash, fsync per checkpoint
        self._db.executescript(_SCHEMA)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:  # recount on open: the counter is exact from here on, whatever the file went through
                self._db.execute(
                    "INSERT INTO counters(name, value) VALUES ('depth', (SELECT COUNT(*) FROM spool)) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value"
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _count(self, table: str) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 - fixed names

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )

    def append(self, records: Iterable[tuple[str, str]]) -> int:
        """Store `(event_id, json body)` pairs; return how many were admitted."""
        rows = list(records)
        if not rows:
            return 0
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                depth = self._counter("depth")  # every worker's records, not just this process's
                room = self.max_records - depth
                dropped = 0
                if len(rows) > room:
                    if self.full_policy == "drop_newest":
                        dropped = len(rows) - max(0, room)
                        rows = rows[: max(0, room)]
                    else:
                        excess = len(rows) - room
                        self._db.execute(
                            "DELETE FROM spool WHERE id IN (SELECT id FROM spool ORDER BY id LIMIT ?)",
                            (excess,),
                        )
                        dropped = min(excess, depth)
                        rows = rows[-self.max_records :]
                admitted = self._db.executemany(  # rows inserted; the depth trigger's updates not counted
                    "INSERT OR IGNORE INTO spool(event_id, body, created_at) VALUES (?, ?, ?)",
                    [(event_id, body, now) for event_id, body in rows],
                ).rowcount
                if dropped:
                    self._bump("dropped", dropped)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return admitted

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest `limit` waiting records as `(row id, body)`."""
        with self._lock:
            return list(self._db.execute("SELECT id, body FROM spool ORDER BY id LIMIT ?", (limit,)))

    def delete(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")

    def dead_letter(self, ids: list[int], error: str) -> None:
        """Move records the control plane rejected as malformed out of the shipping queue."""
        if not ids:
            return
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for row_id in ids:
                self._db.execute(
                    "INSERT INTO dead_letters(event_id, body, error, created_at) "
                    "SELECT event_id, body, ?, ? FROM spool WHERE id = ?",
                    (error[:2000], now, row_id),
                )
                self._db.execute("DELETE FROM spool WHERE id = ?", (row_id,))
            self._db.execute("COMMIT")

    def depth(self) -> int:
        """Records waiting, written by any worker of this proxy."""
        with self._lock:
            return self._counter("depth")

    def claim_shipping(self, holder: str, lease_s: float) -> bool:
        """Take or renew the right to ship; True while `holder` has it (a dead holder's lease lapses)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO leases(name, holder, until) VALUES (?, '', 0)", (SHIPPER_LEASE,)
                )
                claimed = self._db.execute(
                    "UPDATE leases SET holder = ?, until = ? WHERE name = ? AND (holder = ? OR until < ?)",
                    (holder, now + lease_s, SHIPPER_LEASE, holder, now),
                ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return claimed == 1

    def release_shipping(self, holder: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE leases SET until = 0 WHERE name = ? AND holder = ?", (SHIPPER_LEASE, holder)
            )

    def put_worker_report(self, holder: str, report: str) -> None:
        """This worker's state (JSON), for whichever worker reports the proxy's status."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO workers(holder, updated_at, report) VALUES (?, ?, ?) "
                "ON CONFLICT(holder) DO UPDATE SET updated_at = excluded.updated_at, report = excluded.report",
                (holder, now, report),
            )
            self._db.execute("DELETE FROM workers WHERE updated_at < ?", (now - WORKER_FORGOTTEN_S,))

    def worker_reports(self, max_age_s: float) -> dict[str, str]:
        """Reports of the workers heard from in the last `max_age_s`, by holder."""
        with self._lock:
            return dict(
                self._db.execute(
                    "SELECT holder, report FROM workers WHERE updated_at >= ?", (time.time() - max_age_s,)
                )
            )

    def dead_letter_count(self) -> int:
        with self._lock:
            return self._count("dead_letters")

    def dropped(self) -> int:
        with self._lock:
            return self._counter("dropped")

    def close(self) -> None:
        with self._lock:
            self._db.close()
