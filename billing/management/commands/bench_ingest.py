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
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from billing import partitions, selectors, services
from billing.models import SpendEvent, SpendRollupHourly
from billing.synthetic import synthetic_records
from controlplane.models import Feature, Team
from routing.engine import signing
from routing.models import Proxy
from routing.services import feature_key_create

SCRATCH = "bench_copy_scratch"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a local process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The gunicorn workers: processes whose parent is the master."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _db_backends() -> list[int]:
    """Postgres backend pids serving the bench database, except this command's own connection."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


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
        if not os.path.exists("/proc/self/stat"):
            raise CommandError("bench_ingest reads process CPU times from /proc: run it on Linux")
        if connection.vendor != "postgresql":
            raise CommandError(
                "bench_ingest needs Postgres: point DATABASE_URL at a scratch database, e.g. "
                "DATABASE_URL=postgres://postgres@127.0.0.1:5432/finops_bench (create it with createdb first)"
            )
        call_command("migrate", verbosity=0)
        if not Feature.objects.exists():
            call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
        for feature in Feature.objects.filter(keys__isnull=True):  # ingest refuses features no proxy serves
            feature_key_create(actor=None, feature=feature, name="bench")
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
        self.stdout.write(
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
        )
        self.stdout.write(
            f"events_per_s={events_per_s:.0f} copy_events_per_s={copy_per_s:.0f} "
            f"ratio={events_per_s / copy_per_s:.3f} server_cpu_us_per_event={self.server_cpu_us:.1f}"
        )

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
            # the bench publishes no bundle; the production-mode server still insists on a signing key
            "FINOPS_BUNDLE_SIGNING_KEY": settings.FINOPS_BUNDLE_SIGNING_KEY,
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
            # Signed before the clock starts, so the figure is the server's: the timestamps stay well inside
            # the accepted clock skew (FINOPS_INGEST_CLOCK_SKEW_S, 300 s) for any run this bench makes.
            key = signing.signing_key(token)
            stamp = str(int(time.time()))
            work: queue.Queue[tuple[bytes, str]] = queue.Queue()
            for body in bodies:
                work.put((body, signing.sign(key, stamp, body)))
            results: list[dict[str, Any]] = []
            failures: list[str] = []

            def client() -> None:
                while True:
                    try:
                        body, signature = work.get_nowait()
                    except queue.Empty:
                        return
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    conn.request(
                        "POST",
                        "/api/v1/ingest/spend",
                        body=body,
                        headers={
                            "Content-Type": "application/json",
                            "Authorization": f"Bearer {token}",
                            signing.TIMESTAMP_HEADER: stamp,
                            signing.SIGNATURE_HEADER: signature,
                        },
                    )
                    reply = conn.getresponse()
                    payload = reply.read()
                    conn.close()
                    if reply.status == 200:
                        results.append(json.loads(payload))
                    else:
                        failures.append(f"HTTP {reply.status}: {payload[:300]!r}")

            web_pids = _children(server.pid)
            cpu_before = {pid: _cpu_s(pid) for pid in web_pids}
            db_before = {pid: _cpu_s(pid) for pid in _db_backends()}
            began = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(options["clients"])]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
            web_cpu = sum(_cpu_s(pid) - cpu_before.get(pid, 0.0) for pid in web_pids)
            db_cpu = sum(_cpu_s(pid) - db_before.get(pid, 0.0) for pid in _db_backends())
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
        # CPU time is steadier than wall time on a shared machine: what each event costs the server.
        self.server_cpu_us = (web_cpu + db_cpu) / total * 1e6
        self.stdout.write(
            f"server CPU per event: {web_cpu / total * 1e6:.1f} us in gunicorn workers + "
            f"{db_cpu / total * 1e6:.1f} us in their Postgres backends = {self.server_cpu_us:.1f} us "
            f"(CPU-bound ceiling on {os.cpu_count()} cores: {os.cpu_count() / self.server_cpu_us * 1e6:,.0f} events/s)"
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
        start = max(end - timedelta(days=30), partitions.retention_cutoff(end))
        viewer, _ = get_user_model().objects.get_or_create(
            username="bench-ingest", defaults={"is_superuser": True, "is_staff": True}
        )
        filters = selectors.dashboard_filters(
            {"start": start.date().isoformat()}, user=viewer, today=end.date()
        )
        feature = Feature.objects.order_by("slug").first()
        checks = {
            "overview": lambda: selectors.overview(filters=filters, user=viewer, now=end),
            "routing_analytics": lambda: selectors.routing_analytics(filters=filters),
            "feature_page": lambda: selectors.feature_page(feature=feature, filters=filters, now=end),
        }
        self.stdout.write(
            f"dashboard selectors over 30 days at {have:,} raw events "
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
