"""The evaluation harness reads both data shapes and runs end to end on a tiny file."""

from __future__ import annotations

import gzip
import json

import numpy as np

from routing.engine.scorer import ComplexityScorer
from routing.engine.tooling.evaluate import litellm_heuristic_scores, main, prompt_length_scores
from routing.engine.tooling.train import (
    load_labeled_prompts,
    signal_matrix,
    target_labels,
    train,
    weights_document,
)


def _write_rows(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")


def _tiny_rows(count: int = 40) -> list[dict]:
    rows = []
    for i in range(count):
        hard = i % 2 == 0
        prompt = (
            f"Prove that the sum of the first {i} odd numbers is a square, and explain each step carefully."
            if hard
            else f"Translate to French: item {i}"
        )
        rows.append(
            {
                "id": f"a-{i}",
                "benchmark": "alpha" if i < count // 2 else "beta",
                "subject": "s",
                "prompt": prompt,
                "weak_correct": not hard,
                "strong_correct": True,
            }
        )
    return rows


def test_loader_accepts_messages_and_graded_scores(tmp_path):
    path = tmp_path / "graded.jsonl"
    path.write_text(
        json.dumps(
            {
                "id": "g-1",
                "source": "chat",
                "messages": [{"role": "user", "content": "hello"}],
                "weak_score": 0.25,
                "strong_score": 0.75,
            }
        )
        + "\n"
    )
    (prompt,) = load_labeled_prompts(path)
    assert prompt.messages == [{"role": "user", "content": "hello"}]
    assert (prompt.weak_score, prompt.strong_score, prompt.source) == (0.25, 0.75, "chat")
    assert target_labels([prompt]).tolist() == [0.75]
    assert target_labels([prompt], "strong_gain").tolist() == [0.5]


def test_trained_weights_score_like_the_fit(tmp_path):
    path = tmp_path / "tiny.jsonl.gz"
    _write_rows(path, _tiny_rows())
    prompts = load_labeled_prompts(path)
    signals = signal_matrix(prompts)
    fit = train(prompts, signals=signals)
    scorer = ComplexityScorer.from_dict(
        weights_document(fit, version="complexity-t", trained_on="tiny", target="weak_fails", l2=0.1)
    )
    scores = np.array([scorer.score(p.messages) for p in prompts])
    logits = fit.logits(signals)
    assert np.allclose(np.log(scores / (1 - scores)), logits, atol=1e-5)
    hard = np.array([p.weak_score == 0 for p in prompts])
    assert scores[hard].min() > scores[~hard].max()


def test_evaluate_runs_end_to_end(tmp_path, capsys):
    path = tmp_path / "tiny.jsonl.gz"
    _write_rows(path, _tiny_rows())
    main(["--data", str(path), "--bootstrap", "5", "--folds", "2", "--no-litellm", "--no-latency"])
    output = capsys.readouterr().out
    assert "Leave one source out" in output
    assert "ECE per source: alpha=" in output
    assert "ECE per source after a per-source offset" in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("apgr_min_source=") and " product_auc=nan p99_us=nan " in last
    assert "test on alpha, train on beta" in output
    assert "ours (held out)" in output and "prompt length" in output and "random" in output


def test_litellm_heuristic_is_the_installed_router_score():
    prompts = load_labeled_prompts_from_texts(
        ["What is the capital of France?", "Think step by step and prove it."]
    )
    simple, reasoning = litellm_heuristic_scores(prompts)
    assert simple < reasoning
    assert prompt_length_scores(prompts).tolist() == [30.0, 32.0]


def load_labeled_prompts_from_texts(texts):
    from routing.engine.tooling.train import LabeledPrompt

    return [
        LabeledPrompt(
            id=str(i),
            source="t",
            subject="t",
            messages=[{"role": "user", "content": text}],
            weak_score=1,
            strong_score=1,
        )
        for i, text in enumerate(texts)
    ]


def _product_rows(count: int = 20) -> list[dict]:
    """Hand-labelled task prompts: routine requests gain nothing from the strong model, designs do."""
    rows = []
    for i in range(count):
        routine = i % 2 == 0
        prompt = (
            f"Summarise this note {i} in one line."
            if routine
            else f"Design a sharded job queue {i}: first list the failure modes, then plan the rollout step by step."
        )
        rows.append(
            {
                "id": f"p-{i}",
                "benchmark": "product",
                "prompt": prompt,
                "weak_correct": True,
                "strong_correct": True,
                "weak_score": 1.0 if routine else 0.0,
            }
        )
    return rows


def test_product_prompts_move_only_task_type_weights(tmp_path):
    from routing.engine.signals import SIGNAL_NAMES
    from routing.engine.tooling.train import TASK_TYPE_SIGNALS

    bench_path, product_path = tmp_path / "bench.jsonl.gz", tmp_path / "product.jsonl.gz"
    _write_rows(bench_path, _tiny_rows())
    _write_rows(product_path, _product_rows())
    benchmarks = load_labeled_prompts(bench_path)
    both = benchmarks + load_labeled_prompts(product_path)
    outcome_only = train(benchmarks)
    with_product = train(both)
    for i, name in enumerate(SIGNAL_NAMES):
        if name not in TASK_TYPE_SIGNALS:
            assert with_product.weights[i] == outcome_only.weights[i], name
    routine = SIGNAL_NAMES.index("routine_task_vocabulary")
    # Routine requests gain nothing from the strong model in the product prompts: the weight drops further.
    assert with_product.weights[routine] < outcome_only.weights[routine] <= 0.0


def test_reliability_table_and_calibration_error():
    from routing.engine.tooling.evaluate import auc, expected_calibration_error, reliability_table

    rng = np.random.default_rng(3)
    predicted = rng.random(20_000)
    calibrated = (rng.random(20_000) < predicted).astype(float)
    assert expected_calibration_error(predicted, calibrated) < 0.02
    # Always saying 0.9 for events that happen half the time is off by 0.4.
    assert abs(expected_calibration_error(np.full(1000, 0.9), np.tile([0.0, 1.0], 500)) - 0.4) < 1e-9
    rows = reliability_table(predicted, calibrated)
    assert len(rows) == 10 and sum(row[2] for row in rows) == 20_000
    assert auc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([False, False, True, True])) == 1.0


def test_shipped_training_never_sees_alpacaeval_or_the_product_holdout():
    from routing.engine.tooling.train import LabeledPrompt, is_product_holdout, shippable_training_prompts

    def prompt(id_, source):
        return LabeledPrompt(id_, source, source, [{"role": "user", "content": "x"}], 1.0, 1.0)

    product = [prompt(f"product2-x-{i:03d}", "product") for i in range(60)]
    kept = shippable_training_prompts([prompt("a", "alpacaeval"), prompt("m", "mmlu"), *product])
    assert [p.id for p in kept if p.source != "product"] == ["m"]
    held = [p for p in product if is_product_holdout(p.id)]
    assert 10 < len(held) < 30 and not {p.id for p in held} & {p.id for p in kept}


def test_calibration_recovers_a_known_slope_and_offset():
    from routing.engine.tooling.train import fit_calibration

    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, 50_000)
    labels = (rng.random(50_000) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(float)
    slope, offset = fit_calibration(logits, labels, np.ones(50_000))
    assert abs(slope - 0.5) < 0.05 and abs(offset + 1.0) < 0.05


def test_a_per_source_offset_fixes_a_base_rate_the_shared_scale_misses():
    from routing.engine.tooling.evaluate import expected_calibration_error, with_own_offset

    rng = np.random.default_rng(8)
    # Within the source the ranking is right, but the frontier is needed twice as often as predicted.
    predicted = rng.uniform(0.1, 0.4, 20_000)
    observed = (rng.random(20_000) < 1 / (1 + np.exp(-(np.log(predicted / (1 - predicted)) + 1.2)))).astype(
        float
    )
    assert expected_calibration_error(predicted, observed) > 0.15
    assert expected_calibration_error(with_own_offset(predicted, observed), observed) < 0.02
