"""Compare routing scorers on labeled prompts: APGR, CPT(50 %), CPT(80 %), cost saved at 95 % quality.

    python -m routing.engine.evaluate [--data FILE] [--bootstrap 200] [--folds 5]

Scorers: ours (weights refit per split with the same recipe as `routing.engine.train`), the shipped
weights (trained on everything, so in-sample here), random, prompt length, and LiteLLM's built-in
`complexity_router` heuristic called from the installed litellm package.
Splits: leave-one-benchmark-out (train on all other sources, test on one) and k-fold
cross-validation inside each benchmark. Intervals are bootstrap 95 % percentiles over prompts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from routing.engine.metrics import DEFAULT_PRICE_RATIO, bootstrap_metrics, paired_apgr_difference
from routing.engine.scorer import ComplexityScorer
from routing.engine.signals import last_user_text, request_text
from routing.engine.train import DEFAULT_L2, LabeledPrompt, load_labeled_prompts, signal_matrix, train

DEFAULT_DATA = Path("/work/shared/data/routing/labeled_prompts.jsonl.gz")
SEED = 20260101


def litellm_heuristic_scores(prompts: Sequence[LabeledPrompt]) -> np.ndarray:
    """The weighted score of LiteLLM's `auto_router/complexity_router` with classifier `heuristic`."""
    # Without this litellm fetches its model price map from the network at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm.router_strategy.complexity_router import ComplexityRouter

    router = ComplexityRouter(model_name="evaluate", litellm_router_instance=None)
    # LiteLLM scores the newest user ask, with the system prompt passed separately.
    return np.array([router.classify(last_user_text(p.messages))[1] for p in prompts], dtype=float)


def prompt_length_scores(prompts: Sequence[LabeledPrompt]) -> np.ndarray:
    return np.array([len(request_text(p.messages)) for p in prompts], dtype=float)


def random_scores(prompts: Sequence[LabeledPrompt]) -> np.ndarray:
    return np.random.default_rng(SEED).random(len(prompts))


def _format_interval(estimate: tuple[float, float, float]) -> str:
    point, low, high = estimate
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def print_comparison(
    title: str,
    scores_by_scorer: dict[str, np.ndarray],
    weak: np.ndarray,
    strong: np.ndarray,
    *,
    rounds: int,
    price_ratio: float,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    print(f"\n## {title}  (n={len(weak)}, weak acc {weak.mean():.3f}, strong acc {strong.mean():.3f})")
    header = f"{'scorer':<22} {'APGR [95% CI]':<24} {'CPT(50%)':<24} {'CPT(80%)':<24} {'strong share @95%':<24} {'cost saved @95%':<24}"
    print(header)
    results = {}
    for name, scores in scores_by_scorer.items():
        metrics = bootstrap_metrics(scores, weak, strong, rounds=rounds, seed=SEED, price_ratio=price_ratio)
        results[name] = metrics
        print(
            f"{name:<22} "
            + " ".join(
                f"{_format_interval(metrics[key]):<24}"
                for key in ("apgr", "cpt50", "cpt80", "strong_share_95", "cost_saved_95")
            )
        )
    first, *others = scores_by_scorer
    for other in others:
        if other in ("random",) or other.startswith("shipped"):
            continue
        difference = paired_apgr_difference(
            scores_by_scorer[first], scores_by_scorer[other], weak, strong, rounds=rounds, seed=SEED
        )
        print(f"  APGR {first} - {other}: {_format_interval(difference)} (paired bootstrap)")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA), help="labeled JSONL(.gz), same shape as the shared data"
    )
    parser.add_argument(
        "--extra-train", action="append", default=[], help="labeled file added to every training split"
    )
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap rounds for the intervals")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds inside each benchmark")
    parser.add_argument("--l2", type=float, default=DEFAULT_L2)
    parser.add_argument(
        "--price-ratio", type=float, default=DEFAULT_PRICE_RATIO, help="strong:weak price per call"
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's heuristic baseline")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    prompts = load_labeled_prompts(args.data)
    extra = [prompt for path in args.extra_train for prompt in load_labeled_prompts(path)]
    signals = signal_matrix(prompts)
    extra_signals = signal_matrix(extra) if extra else np.zeros((0, signals.shape[1]))
    weak = np.array([p.weak_score for p in prompts])
    strong = np.array([p.strong_score for p in prompts])
    sources = np.array([p.source for p in prompts])

    shipped = ComplexityScorer.default()
    baselines: dict[str, np.ndarray] = {
        f"shipped {shipped.version}*": np.array([shipped.score(p.messages, p.tools) for p in prompts]),
        "random": random_scores(prompts),
        "prompt length": prompt_length_scores(prompts),
    }
    if not args.no_litellm:
        baselines["litellm heuristic"] = litellm_heuristic_scores(prompts)
    print(
        f"{len(prompts)} prompts from {args.data}; sources: "
        + ", ".join(f"{name}={int((sources == name).sum())}" for name in sorted(set(sources)))
    )
    print(
        f"extra training prompts: {len(extra)}; bootstrap rounds: {args.bootstrap}; price ratio {args.price_ratio:g}"
    )
    print("* shipped weights were trained on these prompts too: in-sample, not a held-out figure")

    def fit_and_score(train_mask: np.ndarray, test_mask: np.ndarray) -> np.ndarray:
        chosen = [prompts[i] for i in np.flatnonzero(train_mask)] + extra
        fit = train(chosen, l2=args.l2, signals=np.vstack([signals[train_mask], extra_signals]))
        return fit.logits(signals[test_mask])

    def compare(title: str, mask: np.ndarray, ours: np.ndarray) -> None:
        scorers: dict[str, np.ndarray] = {"ours (held out)": ours}
        scorers.update({name: scores[mask] for name, scores in baselines.items()})
        print_comparison(
            title, scorers, weak[mask], strong[mask], rounds=args.bootstrap, price_ratio=args.price_ratio
        )

    source_names = sorted(set(sources))
    if len(source_names) > 1:
        print("\n# Leave one benchmark out: trained on the other source(s), tested on this one")
        for held_out in source_names:
            test_mask = sources == held_out
            compare(
                f"test on {held_out}, train on {', '.join(s for s in source_names if s != held_out)}",
                test_mask,
                fit_and_score(~test_mask, test_mask),
            )

    print(f"\n# In-benchmark {args.folds}-fold cross-validation (out-of-fold scores)")
    rng = np.random.default_rng(SEED)
    for source in source_names:
        members = np.flatnonzero(sources == source)
        folds = rng.permutation(len(members)) % args.folds
        out_of_fold = np.zeros(len(members))
        for fold in range(args.folds):
            train_mask = np.zeros(len(prompts), dtype=bool)
            test_mask = np.zeros(len(prompts), dtype=bool)
            train_mask[members[folds != fold]] = True
            test_mask[members[folds == fold]] = True
            out_of_fold[folds == fold] = fit_and_score(train_mask, test_mask)
        compare(f"{source}, {args.folds}-fold CV", sources == source, out_of_fold)
    print(f"\ndone in {time.perf_counter() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
