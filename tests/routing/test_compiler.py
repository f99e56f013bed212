"""The bundle compiler: shape the proxy accepts, determinism, every validation error, and the diff."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from routing import providers, services
from routing.compiler import bundle_diff, compile_bundle, source_hash, validate_document
from routing.engine.bundle import Bundle as EngineBundle
from routing.engine.bundle import content_hash, validate_bundle, with_content_hash
from routing.engine.signing import token_hash
from routing.models import ModelDeployment, RoutingPolicy
from tests.routing.fleet_support import make_routing

pytestmark = pytest.mark.django_db


def _budgets_provider():
    return [
        {
            "team": "support",
            "feature": "ticket-summary",
            "state": "over",
            "spend_usd": "12.00",
            "limit_usd": "10.00",
            "period": "2026-11",
        }
    ]


def test_compiled_bundle_is_what_the_plugin_accepts(feature):
    small, frontier, _ = make_routing()
    services.policy_create(
        actor=None, feature=feature, threshold=Decimal("0.620"), over_budget="degrade", rule_tools=False
    )
    key, plaintext = services.feature_key_create(actor=None, feature=feature, name="web")
    result = compile_bundle(version="v1", created_at="2026-11-27T12:00:00+00:00")
    assert result.errors == []
    assert validate_bundle(result.document) == []
    bundle = EngineBundle.from_json(result.document)
    assert bundle.policy_for("ticket-summary").threshold == pytest.approx(0.62)
    assert bundle.policy_for("ticket-summary").over_budget == "degrade"
    assert bundle.policy_for("ticket-summary").rules.tools is False
    assert bundle.policy_for("ticket-summary").small_model == "slm"  # inherited from the default
    assert bundle.keys[token_hash(plaintext)].feature == "ticket-summary"
    assert plaintext not in str(result.document)
    slm = next(d for d in result.document["deployments"] if d["model_group"] == "slm")
    assert slm["input_cost_per_token"] == "0.0000001"  # $0.10 per 1M tokens
    assert slm["api_key"] == "os.environ/FINOPS_TEST_UPSTREAM_KEY"
    assert "model_list" in result.config_yaml and "os.environ/FINOPS_TEST_UPSTREAM_KEY" in result.config_yaml


def test_same_inputs_same_hash_whatever_the_row_order(feature, other_feature):
    make_routing()
    services.policy_create(actor=None, feature=other_feature, threshold=Decimal("0.3"))
    services.policy_create(actor=None, feature=feature, target_small_share=Decimal("0.8"))
    services.feature_key_create(actor=None, feature=feature, name="a")
    services.feature_key_create(actor=None, feature=other_feature, name="b")
    first = compile_bundle(version="v7", created_at="2026-11-27T12:00:00+00:00")
    again = compile_bundle(version="v7", created_at="2026-11-27T12:00:00+00:00")
    assert first.content_hash == again.content_hash
    # rewrite the rows in a different primary-key order: the document must not change
    policies = list(RoutingPolicy.objects.filter(feature__isnull=False).order_by("-pk").values())
    RoutingPolicy.objects.filter(feature__isnull=False).delete()
    for row in policies:
        row.pop("id")
        RoutingPolicy.objects.create(**row)
    reordered = compile_bundle(version="v7", created_at="2026-11-27T12:00:00+00:00")
    assert reordered.content_hash == first.content_hash
    other_version = compile_bundle(version="v8", created_at="2026-11-28T12:00:00+00:00")
    assert other_version.content_hash != first.content_hash
    assert other_version.source_hash == first.source_hash  # same content, other label


def test_a_change_changes_the_hash(feature):
    _, _, default = make_routing()
    before = compile_bundle(version="v1")
    services.policy_update(actor=None, policy=default, threshold=Decimal("0.4"))
    after = compile_bundle(version="v1")
    assert before.content_hash != after.content_hash
    assert source_hash(before.document) != source_hash(after.document)


def test_no_default_policy_is_refused(db):
    services.deployment_create(
        actor=None, name="slm", tier="small", litellm_model="openai/llama-3-8b-instruct"
    )
    result = compile_bundle(version="v1")
    assert any(e.startswith("$.policies.default: there is no default policy") for e in result.errors)


def test_inactive_deployment_named_by_a_policy_is_refused(feature):
    small, _, _ = make_routing()
    ModelDeployment.objects.filter(pk=small.pk).update(is_active=False)
    result = compile_bundle(version="v1")
    assert any("small deployment 'slm' is inactive" in e for e in result.errors), result.errors


def test_deployment_whose_tier_changed_under_a_policy_is_refused(feature):
    _, frontier, _ = make_routing()
    ModelDeployment.objects.filter(pk=frontier.pk).update(tier="small")
    result = compile_bundle(version="v1")
    assert any("deployment 'frontier' is small-tier, not frontier" in e for e in result.errors), result.errors


def test_group_mixing_tiers_is_refused(feature):
    make_routing()
    ModelDeployment.objects.create(
        name="slm-2", model_group="frontier", tier="small", litellm_model="openai/x"
    )
    result = compile_bundle(version="v1")
    assert any("model group 'frontier' mixes tiers" in e for e in result.errors), result.errors


def test_dangling_fallback_target_is_refused(feature):
    make_routing()
    doc = compile_bundle(version="v1").document
    doc["policies"]["default"]["frontier_model"] = "gone"
    result = validate_document(with_content_hash(doc))
    assert any("falls back from 'slm' to 'gone'" in e for e in result.errors), result.errors
    assert any("$.policies.default.frontier_model: names model group 'gone'" in e for e in result.errors)


def test_litellm_refuses_an_unknown_provider(feature):
    make_routing()
    services.deployment_create(
        actor=None, name="odd", tier="small", litellm_model="nonsense-provider/model-x"
    )
    result = compile_bundle(version="v1")
    assert any("LiteLLM refuses 'nonsense-provider/model-x'" in e for e in result.errors), result.errors


def test_budgets_and_experiments_naming_unknown_features_are_refused(feature):
    make_routing()
    budgets = [
        {"team": "support", "feature": "no-such", "state": "ok", "spend_usd": "1.00", "limit_usd": "2.00"}
    ]
    experiments = [
        {
            "id": "exp-1",
            "feature": "ghost",
            "sticky_by": "end_user",
            "arms": [
                {"name": "a", "threshold": 0.5, "weight": 1},
                {"name": "b", "threshold": 0.6, "weight": 1},
            ],
        }
    ]
    result = compile_bundle(version="v1", budget_states=budgets, experiments=experiments)
    assert any(e.startswith("$.budgets[0].feature: names feature 'no-such'") for e in result.errors)
    assert any(e.startswith("$.experiments[0].feature: names feature 'ghost'") for e in result.errors)


def test_schema_errors_from_a_provider_are_reported_with_their_path(feature):
    make_routing()
    budgets = [
        {"team": "support", "feature": "ticket-summary", "state": "weird", "spend_usd": 1.5, "limit_usd": "2"}
    ]
    result = compile_bundle(version="v1", budget_states=budgets)
    assert any(e.startswith("$.budgets[0].state: must be 'ok' or 'over'") for e in result.errors)
    assert any(e.startswith("$.budgets[0].spend_usd: must be a decimal string") for e in result.errors)


def test_budget_provider_plugs_in_through_the_provider_registry(feature):
    make_routing()
    with providers.overridden(budget_states=_budgets_provider):
        result = compile_bundle(version="v1")
    assert result.errors == []
    assert result.document["budgets"][0]["state"] == "over"


def test_keys_carry_revocation_and_expiry(feature):
    make_routing()
    expires = timezone.now() + dt.timedelta(days=30)
    key, _ = services.feature_key_create(actor=None, feature=feature, name="batch", expires_at=expires)
    services.feature_key_revoke(actor=None, key=key)
    entry = compile_bundle(version="v1").document["keys"][0]
    assert entry["revoked"] is True
    assert entry["key_hash"] == key.key_hash
    assert dt.datetime.fromisoformat(entry["expires_at"]) == expires.replace(microsecond=0)


def test_diff_names_changed_paths(feature):
    _, _, default = make_routing()
    before = compile_bundle(version="v1").document
    services.policy_update(actor=None, policy=default, threshold=Decimal("0.4"))
    key, _ = services.feature_key_create(actor=None, feature=feature, name="web")
    after = compile_bundle(version="v2").document
    changes = {c.path: c for c in bundle_diff(before, after)}
    assert changes["$.policies.default.threshold"].before == pytest.approx(1.01)
    assert changes["$.policies.default.threshold"].after == pytest.approx(0.4)
    assert changes["$.version"].kind == "changed"
    added = [c for c in changes.values() if c.kind == "added" and c.path.startswith("$.keys[")]
    assert len(added) == 1 and key.key_hash[:12] in added[0].path
    assert "$.content_hash" not in changes
    assert bundle_diff(after, after) == []


def test_content_hash_is_the_engine_hash(feature):
    make_routing()
    doc = compile_bundle(version="v1").document
    assert doc["content_hash"] == content_hash(doc)


def test_the_breaker_is_compiled_from_the_default_policy_with_its_defaults(feature):
    from django.core.exceptions import ValidationError

    _, _, default = make_routing()
    services.policy_update(
        actor=None, policy=default, breaker_cool_off_s=Decimal("2.5"), breaker_close_after=1
    )
    result = compile_bundle(version="v1", created_at="2026-11-27T12:00:00+00:00")
    assert result.errors == []
    assert result.document["policies"]["default"]["breaker"] == {
        "window_s": 30.0,
        "failure_share": 0.5,
        "min_attempts": 20,
        "consecutive_failures": 5,
        "cool_off_s": 2.5,
        "max_cool_off_s": 60.0,
        "probe_one_in": 10,
        "close_after": 1,
    }
    assert EngineBundle.from_json(result.document).breaker.cool_off_s == 2.5
    with pytest.raises(ValidationError) as refused:
        services.policy_create(actor=None, feature=feature, breaker_window_s=5)
    assert "set it on the default policy" in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        services.policy_update(actor=None, policy=default, breaker_max_cool_off_s=Decimal("1"))
    assert "at least the first cool-off" in str(refused.value)


def test_the_bundle_pins_the_scorer_the_default_policy_thresholds_are_for(feature):
    from routing.engine.scorer import default_version

    make_routing()
    default = RoutingPolicy.objects.get(feature__isnull=True)
    # A default policy made now is on the shipped default scorer's scale, and the bundle says so.
    assert default.scorer_weights == default_version() == "complexity-v3"
    document = compile_bundle(version="v1").document
    assert document["scorer_weights"] == "complexity-v3"
    assert EngineBundle.from_json(document).scorer_weights == "complexity-v3"
    # A policy whose thresholds were set on v1's scale keeps proxies on v1.
    services.policy_update(actor=None, policy=default, scorer_weights="complexity-v1")
    pinned = compile_bundle(version="v2")
    assert pinned.errors == [] and EngineBundle.from_json(pinned.document).scorer_weights == "complexity-v1"
    # An override cannot choose another scorer: there is one scorer for every feature.
    services.policy_create(actor=None, feature=feature, threshold=Decimal("0.3"))
    assert compile_bundle(version="v3").document["scorer_weights"] == "complexity-v1"
    with pytest.raises(ValidationError, match="not a shipped scorer weights version"):
        services.policy_update(actor=None, policy=default, scorer_weights="complexity-v99")
