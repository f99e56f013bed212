"""Bundle schema: the example is valid, and every validation error names its path and the fix."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from routing.engine.bundle import (
    Bundle,
    BundleError,
    canonical_json,
    content_hash,
    example_bundle,
    validate_bundle,
    with_content_hash,
)
from routing.engine.signing import token_hash


def mutated(change: Any) -> dict[str, Any]:
    doc = example_bundle()
    change(doc)
    return with_content_hash(doc)


def test_example_bundle_is_valid_and_builds() -> None:
    doc = example_bundle()
    assert validate_bundle(doc) == []
    bundle = Bundle.from_json(doc)
    assert bundle.policy_for("support-bot").threshold == 0.62
    assert bundle.policy_for("support-bot").over_budget == "degrade"
    assert bundle.policy_for("unknown-feature").threshold == 0.5
    doc_summary = bundle.policy_for("doc-summary")
    assert doc_summary.threshold is None and doc_summary.target_small_share == 0.8
    assert doc_summary.slm_timeout_ms == 1500
    assert bundle.keys[token_hash("fk-example-support-bot")].feature == "support-bot"
    assert bundle.experiments["support-bot"].arms[1].name == "lower"


def test_breaker_settings_default_and_come_from_the_default_policy() -> None:
    assert Bundle.from_json(example_bundle()).breaker.window_s == 30.0
    doc = mutated(lambda d: d["policies"]["default"].update(breaker={"cool_off_s": 2, "close_after": 1}))
    bundle = Bundle.from_json(doc)
    assert bundle.breaker.cool_off_s == 2 and bundle.breaker.close_after == 1
    assert bundle.breaker.min_attempts == 20  # unset fields keep their documented default


def test_example_file_on_disk_is_valid_with_its_own_hash() -> None:
    from routing.engine.bundle import EXAMPLE_PATH

    doc = json.loads(EXAMPLE_PATH.read_text())
    assert validate_bundle(doc) == []


def test_content_hash_ignores_the_hash_field_and_key_order() -> None:
    doc = example_bundle()
    reordered = json.loads(json.dumps(dict(reversed(list(doc.items())))))
    reordered["content_hash"] = "0" * 64
    assert content_hash(reordered) == doc["content_hash"]
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


@pytest.mark.parametrize(
    ("change", "path", "phrase"),
    [
        (lambda d: d.update(schema=2), "$.schema", "must be 1"),
        (lambda d: d.update(version=""), "$.version", "non-empty"),
        (lambda d: d.update(surprise=1), "$.surprise", "not a known field"),
        (lambda d: d.update(created_at="yesterday"), "$.created_at", "ISO 8601"),
        (lambda d: d.update(deployments=[]), "$.deployments", "non-empty list"),
        (
            lambda d: d["deployments"][0].update(tier="medium"),
            "$.deployments[0].tier",
            "'small' or 'frontier'",
        ),
        (lambda d: d["deployments"][0].update(model=""), "$.deployments[0].model", "non-empty"),
        (
            lambda d: d["deployments"][0].update(api_key="sk-live-123"),
            "$.deployments[0].api_key",
            "os.environ/NAME",
        ),
        (
            lambda d: d["deployments"][0].update(api_base="ftp://x"),
            "$.deployments[0].api_base",
            "http(s) URL",
        ),
        (
            lambda d: d["deployments"][0].update(context_window=0),
            "$.deployments[0].context_window",
            "between 1",
        ),
        (
            lambda d: d["deployments"][0].update(supports_tools="yes"),
            "$.deployments[0].supports_tools",
            "true or false",
        ),
        (lambda d: d["deployments"][0].update(timeout_s=0), "$.deployments[0].timeout_s", "between 0.05"),
        (
            lambda d: d["deployments"][0].update(input_cost_per_token=0.1),
            "$.deployments[0].input_cost_per_token",
            "decimal string",
        ),
        (lambda d: d["deployments"][1].update(model_group="slm"), "$.deployments", "mixes tiers"),
        (lambda d: d["policies"].pop("default"), "$.policies.default", "is required"),
        (
            lambda d: d["policies"]["default"].pop("small_model"),
            "$.policies.default.small_model",
            "is required",
        ),
        (
            lambda d: d["policies"]["default"].update(small_model="nope"),
            "$.policies.default.small_model",
            "no deployment serves",
        ),
        (
            lambda d: d["policies"]["default"].update(small_model="frontier"),
            "$.policies.default.small_model",
            "not small-tier",
        ),
        (
            lambda d: d["policies"]["default"].update(threshold=1.5),
            "$.policies.default.threshold",
            "1.01 all to small",
        ),
        (lambda d: d["policies"]["default"].pop("threshold"), "$.policies.default.threshold", "is required"),
        (
            lambda d: d["policies"]["support-bot"].update(target_small_share=0.5),
            "$.policies.support-bot",
            "both threshold",
        ),
        (
            lambda d: d["policies"]["doc-summary"].update(target_small_share=2),
            "$.policies.doc-summary.target_small_share",
            "between 0.0 and 1.0",
        ),
        (
            lambda d: d["policies"]["default"].update(slm_timeout_ms=10),
            "$.policies.default.slm_timeout_ms",
            "between 50",
        ),
        (
            lambda d: d["policies"]["default"].update(confidence_floor=-1),
            "$.policies.default.confidence_floor",
            "between 0.0",
        ),
        (
            lambda d: d["policies"]["default"].update(over_budget="panic"),
            "$.policies.default.over_budget",
            "'block' or 'degrade'",
        ),
        (
            lambda d: d["policies"]["default"].update(rules={"tools": 1}),
            "$.policies.default.rules.tools",
            "true or false",
        ),
        (
            lambda d: d["policies"]["default"].update(rules={"magic": True}),
            "$.policies.default.rules.magic",
            "not a known field",
        ),
        (
            lambda d: d["policies"]["default"].update(rules={"context_margin_tokens": -1}),
            "$.policies.default.rules.context_margin_tokens",
            "between 0",
        ),
        (lambda d: d["policies"].update({"Bad Slug": {}}), "$.policies.Bad Slug", "feature slug"),
        (
            lambda d: d["policies"]["support-bot"].update(breaker={"cool_off_s": 5}),
            "$.policies.support-bot.breaker",
            "default policy only",
        ),
        (
            lambda d: d["policies"]["default"].update(breaker={"failure_share": 1.5}),
            "$.policies.default.breaker.failure_share",
            "between 0.05 and 1.0",
        ),
        (
            lambda d: d["policies"]["default"].update(breaker={"min_attempts": 2.5}),
            "$.policies.default.breaker.min_attempts",
            "whole number",
        ),
        (
            lambda d: d["policies"]["default"].update(breaker={"cool_off_s": 30, "max_cool_off_s": 10}),
            "$.policies.default.breaker.max_cool_off_s",
            "at least that long",
        ),
        (
            lambda d: d["policies"]["default"].update(breaker={"probes": 3}),
            "$.policies.default.breaker.probes",
            "not a known field",
        ),
        (lambda d: d.update(budgets={}), "$.budgets", "must be a list"),
        (lambda d: d["budgets"][0].update(state="red"), "$.budgets[0].state", "'ok' or 'over'"),
        (lambda d: d["budgets"][0].update(spend_usd=1.5), "$.budgets[0].spend_usd", "not a float"),
        (lambda d: d["budgets"][0].update(limit_usd="-3"), "$.budgets[0].limit_usd", "non-negative"),
        (lambda d: d["budgets"][0].update(team="Support"), "$.budgets[0].team", "lowercase slug"),
        (lambda d: d["budgets"].append(copy.deepcopy(d["budgets"][0])), "$.budgets[2]", "repeats the budget"),
        (lambda d: d.update(experiments={}), "$.experiments", "must be a list"),
        (
            lambda d: d["experiments"][0].update(arms=[d["experiments"][0]["arms"][0]]),
            "$.experiments[0].arms",
            "at least two",
        ),
        (
            lambda d: d["experiments"][0]["arms"][1].update(name="control"),
            "$.experiments[0].arms[1].name",
            "unique",
        ),
        (
            lambda d: d["experiments"][0]["arms"][0].update(weight=0),
            "$.experiments[0].arms[0].weight",
            "between 1",
        ),
        (
            lambda d: d["experiments"][0]["arms"][0].update(threshold=None),
            "$.experiments[0].arms[0].threshold",
            "number",
        ),
        (
            lambda d: d["experiments"][0].update(sticky_by="ip"),
            "$.experiments[0].sticky_by",
            "'end_user' or 'request'",
        ),
        (
            lambda d: d["experiments"].append(dict(d["experiments"][0], id="second")),
            "$.experiments[1].feature",
            "one experiment per feature",
        ),
        (lambda d: d.update(keys={}), "$.keys", "must be a list"),
        (
            lambda d: d["keys"][0].update(key_hash="fk-example-support-bot"),
            "$.keys[0].key_hash",
            "never the key",
        ),
        (lambda d: d["keys"][1].update(key_hash=d["keys"][0]["key_hash"]), "$.keys[1].key_hash", "repeats"),
        (
            lambda d: d["keys"][0].update(expires_at="2027-01-01T00:00:00"),
            "$.keys[0].expires_at",
            "UTC offset",
        ),
        (lambda d: d["keys"][0].update(revoked="no"), "$.keys[0].revoked", "true or false"),
        (lambda d: d["keys"][0].update(features="doc-qa"), "$.keys[0].features", "list of feature slugs"),
        (lambda d: d["attribution"].update(header="yes"), "$.attribution.header", "true or false"),
        (lambda d: d["shipping"].update(batch_size=0), "$.shipping.batch_size", "between 1"),
        (lambda d: d["shipping"].update(interval_ms=1), "$.shipping.interval_ms", "between 50"),
        (lambda d: d["shipping"].update(max_spool_records=5), "$.shipping.max_spool_records", "between 100"),
        (
            lambda d: d["shipping"].update(spool_full_policy="explode"),
            "$.shipping.spool_full_policy",
            "drop_oldest",
        ),
    ],
)
def test_each_error_names_its_path_and_the_fix(change: Any, path: str, phrase: str) -> None:
    errors = validate_bundle(mutated(change))
    matching = [e for e in errors if e.startswith(path + ":")]
    assert matching, errors
    assert any(phrase in e for e in matching), matching


def test_content_hash_mismatch_says_what_to_set() -> None:
    doc = example_bundle()
    doc["version"] = "edited-after-hashing"
    [error] = validate_bundle(doc)
    assert error.startswith("$.content_hash:") and content_hash(doc) in error
    doc.pop("content_hash")
    assert validate_bundle(doc) == [
        f"$.content_hash: must be the sha256 hex of the bundle without this field; set it to {content_hash(doc)}"
    ]


def test_not_an_object() -> None:
    assert validate_bundle([]) == ["$: must be a JSON object, got a list"]


def test_from_json_raises_with_every_error() -> None:
    with pytest.raises(BundleError) as caught:
        Bundle.from_json(mutated(lambda d: d.update(schema=9, version="")))
    assert len(caught.value.errors) == 2


def test_feature_override_replaces_the_threshold_choice_and_merges_rules() -> None:
    bundle = Bundle.from_json(
        mutated(
            lambda d: d["policies"].update({"kb": {"target_small_share": 0.3, "rules": {"tools": False}}})
        )
    )
    policy = bundle.policy_for("kb")
    assert policy.threshold is None and policy.target_small_share == 0.3
    assert policy.rules.tools is False and policy.rules.images is True


def test_topology_hash_changes_only_with_deployments() -> None:
    base = Bundle.from_json(example_bundle())
    policy_change = Bundle.from_json(mutated(lambda d: d["policies"]["default"].update(threshold=0.4)))
    topology_change = Bundle.from_json(mutated(lambda d: d["deployments"][0].update(context_window=4096)))
    assert base.topology_hash() == policy_change.topology_hash() != topology_change.topology_hash()


def test_a_bundle_pins_its_scorer_weights_and_unpinned_bundles_keep_v1() -> None:
    from routing.engine.bundle import UNPINNED_SCORER_WEIGHTS

    # Bundles written before complexity-v2 set thresholds on v1's score scale: they keep v1.
    assert Bundle.from_json(example_bundle()).scorer_weights == UNPINNED_SCORER_WEIGHTS == "complexity-v1"
    for version in ("complexity-v1", "complexity-v2"):
        pinned = mutated(lambda d, v=version: d.update(scorer_weights=v))
        assert validate_bundle(pinned) == []
        assert Bundle.from_json(pinned).scorer_weights == version
    [error] = validate_bundle(mutated(lambda d: d.update(scorer_weights="complexity-v99")))
    assert error.startswith("$.scorer_weights: must be a shipped scorer weights version (complexity-v1, ")
    assert "'complexity-v99'" in error


ADJUSTMENT = {
    "format": "feature-adjustment/1",
    "offset": 0.2,
    "labels": 90,
    "signals": [{"name": "quantitative_task", "weight": 2.0, "mean": 0.3, "scale": 0.35}],
}


def test_a_feature_policy_carries_its_score_adjustment_and_the_proxy_validates_it_on_load() -> None:
    doc = mutated(lambda d: d["policies"]["support-bot"].update(scorer_adjustment=ADJUSTMENT))
    assert validate_bundle(doc) == []
    bundle = Bundle.from_json(doc)
    adjustment = bundle.policy_for("support-bot").scorer_adjustment
    assert adjustment is not None and adjustment.to_dict() == ADJUSTMENT
    assert bundle.policy_for("doc-summary").scorer_adjustment is None  # not inherited by other features
    assert bundle.policy_for("default").scorer_adjustment is None

    bad = {**ADJUSTMENT, "signals": [{**ADJUSTMENT["signals"][0], "weight": 1e9}]}
    [error] = validate_bundle(mutated(lambda d: d["policies"]["support-bot"].update(scorer_adjustment=bad)))
    assert error.startswith("$.policies.support-bot.scorer_adjustment.signals[0].weight: must be within")
    with pytest.raises(BundleError):
        Bundle.from_json(mutated(lambda d: d["policies"]["support-bot"].update(scorer_adjustment=bad)))
    [error] = validate_bundle(
        mutated(lambda d: d["policies"]["default"].update(scorer_adjustment=ADJUSTMENT))
    )
    assert error.startswith("$.policies.default.scorer_adjustment: is set on the default policy")
