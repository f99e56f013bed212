"""Durable local spool of spend records: a SQLite file that outlives proxy restarts and control-plane outages.

Records wait here until the control plane acknowledges them with a 2xx. A batch the control
plane rejects as malformed (400) moves to `dead_letters` so it is never retried forever. The
spool is bounded: when full, `drop_oldest` deletes the oldest waiting records to admit new ones,
`drop_newest` refuses new ones; either way the count is kept in `dropped` and reported. When the disk
itself is full, SQLite refuses the write: those records are lost too, counted in `dropped` (in memory
only, as the disk is full) and the shipper's error names the cause.
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
"""


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
        self._lost_disk_full = 0  # records refused because the disk was full (since this process started)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL + NORMAL survives a process crash, fsync per checkpoint
        self._db.executescript(_SCHEMA)
        self._depth = self._count("spool")

    def _count(self, table: str) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 - fixed names

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
                room = self.max_records - self._depth
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
                        dropped = min(excess, self._depth)
                        self._depth -= dropped
                        rows = rows[-self.max_records :]
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO spool(event_id, body, created_at) VALUES (?, ?, ?)",
                    [(event_id, body, now) for event_id, body in rows],
                )
                admitted = self._db.total_changes - before
                if dropped:
                    self._bump("dropped", dropped)
                self._db.execute("COMMIT")
            except BaseException as exc:
                # SQLite has already rolled back after SQLITE_FULL: a second ROLLBACK would raise "no
                # transaction is active" and hide the cause ("database or disk is full") from the heartbeat
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    self._lost_disk_full += len(rows)  # not on disk (it is full): counted in memory
                raise
            self._depth += admitted
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
            self._depth = self._count("spool")

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
            self._depth = self._count("spool")

    def depth(self) -> int:
        return self._depth

    def dead_letter_count(self) -> int:
        with self._lock:
            return self._count("dead_letters")

    def dropped(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
            return (int(row[0]) if row else 0) + self._lost_disk_full

    def close(self) -> None:
        with self._lock:
            self._db.close()
