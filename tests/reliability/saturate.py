"""Saturation: many concurrent clients through two real proxies into a control plane on a private Postgres.

    python -m tests.reliability.saturate [--clients 200] [--seconds 60] [--workers 2] [--timeout 30]

Not a test and not in CI (it saturates the machine on purpose). Prints how many requests succeeded, were
shed (429/503 from a proxy) or timed out at the client, whether every success was stored exactly once, the
spend backlog when the load stopped (ingest lag: records answered but not yet in Postgres, and the age of
the oldest of them) and how long the control plane took to drain it. Saturation must degrade, never lose.
Everything listens on 127.0.0.1; the database is a private `initdb` cluster, never the shared server."""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour  # noqa: E402
from routing.devtools.harness import free_port, http_json  # noqa: E402
from routing.devtools.traffic import COMPLEX, ROUTINE  # noqa: E402
from routing.engine.signing import split_credential
from tests.reliability.conftest import UPSTREAM_KEY_ENV, ControlPlaneServer, IsolatedProxy, PrivateRedis  # noqa: E402
from tests.reliability.private_stack import PrivatePostgres, migrate, postgres_bindir, seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1, help="--num_workers of each LiteLLM proxy")
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout per request (s)")
    args = parser.parse_args()

    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("no Postgres server binaries (initdb, pg_ctl): apt-get install postgresql")
    workdir = Path(tempfile.mkdtemp(prefix="finops-saturate-"))
    pg = PrivatePostgres(bindir)
    redis = PrivateRedis().start()
    upstreams = {
        "slm": FakeUpstream(UpstreamBehaviour(name="slm", latency_ms=50, completion_tokens=40)).start(),
        "frontier": FakeUpstream(
            UpstreamBehaviour(name="frontier", latency_ms=150, completion_tokens=80)
        ).start(),
    }
    server = ControlPlaneServer(workdir, pg.url, redis.url)
    proxies: list[IsolatedProxy] = []
    try:
        print(f"saturate: private Postgres on 127.0.0.1:{pg.port}, workdir {workdir}", flush=True)
        pg.init()
        migrate(pg.url, redis.url)
        ports = [free_port(), free_port()]
        data = seed(
            pg.url,
            redis.url,
            slm=upstreams["slm"].base_url,
            frontier=upstreams["frontier"].base_url,
            key_env=UPSTREAM_KEY_ENV,
            proxy_ports=ports,
            slm_timeout_ms=5000,
        )
        server.start()
        for i, (port, token) in enumerate(zip(ports, data["tokens"], strict=True)):
            proxies.append(
                IsolatedProxy(
                    data["bundle"],
                    workdir / f"proxy-{i}",
                    proxy_token=token,
                    control_plane_url=server.url,
                    heartbeat_s=2.0,
                    port=port,
                    workers=args.workers,
                )
            )
        starters = [threading.Thread(target=proxy.start, kwargs={"timeout_s": 300}) for proxy in proxies]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        if not all(proxy.process is not None and proxy.process.poll() is None for proxy in proxies):
            raise SystemExit("a proxy did not start: see proxy-*/ logs in " + str(workdir))
        print(
            f"saturate: {args.clients} clients x {args.seconds:g} s through {len(proxies)} proxies "
            f"({args.workers} workers each), load average before {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        run(args, pg, proxies, data["keys"])
    finally:
        for proxy in proxies:
            proxy.stop()
        server.stop()
        redis.stop()
        for upstream in upstreams.values():
            upstream.stop()
        pg.destroy()


def run(args: argparse.Namespace, pg: PrivatePostgres, proxies: list[IsolatedProxy], keys: list[str]) -> None:
    lock = threading.Lock()
    successes: dict[str, float] = {}  # call id -> when the client got its answer
    outcomes = {"shed (429/503)": 0, "client timeouts": 0, "other errors": 0, "5xx other than 503": 0}
    stop = threading.Event()

    def client(index: int) -> None:
        rng = random.Random(index)
        n = 0
        while not stop.is_set():
            proxy = proxies[(index + n) % len(proxies)]
            n += 1
            prompt = rng.choice(COMPLEX if rng.random() < 0.3 else ROUTINE)
            body = json.dumps(
                {"model": "auto", "messages": [{"role": "user", "content": prompt}], "max_tokens": 32}
            ).encode()
            request = urllib.request.Request(
                proxy.url + "/v1/chat/completions",
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {rng.choice(keys)}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310 - loopback
                    response.read()
                    call_id = response.headers.get("x-litellm-call-id", "")
                with lock:
                    if call_id:
                        successes[call_id] = time.monotonic()
                    else:
                        outcomes["other errors"] += 1
            except urllib.error.HTTPError as exc:
                with lock:
                    if exc.code in (429, 503):
                        outcomes["shed (429/503)"] += 1
                    else:
                        outcomes["other errors"] += 1
                        if exc.code >= 500:
                            outcomes["5xx other than 503"] += 1
            except TimeoutError:
                with lock:
                    outcomes["client timeouts"] += 1
            except OSError as exc:
                with lock:
                    if "timed out" in str(exc):
                        outcomes["client timeouts"] += 1
                    else:
                        outcomes["other errors"] += 1
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    peak_load = 0.0
    while time.monotonic() - started < args.seconds:
        time.sleep(1)
        peak_load = max(peak_load, os.getloadavg()[0])
    stop.set()
    for thread in threads:
        thread.join(args.timeout + 10)
    load_end = time.monotonic()
    elapsed = load_end - started

    ids = list(successes)
    stored_now = _stored_count(pg, ids)
    spools = _spool_depths(proxies)
    behind = len(ids) - stored_now
    oldest_unstored_age = 0.0
    if behind:
        stored_ids = _stored_ids(pg, ids)
        waiting = [successes[i] for i in ids if i not in stored_ids]
        oldest_unstored_age = load_end - min(waiting) if waiting else 0.0
    drain_started = time.monotonic()
    deadline = drain_started + 600
    while time.monotonic() < deadline:
        if _stored_count(pg, ids) >= len(ids) and all(d == 0 for d in _spool_depths(proxies)):
            break
        time.sleep(0.5)
    drain_s = time.monotonic() - drain_started

    stored = _stored_ids(pg, ids)
    duplicates = _duplicates(pg, ids)
    lost = len(ids) - len(stored)
    total = len(ids) + sum(v for k, v in outcomes.items() if k != "5xx other than 503")
    print(f"requests={total} in {elapsed:.1f} s ({total / elapsed:.0f}/s), peak load average {peak_load:.2f}")
    print(
        f"successes={len(ids)} shed={outcomes['shed (429/503)']} client_timeouts={outcomes['client timeouts']} "
        f"other_errors={outcomes['other errors']} five_xx_other_than_503={outcomes['5xx other than 503']}"
    )
    print(
        f"ingest lag at load end: {behind} answered calls not yet in Postgres (spools {spools}), "
        f"oldest waiting {oldest_unstored_age:.1f} s"
    )
    print(f"drain time: {drain_s:.1f} s")
    print(f"exactly once: stored={len(stored)} of {len(ids)} successes, lost={lost} duplicates={duplicates}")
    if lost or duplicates:
        raise SystemExit(1)


def _values(ids: list[str]) -> str:
    return ",".join("'" + i.replace("'", "''") + "'" for i in ids) or "''"


def _stored_ids(pg: PrivatePostgres, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 5000):
        chunk = _values(ids[start : start + 5000])
        found |= {
            r[0]
            for r in pg.query(
                f"SELECT DISTINCT call_id FROM billing_spendevent WHERE status = 'success' AND call_id IN ({chunk})"
            )
        }  # noqa: S608
    return found


def _stored_count(pg: PrivatePostgres, ids: list[str]) -> int:
    return len(_stored_ids(pg, ids))


def _duplicates(pg: PrivatePostgres, ids: list[str]) -> int:
    total = 0
    for start in range(0, len(ids), 5000):
        chunk = _values(ids[start : start + 5000])
        total += int(
            pg.query(
                "SELECT count(*) FROM (SELECT call_id FROM billing_spendevent WHERE status = 'success' "  # noqa: S608
                f"AND call_id IN ({chunk}) GROUP BY call_id HAVING count(*) > 1) d"
            )[0][0]
        )
        total += int(
            pg.query(
                "SELECT count(*) FROM (SELECT event_id FROM billing_spendevent "  # noqa: S608
                f"WHERE call_id IN ({chunk}) GROUP BY event_id HAVING count(*) > 1) d"
            )[0][0]
        )
    return total


def _spool_depths(proxies: list[IsolatedProxy]) -> list[int | None]:
    depths = []
    for proxy in proxies:
        status, body, _ = http_json(
            "GET",
            proxy.url + "/finops/v1/status",
            headers={"Authorization": f"Bearer {split_credential(proxy.proxy_token)[0]}"},
        )
        depths.append(body.get("spool_depth") if status == 200 and isinstance(body, dict) else None)
    return depths


if __name__ == "__main__":
    main()
