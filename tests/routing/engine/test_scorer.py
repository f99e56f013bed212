"""The complexity scorer: bounded, deterministic, never raises, and orders obvious cases sensibly."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.engine import ComplexityScorer
from routing.engine.scorer import (
    DEFAULT_WEIGHTS_FILE,
    TERMS_FORMAT,
    WEIGHTS_DIR,
    WEIGHTS_FORMAT,
    shipped_versions,
)
from routing.engine.signals import (
    ASK_HEAD_CHARS,
    SIGNAL_NAMES,
    TASK_SIGNAL_NAMES,
    estimate_tokens,
    extract_signals,
)

SCORER = ComplexityScorer.default()

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=200)
    | st.binary(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_content_parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=300)}),
        st.fixed_dictionaries(
            {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": st.text(max_size=20)})}
        ),
        st.dictionaries(st.text(max_size=8), _json_values, max_size=3),
        _json_values,
    ),
    max_size=5,
)
_messages = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["system", "user", "assistant", "tool", "developer", "", "🤖"]),
                "content": st.one_of(st.none(), st.text(max_size=2000), _content_parts, _json_values),
            }
        ),
        _json_values,
    ),
    max_size=6,
)
_requests = st.one_of(_messages, _json_values)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=_requests, tools=st.one_of(st.none(), _json_values))
def test_score_is_a_probability_and_deterministic_on_any_input(messages, tools):
    first = SCORER.score(messages, tools=tools)
    assert 0.0 <= first <= 1.0
    assert SCORER.score(messages, tools=tools) == first


@settings(max_examples=100, deadline=None)
@given(messages=_requests)
def test_explain_is_json_and_agrees_with_score(messages):
    explanation = SCORER.explain(messages)
    json.dumps(explanation, allow_nan=False)
    assert abs(explanation["score"] - SCORER.score(messages)) < 1e-5


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=5000))
def test_any_unicode_ask_is_scored(text):
    assert 0.0 <= SCORER.score([{"role": "user", "content": text}]) <= 1.0


def test_huge_and_binary_ish_prompts_are_scored():
    huge = "x" * 2_000_000
    binaryish = bytes(range(256)).decode("latin-1") * 100
    for content in (huge, binaryish, "\x00" * 10_000, "\ud800 lone surrogate"):
        assert 0.0 <= SCORER.score([{"role": "user", "content": content}]) <= 1.0
    assert 0.0 <= SCORER.score(None) <= 1.0
    assert 0.0 <= SCORER.score([]) <= 1.0
    assert 0.0 <= SCORER.score([None, 3, "hi", {"role": None}]) <= 1.0


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_one_line_formatting_request_scores_below_multi_step_design_task():
    formatting = _ask("Format this as JSON: name Bob, age 31, city Leeds")
    design = _ask(
        "Design a multi-region job scheduler that never runs a job twice. First list the requirements, "
        "then propose the architecture, then analyse the failure modes and the trade-offs of each choice, "
        "and finally explain how you would test it."
    )
    assert SCORER.score(formatting) < SCORER.score(design)


def test_long_document_to_summarise_scores_below_short_proof_request():
    paragraph = (
        "The committee met on Tuesday to review the annual budget. Members raised concerns about travel costs, "
        "the timing of the new office lease and the hiring plan for the support team. "
    )
    summarise = _ask("Summarise this document in five bullet points:\n\n" + paragraph * 80)
    proof = _ask("Prove that there are infinitely many primes.\nShow every step.")
    assert SCORER.score(summarise) < SCORER.score(proof)


def test_routine_tasks_score_below_reasoning_tasks():
    routine = [
        "Translate to Spanish: your order has shipped.",
        "Extract the email addresses from: write to ana@example.com or bo@example.org.",
        "Fix the typos: teh meeting is on thrusday.",
    ]
    complex_ = [
        "Why does this recursive function overflow the stack for n > 10000, and how would you rewrite it? def f(n): return 0 if n == 0 else 1 + f(n - 1)",
        "Compare event sourcing with CRUD for our ledger, evaluate the trade-offs and recommend one.",
        "Derive the closed form of the sum of the first n squares and prove it by induction.",
    ]
    assert max(SCORER.score(_ask(text)) for text in routine) < min(
        SCORER.score(_ask(text)) for text in complex_
    )


def test_exam_scaffolding_is_not_a_signal():
    question = "Which organ produces insulin?"
    with_options = question + "\nA. Liver\nB. Pancreas\nC. Kidney\nD. Heart\nAnswer:"
    plain = question + "\nLiver\nPancreas\nKidney\nHeart"
    scaffolded, bare = extract_signals(_ask(with_options)), extract_signals(_ask(plain))
    # Only the raw token estimate sees the extra characters; every analysed signal is unchanged.
    assert {name: value for name, value in scaffolded.items() if name != "ask_tokens"} == {
        name: value for name, value in bare.items() if name != "ask_tokens"
    }


def test_content_parts_and_string_content_score_the_same():
    text = "Explain the difference between a mutex and a semaphore."
    as_parts = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    assert SCORER.score(as_parts) == SCORER.score(_ask(text))


def test_conversation_depth_and_tools_are_signals():
    turns = [
        {"role": "user", "content": "Let's plan the migration."},
        {"role": "assistant", "content": "Sure, what is the current schema?"},
        {"role": "user", "content": "Two tables, users and orders."},
    ]
    signals = extract_signals(turns, tools=[{"type": "function", "function": {"name": "lookup"}}])
    assert signals["conversation_depth"] > 0
    assert signals["context_tokens"] > 0
    assert signals["tool_definitions"] > 0


def test_token_estimate_sees_the_full_length_beyond_the_analysed_window():
    long_text = "word " * 20_000
    assert estimate_tokens(long_text) == 25_000
    signals = extract_signals(_ask(long_text))
    assert len(long_text) > 10 * ASK_HEAD_CHARS
    assert signals["material_tokens"] > 0


def test_explain_lists_every_signal_with_its_contribution():
    explanation = SCORER.explain(_ask("Prove that sqrt(2) is irrational."))
    assert explanation["weights_version"] == SCORER.version
    assert {entry["name"] for entry in explanation["signals"]} == set(SIGNAL_NAMES) | set(TASK_SIGNAL_NAMES)
    contributions = [abs(entry["contribution"]) for entry in explanation["signals"]]
    assert contributions == sorted(contributions, reverse=True)
    assert explanation["terms"] == [], "complexity-v3 weighs no ask terms"
    # complexity-v2 weighs ask terms: its explanation lists the matched ones with their contributions.
    explanation = ComplexityScorer.for_version("complexity-v2").explain(
        _ask("Prove that sqrt(2) is irrational.")
    )
    assert explanation["terms"], "the matched ask terms and their contributions are listed"
    contributions = [abs(entry["contribution"]) for entry in explanation["signals"]]
    assert contributions == sorted(contributions, reverse=True)


def test_shipped_weights_file_is_versioned_and_loaded_once():
    document = json.loads((WEIGHTS_DIR / DEFAULT_WEIGHTS_FILE).read_text())
    # complexity-v3 is the default: format 2 (task-type signals and a calibration), fitted by the
    # invariant recipe, which keeps no ask terms and only the signals every source agrees on.
    assert document["format"] == TERMS_FORMAT and document["recipe"] == "invariant"
    assert document["version"] == DEFAULT_WEIGHTS_FILE.removesuffix(".json") == "complexity-v3"
    assert set(document["signals"]) == set(SIGNAL_NAMES) | set(TASK_SIGNAL_NAMES)
    assert document["terms"] == {} and set(document["calibration"]) >= {"slope", "offset"}
    kept = [name for name, entry in document["signals"].items() if entry["weight"] != 0]
    assert 5 < len(kept) < len(document["signals"])
    assert ComplexityScorer.default() is ComplexityScorer.default()
    assert ComplexityScorer.default().version == document["version"]


def test_weights_from_a_file_change_the_score(tmp_path):
    document = json.loads((WEIGHTS_DIR / "complexity-v1.json").read_text())
    document["version"] = "complexity-test"
    document["intercept"] = 5.0
    for entry in document["signals"].values():
        entry["weight"] = 0.0
    path = tmp_path / "complexity-test.json"
    path.write_text(json.dumps(document))
    constant = ComplexityScorer.from_file(path)
    assert constant.version == "complexity-test"
    assert abs(constant.score(_ask("anything")) - 0.9933071) < 1e-6


def test_routine_request_counts_only_when_the_ask_opens_or_closes_with_it():
    def routine(text):
        return extract_signals(_ask(text))["routine_task_vocabulary"]

    assert routine("Translate to Spanish: your order has shipped.") > 0
    assert routine("Here is the release note.\nPlease summarise it") > 0
    # An exam question that mentions a summary asks for no routine task.
    assert routine("Which summary of the passage best states its claim?\nA. One\nB. Two") == 0


def test_bench_keeps_each_request_fastest_timing():
    import random

    from routing.engine.tooling.bench import realistic_mix, time_scoring

    requests = realistic_mix(20, random.Random(1))
    single = time_scoring(SCORER, requests, "cpu", passes=1)
    best_of_three = time_scoring(SCORER, requests, "cpu", passes=3)
    assert len(single) == len(best_of_three) == 20
    assert best_of_three == sorted(best_of_three) and best_of_three[0] > 0


def test_old_weights_stay_loadable_and_unknown_versions_are_refused():
    assert shipped_versions()[:3] == ("complexity-v1", "complexity-v2", "complexity-v3")
    v1 = ComplexityScorer.for_version("complexity-v1")
    assert v1.version == "complexity-v1" and v1.format == WEIGHTS_FORMAT
    assert ComplexityScorer.for_version(None) is ComplexityScorer.default()
    # v1 scores exactly as its file says: the format-1 path reads the format-1 signals only.
    document = json.loads((WEIGHTS_DIR / "complexity-v1.json").read_text())
    assert ComplexityScorer.from_dict(document).score(_ask("Prove it.")) == v1.score(_ask("Prove it."))
    with pytest.raises(ValueError, match="complexity-v1, complexity-v2, complexity-v3"):
        ComplexityScorer.for_version("complexity-v99")


def test_routine_asks_score_below_hard_ones_with_the_default_weights():
    routine = [
        "Write a SQL query that returns the number of orders per customer.",
        "Regex to match a 5-digit zip code?",
        "What does this do? x = [i for i in range(10) if i % 2]",
        "Classify the sentiment of: 'love this phone, battery is great'",
        "Suggest a title for this conversation about resetting a router.",
        "Reply to the customer: they ask whether we ship to Ireland. We do.",
    ]
    hard = [
        "Our service deadlocks under load when two requests update the same account rows in different orders; "
        "find the cause and fix it.",
        "Prove that every finite integral domain is a field.",
        "Design a globally distributed rate limiter with per-tenant quotas and explain the consistency trade-offs.",
        "I roll three dice. What is the probability that the sum is at least 15?",
        "The report says revenue was 4.2M in Q1 and 3.9M in Q2, a 10% rise. Are these numbers consistent?",
    ]
    assert max(SCORER.score(_ask(text)) for text in routine) < min(SCORER.score(_ask(text)) for text in hard)
