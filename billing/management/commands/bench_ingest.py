"""Benchmark spend ingest end to end: signed batches over real HTTP into gunicorn, against raw COPY.

Run it on a scratch Postgres database, never the test or production one:
    createdb -h 127.0.0.1 -U postgres finops_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/finops_bench python manage.py bench_ingest --events 200000
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from billing import partitions, selectors, services
from billing.models import SpendEvent, SpendRollupHourly
from billing.synthetic import synthetic_records
from controlplane.models import Feature, Proxy, Team
from routing.engine import signing

SCRATCH = "bench_copy_scratch"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Command(BaseCommand):
    help = "Post signed spend batches through gunicorn (Postgres only) and compare with raw COPY; time the selectors."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--events", type=int, default=200_000)
        parser.add_argument("--batch", type=int, default=500, help="records per batch (default 500)")
        parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
        parser.add_argument(
            "--selector-events",
            type=int,
            default=0,
            help="seed the database up to this many events before timing the overview selectors",
        )
        parser.add_argument(
            "--span-minutes",
            type=float,
            default=60,
            help="start times spread over the last N minutes, as a live shipper sends them (default 60)",
        )
        parser.add_argument("--mirror", action="store_true", help="keep the Datadog mirror queueing on")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                "bench_ingest needs Postgres: point DATABASE_URL at a scratch database, e.g. "
                "DATABASE_URL=postgres://postgres@127.0.0.1:5432/finops_bench (create it with createdb first)"
            )
        call_command("migrate", verbosity=0)
        if not Feature.objects.exists():
            call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
        token = secrets.token_hex(24)
        Proxy.objects.update_or_create(
            name="bench-proxy",
            defaults={
                "base_url": "http://127.0.0.1:1",
                "token_hash": signing.token_hash(token),
                "signing_key": signing.signing_key(token),
                "is_active": True,
            },
        )
        bodies, records = self._batches(options["events"], options["batch"], options["span_minutes"])
        self.stdout.write(f"{len(records)} records in {len(bodies)} batches of up to {options['batch']}")

        events_per_s = self._http(bodies, len(records), token, options)
        copy_per_s = self._copy(records)
        self._selectors(options["selector_events"])
        self.stdout.write(f"events_per_s={events_per_s:.0f} copy_events_per_s={copy_per_s:.0f}")

    def _batches(self, events: int, size: int, span_minutes: float) -> tuple[list[bytes], list]:
        features = list(Feature.objects.values_list("team__slug", "slug"))
        end = timezone.now()
        records = list(
            synthetic_records(
                events=events,
                start=end - timedelta(minutes=span_minutes),
                end=end,
                features=features,
                seed=time.time_ns(),
            )
        )
        records.sort(key=lambda r: r.end_time)  # a shipper sends attempts in the order they finish
        bodies = [
            json.dumps(
                {"records": [r.to_json() for r in records[i : i + size]]}, separators=(",", ":")
            ).encode()
            for i in range(0, len(records), size)
        ]
        return bodies, records

    def _http(self, bodies: list[bytes], total: int, token: str, options: dict[str, Any]) -> float:
        port = _free_port()
        env = {
            **os.environ,
            "DEBUG": "false",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": settings.DATABASE_URL,
            "DATADOG_ENABLED": "true" if options["mirror"] else "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "gunicorn",
                "controlplane.wsgi:application",
                "--workers",
                str(options["workers"]),
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=settings.BASE_DIR,
        )
        try:
            self._wait_ready(port, server)
            self.stdout.write(
                f"gunicorn: {options['workers']} workers on 127.0.0.1:{port}, {options['clients']} client threads, "
                f"Datadog mirror {'on' if options['mirror'] else 'off'}"
            )
            work: queue.Queue[bytes] = queue.Queue()
            for body in bodies:
                work.put(body)
            results: list[dict[str, Any]] = []
            failures: list[str] = []
            key = signing.signing_key(token)

            def client() -> None:
                while True:
                    try:
                        body = work.get_nowait()
                    except queue.Empty:
                        return
                    stamp = str(int(time.time()))
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    conn.request(
                        "POST",
                        "/api/v1/ingest/spend",
                        body=body,
                        headers={
                            "Content-Type": "application/json",
                            "Authorization": f"Bearer {token}",
                            signing.TIMESTAMP_HEADER: stamp,
                            signing.SIGNATURE_HEADER: signing.sign(key, stamp, body),
                        },
                    )
                    reply = conn.getresponse()
                    payload = reply.read()
                    conn.close()
                    if reply.status == 200:
                        results.append(json.loads(payload))
                    else:
                        failures.append(f"HTTP {reply.status}: {payload[:300]!r}")

            began = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(options["clients"])]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
        finally:
            server.terminate()
            server.wait(timeout=30)
        if failures:
            raise CommandError(f"{len(failures)} batches failed, first: {failures[0]}")
        accepted = sum(r["accepted"] for r in results)
        duplicates = sum(r["duplicates"] for r in results)
        self.stdout.write(
            f"HTTP ingest: {accepted} accepted, {duplicates} duplicates in {elapsed:.2f} s "
            f"({total / elapsed:,.0f} events/s, {len(bodies) / elapsed:.1f} batches/s)"
        )
        if accepted != total:
            raise CommandError(f"expected {total} accepted records, got {accepted}")
        return total / elapsed

    def _wait_ready(self, port: int, server: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise CommandError(f"gunicorn exited with {server.returncode} before it served")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise CommandError("gunicorn did not answer /healthz within 60 s")

    def _copy(self, records: list) -> float:
        teams = dict(Team.objects.values_list("slug", "id"))
        features = dict(Feature.objects.values_list("slug", "id"))
        rows = [
            services.event_row(
                r, batch_id=None, proxy_id=None, team_id=teams[r.team], feature_id=features[r.feature]
            )
            for r in records
        ]
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
            cursor.execute(
                f"CREATE TABLE {SCRATCH} AS SELECT {', '.join(services.EVENT_COLUMNS)} "
                f"FROM {SpendEvent._meta.db_table} WITH NO DATA"
            )
            began = time.perf_counter()
            services.copy_rows(cursor, SCRATCH, rows)
            elapsed = time.perf_counter() - began
            cursor.execute(f"DROP TABLE {SCRATCH}")
        self.stdout.write(f"raw COPY into a scratch table: {len(rows)} rows in {elapsed:.2f} s")
        return len(rows) / elapsed

    def _selectors(self, wanted: int) -> None:
        have = SpendEvent.objects.count()
        if wanted > have:
            began = time.perf_counter()
            result = services.spend_seed(events=wanted - have, days=30)
            self.stdout.write(
                f"seeded {result['events']} more events (with rollups) in {time.perf_counter() - began:.1f} s"
            )
            have = SpendEvent.objects.count()
        end = timezone.now()
        window = {"start": max(end - timedelta(days=30), partitions.retention_cutoff(end)), "end": end}
        checks = {
            "spend_summary": lambda: selectors.spend_summary(**window),
            "spend_by_feature": lambda: selectors.spend_by_feature(**window),
            "spend_daily_by_model": lambda: selectors.spend_daily_by_model(**window),
            "fallback_rate_series": lambda: selectors.fallback_rate_series(
                **window, bucket="day", by_feature=True
            ),
            "latency_percentiles": lambda: selectors.latency_percentiles(**window, by="model"),
            "score_distribution": lambda: selectors.score_distribution(**window),
        }
        self.stdout.write(
            f"overview selectors over 30 days at {have:,} raw events "
            f"({SpendRollupHourly.objects.count():,} rollup rows), median of 5:"
        )
        for name, run in checks.items():
            run()
            times = []
            for _ in range(5):
                began = time.perf_counter()
                run()
                times.append((time.perf_counter() - began) * 1000)
            self.stdout.write(f"  {name}: {statistics.median(times):.1f} ms")
