"""When this proxy process's own event loop could not run: stalls that are the proxy's, not the SLM's.

A cold proxy's first calls import and build things on the event loop, and a loaded machine can
starve the process of CPU: for a few seconds no callback runs, so SLM attempts in flight time out
(their timers fire late, an answer already in the socket waits unread) and no answer is processed.
To the breaker that looked like a hanging SLM, and it took a healthy SLM out of service for a whole
cool-off. A ticker task on the loop measures how late it wakes; the breaker subtracts those stalls
from how long an attempt waited, and does not count a timeout against the SLM when most of its wait
was the proxy's own stall (`routing.proxy.breaker`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

TICK_S = 0.05
STALL_MIN_S = 0.1  # a tick this late (or later) means the loop could not run in between
STALLS_KEPT = 512


class LoopLag:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stalls: deque[tuple[float, float]] = deque(maxlen=STALLS_KEPT)  # (from, to), in time order
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._expected: float | None = None  # when the ticker should wake next
        self.stalled_s = 0.0  # total stall time seen since the process started

    def ensure_running(self) -> None:
        """Start the ticker on the running loop (once; again if its loop went away)."""
        task = self._task
        if task is not None and not task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="finops-loop-lag")

    async def _tick(self) -> None:
        self._expected = expected = self._clock() + TICK_S
        while True:
            await asyncio.sleep(TICK_S)
            now = self._clock()
            if now - expected >= STALL_MIN_S:
                self.note_stall(expected, now)
            self._expected = expected = now + TICK_S

    def note_stall(self, start: float, end: float) -> None:
        with self._lock:
            self._stalls.append((start, end))
            self.stalled_s += end - start

    def stalled_during(self, start: float, end: float) -> float:
        """Seconds of stall between `start` and `end`, counting one still going on (the ticker is late)."""
        total = 0.0
        expected = self._expected
        if expected is not None and self._clock() - expected >= STALL_MIN_S:
            total += max(0.0, min(end, self._clock()) - max(start, expected))
        with self._lock:
            for stall_start, stall_end in reversed(self._stalls):
                if stall_end <= start:
                    break
                total += max(0.0, min(end, stall_end) - max(start, stall_start))
        return total
