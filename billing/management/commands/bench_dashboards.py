"""Server time of each dashboard page on N seeded events, in-process through the Django test client as the VP."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, reset_queries
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import timezone

from billing.models import SpendEvent
from controlplane.models import Feature


class Command(BaseCommand):
    help = (
        "Seed (or reuse) N spend events with seed_spend, then print each dashboard page's median server time "
        "over a few runs as the demo VP; the last line is max_page_ms=<n>."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--events", type=int, default=1_000_000, help="events to have (default 1000000)")
        parser.add_argument(
            "--days", type=float, default=30, help="seed them over the last D days (default 30)"
        )
        parser.add_argument("--runs", type=int, default=5, help="timed runs per page (default 5)")
        parser.add_argument("--user", default="vp", help="log in as this user (default vp, from seed_demo)")

    def handle(self, *args: Any, **options: Any) -> None:
        # the in-process client calls itself "testserver" over (pretend) HTTPS, whatever the deployment allows
        with override_settings(ALLOWED_HOSTS=["testserver"]):
            self._bench(**options)

    def _bench(self, **options: Any) -> None:
        if options["events"] <= 0 or options["runs"] <= 0:
            raise CommandError("--events and --runs must be positive")
        if not Feature.objects.exists():
            call_command("seed_demo", stdout=self.stdout)
        have = SpendEvent.objects.count()
        if have < options["events"]:
            self.stdout.write(f"seeding {options['events'] - have} events (have {have}) ...")
            call_command(
                "seed_spend", events=options["events"] - have, days=options["days"], stdout=self.stdout
            )
        else:
            self.stdout.write(f"reusing {have} events (wanted {options['events']})")
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(
                f"--user: no user {options['user']!r}; run seed_demo or pass an existing username"
            )
        client = Client(enforce_csrf_checks=False, **{"wsgi.url_scheme": "https"})
        client.force_login(user)
        feature = Feature.objects.order_by("slug").first()
        team = feature.team.slug
        pages = [
            ("overview", reverse("overview"), {}),
            ("overview team filter (htmx)", reverse("overview"), {"team": team, "HX": True}),
            ("overview 30 days", reverse("overview"), {"start": _days_ago(29)}),
            ("routing analytics", reverse("routing-analytics"), {}),
            ("feature page", reverse("feature-detail", args=[feature.code]), {}),
            ("overview CSV (features)", reverse("overview"), {"format": "csv", "table": "features"}),
        ]
        worst = 0.0
        for name, url, params in pages:
            headers = {"HX-Request": "true"} if params.pop("HX", False) else {}
            timings = []
            reset_queries()  # with DEBUG on the log holds earlier queries, which would skew the capture
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url, params, headers=headers)  # warm-up, and the query count
            if response.status_code != 200:
                raise CommandError(f"{name}: {url} answered {response.status_code}")
            for _ in range(options["runs"]):
                began = time.perf_counter()
                client.get(url, params, headers=headers)
                timings.append((time.perf_counter() - began) * 1000)
            median = statistics.median(timings)
            worst = max(worst, median)
            self.stdout.write(
                f"{name:<30} median {median:7.1f} ms  (min {min(timings):.1f}, max {max(timings):.1f}, "
                f"{len(queries.captured_queries)} queries)"
            )
        self.stdout.write(f"events={SpendEvent.objects.count()} database={connection.vendor}")
        self.stdout.write(f"max_page_ms={round(worst)}")


def _days_ago(days: int) -> str:
    return (timezone.now() - timedelta(days=days)).date().isoformat()
