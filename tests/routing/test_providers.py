"""routing.providers: billing fills routing's slots at start-up; a slot swaps for one block and comes back."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from billing import budgets
from routing import providers


def test_billing_registers_the_budget_states_provider_at_start_up():
    assert providers.budget_states_provider() is budgets.budget_states_for_bundle


def test_an_overridden_slot_comes_back_after_the_block():
    states = [{"team": "t", "feature": "f", "state": "over"}]
    with providers.overridden(budget_states=lambda: states):
        assert providers.budget_states() == states
    assert providers.budget_states_provider() is budgets.budget_states_for_bundle


def test_an_empty_budget_slot_means_no_budgets():
    with providers.overridden(budget_states=None):
        assert providers.budget_states() == []


def test_reading_spend_without_a_reader_names_the_fix():
    with providers.overridden(spend_reader=None), pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"):
        providers.spend_reader()


def test_an_unknown_slot_is_refused():
    with pytest.raises(TypeError, match="budget_states"), providers.overridden(budgets=None):
        pass
