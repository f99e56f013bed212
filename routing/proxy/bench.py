"""Latency overhead of the plugin: the same load through a stock proxy and a proxy with the plugin.

    python -m routing.proxy.bench [--requests 400] [--latency-ms 20]

Both proxies point at one fake upstream (a subprocess, fixed latency). Requests alternate
between the two proxies over persistent connections so machine noise hits both alike. The last
line is `overhead_p50_ms=<n> overhead_p99_ms=<n>` (plugin minus stock).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from routing.devtools.harness import MASTER_KEY, ProxyProcess, free_port, sample_bundle

FEATURE_KEY = "fk-bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Client:
    """One persistent HTTP/1.1 connection to a proxy."""

    def __init__(self, port: int, key: str, model: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.model = model

    def call(self, prompt: str) -> float:
        body = json.dumps(
            {"model": self.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}
        )
        started = time.perf_counter()
        self.connection.request("POST", "/chat/completions", body=body, headers=self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status != 200:
            raise RuntimeError(f"proxy answered {response.status}: {payload[:300]!r}")
        return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="measured requests per proxy")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="fixed upstream latency")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")

    workdir = Path(tempfile.mkdtemp(prefix="finops-bench-"))
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "routing.devtools.fake_upstream",
            "--port",
            str(upstream_port),
            "--name",
            "slm",
        ]
        + ["--latency-ms", str(args.latency_ms)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{upstream_port}/v1"
    bundle = sample_bundle(
        small_base=base, frontier_base=base, keys={FEATURE_KEY: ("bench", "bench")}, threshold=1.01
    )
    stock = ProxyProcess(bundle, workdir / "stock", plugin=False)
    plugged = ProxyProcess(bundle, workdir / "plugin")
    try:
        stock.start()
        plugged.start()
        print(
            f"proxies up: stock {stock.startup_s:.1f}s, plugin {plugged.startup_s:.1f}s; upstream latency {args.latency_ms} ms"
        )
        clients = {
            "stock": Client(stock.port, MASTER_KEY, "slm"),
            "plugin": Client(plugged.port, FEATURE_KEY, "auto"),
        }
        timings: dict[str, list[float]] = {"stock": [], "plugin": []}
        prompt = "Summarise in one line: the meeting moved to Thursday at 10am in room 4."
        for i in range(args.warmup + args.requests):
            order = ("stock", "plugin") if i % 2 == 0 else ("plugin", "stock")
            for name in order:
                elapsed = clients[name].call(prompt)
                if i >= args.warmup:
                    timings[name].append(elapsed)
        for name, values in timings.items():
            print(
                f"{name:>6}: n={len(values)} p50={statistics.median(values):.2f} ms "
                f"p90={percentile(values, 0.90):.2f} ms p99={percentile(values, 0.99):.2f} ms"
            )
        overhead_p50 = statistics.median(timings["plugin"]) - statistics.median(timings["stock"])
        overhead_p99 = percentile(timings["plugin"], 0.99) - percentile(timings["stock"], 0.99)
        print(f"overhead_p50_ms={overhead_p50:.2f} overhead_p99_ms={overhead_p99:.2f}")
    finally:
        plugged.stop()
        stock.stop()
        upstream.terminate()
        upstream.wait(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
