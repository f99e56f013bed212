"""Template filters for the dashboards: money and rates written the way the charts label them."""

from __future__ import annotations

import json
from typing import Any

from django import template

from billing.charts import pct_label, usd_label

register = template.Library()


@register.filter
def usd(value: Any) -> str:
    return "—" if value is None or value == "" else usd_label(value)


@register.filter
def pct(value: Any) -> str:
    return pct_label(None if value is None or value == "" else float(value))


@register.filter
def count(value: Any) -> str:
    """A whole number with thousands separators ("12,345"), or "—"."""
    return "—" if value is None or value == "" else f"{int(value):,}"


@register.filter
def as_json(value: Any) -> str:
    """A bundle value as JSON (true, null, "double quotes"), never a Python repr."""
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


@register.filter
def diff_value(value: Any, unit: str) -> str:
    """A treatment-minus-control difference: rates in percentage points, money in USD, signed."""
    if value is None or value == "":
        return "—"
    number = float(value)
    sign = "+" if number > 0 else ("−" if number < 0 else "±")
    size = abs(number)
    if unit == "pct":
        return f"{sign}{size * 100:.1f} pp"
    if unit == "usd":
        return f"{sign}{usd_label(size)}"
    if unit == "ms":
        return f"{sign}{size:,.0f} ms"
    return f"{sign}{size:.2f}"


@register.filter
def when(value: Any) -> str:
    """A moment for people: "20 Nov 2026, 12:30 UTC" from a datetime or an ISO string (never raw ISO)."""
    from datetime import UTC, datetime

    if value in (None, ""):
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return f"{value.day} {value:%b %Y, %H:%M} UTC"
    return str(value)
