"""Reads for the routing and fleet pages and the proxy-facing endpoints."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from routing.models import LIVE_STATUSES, Bundle, FeatureKey, ModelDeployment, Proxy, Rollout, RoutingPolicy

PER_MILLION = Decimal(1_000_000)


class ProxyHealth(StrEnum):
    HEALTHY = "healthy"
    STALE = "stale"  # heartbeats stopped recently
    UNREACHABLE = "unreachable"  # no heartbeat for long, or never
    DRIFTED = "drifted"  # beating, but running another bundle than its target


def proxy_health(
    *,
    last_heartbeat_at: dt.datetime | None,
    applied_hash: str,
    target_hash: str | None,
    now: dt.datetime,
    stale_after_s: float | None = None,
    unreachable_after_s: float | None = None,
) -> ProxyHealth:
    """Health from the last heartbeat time and applied vs target hash (pure: no database, no clock)."""
    stale_after = stale_after_s if stale_after_s is not None else settings.FLEET_STALE_AFTER_S
    unreachable_after = (
        unreachable_after_s if unreachable_after_s is not None else settings.FLEET_UNREACHABLE_AFTER_S
    )
    if last_heartbeat_at is None:
        return ProxyHealth.UNREACHABLE
    age = (now - last_heartbeat_at).total_seconds()
    if age > unreachable_after:
        return ProxyHealth.UNREACHABLE
    if age > stale_after:
        return ProxyHealth.STALE
    if target_hash and applied_hash != target_hash:
        return ProxyHealth.DRIFTED
    return ProxyHealth.HEALTHY


def pool_current_bundle(pool: str) -> Bundle | None:
    """The bundle of the latest rollout that reached the pool (succeeded or partial)."""
    rollout = (
        Rollout.objects.filter(status__in=LIVE_STATUSES)
        .filter(Q(pool="") | Q(pool=pool))
        .select_related("bundle")
        .order_by("-created_at", "-id")
        .first()
    )
    return rollout.bundle if rollout else None


def proxy_target_bundle(proxy: Proxy) -> Bundle | None:
    """What this proxy should run: its own target, else its pool's current bundle."""
    if proxy.target_bundle_id:
        return proxy.target_bundle
    return pool_current_bundle(proxy.pool)


def deployment_prices(deployment: ModelDeployment) -> tuple[Decimal | None, Decimal | None, str]:
    """USD per 1M input and output tokens, and where the figure comes from (override or litellm's map)."""
    if deployment.input_price_per_mtok is not None or deployment.output_price_per_mtok is not None:
        return deployment.input_price_per_mtok, deployment.output_price_per_mtok, "override"
    import litellm

    info = litellm.model_cost.get(deployment.litellm_model) or litellm.model_cost.get(
        deployment.litellm_model.split("/", 1)[-1]
    )
    if not info:
        return None, None, "unknown to litellm"

    def per_million(value: Any) -> Decimal | None:
        return None if value is None else (Decimal(str(value)) * PER_MILLION).quantize(Decimal("0.0001"))

    return (
        per_million(info.get("input_cost_per_token")),
        per_million(info.get("output_cost_per_token")),
        "litellm",
    )


def deployment_list() -> QuerySet[ModelDeployment]:
    return ModelDeployment.objects.all()


def policy_list() -> QuerySet[RoutingPolicy]:
    return RoutingPolicy.objects.select_related(
        "feature__team", "small_deployment", "frontier_deployment"
    ).order_by("feature__slug")


def feature_key_list(*, features: Any) -> QuerySet[FeatureKey]:
    return FeatureKey.objects.filter(feature__in=features).select_related("feature__team")


@dataclass(frozen=True)
class ProxyRow:
    proxy: Proxy
    health: ProxyHealth
    target: Bundle | None
    restart_required: bool
    errors: list[str]


def fleet_rows(*, now: dt.datetime | None = None) -> list[ProxyRow]:
    now = now or timezone.now()
    rows = []
    current: dict[str, Bundle | None] = {}
    for proxy in Proxy.objects.select_related("target_bundle").order_by("pool", "name"):
        if proxy.target_bundle_id:
            target = proxy.target_bundle
        else:
            if proxy.pool not in current:
                current[proxy.pool] = pool_current_bundle(proxy.pool)
            target = current[proxy.pool]
        report = proxy.last_report or {}
        rows.append(
            ProxyRow(
                proxy=proxy,
                health=proxy_health(
                    last_heartbeat_at=proxy.last_heartbeat_at,
                    applied_hash=proxy.applied_hash,
                    target_hash=target.content_hash if target else None,
                    now=now,
                ),
                target=target,
                restart_required=bool(report.get("restart_required")),
                errors=list(report.get("errors") or [])[-3:],
            )
        )
    return rows


def rollout_list(limit: int = 20) -> list[Rollout]:
    return list(
        Rollout.objects.select_related("bundle", "previous_bundle", "created_by").prefetch_related("targets")[
            :limit
        ]
    )


def rollout_progress(rollout: Rollout) -> dict[str, Any]:
    targets = list(rollout.targets.all())
    done = [t for t in targets if t.status not in ("pending", "pushing")]
    return {
        "total": len(targets),
        "done": len(done),
        "percent": int(100 * len(done) / len(targets)) if targets else 100,
    }
