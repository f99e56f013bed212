"""Spend ingestion: authenticate a proxy's signed batch, validate it whole, store each attempt once, roll it up.

Exactly once (docs/spend.md): the proxy re-sends until it gets a 2xx (at least once); here each
record is inserted at most once thanks to the unique key (proxy, event_id, start_time) and
`ON CONFLICT DO NOTHING`, and the rollups are incremented in the same transaction by exactly the
rows that insert returned, so the raw table and the rollups never disagree.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from billing import partitions, rollups, signals
from billing.models import BlockedCallCount, Budget, BudgetAction, IngestBatch, SpendEvent
from billing.synthetic import synthetic_records
from billing.tasks import spend_batch_mirror
from controlplane.env import env_int
from controlplane.models import Feature, Team
from routing.engine import signing
from routing.engine.spend import BlockedCount, FieldError, ParsedBatch, SpendRecord, parse_spend_items
from routing.engine.spend_decode import decode_spend_batch
from routing.models import Proxy

try:  # orjson comes with the proxy extra and parses a 500-record batch several times faster
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

log = logging.getLogger(__name__)

STAGE = "billing_spend_incoming"  # per-connection TEMP table, emptied at each commit
# The stored row of a spend record. Its columns are SpendEvent's; what each holds comes from the SpendRecord
# dataclass (routing/engine/spend.py) except for the columns ingest fills in itself (INGEST_COLUMNS). The
# record's slugs and public codes are not stored: ingest resolves them to team_id and feature_id.
INGEST_COLUMNS = ("batch_id", "proxy_id", "team_id", "feature_id", "latency_ms")
RECORD_ONLY_FIELDS = ("team", "feature", "team_code", "feature_code")
_MODEL_COLUMNS = [f.attname for f in SpendEvent._meta.concrete_fields if not f.primary_key]
RECORD_COLUMNS = tuple(f.name for f in dataclass_fields(SpendRecord) if f.name in _MODEL_COLUMNS)
EVENT_COLUMNS = [*INGEST_COLUMNS, *RECORD_COLUMNS]
# Postgres types of EVENT_COLUMNS for binary COPY, from each model field's type (a foreign key: its target's).
_COPY_TYPES = {
    "BigAutoField": "int8",
    "BigIntegerField": "int8",
    "IntegerField": "int4",
    "PositiveIntegerField": "int4",
    "SmallIntegerField": "int2",
    "PositiveSmallIntegerField": "int2",
    "CharField": "varchar",
    "DateTimeField": "timestamptz",
    "DecimalField": "numeric",
    "BooleanField": "bool",
    "FloatField": "float8",
    "JSONField": "jsonb",
}


def _copy_type(column: str) -> str:
    field = next(f for f in SpendEvent._meta.concrete_fields if f.attname == column)
    return _COPY_TYPES[(field.target_field if field.is_relation else field).get_internal_type()]


EVENT_TYPES = [_copy_type(column) for column in EVENT_COLUMNS]
_record_values = attrgetter(*RECORD_COLUMNS)  # one C call reads every stored field of a record
_PROXY, _EVENT_ID, _START = (EVENT_COLUMNS.index(c) for c in ("proxy_id", "event_id", "start_time"))
FUTURE_TOLERANCE = timedelta(days=1)


def _setting(name: str, default: int) -> int:
    value = getattr(settings, name, None)
    return int(value) if value is not None else env_int(name, default)


def ingest_limits() -> dict[str, int]:
    """Size limits and clock tolerance of the ingest endpoint (settings or environment variables)."""
    return {
        "max_bytes": _setting("FINOPS_INGEST_MAX_BYTES", 2_000_000),
        "max_records": _setting("FINOPS_INGEST_MAX_RECORDS", 5000),
        "clock_skew_s": _setting("FINOPS_INGEST_CLOCK_SKEW_S", 300),
    }


class IngestRejected(Exception):
    """A batch refused whole; `status` is the HTTP answer, `errors` say which field and how to fix it."""

    def __init__(self, status: int, errors: list[FieldError]) -> None:
        super().__init__(errors[0].message if errors else str(status))
        self.status = status
        self.errors = errors

    @classmethod
    def one(cls, status: int, field: str, message: str) -> IngestRejected:
        return cls(status, [FieldError(field, message)])


@dataclass(frozen=True)
class IngestResult:
    batch_id: int | None
    accepted: int
    duplicates: int
    rejected: tuple[FieldError, ...] = ()  # records refused one by one; the rest of the batch is stored
    blocked_accepted: int = 0  # counter records of refused calls

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [e.to_rejection() for e in self.rejected],
            "blocked_accepted": self.blocked_accepted,
        }


def proxy_authenticate(
    *, authorization: str, timestamp: str, signature: str, body: bytes, now: float
) -> Proxy:
    """The proxy that signed this request, or IngestRejected(401) saying what is wrong."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise IngestRejected.one(
            401, "Authorization", "missing proxy token: send 'Authorization: Bearer <proxy token>'"
        )
    proxy = Proxy.objects.filter(token_hash=signing.token_hash(token.strip())).first()
    if proxy is None:
        raise IngestRejected.one(
            401, "Authorization", "unknown proxy token: register the proxy in the fleet and use its token"
        )
    if not proxy.is_active:
        raise IngestRejected.one(401, "Authorization", f"proxy {proxy.name!r} is deactivated in the fleet")
    skew = ingest_limits()["clock_skew_s"]
    # int() accepts Unicode digits and signing needs ASCII: only plain ASCII digits get this far
    if not isinstance(timestamp, str) or not (timestamp.isascii() and timestamp.isdigit()):
        raise IngestRejected.one(
            401,
            signing.TIMESTAMP_HEADER,
            "missing or not an integer: send the unix time in seconds as ASCII digits",
        )
    sent = int(timestamp)
    if sent < now - skew:
        raise IngestRejected.one(
            401,
            signing.TIMESTAMP_HEADER,
            f"stale timestamp: {int(now - sent)} s old, at most {skew} s allowed (replay, or the proxy clock is behind)",
        )
    if sent > now + skew:
        raise IngestRejected.one(
            401,
            signing.TIMESTAMP_HEADER,
            f"timestamp is {int(sent - now)} s in the future, at most {skew} s allowed: fix the proxy clock",
        )
    if not (signature or "").isascii() or not signing.verify(proxy.signing_key, timestamp, body, signature):
        raise IngestRejected.one(
            401,
            signing.SIGNATURE_HEADER,
            "bad signature: sign '<timestamp>.<raw body>' with HMAC-SHA256 of the proxy's signing key",
        )
    return proxy


def spend_batch_parse(*, body: bytes) -> ParsedBatch:
    """Decode a batch body and validate each record on its own.

    Raises IngestRejected only for problems of the body itself (400 not JSON or not a batch, 413 too many
    records); a bad record is listed in the result's `rejected` and the others go on.
    """
    limits = ingest_limits()
    fast = decode_spend_batch(body, max_records=limits["max_records"])
    if (
        fast is not None
    ):  # every record valid: the compiled decoder built them (routing/engine/spend_decode.py)
        return fast
    try:
        raw: Any = _loads(body)
    except ValueError as exc:
        try:  # NaN/Infinity (Python's json writes them): the record holding one is refused, not the batch
            raw = json.loads(body)
        except ValueError:
            raise IngestRejected.one(400, "body", f"is not valid JSON: {exc}") from None
    items = raw.get("records") if isinstance(raw, dict) else None
    if isinstance(items, list) and len(items) > limits["max_records"]:
        raise IngestRejected.one(
            413,
            "records",
            f"holds {len(items)} records: send at most {limits['max_records']} a batch",
        )
    parsed, errors = parse_spend_items(raw, max_records=limits["max_records"])
    if errors:
        raise IngestRejected(400, errors)
    return parsed


SLUG_CACHE_S = 30.0
_slug_cache: dict[Any, tuple[float, dict[str, Any]]] = {}


def slug_cache_clear(**_: Any) -> None:
    """Forget cached slug → id maps (connected to Team/Feature saves and deletes in apps.py)."""
    _slug_cache.clear()
    _keyed_features.clear()


def _cached(kind: Any, wanted: set[str], load: Any) -> dict[str, Any]:
    """Values for `wanted` names, cached per process for SLUG_CACHE_S; a name not in the cache is always looked up."""
    at, known = _slug_cache.get(kind, (0.0, {}))
    if time.monotonic() - at > SLUG_CACHE_S:
        at, known = time.monotonic(), {}
    missing = wanted - known.keys()
    if missing:
        known = {**known, **load(missing)}
    _slug_cache[kind] = (at, known)
    return known


def _slug_ids(model: type[Team] | type[Feature], slugs: set[str]) -> dict[str, int]:
    return _cached(model, slugs, lambda m: dict(model.objects.filter(slug__in=m).values_list("slug", "id")))


def _team_codes(codes: set[str]) -> dict[str, int]:
    return _cached(
        ("team", "code"),
        codes,
        lambda m: {str(c): i for c, i in Team.objects.filter(code__in=m).values_list("code", "id")},
    )


def _features(field: str, names: set[str]) -> dict[str, tuple[int, int]]:
    """Feature (id, team id) by slug or by public code."""
    return _cached(
        ("feature", field),
        names,
        lambda m: {
            str(name): (pk, team_id)
            for name, pk, team_id in Feature.objects.filter(**{f"{field}__in": m}).values_list(
                field, "id", "team_id"
            )
        },
    )


_keyed_features: set[int] = (
    set()
)  # features known to have been issued a key (keys are revoked, never deleted)


def _features_with_keys(feature_ids: set[int]) -> set[int]:
    """Which of these features were ever issued a feature key, i.e. appeared in a bundle proxies serve."""
    missing = feature_ids - _keyed_features
    if missing:  # only positive answers are cached: a key issued a second ago must count at once
        _keyed_features.update(
            Feature.objects.filter(id__in=missing, keys__isnull=False).values_list("id", flat=True).distinct()
        )
    return feature_ids & _keyed_features


@dataclass(frozen=True)
class Attribution:
    """A record's team and feature as stored ids, once checked against each other."""

    team_id: int
    feature_id: int


def _attribute(
    items: Sequence[tuple[int, Any]], *, now: datetime, moment: Any, proxy: Proxy | None = None
) -> tuple[list[tuple[int, Any, Attribution]], list[FieldError]]:
    """Resolve each record's team and feature (public code first, slug otherwise) and check its time.

    A record is refused on its own when its team or feature is unknown, when the feature belongs to
    another team, when a proxy reports for a feature no proxy was ever given a key of, or when its
    time is outside what we can store exactly once; the others go on.
    """
    records = [r for _, r in items]
    feature_codes = {r.feature_code for r in records if r.feature_code}
    team_codes = {r.team_code for r in records if r.team_code}
    by_code = _features("code", feature_codes) if feature_codes else {}
    by_slug = _features("slug", {r.feature for r in records if not r.feature_code})
    teams_by_code = _team_codes(team_codes) if team_codes else {}
    teams_by_slug = _slug_ids(Team, {r.team for r in records if not r.team_code})
    cutoff = partitions.retention_cutoff(now)
    reportable: set[int] | None = None
    if proxy is not None:
        named = {f[0] for f in (*by_code.values(), *by_slug.values())}
        reportable = _features_with_keys(named) if named else set()
    good: list[tuple[int, Any, Attribution]] = []
    errors: list[FieldError] = []
    for index, record in items:
        problems: list[FieldError] = []
        feature = by_code.get(record.feature_code) if record.feature_code else by_slug.get(record.feature)
        team_id = teams_by_code.get(record.team_code) if record.team_code else teams_by_slug.get(record.team)
        if team_id is None:
            named = f"code {record.team_code}" if record.team_code else repr(record.team)
            problems.append(
                FieldError("team", f"unknown team {named}: create it in the control plane first", index)
            )
        if feature is None:
            named = f"code {record.feature_code}" if record.feature_code else repr(record.feature)
            problems.append(
                FieldError("feature", f"unknown feature {named}: create it in the control plane first", index)
            )
        elif team_id is not None and feature[1] != team_id:
            problems.append(
                FieldError(
                    "feature",
                    f"feature {record.feature!r} does not belong to team {record.team!r}: "
                    "a record is charged only to its own team's features",
                    index,
                )
            )
        elif reportable is not None and feature[0] not in reportable:
            problems.append(
                FieldError(
                    "feature",
                    f"feature {record.feature!r} has no feature key, so no proxy serves it: "
                    "issue a key and publish before its traffic is reported",
                    index,
                )
            )
        at = moment(record)
        if at < cutoff:
            problems.append(
                FieldError(
                    "start_time",
                    f"is before {cutoff:%Y-%m-%d}, outside the raw retention window "
                    f"(FINOPS_RAW_RETENTION_MONTHS={partitions.raw_retention_months()})",
                    index,
                )
            )
        elif at > now + FUTURE_TOLERANCE:
            problems.append(
                FieldError("start_time", "is more than a day in the future: fix the proxy clock", index)
            )
        if problems:
            errors.extend(problems)
        else:
            assert feature is not None and team_id is not None
            good.append((index, record, Attribution(team_id, feature[0])))
    return good, errors


def event_row(
    record: SpendRecord, *, batch_id: int | None, proxy_id: int | None, team_id: int, feature_id: int
) -> tuple:
    """A record as a row of EVENT_COLUMNS."""
    return (batch_id, proxy_id, team_id, feature_id, round(record.latency_ms), *_record_values(record))


def _pg_ingest_sql() -> str:
    cols = ", ".join(EVENT_COLUMNS)
    returning = ", ".join(rollups.SOURCE_COLUMNS)
    return (
        # the staging table empties itself at commit (ON COMMIT DELETE ROWS): no per-row DELETE here
        f"WITH ins AS (INSERT INTO {rollups.EVENTS} ({cols}) SELECT {cols} FROM {STAGE} "
        f'ORDER BY proxy_id, event_id COLLATE "C", start_time '  # one lock order for every batch: no deadlock
        f"ON CONFLICT (proxy_id, event_id, start_time) DO NOTHING RETURNING {returning}), "
        f"up AS ({rollups.upsert_sql('ins')} RETURNING 1) "
        f"SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up)"
    )


def copy_rows(cursor: Any, table: str, rows: Sequence[tuple]) -> None:
    """Binary COPY of EVENT_COLUMNS rows into a table over the psycopg 3 protocol."""
    with cursor.copy(f"COPY {table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(EVENT_TYPES)
        for row in rows:
            copy.write_row(row)


def _stage_ready(**kwargs: Any) -> None:
    """A new database connection has no staging table yet (connected to connection_created in apps.py)."""
    kwargs["connection"].finops_stage_ready = False


def _stage_ensure() -> None:
    """The per-connection staging table; created once per connection when done outside a transaction."""
    if getattr(connection, "finops_stage_ready", False):
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} ON COMMIT DELETE ROWS AS "
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM {rollups.EVENTS} WITH NO DATA"
        )
    # Created in autocommit it survives any later rollback; inside a transaction a rollback would drop it.
    connection.finops_stage_ready = not connection.in_atomic_block


def _insert_postgres(rows: list[tuple]) -> int:
    if not connection.in_atomic_block:  # the staging table empties at each commit: COPY and INSERT share one
        raise RuntimeError("_insert_postgres must run inside transaction.atomic()")
    _stage_ensure()
    with connection.cursor() as cursor:
        copy_rows(cursor, STAGE, rows)
        cursor.execute(_pg_ingest_sql())
        inserted, _ = cursor.fetchone()
        if connection.savepoint_ids:  # nested in a caller's transaction: no commit empties the stage soon
            cursor.execute(f"DELETE FROM {STAGE}")
    return int(inserted)


def _insert_portable(rows: list[tuple], *, batch_id: int) -> int:
    """SQLite (writers serialized by the IMMEDIATE transaction): skip known keys, bulk insert, roll up by batch."""
    proxy_id = rows[0][_PROXY]
    keys = {(row[_EVENT_ID], row[_START]) for row in rows}
    existing = set(
        SpendEvent.objects.filter(proxy_id=proxy_id, event_id__in={k[0] for k in keys}).values_list(
            "event_id", "start_time"
        )
    )
    fresh, seen = [], set(existing)
    for row in rows:
        key = (row[_EVENT_ID], row[_START])
        if key not in seen:
            seen.add(key)
            fresh.append(SpendEvent(**dict(zip(EVENT_COLUMNS, row, strict=True))))
    SpendEvent.objects.bulk_create(fresh, batch_size=500, ignore_conflicts=True)
    with connection.cursor() as cursor:
        cursor.execute(rollups.upsert_sql(rollups.EVENTS, "batch_id = %s"), [batch_id])
    return len(fresh)


def _is_retryable(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) in ("40P01", "40001")  # deadlock, serialization


def spend_batch_ingest(
    *,
    proxy: Proxy | None,
    records: Sequence[SpendRecord],
    source: str = "proxy",
    indexes: Sequence[int] | None = None,
) -> IngestResult:
    """Store the valid records once and update the rollups in the same transaction; mirror to Datadog on commit.

    A record whose team, feature or time cannot be stored is refused on its own (in `rejected`, by its
    index in `indexes`, default its position); every other record is stored.
    """
    now = timezone.now()
    positions = list(indexes) if indexes is not None else list(range(len(records)))
    good, rejected = _attribute(
        list(zip(positions, records, strict=True)), now=now, moment=lambda r: r.start_time, proxy=proxy
    )
    if not good:
        return IngestResult(None, 0, 0, tuple(rejected))
    partitions.partitions_ensure({r.start_time for _, r, _ in good})
    if connection.vendor == "postgresql":
        _stage_ensure()
    for attempt in range(3):
        try:
            with transaction.atomic():
                batch = IngestBatch.objects.create(
                    proxy=proxy, received_at=now, records=len(good), source=source
                )
                proxy_id = proxy.pk if proxy else None
                rows = [
                    event_row(
                        r,
                        batch_id=batch.pk,
                        proxy_id=proxy_id,
                        team_id=who.team_id,
                        feature_id=who.feature_id,
                    )
                    for _, r, who in good
                ]
                if connection.vendor == "postgresql":
                    inserted = _insert_postgres(rows)
                else:
                    inserted = _insert_portable(rows, batch_id=batch.pk)
                batch.accepted, batch.duplicates = inserted, len(good) - inserted
                IngestBatch.objects.filter(pk=batch.pk).update(
                    accepted=batch.accepted, duplicates=batch.duplicates
                )
                if inserted and settings.DATADOG_ENABLED and source == "proxy":
                    transaction.on_commit(lambda batch_id=batch.pk: _queue_mirror(batch_id))
                if inserted and source == "proxy" and _touches_enforced_budget(good):
                    transaction.on_commit(lambda: signals.enforced_spend_ingested.send(sender=SpendEvent))
            return IngestResult(batch.pk, batch.accepted, batch.duplicates, tuple(rejected))
        except OperationalError as exc:
            if attempt == 2 or not _is_retryable(exc):
                raise
            log.warning("spend ingest retried after %s", exc)
    raise AssertionError("unreachable")


def blocked_counts_ingest(
    *, proxy: Proxy | None, counters: Sequence[tuple[int, BlockedCount]]
) -> tuple[int, int, list[FieldError]]:
    """Store counter records of refused calls once per (proxy, event id); (accepted, duplicates, rejected)."""
    if not counters:
        return 0, 0, []
    now = timezone.now()
    good, rejected = _attribute(list(counters), now=now, moment=lambda c: c.window_end, proxy=proxy)
    if not good:
        return 0, 0, rejected
    with transaction.atomic():
        known = set(
            BlockedCallCount.objects.filter(
                proxy=proxy, event_id__in=[c.event_id for _, c, _ in good]
            ).values_list("event_id", flat=True)
        )
        fresh: dict[str, BlockedCallCount] = {}
        for _, counter, who in good:
            if counter.event_id in known or counter.event_id in fresh:
                continue
            fresh[counter.event_id] = BlockedCallCount(
                proxy=proxy,
                event_id=counter.event_id,
                team_id=who.team_id,
                feature_id=who.feature_id,
                reason=counter.reason,
                count=counter.count,
                window_start=counter.window_start,
                window_end=counter.window_end,
                received_at=now,
            )
        BlockedCallCount.objects.bulk_create(fresh.values(), ignore_conflicts=True)
    return len(fresh), len(good) - len(fresh), rejected


_ENFORCED_SCOPE_TTL_S = 10.0
_enforced_scope: tuple[float, set[int], set[int]] = (0.0, set(), set())


def _enforced_budget_scope() -> tuple[set[int], set[int]]:
    """Teams with a team-wide and features with their own active budget that degrades or blocks (cached 10 s)."""
    global _enforced_scope
    loaded_at, teams, features = _enforced_scope
    if time.monotonic() - loaded_at < _ENFORCED_SCOPE_TTL_S:
        return teams, features
    teams, features = set(), set()
    for team_id, feature_id in Budget.objects.filter(
        is_active=True, action__in=(BudgetAction.BLOCK, BudgetAction.DEGRADE)
    ).values_list("team_id", "feature_id"):
        if feature_id is None:
            teams.add(team_id)
        else:
            features.add(feature_id)
    _enforced_scope = (time.monotonic(), teams, features)
    return teams, features


def enforced_budget_scope_clear(**_: Any) -> None:
    """A budget was saved or deleted: the next ingest reads the enforced scope again."""
    global _enforced_scope
    _enforced_scope = (0.0, set(), set())


def _touches_enforced_budget(good: Sequence[tuple[int, SpendRecord, Any]]) -> bool:
    """Does this batch hold spend of a team or feature whose budget degrades or blocks?"""
    try:
        teams, features = _enforced_budget_scope()
    except Exception:  # never fail an ingest over it: the minute's evaluation still runs
        log.exception("could not read which budgets enforce; the minute's evaluation will check them")
        return False
    return any(who.team_id in teams or who.feature_id in features for _, _, who in good)


def _queue_mirror(batch_id: int) -> None:

    try:
        spend_batch_mirror.delay(batch_id)
    except Exception:  # a broker outage must not fail an ingest that already committed
        log.exception("could not queue the Datadog mirror of spend batch %s", batch_id)


def spend_request_ingest(
    *, authorization: str, timestamp: str, signature: str, body: bytes, now: float | None = None
) -> IngestResult:
    """The whole ingest request: authenticate, validate, store. Raises IngestRejected with the HTTP status."""
    limits = ingest_limits()
    if len(body) > limits["max_bytes"]:
        raise IngestRejected.one(
            413, "body", f"is {len(body)} bytes: send at most {limits['max_bytes']} bytes a batch (split it)"
        )
    proxy = proxy_authenticate(
        authorization=authorization,
        timestamp=timestamp,
        signature=signature,
        body=body,
        now=time.time() if now is None else now,
    )
    parsed = spend_batch_parse(body=body)
    result = spend_batch_ingest(
        proxy=proxy, records=[r for _, r in parsed.spend], indexes=[i for i, _ in parsed.spend]
    )
    blocked, blocked_duplicates, blocked_rejected = blocked_counts_ingest(
        proxy=proxy, counters=parsed.blocked
    )
    rejected = sorted([*parsed.rejected, *result.rejected, *blocked_rejected], key=lambda e: e.index or 0)
    if rejected:
        log.warning(
            "spend ingest from proxy %s refused %d of %d records: %s",
            proxy.name,
            len({e.index for e in rejected}),
            parsed.total,
            "; ".join(f"[{e.index}] {e.field} {e.message}" for e in rejected[:5]),
        )
    return IngestResult(
        result.batch_id,
        result.accepted,
        result.duplicates + blocked_duplicates,
        tuple(rejected),
        blocked,
    )


def rollups_rebuild(*, start: datetime, end: datetime) -> dict[str, Any]:
    """Recompute the hourly rollups of [start, end) from raw events in one transaction.

    Hours whose raw partitions retention already dropped are left alone (their rollups are all that is left).
    """
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    cutoff = partitions.retention_cutoff()
    clamped = max(start, cutoff)
    if clamped >= end:
        return {"start": start, "end": end, "rows": 0, "skipped_before": cutoff}
    with transaction.atomic():
        rows = rollups.rollups_recompute(start=clamped, end=end)
    return {
        "start": rollups.hour_floor(clamped),
        "end": rollups.hour_ceil(end),
        "rows": rows,
        "skipped_before": cutoff if clamped > start else None,
    }


def spend_seed(
    *,
    events: int,
    days: float,
    end: datetime | None = None,
    seed: int = 7,
    chunk: int = 50_000,
    incidents: list[tuple[datetime, datetime]] | None = None,
    mix: Any = None,
) -> dict:
    """Write about `events` synthetic attempts over the last `days` for the existing features, then their rollups.

    `mix`: a `billing.synthetic.LiveMix` to draw every call from (the demo's live traffic), else the profiles.

    COPY straight into the events table on Postgres (fresh random event ids cannot collide), bulk_create on
    SQLite; rollups come from the same aggregate as rollups_rebuild, over the seeded range.
    """

    features = list(Feature.objects.select_related("team").values_list("team__slug", "slug"))
    if not features:
        raise ValueError("no features to seed spend for: run `python manage.py seed_demo` first")
    end = end or timezone.now()
    start = max(end - timedelta(days=days), partitions.retention_cutoff(end))
    teams = _slug_ids(Team, {t for t, _ in features})
    feature_ids = _slug_ids(Feature, {f for _, f in features})
    partitions.partitions_ensure(partitions.month_start(start, k) for k in range(int(days // 28) + 3))
    written = 0
    with transaction.atomic():
        batch = IngestBatch.objects.create(received_at=end, source="seed")
        rows: list[tuple] = []

        def flush() -> None:
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    copy_rows(cursor, rollups.EVENTS, rows)
            else:
                SpendEvent.objects.bulk_create(
                    [SpendEvent(**dict(zip(EVENT_COLUMNS, row, strict=True))) for row in rows],
                    batch_size=1000,
                )
            rows.clear()

        for record in synthetic_records(
            events=events, start=start, end=end, features=features, seed=seed, incidents=incidents, mix=mix
        ):
            rows.append(
                event_row(
                    record,
                    batch_id=batch.pk,
                    proxy_id=None,
                    team_id=teams[record.team],
                    feature_id=feature_ids[record.feature],
                )
            )
            written += 1
            if len(rows) >= chunk:
                flush()
        if rows:
            flush()
        IngestBatch.objects.filter(pk=batch.pk).update(records=written, accepted=written)
        rollup_rows = rollups.rollups_recompute(start=start, end=end + timedelta(minutes=5))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # fresh statistics, or the planner guesses from an empty table
            cursor.execute(f"ANALYZE {rollups.EVENTS}")
            cursor.execute(f"ANALYZE {rollups.ROLLUP}")
    return {"events": written, "start": start, "end": end, "rollup_rows": rollup_rows, "batch_id": batch.pk}
