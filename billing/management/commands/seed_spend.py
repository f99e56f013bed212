"""Write synthetic spend for the demo features: both routes, fallbacks, experiments, diurnal shape, rollups."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing import services
from controlplane.models import Feature


def _incident(raw: str, now: datetime) -> tuple[datetime, datetime]:
    """ "9:3" -> the 3 hours from 14:00 UTC nine days before `now`."""
    try:
        days_ago, hours = (float(part) for part in raw.split(":"))
    except ValueError as exc:
        raise CommandError(f"--incident: {raw!r} is not DAYS_AGO:HOURS, e.g. 9:3") from exc
    if days_ago <= 0 or not 0 < hours <= 72:
        raise CommandError(f"--incident: {raw!r}: DAYS_AGO must be positive and HOURS in (0, 72]")
    start = (now - timedelta(days=days_ago)).replace(hour=14, minute=0, second=0, microsecond=0)
    return start, start + timedelta(hours=hours)


class Command(BaseCommand):
    help = (
        "Seed N synthetic spend events over the last D days (runs seed_demo first if there are no features)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--events", type=int, default=100_000, help="attempt rows to write (default 100000)"
        )
        parser.add_argument(
            "--days", type=float, default=30, help="spread them over the last D days (default 30)"
        )
        parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
        parser.add_argument(
            "--incident",
            action="append",
            default=[],
            metavar="DAYS_AGO:HOURS",
            help="a small-model outage DAYS_AGO days back (at 14:00 UTC) lasting HOURS, e.g. 9:3; repeatable",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["events"] <= 0 or options["days"] <= 0:
            raise CommandError("--events and --days must be positive")
        if not Feature.objects.exists():
            call_command("seed_demo", stdout=self.stdout)
        began = time.perf_counter()
        now = timezone.now()
        incidents = [_incident(raw, now) for raw in options["incident"]]
        result = services.spend_seed(
            events=options["events"], days=options["days"], seed=options["seed"], end=now, incidents=incidents
        )
        elapsed = time.perf_counter() - began
        self.stdout.write(
            self.style.SUCCESS(
                f"seeded {result['events']} spend events from {result['start']:%Y-%m-%d %H:%M} to "
                f"{result['end']:%Y-%m-%d %H:%M} and {result['rollup_rows']} rollup rows in {elapsed:.1f} s "
                f"({result['events'] / elapsed:,.0f} events/s)"
            )
        )
