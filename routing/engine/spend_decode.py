"""Compiled fast path for decoding a batch of spend records (msgspec), for the control plane's ingest.

`parse_spend_items` in `routing.engine.spend` is the definition of what a valid record is and of every
error message. This module only accepts a batch when *every* record in it is one that
`parse_spend_items` would accept, and then builds the very same `SpendRecord`s, several times faster
(one C pass decodes and checks types, lengths, ranges, slugs and choices). Anything it is not sure of
(a bad record, a counter record, a NUL or lone-surrogate escape, an odd timestamp) makes it decline, and
the caller runs the reference parser, which names each field and its fix. So it can only be as strict as
the reference or stricter, never more lenient: `tests/routing/engine/test_spend_decode.py` checks that
on generated good and hostile records.

Without msgspec installed (a proxy image) `decode_spend_batch` always declines.
"""

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from routing.engine.adjustment import KNOWN_SIGNALS, MAX_SIGNALS
from routing.engine.spend import (
    _SLUG,
    _UUID,
    MAX_ATTEMPT_DURATION,
    MAX_MONEY,
    MONEY_PLACES,
    SCHEMA_VERSION,
    ParsedBatch,
    SpendRecord,
)

try:
    import msgspec
except ImportError:  # pragma: no cover - the web extra installs it; proxies never decode batches
    msgspec = None

# A JSON escape that decodes to NUL or to half of a surrogate pair: the reference parser refuses those
# strings field by field, so the fast path leaves any body that holds one to it.
_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")


def _build_decoder() -> Any:
    meta = msgspec.Meta
    text = Annotated[str, meta(max_length=200)]
    required_text = Annotated[str, meta(min_length=1, max_length=200)]
    slug = Annotated[str, meta(pattern=_SLUG.pattern)]
    code = Annotated[str, meta(max_length=36, pattern=f"^$|{_UUID.pattern}")]
    unit = Annotated[float, meta(ge=0.0, le=1.0)]
    tokens = Annotated[int, meta(ge=0, le=10**9)]
    # Literal members come from the reference's own tuples, so a new route or reason cannot drift apart.
    from routing.engine import spend

    route_t = Literal[spend.ROUTES]  # type: ignore[valid-type]
    status_t = Literal[spend.STATUSES]  # type: ignore[valid-type]
    reason_t = Literal[spend.FALLBACK_REASONS]  # type: ignore[valid-type]
    signal_t = Literal[tuple(sorted(KNOWN_SIGNALS))]  # type: ignore[valid-type]
    signal_value = Annotated[float, meta(ge=-spend.MAX_SIGNAL_VALUE, le=spend.MAX_SIGNAL_VALUE)]

    class WireRecord(msgspec.Struct, kw_only=True):
        event_id: Annotated[str, meta(min_length=1, max_length=64)]
        call_id: Annotated[str, meta(min_length=1, max_length=128)]
        attempt: Annotated[int, meta(ge=1, le=100)]
        team: slug
        feature: slug
        start_time: str
        end_time: str
        route: route_t
        model_group: required_text
        status: status_t
        first_token_time: str | None = None
        deployment: text | None = None
        input_tokens: tokens = 0
        output_tokens: tokens = 0
        cost_usd: str | int = "0"
        baseline_cost_usd: str | int = "0"
        error_class: text | None = None
        fallback: bool = False
        fallback_reason: reason_t = ""
        score: unit | None = None
        threshold: unit | None = None
        decision_reason: text | None = None
        bundle_version: Annotated[str, meta(max_length=80)] | None = None
        experiment: Annotated[str, meta(max_length=64)] | None = None
        arm: Annotated[str, meta(max_length=64)] | None = None
        end_user: Annotated[str, meta(max_length=128)] | None = None
        stream: bool = False
        confidence: Annotated[float, meta(ge=-1e6, le=1e6)] | None = None
        team_code: code | None = None
        feature_code: code | None = None
        signals: Annotated[dict[signal_t, signal_value], meta(max_length=MAX_SIGNALS)] | None = None
        schema: Literal[SCHEMA_VERSION] = SCHEMA_VERSION  # type: ignore[valid-type]
        kind: Literal["attempt"] | None = None

    class WireBatch(msgspec.Struct):
        records: list[WireRecord]

    return msgspec.json.Decoder(WireBatch), WireRecord


_decoder: Any = None
WIRE_FIELDS: tuple[str, ...] = ()


def _ready() -> bool:
    global _decoder, WIRE_FIELDS
    if msgspec is None:
        return False
    if _decoder is None:
        _decoder, wire = _build_decoder()
        WIRE_FIELDS = wire.__struct_fields__
    return True


class _Decline(Exception):
    pass


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)  # the reference's own parser: the same accepted forms
    zone = moment.tzinfo
    if zone is None:
        raise _Decline
    return moment if zone is UTC else moment.astimezone(UTC)


def _money(value: str | int) -> Decimal:
    amount = Decimal(value) if type(value) is str else Decimal(str(value))
    if not amount.is_finite() or amount < 0 or amount > MAX_MONEY:
        raise _Decline
    return amount.quantize(MONEY_PLACES)


def decode_spend_batch(body: bytes, *, max_records: int) -> ParsedBatch | None:
    """The batch's records if every one of them is valid and an attempt record; None to decline."""
    if not _ready() or _RISKY_ESCAPE.search(body):
        return None
    try:
        wire = _decoder.decode(body).records
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError:
        return None
    if len(wire) > max_records:
        return None
    new = object.__new__
    setter = object.__setattr__
    parsed = ParsedBatch()
    spend = parsed.spend
    try:
        for index, w in enumerate(wire):
            start, end = _moment(w.start_time), _moment(w.end_time)
            if end < start or end - start > MAX_ATTEMPT_DURATION:
                raise _Decline
            if w.fallback and not w.fallback_reason:
                raise _Decline
            first = w.first_token_time
            values = {
                "event_id": w.event_id,
                "call_id": w.call_id,
                "attempt": w.attempt,
                "team": w.team,
                "feature": w.feature,
                "start_time": start,
                "end_time": end,
                "route": w.route,
                "model_group": w.model_group,
                "deployment": w.deployment or "",
                "status": w.status,
                "input_tokens": w.input_tokens,
                "output_tokens": w.output_tokens,
                "cost_usd": _money(w.cost_usd),
                "baseline_cost_usd": _money(w.baseline_cost_usd),
                "first_token_time": _moment(first) if first is not None else None,
                "error_class": w.error_class or "",
                "fallback": w.fallback,
                "fallback_reason": w.fallback_reason,
                "score": w.score,
                "threshold": w.threshold,
                "decision_reason": w.decision_reason or "",
                "bundle_version": w.bundle_version or "",
                "experiment": w.experiment or "",
                "arm": w.arm or "",
                "end_user": w.end_user or "",
                "stream": w.stream,
                "confidence": w.confidence,
                "team_code": w.team_code or "",
                "feature_code": w.feature_code or "",
                "signals": w.signals or {},
            }
            # SpendRecord is a frozen dataclass: filling its __dict__ skips 30 object.__setattr__ calls
            record = new(SpendRecord)
            setter(record, "__dict__", values)
            spend.append((index, record))
    except (_Decline, ValueError, InvalidOperation):
        return None
    return parsed
