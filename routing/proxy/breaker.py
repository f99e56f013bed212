"""The small model's circuit breaker: decided in the pre-call hook, fed by the plugin's attempt events.

One `CircuitBreaker` per small model group, held by the proxy process (`BreakerBoard`). Each
proxy worker process keeps its own board: a proxy with N workers learns that an SLM is dead N
times, once per worker (see docs/proxy.md).

Settings: `routing.engine.bundle.BreakerSettings` (the default policy's `breaker`). States:
- closed: every call the policy sends to the small model tries it. The breaker opens when, over
  the last `window_s`, at least `min_attempts` SLM attempts ended and `failure_share` or more of
  them failed (timeout, connection error, 5xx; a low-confidence answer is an answer), or when
  `consecutive_failures` hard failures (timeout, connection refused) arrived in a row while the
  SLM answered nobody. A timeout whose attempt started before some other attempt got an answer
  proves the SLM alive but slow, so it does not extend the streak. It also opens at the first hard
  failure that waited with no answer to anyone while `STALL_MIN_WAITING` or more later attempts waited
  too (a hanging SLM at traffic: the rest of those calls need not wait out the timeout), once the
  SLM has answered `STALL_MIN_ANSWERS` calls since the process started. It opens
  earlier still, at the admission of a new call, when the oldest attempt still waiting has waited
  `STALL_EARLY_SHARE` of its SLM timeout, the SLM answered nobody since it started and
  `STALL_MIN_WAITING` or more later attempts wait too: every call a hanging SLM catches before the
  opening waits about half the timeout instead of all of it, then falls back.
  The proxy's own stalls are not the SLM's: time the process's event loop could not run
  (`routing.proxy.looplag`: a cold start, a starved CPU) is taken off how long an attempt waited,
  and a timeout that waited mostly through such a stall (`PROXY_STALL_SHARE`) is not counted at all
  (`excused` in the report).
- open: calls skip the SLM (decision reason `slm_unavailable`) for the cool-off (first
  `cool_off_s`, doubled on each failed probe up to `max_cool_off_s`). Each opening is counted
  (`openings`) and announced (`on_open`): SLM attempts admitted before it and still waiting are cut
  off and fall back at once (`routing.proxy.abandon`).
- half-open: one request in `probe_one_in` tries the SLM, one probe at a time; `close_after`
  successful probes in a row close the breaker, a failed probe opens it again.

Pure Python and no I/O: the clock is injected so the state machine is tested without sleeping.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from routing.engine.bundle import BreakerSettings
from routing.engine.decision import Decision
from routing.engine.spend import (  # re-exported: the decision reason of a skipped call
    SLM_UNAVAILABLE,
    SpendRecord,
)
from routing.proxy.records import STAMP_KEY, metadata_of

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# outcome of one SLM attempt, as the breaker counts it
SUCCESS, HARD_FAILURE, SOFT_FAILURE = "success", "hard_failure", "soft_failure"
TRANSITIONS_KEPT = 50
# A timeout with no answer from the SLM during the attempt's whole wait, while at least this many other
# attempts were admitted after it and are waiting too, means the SLM answers nobody (hanging or dead):
# open at once instead of after `consecutive_failures` timeouts. A slow but alive SLM answers some of
# them within the wait, and a lone call at low traffic has no others waiting: neither trips it.
STALL_MIN_WAITING = 3
# ... and that stall is called as soon as the oldest waiting attempt has waited this share of its SLM
# timeout (not the whole timeout): an SLM that answers anyone at all in that time is alive. Neither
# stall rule applies before the SLM has answered `STALL_MIN_ANSWERS` calls (a cold proxy under load
# may take longer than the timeout for its first answers: only the streak rule opens it then); and the
# early one never calls it sooner than `STALL_EARLY_LATENCY_FACTOR`
# times the slowest of its last `STALL_EARLY_LATENCIES_KEPT` answers took (a cold or loaded proxy, or a
# slow SLM, answers late, not never): when that reaches the timeout only the timeout rules apply.
STALL_EARLY_SHARE = 0.5
STALL_MIN_ANSWERS = 8
STALL_EARLY_LATENCY_FACTOR = 4.0
STALL_EARLY_LATENCIES_KEPT = 32
# A hard failure that waited mostly (this share or more) through the proxy's own stall is not held against the SLM.
PROXY_STALL_SHARE = 0.5


def _no_stalls(start: float, end: float) -> float:
    return 0.0


@dataclass(frozen=True)
class Admission:
    """The breaker's answer for one call the policy wants on the small model."""

    allowed: bool
    probe: bool = False
    started_at: float = 0.0
    open_since: float | None = None  # wall-clock epoch the breaker opened (when not allowed)
    generation: int = 0  # how often the breaker had opened when this call was admitted


_CONNECTION_SIGNS = (
    "connection error",  # what LiteLLM's OpenAI client says for a refused or reset connection
    "connection refused",
    "connecterror",
    "apiconnectionerror",
    "server disconnected",
    "remoteprotocolerror",
)


def classify_failure(exception: Any, error_class: str = "", message: str = "") -> str | None:
    """HARD_FAILURE, SOFT_FAILURE, or None when the failure says nothing about the SLM's health."""
    name = f"{type(exception).__name__ if exception is not None else ''} {error_class}"
    text = f"{name} {message or (str(exception) if exception is not None else '')}".lower()
    if "timeout" in name.lower() or "timed out" in text:
        return HARD_FAILURE
    if any(sign in text for sign in _CONNECTION_SIGNS):
        return HARD_FAILURE  # LiteLLM reports a refused connection as an InternalServerError
    if "ratelimit" in name.lower():
        return None  # LiteLLM's own cooldown refusal or an SLM asking to slow down: not a fault
    status = getattr(exception, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return SOFT_FAILURE
    if any(n in name for n in ("InternalServerError", "ServiceUnavailableError", "BadGatewayError")):
        return SOFT_FAILURE
    return None


class CircuitBreaker:
    """The breaker of one small model group in one proxy process."""

    def __init__(
        self,
        group: str,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_open: Callable[[str], None] | None = None,
        stalled: Callable[[float, float], float] = _no_stalls,
    ) -> None:
        self.group = group
        self._stalled = stalled  # seconds the proxy itself could not run between two clock readings
        self._on_open = on_open  # told (outside the lock) each time the breaker opens
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self.state = CLOSED
        self._outcomes: deque[tuple[float, bool]] = deque()  # (finished_at, failed) in the window
        self._failures_in_window = 0
        self._streak = 0
        self._last_answer_at = float("-inf")  # when the SLM last answered anyone
        self._admitted: deque[float] = deque()  # when recent SLM attempts were admitted (closed state)
        # attempts admitted while closed and not finished yet: admission time -> [count, SLM timeout]
        self._pending: dict[float, list[float]] = {}
        self._pending_count = 0
        self._answer_latencies: deque[float] = deque(maxlen=STALL_EARLY_LATENCIES_KEPT)
        self._opened_at = 0.0
        self.open_since: float | None = None  # wall clock, for reports and alerts
        self._cool_off = self.settings.cool_off_s
        self._since_probe = 0
        self._probe_in_flight = False
        self._probe_started_at = 0.0
        self._probe_successes = 0
        self.skipped = 0  # calls sent to the frontier while open, since the process started
        self.abandoned = 0  # SLM attempts in flight when it opened, cut off and sent to the frontier
        self.excused = 0  # hard failures not counted: the attempt waited mostly through the proxy's own stall
        self.openings = 0  # how often it opened: an attempt admitted before the latest opening is abandoned
        self.transitions: deque[dict[str, Any]] = deque(maxlen=TRANSITIONS_KEPT)

    # -- pre-call --------------------------------------------------------------------------------
    def admit(self, timeout_s: float | None = None) -> Admission:
        """Should this call try the small model? Called once per call the policy routes small.

        `timeout_s`: the SLM timeout this attempt will get, for the early stall rule (None: no early rule).
        """
        now = self._clock()
        with self._lock:
            openings = self.openings
            admission = self._admit(now, timeout_s)
        if self.openings != openings and self._on_open is not None:
            self._on_open(self.group)
        return admission

    def _admit(self, now: float, timeout_s: float | None) -> Admission:
        if self.state == OPEN and now - self._opened_at >= self._cool_off:
            self._move(HALF_OPEN, "cool-off over")
            self._since_probe = self.settings.probe_one_in  # the first call after the cool-off probes
            self._probe_successes = 0
            self._probe_in_flight = False
        if self.state == CLOSED:
            self._check_stall(now)
        if self.state == CLOSED:
            self._admitted.append(now)
            while self._admitted and self._admitted[0] < now - self.settings.window_s:
                self._admitted.popleft()
            entry = self._pending.setdefault(now, [0, timeout_s or 0.0])
            entry[0] += 1
            self._pending_count += 1
            return Admission(True, started_at=now, generation=self.openings)
        if self._probe_in_flight and now - self._probe_started_at > self.settings.max_cool_off_s:
            self._probe_in_flight = False  # its result never came back (client gone): probe again
            self._since_probe = self.settings.probe_one_in
        if self.state == HALF_OPEN:
            self._since_probe += 1
            if not self._probe_in_flight and self._since_probe >= self.settings.probe_one_in:
                self._since_probe = 0
                self._probe_in_flight = True
                self._probe_started_at = now
                return Admission(True, probe=True, started_at=now, generation=self.openings)
        self.skipped += 1
        return Admission(False, open_since=self.open_since)

    def _check_stall(self, now: float) -> None:
        """The early stall rule: open when the oldest waiting attempt waited half its timeout for nothing."""
        horizon = now - self.settings.window_s
        while self._pending:  # attempts whose outcome never came back (client gone) are forgotten
            oldest = next(iter(self._pending))
            if oldest >= horizon:
                break
            self._pending_count -= int(self._pending.pop(oldest)[0])
        if not self._pending:
            return
        oldest = next(iter(self._pending))
        count, timeout_s = self._pending[oldest]
        if timeout_s <= 0 or len(self._answer_latencies) < STALL_MIN_ANSWERS:
            return
        stall_after = max(
            STALL_EARLY_SHARE * timeout_s, STALL_EARLY_LATENCY_FACTOR * max(self._answer_latencies)
        )
        waited = now - oldest - self._stalled(oldest, now)
        if (
            stall_after < timeout_s
            and waited >= stall_after
            and self._last_answer_at <= oldest
            and self._pending_count - count >= STALL_MIN_WAITING
        ):
            self._open(
                now,
                f"no answer for {waited:.1f} s while {self._pending_count} attempts waited (stalled)",
            )

    def _finished(self, started_at: float) -> None:
        entry = self._pending.get(started_at)
        if entry is None:
            return
        entry[0] -= 1
        self._pending_count -= 1
        if entry[0] <= 0:
            del self._pending[started_at]

    # -- outcomes --------------------------------------------------------------------------------
    def record(self, outcome: str, *, started_at: float, probe: bool = False) -> None:
        """Count one finished SLM attempt (`started_at` from its `Admission`)."""
        openings = self.openings
        self._record(outcome, started_at=started_at, probe=probe)
        if self.openings != openings and self._on_open is not None:
            self._on_open(self.group)

    def opened_since(self, generation: int) -> bool:
        """Has the breaker opened since a call was admitted with this `generation`?"""
        return self.openings != generation

    def count_abandoned(self) -> None:
        with self._lock:
            self.abandoned += 1

    def _record(self, outcome: str, *, started_at: float, probe: bool) -> None:
        now = self._clock()
        with self._lock:
            self._finished(started_at)
            if self.state == OPEN:
                return  # late results of attempts admitted before it opened change nothing
            if outcome == HARD_FAILURE and self._stalled(started_at, now) >= PROXY_STALL_SHARE * max(
                now - started_at, 1e-9
            ):
                self.excused += 1  # the proxy could not run: says nothing about the SLM
                if probe:
                    self._probe_in_flight = False
                return
            if self.state == HALF_OPEN:
                if not probe:
                    return
                self._probe_in_flight = False
                if outcome == SUCCESS:
                    self._probe_successes += 1
                    if self._probe_successes >= self.settings.close_after:
                        self._close()
                elif outcome in (HARD_FAILURE, SOFT_FAILURE):
                    self._cool_off = min(self._cool_off * 2, self.settings.max_cool_off_s)
                    self._open(now, f"probe failed ({outcome.replace('_', ' ')})")
                return
            self._count(now, outcome, started_at)

    def _count(self, now: float, outcome: str, started_at: float) -> None:
        settings = self.settings
        failed = outcome in (HARD_FAILURE, SOFT_FAILURE)
        if outcome not in (SUCCESS, HARD_FAILURE, SOFT_FAILURE):
            return
        self._outcomes.append((now, failed))
        self._failures_in_window += failed
        horizon = now - settings.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            _, old_failed = self._outcomes.popleft()
            self._failures_in_window -= old_failed
        if outcome == SUCCESS:
            self._streak = 0
            self._last_answer_at = now
            self._answer_latencies.append(now - started_at)
        elif outcome == HARD_FAILURE:
            # an answer that arrived while this attempt waited proves the SLM alive: not a streak
            self._streak = 0 if self._last_answer_at > started_at else self._streak + 1
        attempts = len(self._outcomes)
        waiting = 0
        warm = len(self._answer_latencies) >= STALL_MIN_ANSWERS  # a cold proxy's first answers come late
        if outcome == HARD_FAILURE and warm and self._last_answer_at <= started_at:
            waiting = sum(1 for admitted in self._admitted if admitted > started_at)
        if waiting >= STALL_MIN_WAITING:
            self._open(
                now,
                f"no answer for {now - started_at:.1f} s while {waiting} more attempts waited (stalled)",
            )
        elif self._streak >= settings.consecutive_failures:
            self._open(now, f"{self._streak} hard failures in a row")
        elif (
            failed
            and attempts >= settings.min_attempts
            and self._failures_in_window >= settings.failure_share * attempts
        ):
            self._open(
                now,
                f"{self._failures_in_window} of {attempts} attempts failed in {settings.window_s:g} s",
            )

    # -- transitions -----------------------------------------------------------------------------
    def _open(self, now: float, why: str) -> None:
        self._opened_at = now
        self.openings += 1
        self._pending.clear()  # what still waits is cut off now (routing.proxy.abandon) or comes back late
        self._pending_count = 0
        if self.state == CLOSED:
            self.open_since = self._wall_clock()
        self._move(OPEN, why)
        self._probe_in_flight = False

    def _close(self) -> None:
        self._outcomes.clear()
        self._admitted.clear()
        self._failures_in_window = 0
        self._streak = 0
        self._cool_off = self.settings.cool_off_s
        self.open_since = None
        self._move(CLOSED, f"{self._probe_successes} probes answered")

    def _move(self, state: str, why: str) -> None:
        self.transitions.append(
            {
                "at": datetime.fromtimestamp(self._wall_clock(), UTC).isoformat(timespec="milliseconds"),
                "from": self.state,
                "to": state,
                "why": why,
            }
        )
        self.state = state

    def reconfigure(self, settings: BreakerSettings) -> None:
        with self._lock:
            if settings != self.settings:
                self.settings = settings
                self._cool_off = min(max(self._cool_off, settings.cool_off_s), settings.max_cool_off_s)

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "model_group": self.group,
                "state": self.state,
                "open_since": (
                    datetime.fromtimestamp(self.open_since, UTC).isoformat(timespec="seconds")
                    if self.open_since is not None
                    else None
                ),
                "window_attempts": len(self._outcomes),
                "window_failures": self._failures_in_window,
                "cool_off_s": self._cool_off,
                "skipped": self.skipped,
                "abandoned": self.abandoned,
                "excused": self.excused,
                "transitions": list(self.transitions),
            }


class BreakerBoard:
    """The process's breakers, one per small model group, created on first use."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_open: Callable[[str], None] | None = None,
        stalled: Callable[[float, float], float] = _no_stalls,
    ) -> None:
        self.settings = BreakerSettings()
        self.on_open = on_open
        self._stalled = stalled
        self._clock = clock
        self._wall_clock = wall_clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def configure(self, settings: BreakerSettings) -> None:
        """A new bundle's settings apply to every breaker; their state is kept."""
        with self._lock:
            self.settings = settings
            breakers = list(self._breakers.values())
        for breaker in breakers:
            breaker.reconfigure(settings)

    def breaker(self, group: str) -> CircuitBreaker:
        found = self._breakers.get(group)
        if found is not None:
            return found
        with self._lock:
            return self._breakers.setdefault(
                group,
                CircuitBreaker(
                    group,
                    self.settings,
                    clock=self._clock,
                    wall_clock=self._wall_clock,
                    on_open=self._opened,
                    stalled=self._stalled,
                ),
            )

    def _opened(self, group: str) -> None:
        if self.on_open is not None:
            self.on_open(group)

    def report(self) -> list[dict[str, Any]]:
        return [b.report() for _, b in sorted(self._breakers.items())]


_SEVERITY = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


def combine_reports(by_worker: list[tuple[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One report per small model group over every worker of a proxy (each worker has its own breaker).

    The state is the most severe any worker is in (open, then half-open, then closed), `open_since`
    the earliest opening among workers not closed; counts are summed, transitions merged in time
    order (each with the worker's pid); `workers_open` of `workers` says how many are open and
    `by_worker` lists each worker's own state.
    """
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for pid, reports in by_worker:
        for report in reports:
            groups.setdefault(str(report.get("model_group")), []).append((pid, report))
    combined = []
    for group, entries in sorted(groups.items()):
        entries.sort(key=lambda entry: entry[0])
        state = max((r.get("state", CLOSED) for _, r in entries), key=lambda st: _SEVERITY.get(st, 0))
        since = [r["open_since"] for _, r in entries if r.get("state") != CLOSED and r.get("open_since")]
        transitions = sorted(
            ({**t, "pid": pid} for pid, r in entries for t in r.get("transitions", [])),
            key=lambda t: str(t.get("at", "")),
        )
        combined.append(
            {
                "model_group": group,
                "state": state,
                "open_since": min(since) if since else None,
                "workers": len(entries),
                "workers_open": sum(1 for _, r in entries if r.get("state") == OPEN),
                **{
                    name: sum(int(r.get(name) or 0) for _, r in entries)
                    for name in ("window_attempts", "window_failures", "skipped", "abandoned", "excused")
                },
                "cool_off_s": max(float(r.get("cool_off_s") or 0) for _, r in entries),
                "transitions": transitions[-TRANSITIONS_KEPT:],
                "by_worker": [
                    {
                        "pid": pid,
                        **{
                            k: r.get(k) for k in ("state", "open_since", "skipped", "abandoned", "cool_off_s")
                        },
                    }
                    for pid, r in entries
                ],
            }
        )
    return combined


class SmallModelUnavailable(Exception):
    """The breaker is open and the call has nowhere else to go (budget degrade allows no frontier)."""

    def __init__(self, group: str, open_since: float | None) -> None:
        since = (
            f" since {datetime.fromtimestamp(open_since, UTC):%H:%M:%S} UTC" if open_since is not None else ""
        )
        super().__init__(
            f"small model '{group}' is unavailable{since} (its circuit breaker is open) and this feature is "
            "over budget with the 'degrade' action, so the frontier model may not take the call: retry later"
        )


def gate(board: BreakerBoard, decision: Decision) -> tuple[Decision, Admission | None]:
    """The decision after the breaker: a small-route call skips an open breaker to the frontier model."""
    if decision.route != "small":
        return decision, None
    breaker = board.breaker(decision.model_group)
    admission = breaker.admit(decision.slm_timeout_s)
    if admission.allowed:
        return decision, admission
    if not decision.fallback_group:
        raise SmallModelUnavailable(decision.model_group, admission.open_since)
    skipped = dataclasses.replace(
        decision,
        route="frontier",
        model_group=decision.fallback_group,
        fallback_group=None,
        reason=SLM_UNAVAILABLE,
        slm_timeout_s=None,
        confidence_floor=None,
    )
    return skipped, admission


def stamp_fields(admission: Admission | None) -> dict[str, Any]:
    """What the decision stamp carries so the attempt's outcome finds its way back to the breaker."""
    if admission is None or not admission.allowed:
        return {}
    return {
        "breaker_started_at": admission.started_at,
        "breaker_probe": admission.probe,
        "breaker_generation": admission.generation,
    }


def observe(board: BreakerBoard, kwargs: dict[str, Any], record: SpendRecord) -> None:
    """Feed one recorded attempt to its breaker: only first attempts on the decided small model count."""
    stamp = metadata_of(kwargs).get(STAMP_KEY) or {}
    started_at = stamp.get("breaker_started_at")
    if stamp.get("route") != "small" or stamp.get("escalation") or not isinstance(started_at, int | float):
        return
    if record.model_group != stamp.get("model_group"):
        return  # the frontier fallback's outcome says nothing about the SLM
    if record.status == "success":
        outcome: str | None = SUCCESS
    else:
        error = (kwargs.get("standard_logging_object") or {}).get("error_information") or {}
        outcome = classify_failure(
            kwargs.get("exception"), record.error_class, str(error.get("error_message") or "")
        )
    if outcome is not None:
        board.breaker(record.model_group).record(
            outcome, started_at=float(started_at), probe=bool(stamp.get("breaker_probe"))
        )
