"""Every shipped weights version loads and scores by its own file; bundles pin any of them."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from routing.engine.bundle import Bundle, example_bundle, validate_bundle, with_content_hash
from routing.engine.scorer import (
    TERMS_FORMAT,
    WEIGHTS_DIR,
    ComplexityScorer,
    default_version,
    shipped_versions,
)
from routing.engine.tooling.train import (
    BLEND_RECIPE,
    load_labeled_prompts,
    main,
    prompt_features,
    train_blend,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
ASKS = (
    "Translate to Spanish: your order has shipped.",
    "Prove that every finite integral domain is a field.",
    "Our service deadlocks when two requests update the same rows in different orders; find the cause.",
    "Write a haiku about the first snow of the year.",
)


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _scores(scorer: ComplexityScorer) -> list[float]:
    return [scorer.score(_ask(text)) for text in ASKS]


def test_every_version_from_v1_to_v4_is_shipped_and_scores_by_its_own_file():
    assert shipped_versions()[:4] == ("complexity-v1", "complexity-v2", "complexity-v3", "complexity-v4")
    seen = set()
    for version in shipped_versions():
        scorer = ComplexityScorer.for_version(version)
        assert scorer.version == version
        assert ComplexityScorer.for_version(version) is scorer, "loaded once per process"
        from_file = ComplexityScorer.from_file(WEIGHTS_DIR / f"{version}.json")
        assert _scores(scorer) == _scores(from_file)
        seen.add(tuple(round(score, 9) for score in _scores(scorer)))
    assert len(seen) == len(shipped_versions()), "each version scores differently"


def test_v4_is_the_blend_recipe_with_ask_terms_and_a_calibration():
    document = json.loads((WEIGHTS_DIR / "complexity-v4.json").read_text())
    assert document["format"] == TERMS_FORMAT and document["recipe"] == BLEND_RECIPE
    assert document["version"] == "complexity-v4"
    assert document["terms"], "v4 weighs word, word-pair and lead-word terms"
    assert 0 < document["calibration"]["slope"] < 1
    # Never trained on the evaluate-only source (AlpacaEval is non-commercial).
    assert "alpacaeval" not in document["trained_on"] and "product=" in document["trained_on"]
    v4 = ComplexityScorer.for_version("complexity-v4")
    explanation = v4.explain(_ask(ASKS[1]))
    logit = explanation["logit"]
    slope, offset = v4.calibration
    assert math.isclose(explanation["score"], 1 / (1 + math.exp(-(slope * logit + offset))), abs_tol=1e-6)
    routine, proof, deadlock, haiku = _scores(v4)
    assert max(routine, haiku) < min(proof, deadlock)


def test_a_bundle_pinning_v3_scores_as_v3_and_one_pinning_v4_as_v4():
    for version in ("complexity-v3", "complexity-v4"):
        doc = example_bundle()
        doc["scorer_weights"] = version
        doc = with_content_hash(doc)
        assert validate_bundle(doc) == []
        pinned = Bundle.from_json(doc).scorer_weights
        assert pinned == version
        expected = ComplexityScorer.from_file(WEIGHTS_DIR / f"{version}.json")
        assert _scores(ComplexityScorer.for_version(pinned)) == _scores(expected)
    assert _scores(ComplexityScorer.for_version("complexity-v3")) != _scores(
        ComplexityScorer.for_version("complexity-v4")
    )


def test_the_default_stays_v3_until_v4_wins_every_figure():
    # v4 is selectable, not the default: see docs/scorer.md for the figures where it loses to v3.
    assert default_version() == "complexity-v3"
    assert ComplexityScorer.default().version == "complexity-v3"


def _rows(count: int = 120) -> list[dict]:
    asks = {
        "routine": [
            "Translate to French: item {i}",
            "Fix the typos: teh meeting {i}",
            "Extract the date from: {i} May",
        ],
        "complex": [
            "Prove that the sum of the first {i} odd numbers is a square, and explain each step and why it holds.",
            "Design a distributed queue for {i} regions that never loses a message; explain the trade-offs.",
            "Our service deadlocks when {i} requests update the same rows in different orders; find the root cause.",
        ],
    }
    return [
        {
            "id": f"t-{i}",
            "benchmark": ("alpha", "beta", "gamma")[i % 3],
            "prompt": asks["complex" if i % 2 else "routine"][(i // 2) % 3].format(i=i),
            "weak_correct": not i % 2,
            "strong_correct": True,
        }
        for i in range(count)
    ]


def test_blend_weights_file_scores_like_the_fit(tmp_path):
    data = tmp_path / "tiny.jsonl.gz"
    with gzip.open(data, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in _rows())
    out_path = tmp_path / "complexity-v9.json"
    main(["--blend", "--data", str(data), "--out", str(out_path)])
    document = json.loads(out_path.read_text())
    assert document["recipe"] == BLEND_RECIPE and document["version"] == "complexity-v9"
    scorer = ComplexityScorer.from_file(out_path)
    prompts = load_labeled_prompts(data)
    fit = train_blend(prompts)
    scores = np.array([scorer.score(p.messages) for p in prompts])
    assert np.allclose(scores, fit.probabilities(prompt_features(prompts)), atol=1e-5)
    complex_ = np.array([p.weak_score == 0 for p in prompts])
    assert scores[complex_].min() > scores[~complex_].max()


@pytest.mark.parametrize("recipe", ["blend", "invariant"])
def test_evaluate_entry_module_prints_the_summary_line(tmp_path, recipe):
    data = tmp_path / "tiny.jsonl.gz"
    with gzip.open(data, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in _rows(60))
    result = subprocess.run(
        [sys.executable, "-m", "routing.engine.evaluate", "--recipe", recipe, "--data", str(data)]
        + ["--bootstrap", "5", "--no-litellm", "--no-latency"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    lines = result.stdout.strip().splitlines()
    assert "# Calibration of held-out probabilities" in result.stdout
    assert any(line.startswith("test on alpha") or "test on alpha" in line for line in lines)
    assert (
        lines[-1].startswith("apgr_min_source=") and " product_auc=" in lines[-1] and " p99_us=" in lines[-1]
    )
