"""Write synthetic spend for the demo features: both routes, fallbacks, experiments, diurnal shape, rollups."""

from __future__ import annotations

import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from billing import services
from controlplane.models import Feature


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

    def handle(self, *args: Any, **options: Any) -> None:
        if options["events"] <= 0 or options["days"] <= 0:
            raise CommandError("--events and --days must be positive")
        if not Feature.objects.exists():
            call_command("seed_demo", stdout=self.stdout)
        began = time.perf_counter()
        result = services.spend_seed(events=options["events"], days=options["days"], seed=options["seed"])
        elapsed = time.perf_counter() - began
        self.stdout.write(
            self.style.SUCCESS(
                f"seeded {result['events']} spend events from {result['start']:%Y-%m-%d %H:%M} to "
                f"{result['end']:%Y-%m-%d %H:%M} and {result['rollup_rows']} rollup rows in {elapsed:.1f} s "
                f"({result['events'] / elapsed:,.0f} events/s)"
            )
        )
