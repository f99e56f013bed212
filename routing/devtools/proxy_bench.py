"""What the plugin costs a call: in-process hook timing, paired latency against stock LiteLLM, throughput.

    python -m routing.devtools.proxy_bench [--pairs 2000] [--rounds 4] [--latency-ms 20] [--throughput]

1. **Hook, in process.** The plugin's per-call work timed with `perf_counter_ns`, part by part (feature-key
   auth, scoring, routing decision, stamp, spend-record build, shipper enqueue, and the wait until the
   writer thread has the record in the spool file, which every answer waits for), for prompts of 100 to
   8,000 tokens; then the spool write per record in a batch. No proxy, no network.
2. **Latency, paired.** Three real proxies over one fake upstream (fixed latency, keep-alive):
   `stock` (LiteLLM with its master key, no plugin), `noop-auth` (stock LiteLLM with a `custom_auth` that
   accepts any key at once: LiteLLM's own custom-auth path) and `plugin` (our custom_auth + callbacks).
   Each pair sends one request to each proxy in a random order, so machine noise hits all alike; the
   pairs are split over rounds with fresh connections. Reported: the median of the paired differences
   (plugin minus each stock variant) with a bootstrap 95 % CI, the p99 difference with its CI, and
   LiteLLM's own `x-litellm-overhead-duration-ms` header per proxy.
3. **Throughput** (`--throughput`): the requests/s one proxy worker sustains with and without the
   plugin at 1, 8 and 32 concurrent clients.

Last line: `overhead_p50_ms=… overhead_p50_ci_high_ms=… overhead_p99_ms=… hook_p50_us=… hook_p99_us=…`
(overheads against the stock proxy with the master key; the noop-auth comparison is printed above it).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from routing.devtools.harness import (
    MASTER_KEY,
    ProxyProcess,
    dev_public_key,
    free_port,
    rehash,
    sample_bundle,
)

FEATURE_KEY = "fk-bench"
PROMPT = "Summarise in one line: the meeting moved to Thursday at 10am in room 4."
SIZES = (100, 1000, 4000, 8000)  # prompt tokens for the in-process hook timing
PARAGRAPH = (
    "The quarterly report shows revenue grew in every region, while support tickets about billing "
    "fell after the new invoice layout shipped. Churn stayed flat; the enterprise tier grew fastest. "
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def bootstrap_ci(
    pairs: list[tuple[float, float]], stat: Any, *, resamples: int = 1000, seed: int = 7
) -> tuple[float, float, float]:
    """stat over the pairs, and its 95 % percentile-bootstrap interval (pairs resampled together)."""
    rand = random.Random(seed)
    n = len(pairs)
    estimates = []
    for _ in range(resamples):
        sample = [pairs[rand.randrange(n)] for _ in range(n)]
        estimates.append(stat(sample))
    estimates.sort()
    return stat(pairs), estimates[int(0.025 * resamples)], estimates[int(0.975 * resamples) - 1]


def median_diff(pairs: list[tuple[float, float]]) -> float:
    return statistics.median(a - b for a, b in pairs)


def p99_diff(pairs: list[tuple[float, float]]) -> float:
    return percentile([a for a, _ in pairs], 0.99) - percentile([b for _, b in pairs], 0.99)


# -- 1. the hook in process ---------------------------------------------------------------------------


def _messages(tokens: int) -> list[dict[str, str]]:
    words_per_paragraph = len(PARAGRAPH.split())
    text = PARAGRAPH * max(1, round(tokens * 0.75 / words_per_paragraph))
    return [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": f"{text}\nSummarise the report above in three bullet points."},
    ]


SPOOL_BATCH = 200


def hook_timings(calls: int = 1000) -> dict[int, dict[str, list[float]]]:
    """Per prompt size: per-call microseconds of each part of the plugin's work."""
    # the in-process part alone loads the plugin (and litellm, about 1 s); the paired HTTP bench does not
    from routing.engine.decision import decide
    from routing.proxy import auth as auth_module
    from routing.proxy import runtime as runtime_module
    from routing.proxy.plugin import FinOpsRouter, _stamp
    from routing.proxy.records import STAMP_KEY, build_record
    from routing.proxy.runtime import ProxyRuntime
    from routing.proxy.settings import ProxySettings
    from routing.proxy.stamps import seal

    state = Path(tempfile.mkdtemp(prefix="finops-hookbench-"))
    runtime = ProxyRuntime(
        ProxySettings(
            state_dir=state,
            control_plane_url="",
            proxy_token="bench",
            bundle_public_keys=dev_public_key(),
            allowed_key_envs=frozenset({"FINOPS_TEST_UPSTREAM_KEY"}),
        )
    )
    base = "http://127.0.0.1:9/v1"
    doc = sample_bundle(
        small_base=base, frontier_base=base, keys={FEATURE_KEY: ("bench", "bench")}, threshold=0.99
    )
    # an 8k-token prompt must be scored, not sent off by the small model's context-window rule
    doc = rehash(doc, deployments=[dict(d, context_window=128000) for d in doc["deployments"]])
    runtime.apply_bundle(doc, source="bench")
    assert runtime.bundle is not None
    runtime.router_topology = runtime.bundle.topology  # no LiteLLM router in process
    runtime_module._runtime = runtime  # what custom_auth looks up
    plugin = FinOpsRouter(lambda: runtime)
    request = SimpleNamespace(scope={"path": "/chat/completions", "root_path": ""}, headers={})
    bundle = runtime.bundle
    score_fn = runtime.score_fn()
    out: dict[int, dict[str, list[float]]] = {}
    sample: dict[str, dict[str, Any]] = {}  # a record as the hook built it, for the batch write below

    async def one_size(tokens: int) -> dict[str, list[float]]:
        messages = _messages(tokens)
        parts: dict[str, list[float]] = {
            k: []
            for k in (
                "auth",
                "pre_call_hook",
                "record_build",
                "enqueue",
                "spooled",
                "total",
                "scoring",
                "decision",
                "stamp",
            )
        }
        clock = time.perf_counter_ns
        for i in range(calls):
            data = {"model": "auto", "messages": messages, "user": f"user-{i % 50}"}
            t0 = clock()
            who = await auth_module.user_api_key_auth(request, f"Bearer {FEATURE_KEY}")
            t1 = clock()
            data = await plugin.async_pre_call_hook(who, None, data, "acompletion")
            t2 = clock()
            stamp = data["metadata"][STAMP_KEY]
            kwargs = {
                "litellm_params": {
                    "metadata": {
                        STAMP_KEY: stamp,
                        "model_group": stamp["model_group"],
                        "deployment": "openai/x",
                    }
                },
                "standard_logging_object": {
                    "prompt_tokens": tokens,
                    "completion_tokens": 40,
                    "response_cost": 0.0001,
                    "startTime": time.time() - 0.02,
                    "endTime": time.time(),
                },
            }
            t3 = clock()
            record = build_record(kwargs, None, status="success", bundle=bundle)
            t4 = clock()
            assert record is not None
            sample["record"] = record.to_json()
            seq = runtime.shipper.enqueue(sample["record"])
            t5 = clock()
            written = await runtime.shipper.until_written(seq, 2.0)  # what the answer waits for
            t5b = clock()
            assert written, "the writer thread did not write the record within 2 s"
            parts["auth"].append((t1 - t0) / 1000)
            parts["pre_call_hook"].append((t2 - t1) / 1000)
            parts["record_build"].append((t4 - t3) / 1000)
            parts["enqueue"].append((t5 - t4) / 1000)
            parts["spooled"].append((t5b - t5) / 1000)
            parts["total"].append(((t2 - t0) + (t5b - t3)) / 1000)
            # the hook's inner parts, timed on their own
            t6 = clock()
            score_fn(messages, None)
            t7 = clock()
            decision = decide(
                bundle,
                team="bench",
                feature="bench",
                data=data,
                sticky_key=f"user-{i % 50}",
                request_key=str(i),
                score_fn=lambda _m, _t: 0.4,
                shares=runtime.shares,
            )
            t8 = clock()
            seal(_stamp(decision, "bench", "bench", str(i), "", bundle.version, "frontier"))
            t9 = clock()
            parts["scoring"].append((t7 - t6) / 1000)
            parts["decision"].append((t8 - t7) / 1000)
            parts["stamp"].append((t9 - t8) / 1000)
        return parts

    runtime.shipper.start()  # the writer thread (and an idle shipper: no control plane here)
    try:
        for tokens in SIZES:
            out[tokens] = asyncio.run(one_size(tokens))
    finally:
        runtime.shipper.stop()
    # the spool write per record when the writer drains a backlog in one transaction
    for i in range(SPOOL_BATCH):
        runtime.shipper.enqueue(dict(sample["record"], event_id=f"{i:032x}"))
    started = time.perf_counter_ns()
    written = runtime.shipper.write_queued()
    spool_us = (time.perf_counter_ns() - started) / 1000 / max(1, written)
    out[0] = {"spool_write": [spool_us]}
    runtime_module._runtime = None
    shutil.rmtree(state, ignore_errors=True)
    return out


# -- 2. paired latency through real proxies -----------------------------------------------------------


class Client:
    """One persistent HTTP/1.1 connection to a proxy."""

    def __init__(self, port: int, key: str, model: str) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
        )

    def call(self) -> tuple[float, float | None]:
        """(client-side milliseconds, LiteLLM's own overhead header in ms or None)."""
        started = time.perf_counter()
        self.connection.request("POST", "/chat/completions", body=self.body, headers=self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status != 200:
            raise RuntimeError(f"proxy on {self.port} answered {response.status}: {payload[:300]!r}")
        header = response.getheader("x-litellm-overhead-duration-ms")
        try:
            overhead = float(header) if header not in (None, "None") else None
        except ValueError:
            overhead = None
        return elapsed, overhead

    def close(self) -> None:
        self.connection.close()


def paired_latency(proxies: dict[str, tuple[int, str, str]], pairs: int, rounds: int, warmup: int) -> dict:
    rand = random.Random(11)
    names = list(proxies)
    latency: dict[str, list[float]] = {n: [] for n in names}
    header: dict[str, list[float]] = {n: [] for n in names}
    per_round: list[dict[str, float]] = []
    per = max(1, pairs // rounds)
    for round_no in range(rounds):
        clients = {n: Client(*proxies[n]) for n in names}
        for _ in range(warmup):
            for n in names:
                clients[n].call()
        start = len(latency[names[0]])
        for _ in range(per):
            order = names[:]
            rand.shuffle(order)
            for n in order:
                ms, overhead = clients[n].call()
                latency[n].append(ms)
                if overhead is not None:
                    header[n].append(overhead)
        for client in clients.values():
            client.close()
        per_round.append({n: statistics.median(latency[n][start:]) for n in names})
        print(
            f"  round {round_no + 1}/{rounds}: median ms "
            + " ".join(f"{n}={v:.2f}" for n, v in per_round[-1].items())
        )
    return {"latency": latency, "header": header, "rounds": per_round}


# -- 3. throughput ------------------------------------------------------------------------------------


def throughput(port: int, key: str, model: str, clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(slot: int) -> None:
        client = Client(port, key, model)
        while time.perf_counter() < stop:
            client.call()
            done[slot] += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=2000, help="measured request pairs (one call to each proxy)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="rounds the pairs are split over (fresh connections)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured calls per proxy per round")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="fixed upstream latency")
    parser.add_argument("--hook-calls", type=int, default=1000, help="in-process calls per prompt size")
    parser.add_argument(
        "--throughput", action="store_true", help="also measure requests/s at 1, 8, 32 clients"
    )
    parser.add_argument("--throughput-s", type=float, default=10.0, help="seconds per throughput point")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )

    print(f"1. hook in process ({args.hook_calls} calls per prompt size; microseconds p50/p99)")
    hooks = hook_timings(args.hook_calls)
    hook_p50 = hook_p99 = 0.0
    for tokens in SIZES:
        parts = hooks[tokens]
        shown = " ".join(
            f"{name}={statistics.median(v):.0f}/{percentile(v, 0.99):.0f}" for name, v in parts.items()
        )
        print(f"  {tokens:>5} tokens: {shown}")
        hook_p50 = max(hook_p50, statistics.median(parts["total"]))
        hook_p99 = max(hook_p99, percentile(parts["total"], 0.99))
    print(f"  spool write per record in a batch of {SPOOL_BATCH}: {hooks[0]['spool_write'][0]:.1f} us")
    print(
        "  total = auth + pre_call_hook + record_build + enqueue + spooled (the wait until the record is in"
        " the spool file); scoring, decision and stamp run inside the hook"
    )

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
    noop = ProxyProcess(
        bundle, workdir / "noop", plugin=False, custom_auth="routing.devtools.noop_auth.user_api_key_auth"
    )
    plugged = ProxyProcess(bundle, workdir / "plugin")
    proxies = [stock, noop, plugged]
    try:
        for proxy in proxies:
            proxy.start()
        print(
            f"2. paired latency: {args.pairs} pairs in {args.rounds} rounds, upstream {args.latency_ms} ms "
            f"(proxies up in {stock.startup_s:.1f}/{noop.startup_s:.1f}/{plugged.startup_s:.1f} s)"
        )
        targets = {
            "stock": (stock.port, MASTER_KEY, "slm"),
            "noop-auth": (noop.port, "any-key", "slm"),
            "plugin": (plugged.port, FEATURE_KEY, "auto"),
        }
        result = paired_latency(targets, args.pairs, args.rounds, args.warmup)
        latency, header = result["latency"], result["header"]
        for name, values in latency.items():
            lit = header[name]
            lit_text = f"; litellm overhead header p50={statistics.median(lit):.2f} ms" if lit else ""
            print(
                f"  {name:>9}: n={len(values)} p50={statistics.median(values):.2f} "
                f"p99={percentile(values, 0.99):.2f} ms{lit_text}"
            )
        figures = {}
        for baseline in ("stock", "noop-auth"):
            pairs = list(zip(latency["plugin"], latency[baseline], strict=True))
            p50, p50_low, p50_high = bootstrap_ci(pairs, median_diff)
            p99, p99_low, p99_high = bootstrap_ci(pairs, p99_diff)
            figures[baseline] = (p50, p50_high, p99)
            print(
                f"  plugin - {baseline}: median of paired differences {p50:+.2f} ms "
                f"[{p50_low:+.2f}, {p50_high:+.2f}], p99 difference {p99:+.2f} ms [{p99_low:+.2f}, {p99_high:+.2f}]"
            )
        if args.throughput:
            print(f"3. throughput, one worker each, {args.throughput_s:.0f} s per point (requests/s)")
            for clients in (1, 8, 32):
                with_plugin = throughput(plugged.port, FEATURE_KEY, "auto", clients, args.throughput_s)
                without = throughput(stock.port, MASTER_KEY, "slm", clients, args.throughput_s)
                print(
                    f"  {clients:>2} clients: stock {without:.0f}/s, plugin {with_plugin:.0f}/s "
                    f"({(with_plugin / without - 1) * 100:+.1f} %)"
                )
        p50, p50_high, p99 = figures["stock"]
        print(
            f"overhead_p50_ms={p50:.2f} overhead_p50_ci_high_ms={p50_high:.2f} overhead_p99_ms={p99:.2f} "
            f"hook_p50_us={hook_p50:.0f} hook_p99_us={hook_p99:.0f}"
        )
    finally:
        for proxy in proxies:
            proxy.stop()
        upstream.terminate()
        upstream.wait(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
