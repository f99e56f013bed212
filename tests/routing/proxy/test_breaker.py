"""The breaker's state machine on an injected clock: no sleeping, no proxy."""

from __future__ import annotations

import litellm
import pytest

from routing.engine.decision import Decision
from routing.proxy.breaker import (
    CLOSED,
    HALF_OPEN,
    HARD_FAILURE,
    OPEN,
    SOFT_FAILURE,
    SUCCESS,
    BreakerBoard,
    BreakerSettings,
    CircuitBreaker,
    classify_failure,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, **settings: object) -> CircuitBreaker:
    return CircuitBreaker("slm", BreakerSettings(**settings), clock=clock, wall_clock=lambda: 1_800_000_000.0)  # type: ignore[arg-type]


def attempt(b: CircuitBreaker, clock: Clock, outcome: str, *, lasts: float = 0.05) -> bool:
    """Admit one call; when it may try the SLM, finish it `lasts` seconds later with `outcome`."""
    admission = b.admit()
    if admission.allowed:
        clock.advance(lasts)
        b.record(outcome, started_at=admission.started_at, probe=admission.probe)
    return admission.allowed


def test_a_flaky_slm_keeps_its_traffic(clock: Clock) -> None:
    b = breaker(clock)
    # 5 % failures spread evenly, at 20 attempts a second for two minutes
    for i in range(2400):
        outcome = SOFT_FAILURE if i % 40 == 7 else HARD_FAILURE if i % 40 == 23 else SUCCESS
        assert attempt(b, clock, outcome, lasts=0.0)
        clock.advance(0.05)
    assert b.state == CLOSED and b.skipped == 0


def test_opens_when_the_failure_share_reaches_the_threshold(clock: Clock) -> None:
    b = breaker(clock)
    # alternate success and 5xx: never 5 hard failures in a row, but half of them fail
    for i in range(19):
        attempt(b, clock, SOFT_FAILURE if i % 2 else SUCCESS)
        assert b.state == CLOSED, f"opened after only {i + 1} attempts (minimum 20)"
    attempt(b, clock, SOFT_FAILURE)  # 10 of 20 failed: 50 %
    assert b.state == OPEN
    assert "10 of 20 attempts failed" in b.transitions[-1]["why"]
    assert b.admit().allowed is False


def test_the_share_counts_only_the_sliding_window(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(10):
        for outcome in (SOFT_FAILURE, SUCCESS, SUCCESS):  # a third fail: 5xx are soft, no streak
            attempt(b, clock, outcome)
    assert b.state == CLOSED
    clock.advance(31)  # those 30 attempts leave the 30 s window
    for _ in range(10):
        attempt(b, clock, SUCCESS)
    for _ in range(9):
        attempt(b, clock, SOFT_FAILURE)
    assert b.state == CLOSED
    attempt(b, clock, SOFT_FAILURE)
    # 10 of the 20 in the window; counting the old 30 too it would be 20 of 50
    assert b.state == OPEN


def test_low_confidence_answers_are_answers(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(100):
        attempt(b, clock, SUCCESS)  # the plugin records a low-confidence answer as a success
    assert b.state == CLOSED


def test_opens_on_consecutive_hard_failures_even_at_low_traffic(clock: Clock) -> None:
    b = breaker(clock)
    attempt(b, clock, SUCCESS)
    for i in range(4):
        clock.advance(60)  # one call a minute: the share never has 20 attempts
        attempt(b, clock, HARD_FAILURE)
        assert b.state == CLOSED, f"opened after {i + 1} failures"
    clock.advance(60)
    attempt(b, clock, HARD_FAILURE)
    assert b.state == OPEN
    assert "5 hard failures in a row" in b.transitions[-1]["why"]


def test_a_success_breaks_the_streak_and_5xx_do_not_extend_it(clock: Clock) -> None:
    b = breaker(clock)
    for outcome in [HARD_FAILURE] * 4 + [SUCCESS] + [HARD_FAILURE] * 2 + [SOFT_FAILURE] * 3 + [HARD_FAILURE]:
        attempt(b, clock, outcome)
    assert b.state == CLOSED


def test_timeouts_of_a_slow_but_alive_slm_do_not_open_it(clock: Clock) -> None:
    """Slow calls time out while others get answers: the SLM is alive, so no streak builds up."""
    b = breaker(clock)
    slow = []
    for i in range(600):
        admission = b.admit()
        assert admission.allowed
        if i % 10 < 3:  # 30 % hang past the 2 s timeout
            slow.append(admission)
        else:
            b.record(SUCCESS, started_at=admission.started_at)
        clock.advance(0.07)
        while slow and clock.now - slow[0].started_at >= 2.0:
            b.record(HARD_FAILURE, started_at=slow.pop(0).started_at)
    assert b.state == CLOSED


def test_a_hang_opens_it_on_the_first_timeouts(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(50):
        attempt(b, clock, SUCCESS)
    in_flight = [b.admit() for _ in range(30)]  # the SLM stops answering: all of these hang
    clock.advance(2.0)
    for admission in in_flight[:5]:
        b.record(HARD_FAILURE, started_at=admission.started_at)
    assert b.state == OPEN


def test_a_stalled_slm_opens_it_at_the_first_timeout(clock: Clock) -> None:
    """Calls keep arriving and none is answered for a whole timeout: open before K timeouts pile up."""
    b = breaker(clock)
    for _ in range(50):
        attempt(b, clock, SUCCESS)
    in_flight = []
    for _ in range(28):  # 2 s of traffic at 14 calls/s into an SLM that stopped answering
        in_flight.append(b.admit())
        clock.advance(2.0 / 28)
    b.record(HARD_FAILURE, started_at=in_flight[0].started_at)  # the first one times out
    assert b.state == OPEN
    assert "stalled" in b.transitions[-1]["why"]


def test_a_stall_opens_it_at_half_the_timeout_and_tells_who_waits(clock: Clock) -> None:
    """No answer to anyone while calls pile up: open once the oldest waited half its timeout, not all of it."""
    opened: list[str] = []
    b = CircuitBreaker(
        "slm", BreakerSettings(), clock=clock, wall_clock=lambda: 1_800_000_000.0, on_open=opened.append
    )
    for _ in range(50):
        admission = b.admit(2.0)
        clock.advance(0.05)
        b.record(SUCCESS, started_at=admission.started_at)
    waiting = []
    for _ in range(14):  # 7 calls a second into an SLM that stopped answering, for just under 1 s
        waiting.append(b.admit(2.0))
        clock.advance(0.99 / 14)
    assert b.state == CLOSED and opened == []  # the oldest has waited 0.99 s of its 2 s
    clock.advance(0.02)
    late = b.admit(2.0)  # the first call admitted after the oldest waited 1 s
    assert b.state == OPEN and not late.allowed
    assert opened == ["slm"]  # the attempts in flight are told at once (routing.proxy.abandon)
    assert "no answer for 1.0 s while 14 attempts waited (stalled)" in b.transitions[-1]["why"]
    assert all(b.opened_since(a.generation) for a in waiting)


def warm(b: CircuitBreaker, clock: Clock, answers: int = 10, lasts: float = 0.05) -> None:
    for _ in range(answers):
        admission = b.admit(2.0)
        clock.advance(lasts)
        b.record(SUCCESS, started_at=admission.started_at)


def test_the_early_stall_rule_needs_silence_a_crowd_and_a_timeout(clock: Clock) -> None:
    b = breaker(clock)
    warm(b, clock)
    slow = b.admit(2.0)  # a slow call, and the SLM answers one call admitted after it
    others = [b.admit(2.0) for _ in range(5)]
    clock.advance(0.3)
    b.record(SUCCESS, started_at=others[0].started_at)
    clock.advance(1.2)
    assert b.admit(2.0).allowed and b.state == CLOSED
    b.record(HARD_FAILURE, started_at=slow.started_at)
    for admission in others[1:]:
        b.record(SUCCESS, started_at=admission.started_at)
    lone = b.admit(2.0)  # one call waiting alone (low traffic): no crowd
    clock.advance(1.5)
    assert [b.admit(2.0).allowed for _ in range(2)] == [True, True] and b.state == CLOSED
    b.record(SUCCESS, started_at=lone.started_at)
    unbounded = [b.admit(None) for _ in range(6)]  # no SLM timeout given: only the timeout rules apply
    clock.advance(5.0)
    assert b.admit(None).allowed and b.state == CLOSED
    assert len(unbounded) == 6


def test_a_cold_proxy_whose_first_calls_time_out_is_not_stalled(clock: Clock) -> None:
    """Seen in the demo at a load average of 16: a fresh proxy's first call timed out with 4 more waiting."""
    b = breaker(clock)
    first = []
    for _ in range(5):
        first.append(b.admit(2.0))
        clock.advance(0.1)
    clock.advance(1.6)
    b.record(HARD_FAILURE, started_at=first[0].started_at)
    assert b.state == CLOSED  # no answer seen yet: the stall rules wait for 8, the streak rule for 5
    for admission in first[1:]:
        b.record(HARD_FAILURE, started_at=admission.started_at)
    assert b.state == OPEN and "5 hard failures in a row" in b.transitions[-1]["why"]


class Stalls:
    """The proxy's own stalls, as `routing.proxy.looplag.LoopLag.stalled_during` reports them."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def __call__(self, start: float, end: float) -> float:
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.spans)


def test_timeouts_that_waited_through_the_proxys_own_stall_are_not_the_slms(clock: Clock) -> None:
    """A cold (or CPU-starved) proxy whose loop could not run for 3 s: its in-flight attempts time out."""
    stalls = Stalls()
    b = CircuitBreaker("slm", BreakerSettings(), clock=clock, stalled=stalls)
    waiting = []
    for _ in range(6):
        waiting.append(b.admit(2.0))
        clock.advance(0.1)
    stalls.spans.append((clock.now, clock.now + 3.0))
    clock.advance(3.0)
    for admission in waiting:
        b.record(HARD_FAILURE, started_at=admission.started_at)
    assert b.state == CLOSED and b.excused == 6 and b.report()["excused"] == 6
    # the same timeouts with the proxy running all along: 5 in a row open it
    for _ in range(5):
        attempt(b, clock, HARD_FAILURE, lasts=2.0)
    assert b.state == OPEN and "5 hard failures in a row" in b.transitions[-1]["why"]


def test_a_short_hiccup_does_not_excuse_a_hanging_slm(clock: Clock) -> None:
    stalls = Stalls()
    b = CircuitBreaker("slm", BreakerSettings(), clock=clock, stalled=stalls)
    for _ in range(5):
        admission = b.admit(2.0)
        stalls.spans.append((clock.now + 1.0, clock.now + 1.8))  # 0.8 s of a 2 s wait: under half
        clock.advance(2.0)
        b.record(HARD_FAILURE, started_at=admission.started_at)
    assert b.state == OPEN and b.excused == 0


def test_the_early_stall_rule_does_not_count_the_proxys_own_stall(clock: Clock) -> None:
    stalls = Stalls()
    b = CircuitBreaker("slm", BreakerSettings(), clock=clock, stalled=stalls)
    warm(b, clock)
    waiting = []
    for _ in range(5):
        waiting.append(b.admit(2.0))
        clock.advance(0.01)
    stalls.spans.append((clock.now, clock.now + 1.5))
    clock.advance(1.5)  # three quarters of the timeout, all of it the proxy's own stall
    assert b.admit(2.0).allowed and b.state == CLOSED
    clock.advance(1.2)  # and now over a second of real silence with the crowd still waiting
    assert not b.admit(2.0).allowed and b.state == OPEN
    assert len(waiting) == 5


def test_the_early_stall_rule_waits_for_answers_and_scales_with_their_latency(clock: Clock) -> None:
    """A cold proxy, or an SLM (or loaded proxy) that answers slowly, is late, not stalled."""
    cold = breaker(clock)
    first = []
    for _ in range(8):  # nothing answered yet: the first answers may take long
        first.append(cold.admit(2.0))
        clock.advance(0.01)
    clock.advance(1.42)
    assert cold.admit(2.0).allowed and cold.state == CLOSED
    for admission in first:
        cold.record(SUCCESS, started_at=admission.started_at)

    slow = breaker(clock)
    warm(slow, clock, lasts=0.4)  # answers take 0.4 s: silence for 4 x 0.4 s = 1.6 s, not 1 s, is a stall
    waiting = []
    for _ in range(6):
        waiting.append(slow.admit(2.0))
        clock.advance(0.01)
    clock.advance(1.44)
    assert slow.admit(2.0).allowed and slow.state == CLOSED
    clock.advance(0.2)
    assert not slow.admit(2.0).allowed and slow.state == OPEN
    assert "no answer for 1.7 s" in slow.transitions[-1]["why"] and len(waiting) == 6

    slower = breaker(clock)
    warm(slower, clock, lasts=0.6)  # 4 x 0.6 s is past the 2 s timeout: only the timeout rules apply
    pending = []
    for _ in range(6):
        pending.append(slower.admit(2.0))
        clock.advance(0.01)
    clock.advance(1.84)
    assert slower.admit(2.0).allowed and slower.state == CLOSED
    slower.record(HARD_FAILURE, started_at=pending[0].started_at)  # its timeout: the stall rule of old
    assert slower.state == OPEN


def test_a_lone_timeout_or_one_with_answers_in_between_is_not_a_stall(clock: Clock) -> None:
    b = breaker(clock)
    first = b.admit()
    clock.advance(0.5)
    others = [b.admit() for _ in range(2)]  # only two more waiting: below the stall rule's minimum
    clock.advance(1.5)
    b.record(HARD_FAILURE, started_at=first.started_at)
    assert b.state == CLOSED
    for admission in others:
        b.record(HARD_FAILURE, started_at=admission.started_at)
    assert b.state == CLOSED  # three in a row: the streak rule still needs five
    slow = b.admit()
    for _ in range(10):  # ten more calls, and the SLM answers one of them during the slow call's wait
        clock.advance(0.1)
        b.admit()
    b.record(SUCCESS, started_at=clock.now - 0.05)
    clock.advance(1.0)
    b.record(HARD_FAILURE, started_at=slow.started_at)
    assert b.state == CLOSED


def test_half_open_probes_one_in_n_then_closes_after_m_successes(clock: Clock) -> None:
    b = breaker(clock, probe_one_in=4, close_after=2)
    for _ in range(5):
        attempt(b, clock, HARD_FAILURE)
    assert b.state == OPEN
    clock.advance(9.0)
    assert b.admit().allowed is False  # still cooling off (10 s)
    clock.advance(1.0)
    first = b.admit()
    assert first.allowed and first.probe and b.state == HALF_OPEN
    # one probe at a time: while it runs, everything else skips the SLM
    assert [b.admit().allowed for _ in range(6)] == [False] * 6
    b.record(SUCCESS, started_at=first.started_at, probe=True)
    assert b.state == HALF_OPEN
    verdicts = [b.admit() for _ in range(4)]
    # more than 4 requests went by since the first probe: the next one probes at once
    assert [v.allowed for v in verdicts] == [True, False, False, False]
    probe = next(v for v in verdicts if v.allowed)
    b.record(SUCCESS, started_at=probe.started_at, probe=True)
    assert b.state == CLOSED
    assert b.admit().allowed and b.open_since is None


def test_a_failed_probe_reopens_with_a_doubled_cool_off_up_to_the_maximum(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(5):
        attempt(b, clock, HARD_FAILURE)
    cool_offs = []
    for _ in range(5):
        waited = 0.0
        while not b.admit().allowed:
            clock.advance(0.5)
            waited += 0.5
        cool_offs.append(waited)
        b.record(HARD_FAILURE, started_at=clock.now, probe=True)
        assert b.state == OPEN
    assert cool_offs == [pytest.approx(x, abs=0.6) for x in (10, 20, 40, 60, 60)]
    # once it closes, the next opening starts from the base cool-off again
    clock.advance(60)
    for _ in range(3):
        probe = b.admit()
        b.record(SUCCESS, started_at=probe.started_at, probe=True)
        for _ in range(9):
            b.admit()
    assert b.state == CLOSED
    for _ in range(5):
        attempt(b, clock, HARD_FAILURE)
    clock.advance(10.0)
    assert b.admit().probe


def test_results_of_calls_admitted_before_it_opened_change_nothing(clock: Clock) -> None:
    b = breaker(clock)
    late = [b.admit() for _ in range(10)]
    for _ in range(5):
        attempt(b, clock, HARD_FAILURE)
    opened = b.transitions[-1]["at"]
    for admission in late:
        b.record(SUCCESS, started_at=admission.started_at)
    assert b.state == OPEN and b.transitions[-1]["at"] == opened


def test_a_lost_probe_does_not_wedge_the_breaker(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(5):
        attempt(b, clock, HARD_FAILURE)
    clock.advance(10)
    assert b.admit().probe  # its result never comes back
    assert b.admit().allowed is False
    clock.advance(61)
    assert b.admit().probe


def test_report_and_open_since(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(5):
        attempt(b, clock, HARD_FAILURE)
    b.admit()
    report = b.report()
    assert report["state"] == OPEN
    assert report["open_since"] == "2027-01-15T08:00:00+00:00"
    assert report["skipped"] == 1
    assert [t["to"] for t in report["transitions"]] == [OPEN]


def test_board_keeps_state_across_new_settings(clock: Clock) -> None:
    board = BreakerBoard(clock=clock)
    for _ in range(5):
        attempt(board.breaker("slm"), clock, HARD_FAILURE)
    board.configure(BreakerSettings(cool_off_s=2.0, max_cool_off_s=30.0))
    assert board.breaker("slm").state == OPEN
    assert board.breaker("slm-b").state == CLOSED
    assert board.breaker("slm-b").settings.cool_off_s == 2.0
    assert [r["model_group"] for r in board.report()] == ["slm", "slm-b"]


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (litellm.Timeout("slow", model="m", llm_provider="openai"), HARD_FAILURE),
        (litellm.APIConnectionError("Connection refused", llm_provider="openai", model="m"), HARD_FAILURE),
        (litellm.InternalServerError("boom", llm_provider="openai", model="m"), SOFT_FAILURE),
        (litellm.ServiceUnavailableError("busy", llm_provider="openai", model="m"), SOFT_FAILURE),
        (litellm.BadRequestError("bad", model="m", llm_provider="openai"), None),
        (litellm.RateLimitError("slow down", llm_provider="openai", model="m"), None),
    ],
)
def test_which_failures_count(exception: Exception, expected: str | None) -> None:
    assert classify_failure(exception) == expected


def test_failures_are_classified_by_logged_class_name_too() -> None:
    assert classify_failure(None, "Timeout") == HARD_FAILURE
    assert classify_failure(None, "RouterRateLimitError") is None
    assert classify_failure(None, "InternalServerError") == SOFT_FAILURE
    # LiteLLM reports a refused connection as an InternalServerError: the message tells them apart
    refused = litellm.InternalServerError(
        "OpenAIException - Connection error.", llm_provider="openai", model="m"
    )
    assert classify_failure(refused, "InternalServerError") == HARD_FAILURE


def _decision(**overrides: object) -> Decision:
    values: dict[str, object] = {
        "route": "small",
        "model_group": "slm",
        "fallback_group": "frontier",
        "reason": "score",
        "score": 0.2,
        "threshold": 0.6,
        "slm_timeout_s": 2.0,
        "confidence_floor": 0.4,
        "experiment": "exp",
        "arm": "a",
    }
    values.update(overrides)
    return Decision(**values)  # type: ignore[arg-type]


def test_gate_sends_small_calls_of_an_open_breaker_to_the_frontier(clock: Clock) -> None:
    from routing.proxy.breaker import SLM_UNAVAILABLE, gate

    board = BreakerBoard(clock=clock)
    decision, admission = gate(board, _decision())
    assert decision == _decision() and admission is not None and admission.allowed
    for _ in range(5):
        attempt(board.breaker("slm"), clock, HARD_FAILURE)
    skipped, admission = gate(board, _decision())
    assert admission is not None and not admission.allowed
    assert (skipped.route, skipped.model_group, skipped.reason) == ("frontier", "frontier", SLM_UNAVAILABLE)
    assert (
        skipped.fallback_group is None and skipped.slm_timeout_s is None and skipped.confidence_floor is None
    )
    # what replay and experiments need survives: score, threshold, arm
    assert (skipped.score, skipped.threshold, skipped.experiment, skipped.arm) == (0.2, 0.6, "exp", "a")
    frontier = _decision(route="frontier", model_group="frontier", fallback_group=None)
    assert gate(board, frontier) == (frontier, None)  # the breaker only guards small-route calls


def test_gate_refuses_a_degraded_call_when_the_small_model_is_unavailable(clock: Clock) -> None:
    from routing.proxy.breaker import SmallModelUnavailable, gate

    board = BreakerBoard(clock=clock, wall_clock=lambda: 1_800_000_000.0)
    for _ in range(5):
        attempt(board.breaker("slm"), clock, HARD_FAILURE)
    with pytest.raises(SmallModelUnavailable) as refused:
        gate(board, _decision(fallback_group=None, reason="budget_degrade"))
    assert "small model 'slm' is unavailable since 08:00:00 UTC" in str(refused.value)
    assert "over budget" in str(refused.value)
