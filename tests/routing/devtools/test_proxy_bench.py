"""The plugin benchmark's in-process part and its statistics keep working (the bench is a command, not a test)."""

from __future__ import annotations

import random

from routing.devtools import proxy_bench as bench
from routing.proxy import runtime as runtime_module


def test_hook_timings_cover_every_part_and_size() -> None:
    timings = bench.hook_timings(calls=3)
    assert set(timings) == {0, *bench.SIZES}
    for tokens in bench.SIZES:
        parts = timings[tokens]
        named = {"auth", "pre_call_hook", "record_build", "enqueue", "spooled"}
        assert set(parts) >= named | {"total", "scoring"}
        assert all(len(values) == 3 and min(values) > 0 for values in parts.values())
        # the total is the per-call sum of the parts it names
        for i in range(3):
            summed = sum(parts[k][i] for k in ("auth", "pre_call_hook", "record_build", "enqueue", "spooled"))
            assert abs(parts["total"][i] - summed) < 1e-6
    assert timings[0]["spool_write"][0] > 0  # a batch of records was written to a real spool
    assert runtime_module._runtime is None  # the process runtime is left as it was


def test_paired_statistics() -> None:
    rand = random.Random(3)
    pairs = [(10.0 + 0.5 + rand.gauss(0, 0.2), 10.0 + rand.gauss(0, 0.2)) for _ in range(400)]
    median, low, high = bench.bootstrap_ci(pairs, bench.median_diff, resamples=300)
    assert low <= median <= high
    assert low > 0.3 and high < 0.7  # a shift of 0.5 ms is found, with a tight interval
    assert bench.percentile(list(range(101)), 0.99) == 99
