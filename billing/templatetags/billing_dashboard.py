"""Template filters for the dashboards: money and rates written the way the charts label them."""

from __future__ import annotations

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
