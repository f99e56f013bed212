"""Scoring latency of the default scorer by prompt size, on one core.

    python -m routing.engine.tooling.bench [--repeat 300] [--clock wall|cpu] [--passes 1] [--version complexity-vN]

Prints p50/p99 per size (100 to 8,000 tokens), then, as the last line, p50_us/p99_us over a
realistic mix of sizes and shapes (short asks, chats, system prompts, pasted documents, code).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from collections.abc import Sequence

from routing.engine.scorer import ComplexityScorer

SIZES_IN_TOKENS = (100, 500, 1000, 2000, 4000, 8000)
_PROSE = (
    "The quarterly review covers revenue, margin and operations. Revenue rose 6% while margin slipped two points "
    "because fuel costs rose faster than surcharges. Please analyse whether the new contracts are worth the lease, "
    "and explain the trade-offs step by step. "
)
_CODE = (
    "def settle(ledger, entries):\n    for entry in entries:\n        if entry.amount < 0:\n"
    "            raise ValueError('negative')\n        ledger[entry.account] = ledger.get(entry.account, 0) + entry.amount\n"
    "    return ledger\n"
)
_UNICODE = "Résumé des coûts: 料金の概要と分析。Пожалуйста, проанализируйте. "


def _text_of_tokens(tokens: int, rng: random.Random) -> str:
    """About `tokens` tokens (four characters each) of mixed prose, code and non-ASCII text."""
    pieces: list[str] = []
    length = 0
    while length < tokens * 4:
        piece = rng.choice((_PROSE, _PROSE, _CODE, _UNICODE))
        pieces.append(piece)
        length += len(piece.encode("utf-8"))
    return "".join(pieces)


def request_of_tokens(tokens: int, rng: random.Random) -> list[dict[str, object]]:
    shape = rng.randrange(3)
    ask = "Summarise this and list the risks:\n\n" + _text_of_tokens(tokens, rng)
    if shape == 0:
        return [{"role": "user", "content": ask}]
    if shape == 1:
        return [
            {"role": "system", "content": "You are a careful analyst. Answer in markdown."},
            {"role": "user", "content": [{"type": "text", "text": ask}]},
        ]
    half = _text_of_tokens(tokens // 2, rng)
    return [
        {"role": "system", "content": "You help engineers debug."},
        {"role": "user", "content": half},
        {"role": "assistant", "content": "Here is what I found."},
        {"role": "user", "content": ask[: tokens * 2]},
    ]


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def time_scoring(
    scorer: ComplexityScorer,
    requests: Sequence[list[dict[str, object]]],
    clock: str = "wall",
    passes: int = 1,
) -> list[float]:
    """Microseconds per score() call, sorted; the cpu clock leaves out time other processes took.

    With several passes each request keeps its fastest timing: on a machine shared with other load,
    a single pass's tail is mostly interference (cache and core contention), not the scorer's work.
    """
    now = time.perf_counter_ns if clock == "wall" else time.thread_time_ns
    timings = [math.inf] * len(requests)
    for _ in range(passes):
        for position, request in enumerate(requests):
            started = now()
            scorer.score(request)
            timings[position] = min(timings[position], (now() - started) / 1000)
    return sorted(timings)


def _reference_workload_ms() -> float:
    started = time.perf_counter()
    sum(range(10**6))
    return (time.perf_counter() - started) * 1000


def realistic_mix(count: int, rng: random.Random) -> list[list[dict[str, object]]]:
    """Mostly short asks, some chats with context, a tail of long pasted documents."""
    sizes = rng.choices((30, 100, 300, 1000, 3000, 8000), weights=(30, 30, 20, 12, 6, 2), k=count)
    return [request_of_tokens(size, rng) for size in sizes]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=300, help="requests timed per size")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this thread's CPU time, for a machine shared with other load",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=1,
        help="time every request this many times and keep its fastest (1: a single pass, every outlier kept)",
    )
    parser.add_argument(
        "--version", default=None, help="a shipped weights version (default: the default scorer)"
    )
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    if hasattr(os, "sched_setaffinity"):
        # One core, as a proxy worker gets.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = random.Random(7)
    try:
        scorer = ComplexityScorer.for_version(args.version)
    except ValueError as error:
        parser.error(f"--version: {error}")
    scorer.score([{"role": "user", "content": "warm up"}])
    # A fixed pure-Python workload, so figures from a loaded or slow machine can be read in proportion.
    reference_ms = min(_reference_workload_ms() for _ in range(5))
    print(
        f"weights: {scorer.version}; clock: {args.clock}; passes: {args.passes}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"reference sum(range(10**6)) = {reference_ms:.1f} ms"
    )
    print(f"{'tokens':>7} {'p50_us':>8} {'p99_us':>8} {'max_us':>8}")
    for tokens in SIZES_IN_TOKENS:
        requests = [request_of_tokens(tokens, rng) for _ in range(args.repeat)]
        timings = time_scoring(scorer, requests, args.clock, args.passes)
        print(
            f"{tokens:>7} {_percentile(timings, 0.5):>8.0f} {_percentile(timings, 0.99):>8.0f} {timings[-1]:>8.0f}"
        )
    timings = time_scoring(scorer, realistic_mix(args.repeat * 5, rng), args.clock, args.passes)
    print(f"mix of {len(timings)} requests")
    print(f"p50_us={_percentile(timings, 0.5):.0f} p99_us={_percentile(timings, 0.99):.0f}")


if __name__ == "__main__":
    main()
