"""The routing decision without a proxy: budgets, hard rules, experiment arms, thresholds."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from routing.engine.bundle import Bundle, Experiment, ExperimentArm, example_bundle, with_content_hash
from routing.engine.decision import (
    BudgetBlocked,
    ShareThreshold,
    assign_arm,
    decide,
    length_score,
    request_shape,
)


def bundle_with(change: Any = None) -> Bundle:
    doc = example_bundle()
    if change is not None:
        change(doc)
    return Bundle.from_json(with_content_hash(doc))


def fixed(score: float) -> Any:
    return lambda messages, tools: score


def route(bundle: Bundle, feature: str = "other", team: str = "t", score: float = 0.3, **data: Any) -> Any:
    data.setdefault("messages", [{"role": "user", "content": "hello"}])
    return decide(bundle, team=team, feature=feature, data=data, sticky_key="user-1", score_fn=fixed(score))


def test_score_against_threshold() -> None:
    bundle = bundle_with()
    small = route(bundle, score=0.49)
    assert (small.route, small.model_group, small.fallback_group, small.slm_timeout_s) == (
        "small",
        "slm",
        "frontier",
        2.0,
    )
    assert route(bundle, score=0.5).route == "frontier"


def test_threshold_extremes_route_everything_one_way() -> None:
    all_frontier = bundle_with(lambda d: d["policies"]["default"].update(threshold=0.0))
    all_small = bundle_with(lambda d: d["policies"]["default"].update(threshold=1.01))
    assert route(all_frontier, score=0.0).route == "frontier"
    assert route(all_small, score=1.0).route == "small"


def test_budget_block_and_degrade() -> None:
    bundle = bundle_with()
    with pytest.raises(BudgetBlocked) as blocked:
        route(bundle, feature="doc-summary", team="search")
    assert (
        "doc-summary" in str(blocked.value)
        and "$1210.00" in str(blocked.value)
        and "$1200.00" in str(blocked.value)
    )
    degrade = bundle_with(lambda d: d["budgets"][0].update(state="over"))
    decision = route(degrade, feature="support-bot", team="support", score=0.99)
    assert decision.route == "small" and decision.reason == "budget_degrade" and decision.budget_forced
    assert decision.fallback_group is None  # over budget: no frontier fallback either


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "images",
        ),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "structured_output"),
        ({"messages": [{"role": "user", "content": "x" * 40000}]}, "context"),
        ({"max_tokens": 9000}, "context"),
    ],
)
def test_hard_rules(data: dict[str, Any], rule: str) -> None:
    decision = route(bundle_with(), score=0.0, **data)
    assert (decision.route, decision.reason) == ("frontier", f"rule:{rule}")


def test_rule_switched_off_lets_the_slm_try() -> None:
    bundle = bundle_with(lambda d: d["policies"]["default"]["rules"].update(tools=False))
    assert route(bundle, score=0.0, tools=[{"type": "function"}]).route == "small"


def test_request_shape_counts_text_parts_only() -> None:
    shape = request_shape(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "abcd" * 10}]}]}
    )
    assert shape.prompt_tokens == 11 and not shape.has_images and not shape.has_tools


def test_experiment_arm_sets_the_threshold_and_is_sticky() -> None:
    bundle = bundle_with()
    first = decide(
        bundle,
        team="support",
        feature="support-bot",
        data={"messages": []},
        sticky_key="alice",
        score_fn=fixed(0.55),
    )
    again = decide(
        bundle,
        team="support",
        feature="support-bot",
        data={"messages": []},
        sticky_key="alice",
        score_fn=fixed(0.55),
    )
    assert first.experiment == "support-bot-threshold-a" and first.arm == again.arm
    assert first.threshold == {"control": 0.62, "lower": 0.5}[first.arm]
    assert first.route == ("small" if first.arm == "control" else "frontier")


def test_arm_assignment_follows_the_weights() -> None:
    experiment = Experiment(
        "exp", "f", "end_user", (ExperimentArm("a", 0.5, 80), ExperimentArm("b", 0.6, 20))
    )
    counts = Counter(assign_arm(experiment, f"user-{i}").name for i in range(5000))
    assert 0.77 < counts["a"] / 5000 < 0.83
    assert assign_arm(experiment, "user-7") == assign_arm(experiment, "user-7")
    other = Experiment("exp-2", "f", "end_user", experiment.arms)
    moved = sum(assign_arm(experiment, f"u{i}") != assign_arm(other, f"u{i}") for i in range(1000))
    assert moved > 100  # arms are hashed per experiment, so experiments do not share their splits


def test_target_share_learns_a_threshold_from_recent_scores() -> None:
    tracker = ShareThreshold(window=1000, refresh_every=1)
    assert tracker.threshold(0.8) == 0.5  # warming up
    for i in range(1000):
        tracker.observe(i / 1000)
    assert tracker.threshold(0.8) == pytest.approx(0.8, abs=0.01)
    assert tracker.threshold(1.0) == 1.01 and tracker.threshold(0.0) == 0.0


def test_target_share_policy_routes_about_that_share_to_small() -> None:
    bundle = bundle_with()
    shares: dict[str, ShareThreshold] = {}
    routes = Counter()
    for i in range(2000):
        score = (i * 7919 % 1000) / 1000
        decision = decide(
            bundle,
            team="x",
            feature="doc-summary",
            data={"messages": []},
            sticky_key=str(i),
            score_fn=fixed(score),
            shares=shares,
        )
        routes[decision.route] += 1
    assert 0.72 < routes["small"] / 2000 < 0.85


def test_length_score_is_bounded() -> None:
    assert length_score([{"role": "user", "content": "x" * 100000}]) == 1.0
    assert 0 <= length_score([]) < 0.01


def test_request_unit_experiment_splits_one_end_user_across_arms() -> None:
    def per_request(doc: dict[str, Any]) -> None:
        for experiment in doc["experiments"]:
            experiment["sticky_by"] = "request"

    arms = {
        decide(
            bundle_with(per_request),
            team="support",
            feature="support-bot",
            data={"messages": []},
            sticky_key="alice",
            request_key=f"call-{i}",
            score_fn=fixed(0.55),
        ).arm
        for i in range(40)
    }
    user_arms = {
        decide(
            bundle_with(),
            team="support",
            feature="support-bot",
            data={"messages": []},
            sticky_key="alice",
            request_key=f"call-{i}",
            score_fn=fixed(0.55),
        ).arm
        for i in range(40)
    }
    assert arms == {"control", "lower"}  # one user, many requests: both arms
    assert len(user_arms) == 1  # sticky by end user: always the same arm


def test_budget_action_overrides_the_policy_over_budget() -> None:
    def over(action: str) -> Any:
        def change(doc: dict[str, Any]) -> None:
            doc["budgets"] = [
                {
                    "team": "t",
                    "feature": "other",
                    "state": "over",
                    "spend_usd": "12",
                    "limit_usd": "10",
                    "period": "2026-11",
                    "action": action,
                }
            ]

        return change

    degraded = route(bundle_with(over("degrade")), score=0.9)
    assert degraded.route == "small" and degraded.reason == "budget_degrade"
    with pytest.raises(BudgetBlocked, match="spent \\$12 of \\$10"):
        route(bundle_with(over("block")), score=0.1)


def test_budget_action_must_be_known() -> None:
    from routing.engine.bundle import validate_bundle

    doc = example_bundle()
    doc["budgets"] = [
        {"team": "t", "feature": "f", "state": "over", "spend_usd": "1", "limit_usd": "1", "action": "shout"}
    ]
    assert any("$.budgets[0].action" in e and "'block' or 'degrade'" in e for e in validate_bundle(doc))


def test_the_feature_adjustment_reaches_the_scorer_and_the_decision_keeps_the_signals() -> None:
    from routing.engine.adjustment import ScoreAdjustment
    from routing.engine.scorer import ComplexityScorer

    adjustment = {
        "format": "feature-adjustment/1",
        "offset": 0.0,
        "signals": [{"name": "quantitative_task", "weight": 6.0, "mean": 0.0, "scale": 0.35}],
    }
    bundle = bundle_with(
        lambda d: d["policies"]["support-bot"].update(scorer_adjustment=adjustment, threshold=0.5)
    )
    scorer = ComplexityScorer.for_version("complexity-v3")
    seen: list[ScoreAdjustment | None] = []

    def scored(
        messages: Any, tools: Any, adjustment: ScoreAdjustment | None
    ) -> tuple[float, dict[str, float]]:
        seen.append(adjustment)
        return scorer.score_with_signals(messages, tools, adjustment)

    ask = {"messages": [{"role": "user", "content": "Calculate the probability that two dice sum to 7."}]}

    def run(feature: str) -> Any:
        return decide(
            bundle,
            team="t",
            feature=feature,
            data=dict(ask),
            sticky_key="u",
            score_fn=fixed(0.0),
            scored_fn=scored,
        )

    adjusted, plain = run("support-bot"), run("other")
    assert seen == [bundle.policy_for("support-bot").scorer_adjustment, None]
    assert adjusted.signals["quantitative_task"] > 0 and adjusted.signals == plain.signals
    assert plain.score == pytest.approx(scorer.score(ask["messages"]))
    assert adjusted.score > plain.score and adjusted.route == "frontier"
