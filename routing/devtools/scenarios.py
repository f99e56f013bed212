"""Scenario benchmark: savings, fallback rate and latency when the small model misbehaves.

    python -m routing.devtools.scenarios [--rps 20] [--seconds 60] [--only NAME]

Starts fake upstreams (one small model per scenario, one frontier), a control-plane double and two
real LiteLLM proxies with the plugin (`routing.devtools.harness`), then for each scenario sends a
fixed rate of labelled traffic (~70 % routine prompts, ~30 % complex ones, the demo's prompts from
`routing.devtools.traffic`), alternating between the proxies. It mirrors the demo (`manage.py demo`):
the complexity scorer routes at the demo's threshold (0.56), the SLM has no per-token price (a hosted
model) and gpt-4o is priced from litellm's price map, the fake upstreams answer the demo's token
counts, and the flaky scenario has the demo's faults; so the flaky line is what the demo's overview
shows. Faults are switched on the fake SLM at fixed times. Every figure comes from the spend records
the proxies shipped (joined to the client's requests by end user) and the client's own latencies.

Definitions: fallback rate = calls the policy wanted on the small model that fell back to the
frontier (timeout, error, low confidence, or cut off in flight by the opening breaker: reason
`slm_unavailable` with fallback set), over those calls; breaker-open share = calls sent straight
to the frontier because the breaker was open (`slm_unavailable`, not a fallback), over all calls;
waited = calls whose SLM attempt ran into the SLM timeout (an attempt cut off after 95 % of it
counts too); abandoned_in_flight = SLM attempts cut off when the breaker opened; savings = 1 - cost / all-frontier baseline (per-token,
before hosting). "Frontier latency" in the hanging criterion is the same percentile of the calls
that went straight to the frontier through the same proxies in the same run, so proxy overhead
under load is on both sides of the bound.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
from routing.devtools.harness import ControlPlaneDouble, ProxyProcess, dev_signed
from routing.devtools.traffic import COMPLEX, ROUTINE
from routing.engine.bundle import BreakerSettings, with_content_hash
from routing.engine.signing import token_hash
from routing.engine.spend import SLM_UNAVAILABLE, fallback_alert_fires
from routing.proxy.abandon import ABANDONED_ERROR

TEAM = "bench"
PROXY_TOKEN = "proxy-token-scenarios"
SLM_TIMEOUT_S = 2.0
SLM_LATENCY_MS = 60.0
FRONTIER_LATENCY_MS = 300.0
# the demo's fake upstreams both answer 120 tokens: same here, so savings compare
SLM_COMPLETION_TOKENS, FRONTIER_COMPLETION_TOKENS = 120, 120
FAULT_AT_S = 10.0
ROUTINE_SHARE = 0.7
THRESHOLD = 0.56  # the demo's default policy
FRONTIER_MODEL = "gpt-4o"  # priced from litellm's price map, as in the demo


@dataclass(frozen=True)
class Scenario:
    name: str
    behaviour: dict[str, Any]  # the SLM from the start
    steps: tuple[tuple[float, dict[str, Any]], ...] = ()  # (seconds from start, changes)
    fault_rate: float = 0.0


SCENARIOS = (
    Scenario("healthy", {}),
    Scenario("flaky", {"error_rate": 0.03, "hang_rate": 0.02, "hang_s": 10.0}, fault_rate=0.05),
    Scenario("dead", {}, ((FAULT_AT_S, {"down": True}),)),
    Scenario("hanging", {}, ((FAULT_AT_S, {"hang_rate": 1.0, "hang_s": 10.0}),)),
    Scenario("slow", {"hang_rate": 0.3, "hang_s": SLM_TIMEOUT_S + 1.0}, fault_rate=0.3),
    Scenario("recovering", {}, ((FAULT_AT_S, {"down": True}), (FAULT_AT_S + 20.0, {"down": False}))),
)


def group_of(scenario: str) -> str:
    return f"slm-{scenario}"


def key_of(scenario: str) -> str:
    return f"fk-bench-{scenario}"


class UpstreamHost:
    """The fake upstreams in a child process, so the traffic generator's threads do not slow them down.

    Commands go over a pipe: ("apply", name, changes), ("schedule", name, steps), ("stop",).
    """

    def __init__(self, behaviours: dict[str, UpstreamBehaviour]) -> None:
        context = multiprocessing.get_context("fork")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=self._serve, args=(behaviours, child), daemon=True)
        self._process.start()
        self.base_urls: dict[str, str] = self._pipe.recv()
        self._lock = threading.Lock()

    @staticmethod
    def _serve(behaviours: dict[str, UpstreamBehaviour], pipe: Any) -> None:
        upstreams = {name: FakeUpstream(b).start() for name, b in behaviours.items()}
        pipe.send({name: u.base_url for name, u in upstreams.items()})
        while True:
            command = pipe.recv()
            if command[0] == "stop":
                for upstream in upstreams.values():
                    upstream.stop()
                pipe.send("stopped")
                return
            if command[0] == "apply":
                upstreams[command[1]].apply(command[2])
            elif command[0] == "schedule":
                upstreams[command[1]].schedule(command[2])
            pipe.send("done")

    def _ask(self, *command: Any) -> None:
        with self._lock:
            self._pipe.send(command)
            self._pipe.recv()

    def apply(self, name: str, changes: dict[str, Any]) -> None:
        self._ask("apply", name, changes)

    def schedule(self, name: str, steps: list[tuple[float, dict[str, Any]]]) -> None:
        self._ask("schedule", name, steps)

    def stop(self) -> None:
        if self._process.is_alive():
            self._ask("stop")
            self._process.join(5)


def bench_bundle(base_urls: dict[str, str]) -> dict[str, Any]:
    deployments = [
        {
            "model_group": group_of(s.name),
            "model": "openai/llama-3-8b-instruct",
            "tier": "small",
            "api_base": base_urls[s.name],
            "api_key": "os.environ/FINOPS_TEST_UPSTREAM_KEY",
            "supports_logprobs": True,
        }
        for s in SCENARIOS
    ]
    deployments.append(
        {
            "model_group": "frontier",
            "model": f"openai/{FRONTIER_MODEL}",
            "tier": "frontier",
            "api_base": base_urls["frontier"],
            "api_key": "os.environ/FINOPS_TEST_UPSTREAM_KEY",
            "timeout_s": 30,
        }
    )
    policies: dict[str, Any] = {
        "default": {
            "small_model": group_of(SCENARIOS[0].name),
            "frontier_model": "frontier",
            "threshold": THRESHOLD,
            "slm_timeout_ms": int(SLM_TIMEOUT_S * 1000),
        }
    }
    keys = []
    for s in SCENARIOS:
        policies[s.name] = {"small_model": group_of(s.name)}
        keys.append(
            {
                "key_hash": token_hash(key_of(s.name)),
                "team": TEAM,
                "feature": s.name,
                "expires_at": None,
                "revoked": False,
            }
        )
    doc = {
        "schema": 1,
        "version": "scenarios-1",
        "deployments": deployments,
        "policies": policies,
        "budgets": [],
        "experiments": [],
        "keys": keys,
        "shipping": {"batch_size": 500, "interval_ms": 500, "max_spool_records": 1_000_000},
    }
    return dev_signed(with_content_hash(doc))


@dataclass
class Sent:
    """One request as the client saw it."""

    user: str
    kind: str
    proxy: int
    sent_at: float  # wall clock
    status: int = 0
    latency_s: float = 0.0


@dataclass
class Result:
    scenario: Scenario
    line: str
    ok: bool
    figures: dict[str, float] = field(default_factory=dict)


def _post(url: str, key: str, body: dict[str, Any], timeout_s: float) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - loopback only
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)
    except OSError:
        return 0


def send_traffic(
    scenario: Scenario, proxies: list[ProxyProcess], rps: float, seconds: float, seed: int = 7
) -> list[Sent]:
    """Open-loop traffic at a fixed rate: request i leaves at i / rps whatever earlier ones do."""
    rng = random.Random(f"{seed}-{scenario.name}")
    total = int(rps * seconds)
    sent: list[Sent] = []
    lock = threading.Lock()

    def one(item: Sent, prompt: str) -> None:
        started = time.perf_counter()
        body = {
            "model": "auto",
            "messages": [{"role": "user", "content": prompt}],
            "user": item.user,
            "max_tokens": 256,
        }
        item.status = _post(proxies[item.proxy].url + "/chat/completions", key_of(scenario.name), body, 60.0)
        item.latency_s = time.perf_counter() - started
        with lock:
            sent.append(item)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(16, int(rps * 8))) as pool:
        for i in range(total):
            delay = start + i / rps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            kind = "routine" if rng.random() < ROUTINE_SHARE else "complex"
            prompt = rng.choice(ROUTINE if kind == "routine" else COMPLEX)
            item = Sent(f"{scenario.name}-{i}", kind, i % len(proxies), time.time())
            pool.submit(one, item, prompt)
    return sent


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q * (len(ranked) - 1))))]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def evaluate(
    scenario: Scenario,
    sent: list[Sent],
    records: list[dict[str, Any]],
    breakers: list[dict[str, Any]],
    started_at: float,
    seconds: float,
    healthy: dict[str, float] | None,
) -> Result:
    group = group_of(scenario.name)
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_user[record["end_user"]].append(record)
    calls = len(sent)
    routine = [s for s in sent if s.kind == "routine"]
    failed = sum(1 for s in sent if s.status != 200)
    small_served = fallbacks = skipped = waited = wanted_small = abandoned = 0
    direct: list[float] = []  # latencies of calls that went straight to the frontier
    reasons: Counter[str] = Counter()
    cost = baseline = Decimal("0")
    touched: dict[str, bool] = {}
    waited_by: dict[str, bool] = {}
    for s in sent:
        attempts = by_user.get(s.user, [])
        touched[s.user] = any(a["attempt"] == 1 and a["model_group"] == group for a in attempts)
        waited_by[s.user] = any(
            a["attempt"] == 1
            and a["model_group"] == group
            and a["status"] == "error"
            and _epoch(a["end_time"]) - _epoch(a["start_time"]) >= SLM_TIMEOUT_S * 0.95
            for a in attempts
        )
        waited += waited_by[s.user]
        first = next((a for a in attempts if a["attempt"] == 1), None)
        if first is not None and (first["route"] == "small" or first["decision_reason"] == SLM_UNAVAILABLE):
            wanted_small += 1
        elif first is not None and len(attempts) == 1 and s.status == 200:
            direct.append(s.latency_s * 1000)
        if first is not None and first["decision_reason"] == SLM_UNAVAILABLE and s.status == 200:
            direct.append(s.latency_s * 1000)
        if any(a["model_group"] == group and a["status"] == "success" for a in attempts):
            small_served += 1
        for a in attempts:
            cost += Decimal(a["cost_usd"])
            if a["status"] == "success" and a["fallback_reason"] != "low_confidence":
                baseline += Decimal(a["baseline_cost_usd"])
            if a["fallback"]:
                fallbacks += 1
                reasons[a["fallback_reason"]] += 1
            if a["fallback_reason"] == SLM_UNAVAILABLE and not a["fallback"]:
                skipped += 1
            if a["error_class"] == ABANDONED_ERROR:
                abandoned += 1
    missing = sum(1 for s in sent if not by_user.get(s.user))
    savings = float(1 - cost / baseline) * 100 if baseline else 0.0
    fallback_pct = 100.0 * fallbacks / wanted_small if wanted_small else 0.0
    small_share = 100.0 * small_served / calls if calls else 0.0
    open_pct = 100.0 * skipped / calls if calls else 0.0
    lat_r = [s.latency_s * 1000 for s in routine if s.status == 200]
    lat_c = [s.latency_s * 1000 for s in sent if s.kind == "complex" and s.status == 200]
    p = {
        f"{k}{q}": percentile(v, q / 100)
        for k, v in (("r", lat_r), ("c", lat_c), ("d", direct))
        for q in (50, 95, 99)
    }

    # breaker time: share of the run each proxy's breaker was not closed
    end_at = started_at + seconds
    open_seconds, opened_at = [], []
    for report in breakers:
        moments = [
            (_epoch(t["at"]), t["to"]) for t in report.get("transitions", []) if _epoch(t["at"]) >= started_at
        ]
        first_open = next((at for at, to in moments if to == "open"), None)
        opened_at.append(first_open)
        total, since = 0.0, None
        for at, to in moments:
            if to == "open" and since is None:
                since = at
            elif to == "closed" and since is not None:
                total += at - since
                since = None
        if since is not None:
            total += end_at - since
        open_seconds.append(total)
    open_time_pct = 100.0 * max(open_seconds or [0.0]) / seconds

    settings = BreakerSettings()
    checks: list[tuple[str, bool]] = []
    checks.append(("no failed calls", failed == 0 and missing == 0))
    detail = ""
    if scenario.name == "healthy":
        expected = _expected_savings(sent, by_user)
        checks.append((f"fallback {fallback_pct:.2f} % < 1 %", fallback_pct < 1.0))
        checks.append(
            (f"savings {savings:.1f} % = expected {expected:.1f} % (±1 pp)", abs(savings - expected) <= 1.0)
        )
    elif scenario.name == "flaky":
        limit = scenario.fault_rate * 100 + 2
        base = healthy["savings"] if healthy else savings
        checks.append((f"fallback {fallback_pct:.1f} % <= {limit:.0f} %", fallback_pct <= limit))
        checks.append((f"savings within 5 pp of healthy {base:.1f} %", abs(savings - base) <= 5.0))
        checks.append((f"breaker open {open_time_pct:.1f} % of the run <= 5 %", open_time_pct <= 5.0))
    elif scenario.name in ("dead", "hanging"):
        after_touch, after_total, after_waited = 0, 0, Counter()
        for s in sent:
            opened = opened_at[s.proxy]
            if opened is not None and s.sent_at >= opened:
                after_total += 1
                after_touch += touched[s.user]
                after_waited[s.proxy] += waited_by[s.user]
        touch_pct = 100.0 * after_touch / after_total if after_total else 100.0
        opens = [f"{o - started_at:.1f}" if o is not None else "never" for o in opened_at]
        detail = f" opened_at_s={'/'.join(opens)} waited_after_open={dict(after_waited)}"
        checks.append(("breaker opened on every proxy", all(o is not None for o in opened_at)))
        checks.append((f"{touch_pct:.2f} % touch the SLM after it opens <= 1 %", touch_pct <= 1.0))
        worst = max(after_waited.values() or [0])
        checks.append(
            (
                f"<= {settings.consecutive_failures} wait out the timeout after it opens (per proxy, worst {worst})",
                worst <= settings.consecutive_failures,
            )
        )
        if scenario.name == "hanging":
            bound = SLM_TIMEOUT_S * 1000 + p["d99"]
            over = [s for s in routine if s.status == 200 and s.latency_s * 1000 > bound]
            detail += (
                f" routine_over_bound={len(over)} of {len(routine)} "
                f"(waited the timeout: {sum(waited_by[s.user] for s in over)})"
            )
            checks.append(
                (
                    f"routine p99 {p['r99']:.0f} ms <= timeout + straight-to-frontier p99 = {bound:.0f} ms",
                    p["r99"] <= bound,
                )
            )
    elif scenario.name == "slow":
        fires = fallback_alert_fires(
            requests=calls,
            by_reason={k: v for k, v in reasons.items()},
            threshold=0.2,
            min_requests=50,
        )
        checks.append((f"fallback {fallback_pct:.1f} % ≈ 30 % (25–35)", 25.0 <= fallback_pct <= 35.0))
        checks.append(("breaker never opened", all(o is None for o in opened_at)))
        checks.append(("fallback-rate alert fires (20 %, 50 requests)", fires))
    elif scenario.name == "recovering":
        recovered_at = started_at + FAULT_AT_S + 20.0
        target = 0.9 * (healthy["small_share"] if healthy else 100.0 * wanted_small / max(1, calls))
        back_at = _back_at(sent, touched, by_user, group, recovered_at, end_at, target)
        label = f"{back_at - recovered_at:.1f} s" if back_at is not None else "never"
        detail = f" back_after={label}"
        checks.append(
            (
                f"small share back to >= {target:.0f} % within 30 s of recovery ({label})",
                back_at is not None and back_at - recovered_at <= 30.0,
            )
        )
    ok = all(passed for _, passed in checks)
    reason_text = (
        ",".join(f"{k}:{100.0 * v / max(1, wanted_small):.1f}" for k, v in sorted(reasons.items())) or "-"
    )
    line = (
        f"{scenario.name:<10} {'ok' if ok else 'FAIL'}  requests={calls} small_share={small_share:.1f}% "
        f"fallback={fallback_pct:.1f}% [{reason_text}] breaker_open={open_pct:.1f}% of calls "
        f"({open_time_pct:.1f}% of time) waited_timeout={100.0 * waited / max(1, calls):.1f}% ({waited} calls) "
        f"abandoned_in_flight={abandoned} "
        f"routine_p50/95/99={p['r50']:.0f}/{p['r95']:.0f}/{p['r99']:.0f}ms "
        f"complex_p50/95/99={p['c50']:.0f}/{p['c95']:.0f}/{p['c99']:.0f}ms "
        f"straight_to_frontier_p99={p['d99']:.0f}ms "
        f"cost=${cost:.4f} baseline=${baseline:.4f} savings={savings:.1f}%{detail}"
    )
    failing = [name for name, passed in checks if not passed]
    if failing:
        line += "\n    failed: " + "; ".join(failing)
    return Result(
        scenario,
        line,
        ok,
        {"savings": savings, "fallback": fallback_pct, "small_share": small_share},
    )


def _expected_savings(sent: list[Sent], by_user: dict[str, list[dict[str, Any]]]) -> float:
    """What the routing decisions alone imply, priced here from litellm's map: SLM calls free, frontier at gpt-4o."""
    import litellm

    entry = litellm.model_cost[FRONTIER_MODEL]
    fr_in, fr_out = (Decimal(str(entry[k])) for k in ("input_cost_per_token", "output_cost_per_token"))
    cost = baseline = Decimal("0")
    for s in sent:
        attempts = by_user.get(s.user, [])
        served = [a for a in attempts if a["status"] == "success"]
        first = next((a for a in attempts if a["attempt"] == 1), None)
        if not served or first is None:
            continue
        frontier = fr_in * served[-1]["input_tokens"] + fr_out * served[-1]["output_tokens"]
        baseline += frontier
        cost += frontier if first["route"] == "frontier" else Decimal("0")
    return float(1 - cost / baseline) * 100 if baseline else 0.0


def _back_at(
    sent: list[Sent],
    touched: dict[str, bool],
    by_user: dict[str, list[dict[str, Any]]],
    group: str,
    recovered_at: float,
    end_at: float,
    target_pct: float,
) -> float | None:
    """First moment after recovery from which every 3 s window's small-model share stays >= target."""
    window = 3.0
    served = {
        s.user: any(a["model_group"] == group and a["status"] == "success" for a in by_user.get(s.user, []))
        for s in sent
    }
    moment = recovered_at
    while moment + window <= end_at:
        ok_from_here = True
        probe = moment
        while probe + window <= end_at:
            in_window = [s for s in sent if probe <= s.sent_at < probe + window]
            share = 100.0 * sum(served[s.user] for s in in_window) / len(in_window) if in_window else 0.0
            if share < target_pct:
                ok_from_here = False
                break
            probe += window
        if ok_from_here:
            return moment
        moment += 1.0
    return None


def run(
    rps: float,
    seconds: float,
    only: str | None,
    say: Callable[[str], None] = print,
    dump: Path | None = None,
) -> list[Result]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")
    chosen = [s for s in SCENARIOS if only in (None, s.name)]
    if not chosen:
        raise SystemExit(f"unknown scenario {only!r}: pick one of {', '.join(s.name for s in SCENARIOS)}")
    behaviours = {
        s.name: UpstreamBehaviour(
            name=group_of(s.name),
            latency_ms=SLM_LATENCY_MS,
            completion_tokens=SLM_COMPLETION_TOKENS,
            even_faults=True,  # exactly the scenario's fault rates, so runs compare
        )
        for s in SCENARIOS
    }
    behaviours["frontier"] = UpstreamBehaviour(
        name="frontier", latency_ms=FRONTIER_LATENCY_MS, completion_tokens=FRONTIER_COMPLETION_TOKENS
    )
    upstreams = UpstreamHost(behaviours)
    control_plane = ControlPlaneDouble(PROXY_TOKEN).start()
    bundle = bench_bundle(upstreams.base_urls)
    control_plane.set_bundle(bundle)
    workdir = Path(tempfile.mkdtemp(prefix="finops-scenarios-"))
    proxies = [
        ProxyProcess(
            bundle,
            workdir / f"proxy-{i}",
            proxy_token=PROXY_TOKEN,
            control_plane_url=control_plane.url,
            heartbeat_s=5.0,
        )
        for i in range(2)
    ]
    results: list[Result] = []
    try:
        for proxy in proxies:
            proxy.start()
        say(
            f"# {len(chosen)} scenario(s), {rps:g} requests/s for {seconds:g} s each, two proxies, SLM timeout "
            f"{SLM_TIMEOUT_S:g} s, SLM {SLM_LATENCY_MS:g} ms, frontier {FRONTIER_LATENCY_MS:g} ms, logs in {workdir}"
        )
        healthy: dict[str, float] | None = None
        for scenario in chosen:
            upstreams.apply(scenario.name, scenario.behaviour)
            started_at = time.time()
            upstreams.schedule(scenario.name, list(scenario.steps))
            sent = send_traffic(scenario, proxies, rps, seconds)
            group = group_of(scenario.name)
            # every record shipped: each call has a record of its last attempt
            deadline = time.monotonic() + 30
            users = {s.user for s in sent}
            while time.monotonic() < deadline:
                have = {r["end_user"] for r in control_plane.records_for(team=TEAM) if r["end_user"] in users}
                if have >= users:
                    break
                time.sleep(0.5)
            time.sleep(1.0)  # stragglers: a fallback's second attempt ships just after the first
            records = [r for r in control_plane.records_for(team=TEAM) if r["end_user"] in users]
            breakers = []
            for proxy in proxies:
                reports = [b for b in proxy.status().get("breakers", []) if b["model_group"] == group]
                breakers.append(reports[0] if reports else {"transitions": []})
            result = evaluate(scenario, sent, records, breakers, started_at, seconds, healthy)
            if dump is not None:
                dump.mkdir(parents=True, exist_ok=True)
                (dump / f"{scenario.name}.json").write_text(
                    json.dumps(
                        {
                            "started_at": started_at,
                            "sent": [vars(s) for s in sent],
                            "records": records,
                            "breakers": breakers,
                        }
                    )
                )
            if scenario.name == "healthy":
                healthy = result.figures
            results.append(result)
            say(result.line)
        ok = sum(r.ok for r in results)
        flaky = next((r for r in results if r.scenario.name == "flaky"), None)
        say(
            f"scenarios_ok={ok}/{len(results)} "
            f"flaky_savings_pct={flaky.figures['savings']:.1f} flaky_fallback_pct={flaky.figures['fallback']:.1f}"
            if flaky
            else f"scenarios_ok={ok}/{len(results)} flaky_savings_pct=- flaky_fallback_pct=-"
        )
        return results
    finally:
        for proxy in proxies:
            proxy.stop()
        control_plane.stop()
        upstreams.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each scenario (default 60)")
    parser.add_argument("--only", help="run one scenario: " + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--dump", type=Path, help="write each scenario's requests and records here (JSON)")
    args = parser.parse_args(argv)
    if args.seconds < 40:
        parser.error("--seconds must be at least 40: faults start at 10 s and recovery is judged for 30 s")
    results = run(args.rps, args.seconds, args.only, dump=args.dump)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
