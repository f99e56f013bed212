"""complexity-v3's recipe: per-source fits vote on each signal's sign, a task-type layer, grouped calibration."""

from __future__ import annotations

import gzip
import json

import numpy as np

from routing.engine.scorer import TERMS_FORMAT, ComplexityScorer
from routing.engine.tooling.train import (
    DENSE_NAMES,
    INVARIANT_RECIPE,
    LabeledPrompt,
    PromptFeatures,
    fit_grouped_calibration,
    invariant_weights,
    load_labeled_prompts,
    main,
    prompt_features,
    train_invariant,
)


def _prompt(i: int, source: str, weak: float, strong: float = 1.0) -> LabeledPrompt:
    return LabeledPrompt(f"{source}-{i}", source, source, [{"role": "user", "content": "x"}], weak, strong)


def _synthetic(rng: np.random.Generator) -> tuple[PromptFeatures, list[LabeledPrompt]]:
    """Three sources. Signal 0 raises the frontier's gain in all of them; signal 1 raises it in
    one source and lowers it in the others; signal 2 is constant (unmeasured) in one source."""
    rows, prompts = [], []
    for source, sign_of_1 in (("a", 1.0), ("b", -1.0), ("c", -1.0)):
        for i in range(400):
            x = np.zeros(len(DENSE_NAMES))
            x[0], x[1] = rng.normal(), rng.normal()
            x[2] = 0.0 if source == "c" else rng.normal()
            gain = 1 / (1 + np.exp(-(1.5 * x[0] + 1.5 * sign_of_1 * x[1] + 1.5 * x[2])))
            weak_fails = rng.random() < gain
            rows.append(x)
            prompts.append(_prompt(i, source, 0.0 if weak_fails else 1.0))
    return PromptFeatures(np.array(rows), [set() for _ in rows]), prompts


def test_a_signal_keeps_a_weight_only_when_every_source_agrees_on_its_sign():
    features, prompts = _synthetic(np.random.default_rng(11))
    weights, per_source = invariant_weights(features, prompts)
    assert sorted(per_source) == ["a", "b", "c"]
    assert weights[0] > 0, "every source says signal 0 raises the gain"
    assert per_source["a"][1] > 0 > per_source["b"][1]
    assert weights[1] == 0, "the sources disagree on signal 1: it is left out"
    assert per_source["c"][2] == 0 and weights[2] == 0, "source c cannot measure signal 2: no agreement"
    # The kept weight is the sources' mean.
    assert np.isclose(weights[0], np.mean([w[0] for w in per_source.values()]))


def test_grouped_calibration_learns_the_within_source_slope_and_ships_the_mean_offset():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, 60_000)
    groups = np.where(np.arange(60_000) % 2 == 0, "low", "high")
    # Base rates differ by source (offsets -2 and +1); within each source the slope is 0.5.
    offsets = np.where(groups == "low", -2.0, 1.0)
    labels = (rng.random(60_000) < 1 / (1 + np.exp(-(0.5 * logits + offsets)))).astype(float)
    slope, offset = fit_grouped_calibration(logits, labels, np.ones(60_000), list(groups))
    assert abs(slope - 0.5) < 0.05
    assert abs(offset - (-0.5)) < 0.08


def _rows(count: int = 120) -> list[dict]:
    asks = {
        "routine": [
            "Translate to French: item {i}",
            "Fix the typos: teh meeting {i}",
            "Extract the date from: {i} May",
        ],
        "complex": [
            "Prove that the sum of the first {i} odd numbers is a square, and explain each step and why it holds.",
            "Design a distributed queue for {i} regions that never loses a message; explain the trade-offs of each choice.",
            "Our service deadlocks when {i} requests update the same rows in different orders; find the root cause.",
        ],
    }
    rows = []
    for i in range(count):
        kind = "complex" if i % 2 else "routine"
        rows.append(
            {
                "id": f"t-{i}",
                "benchmark": ("alpha", "beta", "gamma")[i % 3],
                "prompt": asks[kind][(i // 2) % 3].format(i=i),
                "weak_correct": kind == "routine",
                "strong_correct": True,
            }
        )
    return rows


def test_v3_weights_file_scores_like_the_fit_and_separates_routine_from_complex(tmp_path):
    data = tmp_path / "tiny.jsonl.gz"
    with gzip.open(data, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in _rows())
    out_path = tmp_path / "complexity-v9.json"
    main(["--invariant", "--data", str(data), "--out", str(out_path)])
    document = json.loads(out_path.read_text())
    assert document["format"] == TERMS_FORMAT and document["recipe"] == INVARIANT_RECIPE
    assert document["version"] == "complexity-v9" and document["terms"] == {}
    scorer = ComplexityScorer.from_file(out_path)
    prompts = load_labeled_prompts(data)
    fit = train_invariant(prompts)
    features = prompt_features(prompts)
    scores = np.array([scorer.score(p.messages) for p in prompts])
    assert np.allclose(scores, fit.probabilities(features), atol=1e-5)
    complex_ = np.array([p.weak_score == 0 for p in prompts])
    assert scores[complex_].min() > scores[~complex_].max()
