"""The evaluation harness reads both data shapes and runs end to end on a tiny file."""

from __future__ import annotations

import gzip
import json

import numpy as np

from routing.engine.evaluate import litellm_heuristic_scores, main, prompt_length_scores
from routing.engine.scorer import ComplexityScorer
from routing.engine.train import load_labeled_prompts, signal_matrix, target_labels, train, weights_document


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
    main(["--data", str(path), "--bootstrap", "5", "--folds", "2", "--no-litellm"])
    output = capsys.readouterr().out
    assert "Leave one benchmark out" in output
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
    from routing.engine.train import LabeledPrompt

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
    from routing.engine.train import TASK_TYPE_SIGNALS

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
