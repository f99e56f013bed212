"""Bounded number fields, the shape most settings in the apps take: a range the form and the API enforce,
optional (empty means the documented default) unless the field has a default of its own."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.fields import NOT_PROVIDED


def _range(low: Any, high: Any) -> list[Any]:
    return [MinValueValidator(low)] + ([MaxValueValidator(high)] if high is not None else [])


def _presence(default: Any) -> dict[str, Any]:
    return {"null": True, "blank": True} if default is NOT_PROVIDED else {"default": default}


def bounded_count(
    low: int, high: int | None = None, *, help_text: str = "", default: Any = NOT_PROVIDED
) -> models.PositiveIntegerField:
    """A whole number in [low, high]; without a default it may be left empty."""
    return models.PositiveIntegerField(
        **_presence(default), validators=_range(low, high), help_text=help_text
    )


def bounded_decimal(
    low: str,
    high: str | None = None,
    *,
    digits: int,
    places: int,
    help_text: str = "",
    default: Any = NOT_PROVIDED,
) -> models.DecimalField:
    """A decimal in [low, high] (given as strings, kept exact); without a default it may be left empty."""
    return models.DecimalField(
        max_digits=digits,
        decimal_places=places,
        **_presence(default),
        validators=_range(Decimal(low), Decimal(high) if high is not None else None),
        help_text=help_text,
    )
