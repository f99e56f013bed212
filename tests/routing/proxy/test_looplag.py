"""The event-loop stall monitor on a real asyncio loop."""

from __future__ import annotations

import asyncio
import time

from routing.proxy.looplag import STALL_MIN_S, LoopLag


def test_a_blocked_loop_is_measured_as_a_stall_and_a_running_one_is_not() -> None:
    lag = LoopLag()

    async def scenario() -> tuple[float, float, float, float]:
        lag.ensure_running()
        lag.ensure_running()  # idempotent: one ticker
        await asyncio.sleep(0.3)
        quiet_from = time.monotonic()
        await asyncio.sleep(0.3)  # the loop runs: the ticker is on time
        quiet = lag.stalled_during(quiet_from, time.monotonic())
        blocked_from = time.monotonic()
        time.sleep(0.6)  # a synchronous import, a starved CPU: nothing on the loop can run
        during = lag.stalled_during(blocked_from, time.monotonic())  # still going on: the ticker is late
        await asyncio.sleep(0.2)
        after = lag.stalled_during(blocked_from, time.monotonic())
        before = lag.stalled_during(quiet_from - 10, blocked_from)
        return quiet, during, after, before

    quiet, during, after, before = asyncio.run(scenario())
    assert quiet < STALL_MIN_S
    assert 0.4 <= during <= 0.7
    assert 0.45 <= after <= 0.75
    assert before < STALL_MIN_S
    assert lag.stalled_s >= 0.45
