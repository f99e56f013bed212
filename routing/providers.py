"""What routing needs from the apps above it, without importing them.

Imports point one way (controlplane <- routing <- billing): routing must not import billing, yet the compiler
ships budget states and the what-if page and experiments read recorded spend. So routing names the slots
here and billing fills them in `BillingConfig.ready()`:

- `budget_states`: returns the bundle's `budgets` section (a list of bundle-shaped dicts, see
  routing.engine.bundle): the features that are over budget and enforced.
- `spend_reader`: an object that reads recorded spend for routing's pages and experiments.

An empty slot is not an error for budget states (a bundle without budgets enforces none); reading spend
through an empty slot is (it would show no data as if there were none). `overridden` swaps a slot for the
length of a `with` block (tests, the what-if of a hypothetical budget state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ImproperlyConfigured

BudgetStatesProvider = Callable[[], list[dict[str, Any]]]

_slots: dict[str, Any] = {"budget_states": None, "spend_reader": None}


def register_budget_states(provider: BudgetStatesProvider) -> None:
    """Fill the compiler's budget-states slot (billing does, in its AppConfig.ready())."""
    _slots["budget_states"] = provider


def register_spend_reader(reader: Any) -> None:
    """Fill the spend-reader slot (billing does, in its AppConfig.ready())."""
    _slots["spend_reader"] = reader


def budget_states() -> list[dict[str, Any]]:
    """The budget states the registered provider reports now; none when no app registered one."""
    provider: BudgetStatesProvider | None = _slots["budget_states"]
    return list(provider() or []) if provider is not None else []


def budget_states_provider() -> BudgetStatesProvider | None:
    """The registered budget-states provider (None when no app registered one)."""
    return _slots["budget_states"]


def spend_reader() -> Any:
    """The registered spend reader; an error naming the fix when none is registered."""
    reader = _slots["spend_reader"]
    if reader is None:
        raise ImproperlyConfigured(
            "No spend reader is registered with routing.providers: add 'billing' to INSTALLED_APPS "
            "(its AppConfig.ready() registers one)."
        )
    return reader


@contextmanager
def overridden(**slots: Any) -> Iterator[None]:
    """Replace slots (budget_states=..., spend_reader=...) inside the block, restoring them after it."""
    unknown = set(slots) - set(_slots)
    if unknown:
        raise TypeError(f"unknown provider slot(s) {sorted(unknown)}: known are {sorted(_slots)}")
    saved = dict(_slots)
    _slots.update(slots)
    try:
        yield
    finally:
        _slots.clear()
        _slots.update(saved)
