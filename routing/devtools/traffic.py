"""Traffic generator for the demo and load tests: replays a realistic mix of product prompts through proxies.

Routine work (formatting, extraction, classification, summaries of pasted text, translation) and hard work
(multi-step reasoning, design, debugging, proofs, analysis) are mixed per feature, so the router has real
decisions to make. Every request carries a feature key and a stable end user, as product code would.

Run: `python -m routing.devtools.traffic --proxy http://127.0.0.1:4000 --key fk_... --rps 5 --seconds 60`.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

_DOCUMENT = (
    "Customer wrote in on Monday about a duplicate charge on the March invoice. The agent confirmed the "
    "second charge came from a retried payment webhook, issued a refund, and the customer replied that the "
    "refund had arrived. On Thursday the customer asked whether the annual plan could start mid-month and "
    "whether unused seats carry over. The agent explained seats are prorated and do not carry over. "
)

ROUTINE = [
    "Format this as a bulleted list: milk, eggs, flour, butter, sugar.",
    "Extract the email addresses from: contact ana@example.com or ops-team@example.org for access.",
    "Classify the sentiment of this review as positive, neutral or negative: 'Delivery was late but the support was kind.'",
    "Translate to French: 'Your order has shipped and will arrive on Tuesday.'",
    "Summarise this support thread in two sentences:\n\n" + _DOCUMENT * 6,
    "Rewrite this sentence in a friendlier tone: 'Your request has been denied.'",
    "Pull the order id and the amount out of: 'Order #A-99213 was charged $42.10 on 3 May.'",
    "Turn these notes into a short status update: shipped search filters, fixed login bug, started billing page.",
    "Convert to JSON with keys name and city: Maria lives in Lisbon.",
    "What is the capital of Canada?",
    "Fix the spelling: 'Recieved the pakage yesterday, thanks alot.'",
    "Tag this ticket with one intent (billing, bug, feature_request, account): 'I can't reset my password.'",
]
COMPLEX = [
    "Design a rate limiter for a multi-region API gateway. Compare token bucket and sliding window, explain "
    "the consistency trade-offs across regions, and propose a rollout plan with failure modes.",
    "Prove that the square root of 2 is irrational, then explain where the proof breaks for sqrt(4).",
    "This Python function deadlocks under load. Explain why step by step and propose a fix:\n"
    "def transfer(a, b, amt):\n    with a.lock:\n        with b.lock:\n            a.bal -= amt; b.bal += amt",
    "Our churn rose from 3% to 5% after a price change while activation improved. Analyse the possible causes, "
    "what data would distinguish them, and which experiment you would run first and why.",
    "Write a migration plan to split a 2 TB Postgres table into monthly partitions with zero downtime, "
    "including how to backfill, verify and roll back.",
    "A train leaves at 14:05 at 80 km/h, another at 14:35 at 110 km/h from the same station on the same track. "
    "When and where does the second catch up? Show each step, then generalise the formula.",
    "Review this architecture: a single Redis instance holds sessions, rate limits and the job queue. "
    "Identify the risks, rank them by impact, and propose a target design with a migration path.",
    "Derive the expected number of coin flips to see two heads in a row, and explain the Markov chain you used.",
    "Given quarterly revenue 120, 135, 128, 160 and costs 100, 104, 110, 118, evaluate profitability trends, "
    "forecast next quarter with a justified method, and list the assumptions that could invalidate it.",
    "Refactor this class hierarchy to remove the diamond inheritance while keeping the public API stable; "
    "explain each step and the tests you would add first.",
]


@dataclass
class TrafficReport:
    """What a run sent and what came back."""

    sent: int = 0
    ok: int = 0
    status: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, latency_ms: float, error: str = "") -> None:
        with self.lock:
            self.sent += 1
            self.status[status] += 1
            if 200 <= status < 300:
                self.ok += 1
                self.latencies_ms.append(latency_ms)
            if error:
                self.errors[error] += 1

    def summary(self) -> str:
        ordered = sorted(self.latencies_ms)
        p50 = ordered[len(ordered) // 2] if ordered else 0.0
        p95 = ordered[int(len(ordered) * 0.95)] if ordered else 0.0
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.status.items()))
        return f"sent={self.sent} ok={self.ok} p50_ms={p50:.0f} p95_ms={p95:.0f} status[{codes}]"


def choose_prompt(rng: random.Random, complex_share: float) -> str:
    pool = COMPLEX if rng.random() < complex_share else ROUTINE
    return rng.choice(pool)


def send_chat(proxy: str, key: str, prompt: str, user: str, timeout_s: float = 30.0) -> tuple[int, str]:
    """One chat completion through a proxy; returns (status, error class or '')."""
    body = json.dumps(
        {"model": "auto", "messages": [{"role": "user", "content": prompt}], "user": user, "max_tokens": 64}
    ).encode()
    request = urllib.request.Request(
        f"{proxy.rstrip('/')}/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"http_{exc.code}"
    except OSError as exc:
        return 0, exc.__class__.__name__


def run_traffic(
    *,
    proxies: list[str],
    keys: list[str],
    rps: float,
    seconds: float,
    complex_share: float = 0.3,
    concurrency: int = 8,
    seed: int = 7,
    stop: threading.Event | None = None,
) -> TrafficReport:
    """Send about `rps` requests a second for `seconds` (bounded), spread over proxies and feature keys."""
    report = TrafficReport()
    stop = stop or threading.Event()
    deadline = time.monotonic() + seconds
    tickets = threading.Semaphore(concurrency)
    rng = random.Random(seed)
    interval = 1.0 / max(rps, 0.01)
    next_at = time.monotonic()
    workers: list[threading.Thread] = []

    def one(proxy: str, key: str, prompt: str, user: str) -> None:
        started = time.monotonic()
        try:
            status, error = send_chat(proxy, key, prompt, user)
            report.record(status, (time.monotonic() - started) * 1000.0, error)
        finally:
            tickets.release()

    while not stop.is_set() and time.monotonic() < deadline:
        tickets.acquire()
        proxy = proxies[report.sent % len(proxies)] if proxies else ""
        worker = threading.Thread(
            target=one,
            args=(proxy, rng.choice(keys), choose_prompt(rng, complex_share), f"user-{rng.randrange(200)}"),
            daemon=True,
        )
        worker.start()
        workers.append(worker)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    for worker in workers:
        worker.join(timeout=35)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Replay a realistic prompt mix through LiteLLM proxies.")
    parser.add_argument("--proxy", action="append", required=True, help="proxy base URL (repeatable)")
    parser.add_argument("--key", action="append", required=True, help="feature key (repeatable)")
    parser.add_argument("--rps", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--complex-share", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    report = run_traffic(
        proxies=args.proxy,
        keys=args.key,
        rps=args.rps,
        seconds=args.seconds,
        complex_share=args.complex_share,
        concurrency=args.concurrency,
    )
    print(report.summary())


if __name__ == "__main__":
    main()
