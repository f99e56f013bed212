"""Mirror of ingested spend to Datadog over DogStatsD (UDP): each batch is claimed once, then sent.

Metrics (all tagged team, feature, route, model, arm and env): finops.spend.requests, .attempts,
.errors, .cost_usd, .baseline_cost_usd, .savings_usd, .tokens.input, .tokens.output (counts),
finops.spend.fallbacks (count, also tagged reason) and finops.spend.latency_ms (distribution).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from datadog.dogstatsd import DogStatsd
from django.conf import settings
from django.utils import timezone

from billing.models import IngestBatch, SpendEvent
from routing.engine import spend

log = logging.getLogger(__name__)
PREFIX = "finops.spend"


# What the mirror reads of each attempt, in the order the loop below unpacks it.
MIRROR_FIELDS = (
    "team__slug",
    "feature__slug",
    "route",
    "deployment",
    "model_group",
    "arm",
    "attempt",
    "status",
    "fallback",
    "fallback_reason",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "latency_ms",
)


def statsd_client() -> DogStatsd:
    return DogStatsd(
        host=settings.DATADOG_AGENT_HOST,
        port=settings.DATADOG_AGENT_PORT,
        constant_tags=[f"env:{settings.ENVIRONMENT}"],
        disable_telemetry=True,
    )


def _tag(value: str) -> str:
    return (value or "none").replace(",", "_").replace("|", "_").replace(":", "_")


def spend_batch_mirror(*, batch_id: int) -> int:
    """Send one batch's metrics; returns the number of metric lines sent (0 if disabled, gone or already claimed).

    The claim (a conditional UPDATE that must return 1) comes before sending, so a batch is never sent
    twice; an agent that is down loses that batch's metrics (UDP), it never fails the caller.
    """
    if not settings.DATADOG_ENABLED:
        return 0
    claimed = IngestBatch.objects.filter(pk=batch_id, mirrored_at__isnull=True).update(
        mirrored_at=timezone.now()
    )
    if claimed != 1:
        return 0
    rows = SpendEvent.objects.filter(batch_id=batch_id).values_list(*MIRROR_FIELDS)
    totals: dict[tuple[str, ...], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    fallbacks: dict[tuple[tuple[str, ...], str], int] = defaultdict(int)
    latencies: list[tuple[tuple[str, ...], int]] = []
    for (
        team,
        feature,
        route,
        deployment,
        group,
        arm,
        attempt,
        status,
        fb,
        reason,
        tin,
        tout,
        cost,
        base,
        lat,
    ) in rows:
        tags = (
            f"team:{_tag(team)}",
            f"feature:{_tag(feature)}",
            f"route:{_tag(route)}",
            f"model:{_tag(spend.model_name(deployment, group))}",
            f"arm:{_tag(arm)}",
        )
        t = totals[tags]
        t["requests"] += attempt == spend.REQUEST_ATTEMPT
        t["attempts"] += 1
        t["errors"] += status == "error"
        t["cost_usd"] += cost
        served_baseline = base if spend.counts_toward_baseline(status, reason) else Decimal(0)
        t["baseline_cost_usd"] += served_baseline
        t["savings_usd"] += served_baseline - cost
        t["tokens.input"] += tin
        t["tokens.output"] += tout
        if fb:
            fallbacks[(tags, reason)] += 1
        latencies.append((tags, lat))
    sent = 0
    statsd = statsd_client()
    try:
        for tags, values in totals.items():
            for name, value in values.items():
                if value:
                    statsd.increment(
                        f"{PREFIX}.{name}", float(value), tags=list(tags)
                    )  # Datadog takes floats
                    sent += 1
        for (tags, reason), count in fallbacks.items():
            statsd.increment(f"{PREFIX}.fallbacks", count, tags=[*tags, f"reason:{_tag(reason)}"])
            sent += 1
        for tags, latency in latencies:
            statsd.distribution(f"{PREFIX}.latency_ms", latency, tags=list(tags))
            sent += 1
        statsd.flush()
    except Exception:  # the agent is best effort: never fail the task (it would be retried and double-send)
        log.exception("Datadog mirror of spend batch %s failed", batch_id)
    finally:
        statsd.close_socket()
    return sent


def spend_mirror_backlog(*, older_than_s: int = 120, limit: int = 500) -> list[int]:
    """Ids of batches never mirrored (their task was lost, e.g. the broker was down at ingest), oldest first.

    Only batches older than `older_than_s` count, so a batch whose task is merely queued is left to it.
    """
    if not settings.DATADOG_ENABLED:
        return []
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        IngestBatch.objects.filter(mirrored_at__isnull=True, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
