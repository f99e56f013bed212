"""Recompute hourly spend rollups from raw events for a time range (delete + recompute, one transaction)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing import services


def _moment(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--{name} {value!r} is not an ISO 8601 time, e.g. 2026-11-01T00:00:00+00:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # naive times are taken as UTC


class Command(BaseCommand):
    help = "Rebuild the hourly spend rollups of [--start, --end) from raw spend events."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--start", required=True, help="ISO 8601 start (floored to the hour; UTC if naive)"
        )
        parser.add_argument("--end", required=True, help="ISO 8601 end, exclusive (ceiled to the hour)")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = _moment(options["start"], "start"), _moment(options["end"], "end")
        try:
            result = services.rollups_rebuild(start=start, end=end)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if result["skipped_before"]:
            self.stderr.write(
                f"raw events before {result['skipped_before']:%Y-%m-%d} are past retention: their rollups were kept"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"rebuilt {result['rows']} rollup rows for {result['start']} .. {result['end']}"
            )
        )
