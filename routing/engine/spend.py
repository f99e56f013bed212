"""The spend record: one per attempt, written by the proxy plugin and ingested by the control plane.

This module is the single definition of the wire format. `parse_spend_record` validates one JSON
object and returns either a `SpendRecord` or a list of field errors that name the field and the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from routing.engine.adjustment import KNOWN_SIGNALS, MAX_SIGNALS

SCHEMA_VERSION = 1

ROUTES = ("small", "frontier")
STATUSES = ("success", "error")
SLM_UNAVAILABLE = (
    "slm_unavailable"  # the small model's breaker was open: sent to the frontier, not a fallback
)
FALLBACK_REASONS = ("", "timeout", "error", "low_confidence", "budget", SLM_UNAVAILABLE)
MONEY_PLACES = Decimal("0.0000000001")  # 10 decimal places: sub-micro-dollar token prices add up
MAX_MONEY = Decimal("1000000")
MAX_ATTEMPT_DURATION = timedelta(hours=24)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BLOCKED_KIND = "blocked"  # a counter record: calls the proxy refused, not an attempt
BLOCKED_REASONS = ("budget", "revoked", "expired", "endpoint")
MAX_BLOCKED_COUNT = 10**9
MAX_SIGNAL_VALUE = 1e6

# --- counting rules: read by ingest rollups, dashboards, exports, the Datadog mirror, experiments, what-if ---
# Their SQL forms sit next to the rollup aggregate (billing/rollups.py); keep the two in step.

# Fallbacks that count against the small model (the fallback-rate alert, experiments, what-if): budget
# degradation is a decision and slm_unavailable an open breaker, each counted and alerted on apart.
SMALL_MODEL_FALLBACK_REASONS = ("timeout", "error", "low_confidence")
# A request is counted once, on its first attempt.
REQUEST_ATTEMPT = 1
# The baseline (what the frontier model would have cost) is carried by exactly one attempt of a served
# request: a successful one that is not the frontier retry of a low-confidence small answer (an escalated
# request keeps the estimate made on its small-model answer).
BASELINE_STATUS = "success"
BASELINE_EXCLUDED_REASON = "low_confidence"


def counts_toward_baseline(status: str, fallback_reason: str) -> bool:
    """Does this attempt carry its request's baseline cost?"""
    return status == BASELINE_STATUS and fallback_reason != BASELINE_EXCLUDED_REASON


def counts_against_small_model(fallback: bool, fallback_reason: str) -> bool:
    """Is this attempt a fallback the small model is to blame for (timeout, error, low confidence)?"""
    return fallback and fallback_reason in SMALL_MODEL_FALLBACK_REASONS


def model_name(deployment: str, model_group: str) -> str:
    """ "The model" of an attempt: the deployment that served it when known, else its model group."""
    return deployment or model_group


@dataclass(frozen=True)
class SpendRecord:
    """One attempt at serving one call through a proxy."""

    event_id: str
    call_id: str
    attempt: int
    team: str
    feature: str
    start_time: datetime
    end_time: datetime
    route: str  # the route the plugin decided: small or frontier
    model_group: str  # the LiteLLM model group this attempt went to
    deployment: str  # the LiteLLM model string that served (or failed) it
    status: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    baseline_cost_usd: Decimal = Decimal("0")  # what the frontier model would have cost
    first_token_time: datetime | None = None
    error_class: str = ""
    fallback: bool = False
    fallback_reason: str = ""
    score: float | None = None
    threshold: float | None = None
    decision_reason: str = ""
    bundle_version: str = ""
    experiment: str = ""
    arm: str = ""
    end_user: str = ""
    stream: bool = False
    confidence: float | None = None
    team_code: str = ""  # the team's and feature's public UUIDs from the key entry: stable across renames
    feature_code: str = ""
    # The scorer's task-type signals for this call (routing.engine.adjustment.RECORDED_SIGNALS), so the
    # feature's outcomes can refit its own adjustment; empty when the call was not scored.
    signals: dict[str, float] = field(default_factory=dict, hash=False)

    @property
    def latency_ms(self) -> float:
        return max(0.0, (self.end_time - self.start_time).total_seconds() * 1000.0)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)  # every field is a flat value: no deep copy needed (asdict costs ~40 us)
        for key in ("start_time", "end_time", "first_token_time"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        out["cost_usd"] = str(self.cost_usd)
        out["baseline_cost_usd"] = str(self.baseline_cost_usd)
        out["schema"] = SCHEMA_VERSION
        return out


@dataclass
class FieldError:
    """A problem with one field of one record."""

    field: str
    message: str
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}

    def to_rejection(self) -> dict[str, Any]:
        """One entry of an ingest answer's `rejected` list."""
        return {"index": self.index, "field": self.field, "reason": self.message}


@dataclass(frozen=True)
class BlockedCount:
    """How many calls of one feature a proxy refused in a window, and why (a counter, not an attempt)."""

    event_id: str
    team: str
    feature: str
    reason: str
    count: int
    window_start: datetime
    window_end: datetime
    team_code: str = ""
    feature_code: str = ""


def _storable(value: str) -> bool:
    """Can Postgres store this text (valid UTF-8: no lone surrogates)?"""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class _Reader:
    raw: dict[str, Any]
    errors: list[FieldError] = field(default_factory=list)

    def err(self, name: str, message: str) -> None:
        self.errors.append(FieldError(name, message))

    def text(
        self, name: str, *, required: bool = True, max_len: int = 200, pattern: re.Pattern[str] | None = None
    ) -> str:
        value = self.raw.get(name)
        # fast path for the well-formed common case: ingest validates tens of thousands of these a second
        if (
            type(value) is str
            and 0 < len(value) <= max_len
            and (pattern is None or pattern.match(value))
            and "\x00" not in value
            and (value.isascii() or _storable(value))
        ):
            return value
        if value is None or value == "":
            if required:
                self.err(name, "is required: send a non-empty string")
            return ""
        if not isinstance(value, str):
            self.err(name, f"must be a string, got {type(value).__name__}")
            return ""
        if len(value) > max_len:
            self.err(name, f"is {len(value)} characters long: at most {max_len} are allowed")
            return ""
        if "\x00" in value or not _storable(value):
            self.err(name, "holds a NUL character or an unpaired surrogate: send valid UTF-8 text")
            return ""
        if pattern is _UUID and not pattern.match(value):
            self.err(
                name, "must be a public UUID (lowercase, with dashes), as the bundle's key entry gives it"
            )
            return ""
        if pattern is not None and not pattern.match(value):
            self.err(name, "must be a lowercase slug (a-z, 0-9, '-', '_'), as issued by the control plane")
            return ""
        return value

    def choice(self, name: str, choices: tuple[str, ...], *, default: str | None = None) -> str:
        value = self.raw.get(name, default)
        if value not in choices:
            shown = ", ".join(repr(c) for c in choices)
            self.err(name, f"must be one of {shown}, got {value!r}")
            return choices[0]
        return str(value)

    def integer(
        self, name: str, *, minimum: int = 0, maximum: int = 10**9, default: int | None = None
    ) -> int:
        value = self.raw.get(name, default)
        if type(value) is int and minimum <= value <= maximum:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.err(name, f"must be a whole number, got {value!r}")
            return minimum
        if not minimum <= value <= maximum:
            self.err(name, f"must be between {minimum} and {maximum}, got {value}")
            return minimum
        return value

    def number(self, name: str, *, low: float = 0.0, high: float = 1.0) -> float | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.err(name, f"must be a finite number or null, got {value!r}")
            return None
        if not low <= float(value) <= high:
            self.err(name, f"must be between {low} and {high}, got {value}")
            return None
        return float(value)

    def money(self, name: str) -> Decimal:
        value = self.raw.get(name, "0")
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.err(name, 'must be a decimal string in USD such as "0.0012" (not a float)')
            return Decimal("0")
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            self.err(name, f"is not a decimal number: {value!r}")
            return Decimal("0")
        if not amount.is_finite() or amount < 0 or amount > MAX_MONEY:
            self.err(name, f"must be between 0 and {MAX_MONEY} USD, got {value!r}")
            return Decimal("0")
        return amount.quantize(MONEY_PLACES)

    def signals(self, name: str) -> dict[str, float]:
        value = self.raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict) or len(value) > MAX_SIGNALS:
            self.err(name, f"must be an object of at most {MAX_SIGNALS} signal values, name to number")
            return {}
        out: dict[str, float] = {}
        for key, number in value.items():
            if key not in KNOWN_SIGNALS:
                self.err(
                    name, f"names {str(key)[:64]!r}, which is not a scorer signal: send the scorer's names"
                )
                return {}
            if (
                isinstance(number, bool)
                or not isinstance(number, int | float)
                or not math.isfinite(number)
                or abs(number) > MAX_SIGNAL_VALUE
            ):
                self.err(name, f"{key} must be a finite number within ±{MAX_SIGNAL_VALUE:g}, got {number!r}")
                return {}
            out[key] = float(number)
        return out

    def boolean(self, name: str) -> bool:
        value = self.raw.get(name, False)
        if not isinstance(value, bool):
            self.err(name, f"must be true or false, got {value!r}")
            return False
        return value

    def moment(self, name: str, *, required: bool = True) -> datetime | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self.err(name, "is required: send an ISO 8601 time with a UTC offset")
            return None
        if not isinstance(value, str):
            self.err(name, "must be an ISO 8601 string such as 2026-11-27T10:00:00+00:00")
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.err(name, f"is not an ISO 8601 time: {value!r}")
            return None
        if moment.tzinfo is None:
            self.err(name, "has no UTC offset: add +00:00 (naive times are ambiguous)")
            return None
        return moment.astimezone(UTC)


def fallback_alert_fires(
    *, requests: int, by_reason: dict[str, int], threshold: float | Decimal, min_requests: int
) -> bool:
    """The fallback-rate alert's rule: small-model fallbacks over requests reach the threshold, with enough requests."""
    fallbacks = sum(n for reason, n in by_reason.items() if reason in SMALL_MODEL_FALLBACK_REASONS)
    return (
        requests > 0
        and requests >= min_requests
        and Decimal(fallbacks) / Decimal(requests) >= Decimal(str(threshold))
    )


def parse_spend_record(raw: Any) -> tuple[SpendRecord | None, list[FieldError]]:
    """Validate one wire object; return the record, or None and every field error found."""
    if not isinstance(raw, dict):
        return None, [FieldError("record", f"must be a JSON object, got {type(raw).__name__}")]
    r = _Reader(raw)
    schema = raw.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        r.err(
            "schema",
            f"version {schema!r} is not supported: this control plane reads version {SCHEMA_VERSION}",
        )
    values: dict[str, Any] = {
        "event_id": r.text("event_id", max_len=64),
        "call_id": r.text("call_id", max_len=128),
        "attempt": r.integer("attempt", minimum=1, maximum=100),
        "team": r.text("team", pattern=_SLUG),
        "feature": r.text("feature", pattern=_SLUG),
        "start_time": r.moment("start_time"),
        "end_time": r.moment("end_time"),
        "first_token_time": r.moment("first_token_time", required=False),
        "route": r.choice("route", ROUTES),
        "model_group": r.text("model_group"),
        "deployment": r.text("deployment", required=False),
        "status": r.choice("status", STATUSES),
        "input_tokens": r.integer("input_tokens", default=0),
        "output_tokens": r.integer("output_tokens", default=0),
        "cost_usd": r.money("cost_usd"),
        "baseline_cost_usd": r.money("baseline_cost_usd"),
        "error_class": r.text("error_class", required=False),
        "fallback": r.boolean("fallback"),
        "fallback_reason": r.choice("fallback_reason", FALLBACK_REASONS, default=""),
        "score": r.number("score"),
        "threshold": r.number("threshold"),
        "decision_reason": r.text("decision_reason", required=False),
        "bundle_version": r.text("bundle_version", required=False, max_len=80),
        "experiment": r.text("experiment", required=False, max_len=64),
        "arm": r.text("arm", required=False, max_len=64),
        "end_user": r.text("end_user", required=False, max_len=128),
        "stream": r.boolean("stream"),
        "confidence": r.number("confidence", low=-1e6, high=1e6),
        "team_code": r.text("team_code", required=False, max_len=36, pattern=_UUID),
        "feature_code": r.text("feature_code", required=False, max_len=36, pattern=_UUID),
        "signals": r.signals("signals"),
    }
    start, end = values["start_time"], values["end_time"]
    if start is not None and end is not None and end < start:
        r.err("end_time", "is before start_time: send the attempt's real start and end")
    elif start is not None and end is not None and end - start > MAX_ATTEMPT_DURATION:
        r.err(
            "end_time",
            "is more than 24 hours after start_time: no attempt lasts that long; send its real end",
        )
    if values["fallback"] and not values["fallback_reason"]:
        r.err(
            "fallback_reason", "is required when fallback is true: timeout, error, low_confidence or budget"
        )
    if r.errors:
        return None, r.errors
    return SpendRecord(**values), []


def parse_blocked_count(raw: dict[str, Any]) -> tuple[BlockedCount | None, list[FieldError]]:
    """Validate one counter record (`kind: "blocked"`)."""
    r = _Reader(raw)
    values: dict[str, Any] = {
        "event_id": r.text("event_id", max_len=64),
        "team": r.text("team", pattern=_SLUG),
        "feature": r.text("feature", pattern=_SLUG),
        "team_code": r.text("team_code", required=False, max_len=36, pattern=_UUID),
        "feature_code": r.text("feature_code", required=False, max_len=36, pattern=_UUID),
        "reason": r.choice("reason", BLOCKED_REASONS),
        "count": r.integer("count", minimum=1, maximum=MAX_BLOCKED_COUNT),
        "window_start": r.moment("window_start"),
        "window_end": r.moment("window_end"),
    }
    start, end = values["window_start"], values["window_end"]
    if start is not None and end is not None and end < start:
        r.err("window_end", "is before window_start: send the counting window's real bounds")
    if r.errors:
        return None, r.errors
    return BlockedCount(**values), []


@dataclass
class ParsedBatch:
    """A batch validated record by record: what can be stored, and why each other record cannot."""

    spend: list[tuple[int, SpendRecord]] = field(default_factory=list)
    blocked: list[tuple[int, BlockedCount]] = field(default_factory=list)
    rejected: list[FieldError] = field(default_factory=list)  # every entry has its record's index

    @property
    def total(self) -> int:
        return len(self.spend) + len(self.blocked) + len({e.index for e in self.rejected})


def parse_spend_items(raw: Any, *, max_records: int = 5000) -> tuple[ParsedBatch, list[FieldError]]:
    """Validate each record on its own; the second list holds body-level errors that refuse the batch whole."""
    if not isinstance(raw, dict) or not isinstance(raw.get("records"), list):
        return ParsedBatch(), [FieldError("records", 'the body must be a JSON object {"records": [...]}')]
    items = raw["records"]
    if len(items) > max_records:
        return ParsedBatch(), [
            FieldError("records", f"holds {len(items)} records: send at most {max_records} a batch")
        ]
    parsed = ParsedBatch()
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("kind") == BLOCKED_KIND:
            counter, problems = parse_blocked_count(item)
            if counter is not None:
                parsed.blocked.append((index, counter))
        else:
            if isinstance(item, dict) and item.get("kind") not in (None, "attempt"):
                problems = [
                    FieldError("kind", f"must be 'attempt' or '{BLOCKED_KIND}', got {item['kind']!r}")
                ]
                record = None
            else:
                record, problems = parse_spend_record(item)
            if record is not None:
                parsed.spend.append((index, record))
        for problem in problems:
            problem.index = index
            parsed.rejected.append(problem)
    return parsed, []


def parse_spend_batch(raw: Any, *, max_records: int = 5000) -> tuple[list[SpendRecord], list[FieldError]]:
    """Validate a batch `{"records": [...]}` whole: all records, or the full error list."""
    if not isinstance(raw, dict) or not isinstance(raw.get("records"), list):
        return [], [FieldError("records", 'the body must be a JSON object {"records": [...]}')]
    items = raw["records"]
    if len(items) > max_records:
        return [], [FieldError("records", f"holds {len(items)} records: send at most {max_records} a batch")]
    records: list[SpendRecord] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        record, problems = parse_spend_record(item)
        for problem in problems:
            problem.index = index
            errors.append(problem)
        if record is not None:
            records.append(record)
    return (records if not errors else []), errors
