"""Compare routing scorers on every labeled source, the product holdout, calibration and latency.

    python -m routing.engine.evaluate [--recipe blend|invariant] [--data FILE ...] [--bootstrap 200] [--folds 3]

Sources: MMLU and GSM8K (labeled_prompts), Arena-Bench and AlpacaEval (open_ended_outcomes, primary
pair, graded scores), and the hand-written product prompts. For each benchmark source, ours is
refitted with a shipped recipe (`--recipe blend`: `train.train_blend`, complexity-v4, the default;
`--recipe invariant`: `train.train_invariant`, complexity-v3) on every *other* source it may ship from
(never AlpacaEval, never the product holdout) and scored on the held-out source: leave-one-source-out
APGR. The product holdout (a third of the product prompts, fixed by id) is scored by a fit on
every shippable prompt, and reported as AUC (complex vs routine). Baselines: LiteLLM's
`complexity_router` heuristic from the installed package, prompt length, random, and the shipped
weights (marked * when they were trained on the prompts they are scored on).
Intervals are bootstrap 95 % percentiles over prompts; differences are paired (same resamples).
Calibration: reliability table of the held-out probabilities against the frontier-needed label
(strong beats weak), and the expected calibration error per source. Latency: p99 of
the recipe's shipped weights over the benchmark's realistic mix of sizes up to 8k tokens.
The last line is `apgr_min_source=… product_auc=… p99_us=… ece=…`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from routing.engine.scorer import ComplexityScorer, shipped_versions
from routing.engine.signals import last_user_text, request_text
from routing.engine.tooling.bench import _percentile, realistic_mix, time_scoring
from routing.engine.tooling.metrics import (
    DEFAULT_PRICE_RATIO,
    bootstrap_metrics,
    paired_apgr_difference,
)
from routing.engine.tooling.train import (
    CALIBRATION_FOLDS,
    EVALUATE_ONLY_SOURCES,
    PRODUCT_SOURCE,
    LabeledPrompt,
    frontier_needed_labels,
    is_product_holdout,
    load_labeled_prompts,
    prompt_features,
    shippable_training_prompts,
    train_blend,
    train_invariant,
)

DATA_DIR = Path("/work/shared/data/routing")
PRODUCT_DIR = Path(__file__).parent / "data"
DEFAULT_DATA = (
    DATA_DIR / "labeled_prompts.jsonl.gz",
    DATA_DIR / "open_ended_outcomes.jsonl.gz",
    PRODUCT_DIR / "product_prompts.jsonl",
    PRODUCT_DIR / "product_prompts_2.jsonl",
    PRODUCT_DIR / "product_prompts_3.jsonl",
)
SEED = 20260101
RELIABILITY_BINS = 10
LATENCY_REQUESTS = 1500
# Each recipe, the function that refits it and the shipped weights version it produced.
RECIPES = {
    "blend": (train_blend, "complexity-v4"),
    "invariant": (train_invariant, "complexity-v3"),
}


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


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive outranks a negative (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _interval(samples: list[float], point: float) -> tuple[float, float, float]:
    clean = [value for value in samples if np.isfinite(value)]
    if not clean:
        return point, point, point
    low, high = np.percentile(clean, [2.5, 97.5])
    return point, float(low), float(high)


def bootstrap_auc(
    scores: np.ndarray, positive: np.ndarray, *, rounds: int, baseline: np.ndarray | None = None
) -> tuple[float, float, float]:
    """AUC (or, with a baseline, the paired AUC difference) with a 95 % bootstrap interval."""

    def value(pick: np.ndarray) -> float:
        own = auc(scores[pick], positive[pick])
        return own if baseline is None else own - auc(baseline[pick], positive[pick])

    rng = np.random.default_rng(SEED)
    n = len(scores)
    return _interval([value(rng.integers(0, n, n)) for _ in range(rounds)], value(np.arange(n)))


def reliability_table(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS
) -> list[tuple]:
    """(low, high, count, mean predicted, mean observed) per equal-width probability bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        rows.append(
            (
                edges[b],
                edges[b + 1],
                count,
                float(probabilities[members].mean()) if count else float("nan"),
                float(labels[members].mean()) if count else float("nan"),
            )
        )
    return rows


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS
) -> float:
    total = len(probabilities)
    return float(
        sum(
            count * abs(predicted - observed)
            for _, _, count, predicted, observed in reliability_table(probabilities, labels, bins)
            if count
        )
        / max(total, 1)
    )


def with_own_offset(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probabilities shifted by an offset in logit space fitted on the other half of the prompts.

    A source (in production: a feature) has its own base rate of needing the frontier model; one
    shared scale cannot know it, a per-feature offset learnt from outcomes can. Two-fold cross-fit,
    so no prompt is scored by an offset fitted on its own label.
    """
    clipped = np.clip(probabilities, 1e-6, 1 - 1e-6)
    logits = np.log(clipped / (1 - clipped))
    halves = np.arange(len(logits)) % 2 == 0
    shifted = logits.copy()
    for half in (halves, ~halves):
        other = ~half
        if other.sum() < 2:
            continue
        # The shared slope stays; only the offset moves.
        shifted[half] = logits[half] + _offset_only(logits[other], labels[other])
    return 1.0 / (1.0 + np.exp(-shifted))


def _offset_only(logits: np.ndarray, labels: np.ndarray) -> float:
    """The shift d maximising the likelihood of sigmoid(logit + d) (soft labels allowed)."""
    from scipy.optimize import minimize_scalar

    def loss(d: float) -> float:
        z = logits + d
        return float(-np.sum(labels * -np.logaddexp(0.0, -z) + (1 - labels) * -np.logaddexp(0.0, z)))

    return float(minimize_scalar(loss, bounds=(-10.0, 10.0), method="bounded").x)


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
    print(
        f"\n## {title}  (n={len(weak)}, weak quality {weak.mean():.3f}, strong quality {strong.mean():.3f})"
    )
    print(
        f"{'scorer':<22} {'APGR [95% CI]':<24} {'CPT(50%)':<24} {'CPT(80%)':<24} {'strong share @95%':<24} {'cost saved @95%':<24}"
    )
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
        if other == "random" or other.startswith("shipped"):
            continue
        difference = paired_apgr_difference(
            scores_by_scorer[first], scores_by_scorer[other], weak, strong, rounds=rounds, seed=SEED
        )
        results[f"diff {other}"] = {"apgr": difference}
        print(f"  APGR {first} - {other}: {_format_interval(difference)} (paired bootstrap)")
    return results


def latency_p99_us(scorer: ComplexityScorer, count: int = LATENCY_REQUESTS) -> tuple[float, float]:
    """p50 and p99 microseconds per score over the benchmark's realistic mix, best of three passes."""
    scorer.score([{"role": "user", "content": "warm up"}])
    timings = time_scoring(scorer, realistic_mix(count, random.Random(7)), "cpu", passes=3)
    return _percentile(timings, 0.5), _percentile(timings, 0.99)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        action="append",
        default=None,
        help="labeled JSONL(.gz), repeatable (default: the shared benchmarks and the product prompts)",
    )
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap rounds for the intervals")
    parser.add_argument(
        "--folds",
        type=int,
        default=CALIBRATION_FOLDS,
        help="0 or 1: skip each fit's calibration (held-out sources are calibrated leave-one-source-out)",
    )
    parser.add_argument(
        "--price-ratio", type=float, default=DEFAULT_PRICE_RATIO, help="strong:weak price per call"
    )
    parser.add_argument(
        "--recipe", choices=sorted(RECIPES), default="blend", help="which training recipe 'ours' refits"
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's heuristic baseline")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    refit, recipe_version = RECIPES[args.recipe]
    paths = args.data or [str(path) for path in DEFAULT_DATA]
    prompts = [prompt for path in paths for prompt in load_labeled_prompts(path)]
    features = prompt_features(prompts)
    weak = np.array([p.weak_score for p in prompts])
    strong = np.array([p.strong_score for p in prompts])
    needed = frontier_needed_labels(prompts)
    sources = np.array([p.source for p in prompts])
    shippable = np.isin(
        np.array([p.id for p in prompts]), [p.id for p in shippable_training_prompts(prompts)]
    )
    product_holdout = np.array([p.source == PRODUCT_SOURCE and is_product_holdout(p.id) for p in prompts])

    baselines: dict[str, np.ndarray] = {}
    for version in shipped_versions():
        scorer = ComplexityScorer.for_version(version)
        baselines[f"shipped {scorer.version}"] = np.array(
            [scorer.score(p.messages, p.tools) for p in prompts]
        )
    baselines["random"] = random_scores(prompts)
    baselines["prompt length"] = prompt_length_scores(prompts)
    if not args.no_litellm:
        baselines["litellm heuristic"] = litellm_heuristic_scores(prompts)
    print(
        f"{len(prompts)} prompts; sources: "
        + ", ".join(f"{name}={int((sources == name).sum())}" for name in sorted(set(sources)))
        + f"; product holdout={int(product_holdout.sum())}"
    )
    print(
        f"bootstrap rounds: {args.bootstrap}; price ratio {args.price_ratio:g}; trained only on shippable sources"
    )
    print("* shipped weights trained on (part of) these prompts: in-sample, not a held-out figure")
    print(f"ours: the {args.recipe} recipe ({recipe_version}) refitted without the held-out prompts")

    def fit_on(train_mask: np.ndarray, test_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        chosen = train_mask & shippable
        fit = refit(
            [prompts[i] for i in np.flatnonzero(chosen)],
            features=features.subset(chosen),
            calibrate=args.folds > 1,
        )
        held_out = features.subset(test_mask)
        return fit.logits(held_out), fit.probabilities(held_out)

    # Which prompts each shipped version was trained on: v1 on MMLU, GSM8K and the first 98 product prompts.
    ids = [p.id for p in prompts]
    trained_by = {
        "shipped complexity-v1": np.isin(sources, ["mmlu", "gsm8k"])
        | np.array([i.startswith("product-") for i in ids]),
    }

    def label(name: str, mask: np.ndarray) -> str:
        if not name.startswith("shipped"):
            return name
        return name + ("*" if (trained_by.get(name, shippable) & mask).any() else "")

    held_out_probability = np.full(len(prompts), np.nan)
    summary: dict[str, dict[str, tuple[float, float, float]]] = {}
    benchmark_sources = sorted(set(sources) - {PRODUCT_SOURCE})
    if len(benchmark_sources) > 1:
        print("\n# Leave one source out: ours trained on the other shippable sources, tested on this one")
        for held_out in benchmark_sources:
            test_mask = sources == held_out
            logits, probabilities = fit_on(~test_mask, test_mask)
            held_out_probability[test_mask] = probabilities
            scorers = {"ours (held out)": logits}
            scorers.update({label(name, test_mask): scores[test_mask] for name, scores in baselines.items()})
            trained_on = sorted(set(sources[shippable & ~test_mask]))
            summary[held_out] = print_comparison(
                f"test on {held_out}, train on {', '.join(trained_on)}"
                + (" (evaluate-only source)" if held_out in EVALUATE_ONLY_SOURCES else ""),
                scorers,
                weak[test_mask],
                strong[test_mask],
                rounds=args.bootstrap,
                price_ratio=args.price_ratio,
            )

    product_auc = float("nan")
    if product_holdout.any():
        complex_ask = weak[product_holdout] < strong[product_holdout]
        logits, probabilities = fit_on(~product_holdout, product_holdout)
        held_out_probability[product_holdout] = probabilities
        scorers = {"ours (held out)": logits}
        scorers.update(
            {label(name, product_holdout): scores[product_holdout] for name, scores in baselines.items()}
        )
        print(
            f"\n## product holdout: AUC complex vs routine (n={int(product_holdout.sum())}, "
            f"complex={int(complex_ask.sum())}); trained on every shippable prompt, none of these"
        )
        print(f"{'scorer':<22} {'AUC [95% CI]':<24} {'paired: ours - this':<28}")
        for name, scores in scorers.items():
            own = bootstrap_auc(scores, complex_ask, rounds=args.bootstrap)
            difference = (
                ""
                if name == "ours (held out)"
                else _format_interval(
                    bootstrap_auc(logits, complex_ask, rounds=args.bootstrap, baseline=scores)
                )
            )
            print(f"{name:<22} {_format_interval(own):<24} {difference:<28}")
            if name == "ours (held out)":
                product_auc = own[0]

    print("\n# Calibration of held-out probabilities (label: frontier needed = strong beats weak)")
    scored = ~np.isnan(held_out_probability)
    print(f"{'bin':<12} {'n':>6} {'predicted':>10} {'observed':>10}")
    for low, high, count, predicted, observed in reliability_table(
        held_out_probability[scored], needed[scored]
    ):
        print(f"{low:.1f}-{high:.1f}    {count:>6} {predicted:>10.3f} {observed:>10.3f}")
    ece_by_source = {}
    for source in sorted(set(sources[scored])):
        mask = scored & (sources == source)
        ece_by_source[source] = expected_calibration_error(held_out_probability[mask], needed[mask])
    macro_ece = float(np.mean(list(ece_by_source.values()))) if ece_by_source else float("nan")
    print(
        "ECE per source: "
        + ", ".join(f"{source}={value:.3f}" for source, value in ece_by_source.items())
        + f"; mean over sources={macro_ece:.3f}"
    )
    offset_ece = {
        source: expected_calibration_error(
            with_own_offset(
                held_out_probability[scored & (sources == source)], needed[scored & (sources == source)]
            ),
            needed[scored & (sources == source)],
        )
        for source in ece_by_source
    }
    print(
        "ECE per source after a per-source offset (cross-fitted on the other half; what a feature's own "
        "outcomes add): "
        + ", ".join(f"{source}={value:.3f}" for source, value in offset_ece.items())
        + (f"; mean over sources={float(np.mean(list(offset_ece.values()))):.3f}" if offset_ece else "")
    )

    p99_us = float("nan")
    if not args.no_latency:
        p50_us, p99_us = latency_p99_us(ComplexityScorer.for_version(recipe_version))
        print(
            f"\n# Latency of {recipe_version} (cpu clock, best of 3 passes, "
            f"{LATENCY_REQUESTS} requests up to 8k tokens): p50 {p50_us:.0f} us, p99 {p99_us:.0f} us"
        )

    apgrs = {source: result["ours (held out)"]["apgr"][0] for source, result in summary.items()}
    if apgrs:
        print("\n# Summary: held-out APGR, ours vs LiteLLM heuristic (paired difference, 95% CI)")
        for source, result in summary.items():
            line = f"{source:<16} ours {_format_interval(result['ours (held out)']['apgr'])}"
            for other in ("litellm heuristic", "prompt length"):
                if f"diff {other}" in result:
                    line += f"  - {other}: {_format_interval(result[f'diff {other}']['apgr'])}"
            print(line)
    apgr_min = min(apgrs.values()) if apgrs else float("nan")
    print(f"\ndone in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    print(
        f"apgr_min_source={apgr_min:.3f} product_auc={product_auc:.3f} p99_us={p99_us:.0f} ece={macro_ece:.3f}"
    )


if __name__ == "__main__":
    main()
