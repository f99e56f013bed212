"""Monthly range partitions of billing_spendevent on Postgres: create ahead, create on demand, drop by retention.

Partition `billing_spendevent_pYYYYMM` holds start_time in [first of month, first of next month) UTC.
Every function here is a no-op on SQLite, where the table is a plain one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.utils import timezone

from controlplane.env import env_int

TABLE = "billing_spendevent"
_NAME = re.compile(rf"^{TABLE}_p(\d{{4}})(\d{{2}})$")
_known: set[str] = set()  # partitions this process has seen committed (monotonic until a drop)


def raw_retention_months() -> int:
    """FINOPS_RAW_RETENTION_MONTHS (setting or environment): raw events older than this many months are dropped."""
    value = getattr(settings, "FINOPS_RAW_RETENTION_MONTHS", None)
    return int(value) if value is not None else env_int("FINOPS_RAW_RETENTION_MONTHS", 13)


def month_start(moment: datetime, offset: int = 0) -> datetime:
    """First instant (UTC) of the month `offset` months after the one holding `moment`."""
    moment = moment.astimezone(UTC)
    index = moment.year * 12 + moment.month - 1 + offset
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def retention_cutoff(now: datetime | None = None) -> datetime:
    """Oldest start_time still kept raw: the first of the month N months before this one."""
    return month_start(now or timezone.now(), -raw_retention_months())


def partition_name(month: datetime) -> str:
    return f"{TABLE}_p{month:%Y%m}"


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def existing_partitions() -> dict[str, datetime]:
    """Partition name → its month, read from the catalog."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    out = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            out[name] = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
    return out


def _create(month: datetime) -> None:
    name, upper = partition_name(month), month_start(month, 1)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{TABLE}" '
                f"FOR VALUES FROM ('{month.isoformat()}') TO ('{upper.isoformat()}')"
            )
    except ProgrammingError:
        # Another process created it between our check and our CREATE (catalog race): fine if it now exists.
        if name not in existing_partitions():
            raise


def partitions_ensure(months: Iterable[datetime]) -> list[str]:
    """Create the monthly partitions holding these moments if missing; returns the names created.

    Call outside the ingest transaction: creating a partition locks the parent table briefly.
    """
    if not is_partitioned():
        return []
    seen: set[tuple[int, int]] = set()
    wanted: dict[str, datetime] = {}
    for moment in months:  # often a whole batch's start times: a few months among thousands of moments
        utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
        if (utc.year, utc.month) not in seen:
            seen.add((utc.year, utc.month))
            wanted[partition_name(month_start(utc))] = month_start(utc)
    missing = [name for name in wanted if name not in _known]
    if not missing:
        return []
    present = existing_partitions()
    created = []
    for name in missing:
        if name not in present:
            _create(wanted[name])
            created.append(name)
    if not connection.in_atomic_block:
        # remembered only when committed: a rolled-back CREATE must not leave a partition we think exists
        _known.update(present)
        _known.update(missing)
    return created


def partitions_maintain(*, now: datetime | None = None, ahead: int = 3) -> dict[str, list[str]]:
    """Create partitions for this month and `ahead` more; drop those entirely older than the retention cutoff."""
    if not is_partitioned():
        return {"created": [], "dropped": []}
    now = now or timezone.now()
    created = partitions_ensure(month_start(now, k) for k in range(ahead + 1))
    cutoff = retention_cutoff(now)
    dropped = []
    for name, month in sorted(existing_partitions().items()):
        if month_start(month, 1) <= cutoff:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP TABLE IF EXISTS "{name}"')
            _known.discard(name)
            dropped.append(name)
    return {"created": created, "dropped": dropped}
