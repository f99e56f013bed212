"""Exports: CSV of every dashboard table, and spend as FOCUS 1.2 (FinOps Open Cost and Usage Specification).

The FOCUS export is the one dashboard read that touches raw events: it streams one row per attempt in
the date range (a server-side cursor on Postgres), so memory stays flat whatever the range.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from billing.models import SpendEvent
from controlplane.models import Feature, Team
from routing.engine import spend
from routing.models import ModelDeployment, Tier

FOCUS_VERSION = "1.2"
BILLING_ACCOUNT_ID = "llm-finops"
BILLING_ACCOUNT_NAME = "LLM FinOps organisation"
CHUNK = 5000

# FOCUS 1.2 columns we emit (spec names, alphabetical), then our x_ extensions.
FOCUS_COLUMNS = [
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
]
EXTENSION_COLUMNS = [
    "x_CallId",
    "x_Attempt",
    "x_Route",
    "x_ModelGroup",
    "x_Status",
    "x_InputTokens",
    "x_OutputTokens",
    "x_BaselineCost",
    "x_Savings",
    "x_Fallback",
    "x_FallbackReason",
    "x_Score",
    "x_Threshold",
    "x_LatencyMs",
    "x_Experiment",
    "x_Arm",
]
# Columns FOCUS 1.2 requires in every dataset (tests check the header carries them all).
FOCUS_MANDATORY = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
]
EVENT_FIELDS = [
    "call_id",
    "attempt",
    "team_id",
    "feature_id",
    "start_time",
    "end_time",
    "latency_ms",
    "route",
    "model_group",
    "deployment",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "fallback",
    "fallback_reason",
    "score",
    "threshold",
    "experiment",
    "arm",
]
PROVIDERS = {
    "anthropic": "Anthropic",
    "openai": "OpenAI",
    "azure": "Microsoft",
    "bedrock": "AWS",
    "vertex_ai": "Google",
    "gemini": "Google",
    "mistral": "Mistral AI",
    "groq": "Groq",
    "together_ai": "Together AI",
}
PUBLISHERS = {
    "llama": "Meta",
    "claude": "Anthropic",
    "gpt": "OpenAI",
    "mistral": "Mistral AI",
    "gemini": "Google",
}


class _Echo:
    """A write-only file whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """Prefix a cell a spreadsheet would run as a formula with a quote, so it stays text."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> HttpResponse:
    """A downloadable CSV (small tables: built in memory)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return response


def _month_bounds(moment: datetime) -> tuple[datetime, datetime]:
    start = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def provider_of(model: str, *, small_tier_groups: set[str], model_group: str) -> str:
    if model_group in small_tier_groups:
        return "Self-hosted"
    prefix = model.split("/", 1)[0] if "/" in model else ""
    return PROVIDERS.get(prefix, prefix.title() or "Unknown")


def publisher_of(model: str, provider: str) -> str:
    name = model.rsplit("/", 1)[-1].lower()
    return next((publisher for key, publisher in PUBLISHERS.items() if key in name), provider)


def focus_rows(
    events: Iterable[tuple[Any, ...]],
    *,
    teams: dict[int, Team],
    features: dict[int, Feature],
    small_tier_groups: set[str],
) -> Iterator[list[Any]]:
    """One FOCUS row (FOCUS_COLUMNS + EXTENSION_COLUMNS) per attempt tuple in EVENT_FIELDS order."""
    for values in events:
        e = dict(zip(EVENT_FIELDS, values, strict=True))
        team, feature = teams.get(e["team_id"]), features.get(e["feature_id"])
        team_slug = team.slug if team else str(e["team_id"])
        feature_slug = feature.slug if feature else str(e["feature_id"])
        model = spend.model_name(e["deployment"], e["model_group"])
        provider = provider_of(model, small_tier_groups=small_tier_groups, model_group=e["model_group"])
        tokens = int(e["input_tokens"]) + int(e["output_tokens"])
        cost = Decimal(e["cost_usd"])
        unit_price = (cost / tokens).quantize(Decimal("1E-12")) if tokens else Decimal(0)
        is_baseline_row = spend.counts_toward_baseline(e["status"], e["fallback_reason"])
        baseline = Decimal(e["baseline_cost_usd"]) if is_baseline_row else Decimal(0)
        period_start, period_end = _month_bounds(e["start_time"])
        charge_end = max(e["end_time"], e["start_time"] + timedelta(milliseconds=1))
        tags = {"team": team_slug, "feature": feature_slug, "route": e["route"]}
        if e["experiment"]:
            tags["experiment"] = e["experiment"]
        if e["arm"]:
            tags["arm"] = e["arm"]
        focus = {
            "BilledCost": cost,
            "BillingAccountId": BILLING_ACCOUNT_ID,
            "BillingAccountName": BILLING_ACCOUNT_NAME,
            "BillingAccountType": "Organization",
            "BillingCurrency": "USD",
            "BillingPeriodEnd": period_end,
            "BillingPeriodStart": period_start,
            "ChargeCategory": "Usage",
            "ChargeClass": None,
            "ChargeDescription": (
                f"{model}: {e['input_tokens']} input + {e['output_tokens']} output tokens for {feature_slug} "
                f"({e['route']} route, attempt {e['attempt']}, {e['status']})"
            ),
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": charge_end,
            "ChargePeriodStart": e["start_time"],
            "ConsumedQuantity": tokens,
            "ConsumedUnit": "Tokens",
            "ContractedCost": cost,
            "ContractedUnitPrice": unit_price,
            "EffectiveCost": cost,
            "InvoiceIssuerName": provider,
            "ListCost": cost,
            "ListUnitPrice": unit_price,
            "PricingCategory": "Standard",
            "PricingCurrency": "USD",
            "PricingCurrencyContractedUnitPrice": unit_price,
            "PricingCurrencyEffectiveCost": cost,
            "PricingCurrencyListUnitPrice": unit_price,
            "PricingQuantity": tokens,
            "PricingUnit": "Tokens",
            "ProviderName": provider,
            "PublisherName": publisher_of(model, provider),
            "ResourceId": f"feature/{feature_slug}",
            "ResourceName": feature.name if feature else feature_slug,
            "ResourceType": "AI feature",
            "ServiceCategory": "AI and Machine Learning",
            "ServiceName": f"{provider} LLM inference",
            "ServiceSubcategory": "Generative AI",
            "SkuId": model,
            "SkuMeter": "Tokens",
            "SkuPriceDetails": json.dumps({"blended_usd_per_token": format(unit_price, "f")}),
            "SkuPriceId": f"{model}:per-token",
            "SubAccountId": team_slug,
            "SubAccountName": team.name if team else team_slug,
            "SubAccountType": "Team",
            "Tags": json.dumps(tags, sort_keys=True),
        }
        extensions = [
            e["call_id"],
            e["attempt"],
            e["route"],
            e["model_group"],
            e["status"],
            e["input_tokens"],
            e["output_tokens"],
            baseline,
            baseline - cost,
            "true" if e["fallback"] else "false",
            e["fallback_reason"] or None,
            e["score"],
            e["threshold"],
            e["latency_ms"],
            e["experiment"] or None,
            e["arm"] or None,
        ]
        yield [_cell(focus.get(name)) for name in FOCUS_COLUMNS] + [_cell(v) for v in extensions]


def focus_stream(
    *, start: datetime, end: datetime, team_ids: list[int] | None, feature_ids: list[int] | None
) -> Iterator[str]:
    """CSV lines: the header, then one FOCUS row per attempt that started in [start, end), in time order."""

    writer = csv.writer(_Echo())
    yield writer.writerow(FOCUS_COLUMNS + EXTENSION_COLUMNS)
    teams = {t.pk: t for t in Team.objects.all()}
    features = {f.pk: f for f in Feature.objects.all()}
    small_tier_groups = {
        d.model_group or d.name
        for d in ModelDeployment.objects.filter(tier=Tier.SMALL).only("name", "model_group")
    }
    # the demo's synthetic SLM group is small-tier even without a deployment row
    small_tier_groups.add("slm")
    events = SpendEvent.objects.filter(start_time__gte=start, start_time__lt=end)
    if team_ids is not None:
        events = events.filter(team_id__in=team_ids)
    if feature_ids is not None:
        events = events.filter(feature_id__in=feature_ids)
    rows = events.order_by("start_time").values_list(*EVENT_FIELDS).iterator(chunk_size=CHUNK)
    for row in focus_rows(rows, teams=teams, features=features, small_tier_groups=small_tier_groups):
        yield writer.writerow(row)


def focus_response(
    *,
    start: datetime,
    end: datetime,
    team_ids: list[int] | None,
    feature_ids: list[int] | None,
    filename: str,
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        focus_stream(start=start, end=end, team_ids=team_ids, feature_ids=feature_ids),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
