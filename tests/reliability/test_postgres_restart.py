"""Postgres restarted under ingest, then stopped for 10 s (issue 19 part 2), on a private cluster.

The control plane (gunicorn), two real proxies and the fake upstreams run as in test_load_and_faults.py, but
the database is our own `initdb` cluster on a free port, so restarting it disturbs nobody. While it is down
the proxies keep serving and hold spend in their spools, /readyz answers 503 and ingest answers 503 (never
500); afterwards every client-observed success is stored exactly once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from routing.devtools.harness import free_port, http_json
from routing.engine.signing import split_credential
from tests.reliability.conftest import (
    FAULTS,
    SECONDS,
    TALLY,
    UPSTREAM_KEY_ENV,
    ControlPlaneServer,
    IsolatedProxy,
    PrivateRedis,
    record_fault,
)
from tests.reliability.private_stack import PrivatePostgres, migrate, postgres_bindir, seed, wait_ready
from tests.reliability.test_load_and_faults import Load, run_load, wait_drained

pytestmark = [pytest.mark.reliability, pytest.mark.proxy]

OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def private_fleet(tmp_path_factory):
    from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour

    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("no Postgres server binaries (initdb, pg_ctl) here: apt-get install postgresql")
    workdir = tmp_path_factory.mktemp("pg-restart")
    pg = PrivatePostgres(bindir)
    redis = PrivateRedis().start()
    upstreams = {
        "slm": FakeUpstream(UpstreamBehaviour(name="slm", latency_ms=20, completion_tokens=40)).start(),
        "frontier": FakeUpstream(
            UpstreamBehaviour(name="frontier", latency_ms=60, completion_tokens=80)
        ).start(),
    }
    server = ControlPlaneServer(workdir, pg.url, redis.url)
    proxies: list[IsolatedProxy] = []
    try:
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
                )
            )
        for proxy in proxies:
            proxy.start(timeout_s=180)
        yield {"pg": pg, "server": server, "proxies": proxies, "keys": data["keys"], "workdir": workdir}
    finally:
        for proxy in proxies:
            proxy.stop()
        server.stop()
        redis.stop()
        for upstream in upstreams.values():
            upstream.stop()
        pg.destroy()


def _spool_depths(proxies: list[Any]) -> list[int | None]:
    depths = []
    for proxy in proxies:
        status, body, _ = http_json(
            "GET",
            proxy.url + "/finops/v1/status",
            headers={"Authorization": f"Bearer {split_credential(proxy.proxy_token)[0]}"},
        )
        depths.append(body.get("spool_depth") if status == 200 and isinstance(body, dict) else None)
    return depths


def _stored(pg: PrivatePostgres, ids: list[str]) -> tuple[dict[str, int], int, int]:
    """(successes per call id, attempt rows, event ids stored more than once) for these call ids."""
    if not ids:
        return {}, 0, 0
    values = ",".join("'" + i.replace("'", "''") + "'" for i in ids)
    successes = {
        row[0]: int(row[1])
        for row in pg.query(
            f"SELECT call_id, count(*) FROM billing_spendevent WHERE call_id IN ({values}) "  # noqa: S608
            "AND status = 'success' GROUP BY call_id"
        )
    }
    rows = int(pg.query(f"SELECT count(*) FROM billing_spendevent WHERE call_id IN ({values})")[0][0])  # noqa: S608
    doubled = int(
        pg.query(
            "SELECT count(*) FROM (SELECT event_id FROM billing_spendevent "  # noqa: S608
            f"WHERE call_id IN ({values}) GROUP BY event_id HAVING count(*) > 1) d"
        )[0][0]
    )
    return successes, rows, doubled


def _control_plane_5xx(server: ControlPlaneServer) -> dict[str, int]:
    """5xx answers in the control plane's access log by status (503 is the outage contract; 500 is a bug)."""
    counts: dict[str, int] = {}
    for line in server.log_path.read_text(errors="replace").splitlines():
        parts = line.split('"')
        if len(parts) >= 3:
            status = parts[2].split()[0] if parts[2].split() else ""
            if status.startswith("5"):
                counts[status] = counts.get(status, 0) + 1
    return counts


def test_postgres_restart_and_10s_outage_under_ingest(private_fleet):
    pg, server, proxies = private_fleet["pg"], private_fleet["server"], private_fleet["proxies"]
    seen: dict[str, Any] = {}

    def faults(load: Load) -> None:
        time.sleep(max(2.0, SECONDS / 4))
        pg.restart("fast")  # every open connection drops; gunicorn reconnects (CONN_MAX_AGE 0)
        record_fault("Postgres (private cluster) restarted (-m fast) under ingest")
        time.sleep(max(2.0, SECONDS / 4))
        pg.stop("fast")
        down_at = time.monotonic()
        record_fault(f"Postgres (private cluster) stopped for {OUTAGE_S:g} s under ingest, then started")
        seen["readyz_down"] = wait_ready(server.url, 503, timeout_s=OUTAGE_S - 2)
        status, body, _ = http_json(
            "POST",
            server.url + "/api/v1/ingest/spend",
            body={"records": []},
            headers={"Authorization": f"Bearer {split_credential(proxies[0].proxy_token)[0]}"},
        )
        seen["ingest_down"] = (status, body)
        time.sleep(max(0.0, OUTAGE_S - 3 - (time.monotonic() - down_at)))
        seen["spool_during"] = _spool_depths(proxies)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        pg.start()
        seen["readyz_up"] = wait_ready(server.url, 200, timeout_s=30)
        time.sleep(max(2.0, SECONDS / 4))

    load = run_load(private_fleet, SECONDS, during=faults)
    drain_started = time.monotonic()
    wait_drained(private_fleet, timeout_s=120)
    drain_s = time.monotonic() - drain_started

    assert seen["readyz_down"] == 503, f"/readyz answered {seen['readyz_down']} with Postgres down, not 503"
    status, body = seen["ingest_down"]
    assert status == 503 and isinstance(body, dict) and "database" in body.get("detail", ""), (status, body)
    assert seen["readyz_up"] == 200, "/readyz did not recover after Postgres came back"
    assert any(d for d in seen["spool_during"] if d), f"no spool held records during the outage: {seen}"

    ids = [c.call_id for c in load.calls]
    assert ids, f"no call succeeded under the faults: failures by status {load.statuses}"
    assert len(ids) == len(set(ids)), "the proxies returned a call id twice"
    successes, rows, doubled = _stored(pg, ids)
    lost = [i for i in ids if i not in successes]
    duplicates = doubled + sum(1 for n in successes.values() if n > 1)
    five_xx = {k: v for k, v in _control_plane_5xx(server).items() if k != "503"}
    TALLY["client successes"] += len(ids)
    TALLY["recorded (calls)"] += len(successes)
    TALLY["recorded (attempt rows)"] += rows
    TALLY["duplicates"] += duplicates
    TALLY["lost"] += len(lost)
    TALLY["five_xx"] += sum(five_xx.values())
    FAULTS.append(
        f"  Postgres outage: spool depths {seen['spool_during']} held, drained in {drain_s:.1f} s, "
        f"{len(ids)} calls all stored once"
    )
    assert not lost, f"{len(lost)} successful calls never reached Postgres, e.g. {lost[:3]}"
    assert duplicates == 0, f"{duplicates} spend records stored twice"
    assert not five_xx, f"the control plane answered {five_xx} (a lost database must answer 503)"
