"""Fit the complexity scorer's weights on labeled prompts and write a versioned weights file.

    python -m routing.engine.tooling.train --data FILE [--data FILE ...] --out routing/engine/weights/complexity-vN.json

Each labeled row has `prompt` (or `messages`), a `benchmark` (its source), optionally a `subject`,
and either booleans `weak_correct`/`strong_correct` or graded `weak_score`/`strong_score`.

The label is the quality the strong model adds, rescaled to [0, 1]: (strong - weak + 1) / 2. A
logistic fit on it ranks prompts by expected gain from the frontier model, which is what routing
needs: a prompt both models fail is no reason to pay for the frontier model.

How the fit is kept from learning the benchmark instead of complexity:
- every source gets the same total weight, so a 14k-row benchmark cannot drown a small product set;
- each weight's sign is fixed by what the signal means (a routine-task verb cannot raise the score);
- each source has its own intercept, so weights rank prompts within a source instead of telling
  benchmarks apart;
- an L2 penalty shrinks what the data does not support;
- hand-labelled product prompts move only task-type signals the benchmarks barely exercise;
- signals only see the ask itself, with exam scaffolding ("A.", "Answer:") removed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from routing.engine.scorer import TERMS_FORMAT, WEIGHTS_FORMAT
from routing.engine.signals import (
    SIGNAL_NAMES,
    TASK_SIGNAL_NAMES,
    ask_terms,
    extract_features,
    extract_signals,
    task_type_signals,
)

DEFAULT_L2 = 0.1
DEFAULT_TARGET = "quality_gain"
TARGETS = ("quality_gain", "weak_fails", "strong_gain")
# Signals whose meaning says they can only lower the score; the others can only raise it, except
# the free ones, where either direction is plausible.
LOWERING_SIGNALS = frozenset({"routine_task_vocabulary", "output_format_vocabulary"})
FREE_SIGNALS = frozenset({"system_tokens", "material_tokens"})


# Evaluate-only data: AlpacaEval is CC BY-NC, so no shipped weights may be trained on it.
EVALUATE_ONLY_SOURCES = frozenset({"alpacaeval"})
PRODUCT_SOURCE = "product"


def is_product_holdout(prompt_id: str) -> bool:
    """A third of the product prompts, fixed by id before any tuning: never trained on, only evaluated."""
    return int(hashlib.sha256(prompt_id.encode("utf-8")).hexdigest(), 16) % 3 == 0


def shippable_training_prompts(prompts: Sequence[LabeledPrompt]) -> list[LabeledPrompt]:
    """The prompts shipped weights may learn from: no evaluate-only source, no product holdout."""
    return [
        p
        for p in prompts
        if p.source not in EVALUATE_ONLY_SOURCES
        and not (p.source == PRODUCT_SOURCE and is_product_holdout(p.id))
    ]


# Hand-labelled product prompts (routine vs complex), as opposed to measured model outcomes.
TASK_SOURCES = frozenset({"product"})
# A source's total weight relative to each benchmark's; the product set is small and hand-labelled.
DEFAULT_SOURCE_WEIGHTS = {"product": 0.2}
# What kind of task an ask is, in signals the benchmarks barely exercise (each is nonzero on under 3 % of
# MMLU and GSM8K prompts): the only weights the hand-labelled task sources may move. Widely present
# signals (size, math, domain, code) stay where the measured outcomes put them, so the product stage
# cannot trade benchmark ranking for a better fit to a hundred hand-written prompts.
TASK_TYPE_SIGNALS = frozenset(
    {
        "routine_task_vocabulary",
        "output_format_vocabulary",
        "numbered_steps",
        "multi_step_phrases",
        "material_tokens",
        "context_tokens",
        "system_tokens",
        "conversation_depth",
        "tool_definitions",
        "images",
    }
)
# The task stage's penalty pulls its weights towards the outcome fit's, harder than the first stage's.
TASK_STAGE_L2 = 1.0


def _weight_bounds(name: str) -> tuple[float | None, float | None]:
    if name in FREE_SIGNALS:
        return (None, None)
    return (None, 0.0) if name in LOWERING_SIGNALS else (0.0, None)


@dataclass(frozen=True)
class LabeledPrompt:
    """One prompt with how well the weak and the strong model did on it (1 = correct)."""

    id: str
    source: str
    subject: str
    messages: list[dict[str, Any]]
    weak_score: float
    strong_score: float
    tools: list[Any] | None = None


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        yield from lines


def _score_field(row: dict[str, Any], graded: str, boolean: str) -> float:
    if graded in row and row[graded] is not None:
        return float(row[graded])
    return 1.0 if row.get(boolean) else 0.0


def load_labeled_prompts(path: str | Path) -> list[LabeledPrompt]:
    prompts = []
    for number, line in enumerate(_open_text(Path(path))):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("primary_pair") is False:
            # Open-ended outcomes carry secondary model pairs too; one row per prompt is the primary pair.
            continue
        if "messages" in row:
            messages = row["messages"]
        else:
            messages = [{"role": "user", "content": row.get("prompt", "")}]
        prompts.append(
            LabeledPrompt(
                id=str(row.get("id", f"{Path(path).stem}-{number}")),
                source=str(row.get("benchmark") or row.get("source") or Path(path).stem),
                subject=str(row.get("subject") or row.get("benchmark") or row.get("source") or ""),
                messages=messages,
                weak_score=_score_field(row, "weak_score", "weak_correct"),
                strong_score=_score_field(row, "strong_score", "strong_correct"),
                tools=row.get("tools"),
            )
        )
    return prompts


def signal_matrix(prompts: Sequence[LabeledPrompt]) -> np.ndarray:
    return np.array(
        [
            [signals[name] for name in SIGNAL_NAMES]
            for signals in (extract_signals(p.messages, p.tools) for p in prompts)
        ],
        dtype=float,
    )


def target_labels(prompts: Sequence[LabeledPrompt], target: str = DEFAULT_TARGET) -> np.ndarray:
    weak = np.array([p.weak_score for p in prompts])
    strong = np.array([p.strong_score for p in prompts])
    if target == "quality_gain":
        return np.clip((strong - weak + 1.0) / 2.0, 0.0, 1.0)
    if target == "weak_fails":
        return 1.0 - weak
    if target == "strong_gain":
        return np.clip(strong - weak, 0.0, 1.0)
    raise ValueError(f"unknown target {target!r}; choose from {TARGETS}")


def source_balanced_weights(
    sources: Sequence[str], source_weight: dict[str, float] | None = None
) -> np.ndarray:
    """Each source sums to its share (1 unless overridden); the whole averages to 1 per row."""
    names, inverse, counts = np.unique(np.array(sources), return_inverse=True, return_counts=True)
    source_weight = DEFAULT_SOURCE_WEIGHTS if source_weight is None else source_weight
    share = np.array([source_weight.get(name, 1.0) for name in names])
    per_row = share[inverse] / counts[inverse]
    return per_row * len(sources) / per_row.sum()


@dataclass(frozen=True)
class LogisticFit:
    """Standardisation and weights of a fitted logistic model over SIGNAL_NAMES."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float

    def logits(self, signals: np.ndarray) -> np.ndarray:
        return ((signals - self.mean) / self.scale) @ self.weights + self.intercept


def fit_logistic(
    signals: np.ndarray,
    labels: np.ndarray,
    sample_weight: np.ndarray | None = None,
    l2: float = DEFAULT_L2,
    *,
    groups: Sequence[str] | None = None,
    frozen: LogisticFit | None = None,
    free_signals: frozenset[str] = frozenset(SIGNAL_NAMES),
) -> LogisticFit:
    """L2-regularised, sign-constrained logistic regression on standardised signals (soft labels allowed).

    With `groups` (each row's source), every source gets its own intercept, so the weights learn
    what ranks prompts inside a source, not what tells one benchmark from another (GSM8K's larger
    gain from the strong model is no reason to score every number higher). The shipped intercept is
    the mean of the groups' intercepts. With `frozen`, its standardisation is reused, only
    `free_signals` move, and the penalty pulls them towards the frozen weights rather than to zero.
    """
    n, d = signals.shape
    sample_weight = np.ones(n) if sample_weight is None else sample_weight
    if frozen is None:
        mean = np.average(signals, axis=0, weights=sample_weight)
        scale = np.sqrt(np.average((signals - mean) ** 2, axis=0, weights=sample_weight))
        # A signal constant in the training data gets scale 1 and, by the penalty, weight 0.
        scale = np.where(scale < 1e-9, 1.0, scale)
        anchor = np.zeros(d)
    else:
        mean, scale, anchor = frozen.mean, frozen.scale, frozen.weights
    group_names, group_of_row = np.unique(
        np.array(["all"] * n if groups is None else list(groups)), return_inverse=True
    )
    k = len(group_names)
    x = (signals - mean) / scale
    total = sample_weight.sum()

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:d], params[d:]
        z = x @ w + b[group_of_row]
        log_p = -np.logaddexp(0.0, -z)
        log_not_p = -np.logaddexp(0.0, z)
        loss = -np.sum(sample_weight * (labels * log_p + (1 - labels) * log_not_p)) / total
        residual = sample_weight * (np.exp(log_p) - labels) / total
        shrink = w - anchor
        gradient = np.concatenate([x.T @ residual + l2 * shrink, np.bincount(group_of_row, residual, k)])
        return loss + 0.5 * l2 * float(shrink @ shrink), gradient

    bounds = [
        _weight_bounds(name)
        if frozen is None or name in free_signals
        else (frozen.weights[i], frozen.weights[i])
        for i, name in enumerate(SIGNAL_NAMES)
    ] + [(None, None)] * k
    start = np.concatenate([anchor, np.full(k, 0.0 if frozen is None else frozen.intercept)])
    result = minimize(
        loss_and_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000}
    )
    intercepts = result.x[d:]
    return LogisticFit(mean=mean, scale=scale, weights=result.x[:d], intercept=float(intercepts.mean()))


def train(
    prompts: Sequence[LabeledPrompt],
    *,
    target: str = DEFAULT_TARGET,
    l2: float = DEFAULT_L2,
    source_weight: dict[str, float] | None = None,
    signals: np.ndarray | None = None,
    task_sources: frozenset[str] = TASK_SOURCES,
    task_l2: float = TASK_STAGE_L2,
) -> LogisticFit:
    """Fit on outcome-labelled sources, then let hand-labelled task sources set only task-type weights.

    Benchmarks hold 15k measured outcomes but no product-style tasks (summarise, design, debug); a
    hundred hand-written prompts should teach what those tasks mean, not overrule the benchmarks on
    size, math or domain signals. Both stages give each source its own intercept; the shipped
    intercept is the outcome sources' mean.
    """
    signals = signal_matrix(prompts) if signals is None else signals
    sources = [p.source for p in prompts]
    labels = target_labels(prompts, target)
    weights = source_balanced_weights(sources, source_weight)
    is_outcome = np.array([source not in task_sources for source in sources])
    if is_outcome.all() or not is_outcome.any():
        return fit_logistic(signals, labels, weights, l2, groups=sources)
    outcome_sources = [s for s in sources if s not in task_sources]
    outcome_weights = source_balanced_weights(outcome_sources, source_weight)
    outcome_fit = fit_logistic(
        signals[is_outcome], labels[is_outcome], outcome_weights, l2, groups=outcome_sources
    )
    task_fit = fit_logistic(
        signals,
        labels,
        weights,
        task_l2,
        groups=sources,
        frozen=outcome_fit,
        free_signals=TASK_TYPE_SIGNALS,
    )
    return LogisticFit(
        mean=task_fit.mean, scale=task_fit.scale, weights=task_fit.weights, intercept=outcome_fit.intercept
    )


def weights_document(
    fit: LogisticFit, *, version: str, trained_on: str, target: str, l2: float
) -> dict[str, Any]:
    return {
        "format": WEIGHTS_FORMAT,
        "version": version,
        "trained_on": trained_on,
        "target": target,
        "l2": l2,
        "intercept": round(fit.intercept, 8),
        "signals": {
            name: {
                "mean": round(float(fit.mean[i]), 8),
                "scale": round(float(fit.scale[i]), 8),
                "weight": round(float(fit.weights[i]), 8),
            }
            for i, name in enumerate(SIGNAL_NAMES)
        },
    }


def _parse_source_weights(pairs: Sequence[str]) -> dict[str, float]:
    parsed = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        parsed[name] = float(value)
    return parsed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", action="append", required=True, help="labeled JSONL(.gz); repeat to combine"
    )
    parser.add_argument(
        "--out", required=True, help="weights file, e.g. routing/engine/weights/complexity-v2.json"
    )
    parser.add_argument("--target", choices=TARGETS, default=DEFAULT_TARGET)
    parser.add_argument("--l2", type=float, default=DEFAULT_L2)
    parser.add_argument(
        "--source-weight",
        action="append",
        default=[],
        metavar="SOURCE=W",
        help=f"default {DEFAULT_SOURCE_WEIGHTS}",
    )
    parser.add_argument("--version", help="version stamped in the file (default: the file name's stem)")
    parser.add_argument(
        "--terms",
        action="store_true",
        help="fit weights format 2 (task types, ask terms, calibration); drops evaluate-only sources "
        "and the product holdout",
    )
    parser.add_argument(
        "--invariant",
        action="store_true",
        help="fit the complexity-v3 recipe (per-source fits, signals whose sign every source agrees on, "
        "calibrated on leave-one-source-out logits); drops evaluate-only sources and the product holdout",
    )
    parser.add_argument(
        "--blend",
        action="store_true",
        help="fit the complexity-v4 recipe (the v3 logit blended with a pooled fit over signals and ask "
        "terms, calibrated on leave-one-source-out logits); drops evaluate-only sources and the product holdout",
    )
    args = parser.parse_args(argv)

    prompts = [prompt for path in args.data for prompt in load_labeled_prompts(path)]
    if args.blend:
        _main_blend(prompts, args)
        return
    if args.invariant:
        _main_invariant(prompts, args)
        return
    if args.terms:
        _main_terms(prompts, args)
        return
    source_weight = {**DEFAULT_SOURCE_WEIGHTS, **_parse_source_weights(args.source_weight)}
    fit = train(prompts, target=args.target, l2=args.l2, source_weight=source_weight)
    sources = sorted({p.source for p in prompts})
    counts = ", ".join(f"{name}={sum(p.source == name for p in prompts)}" for name in sources)
    out = Path(args.out)
    document = weights_document(
        fit, version=args.version or out.stem, trained_on=counts, target=args.target, l2=args.l2
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(prompts)} prompts: {counts})")
    for i in np.argsort(-np.abs(fit.weights)):
        print(f"  {SIGNAL_NAMES[i]:<26} {fit.weights[i]:+.3f}")


def _main_terms(prompts: list[LabeledPrompt], args: argparse.Namespace) -> None:
    chosen = shippable_training_prompts(prompts)
    source_weight = {**DEFAULT_TERMS_SOURCE_WEIGHTS, **_parse_source_weights(args.source_weight)}
    fit = train_terms(chosen, source_weight=source_weight)
    sources = sorted({p.source for p in chosen})
    counts = ", ".join(f"{name}={sum(p.source == name for p in chosen)}" for name in sources)
    out = Path(args.out)
    document = terms_weights_document(fit, version=args.version or out.stem, trained_on=counts)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(chosen)} of {len(prompts)} prompts: {counts}; {len(fit.terms)} terms)")
    print(f"calibration slope {fit.slope:+.3f} offset {fit.offset:+.3f}")
    for i in np.argsort(-np.abs(fit.weights))[:15]:
        print(f"  {DENSE_NAMES[i]:<26} {fit.weights[i]:+.3f}")


def _main_invariant(prompts: list[LabeledPrompt], args: argparse.Namespace) -> None:
    chosen = shippable_training_prompts(prompts)
    features = prompt_features(chosen)
    fit = train_invariant(chosen, features=features)
    _, per_source = invariant_weights(features, chosen)
    sources = sorted({p.source for p in chosen})
    counts = ", ".join(f"{name}={sum(p.source == name for p in chosen)}" for name in sources)
    out = Path(args.out)
    document = terms_weights_document(fit, version=args.version or out.stem, trained_on=counts)
    document["recipe"] = INVARIANT_RECIPE
    document["l2"] = INVARIANT_L2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    kept = int(np.count_nonzero(fit.weights))
    print(
        f"wrote {out} ({len(chosen)} of {len(prompts)} prompts: {counts}; {kept} of {len(DENSE_NAMES)} signals kept)"
    )
    print(f"calibration slope {fit.slope:+.3f} offset {fit.offset:+.3f}")
    print(f"  {'signal':<26} {'shipped':>8} " + " ".join(f"{name[:9]:>9}" for name in per_source))
    for i in np.argsort(-np.abs(fit.weights)):
        if fit.weights[i] == 0:
            continue
        print(
            f"  {DENSE_NAMES[i]:<26} {fit.weights[i]:+8.3f} "
            + " ".join(f"{w[i] * fit.scale[i]:+9.3f}" for w in per_source.values())
        )


def _main_blend(prompts: list[LabeledPrompt], args: argparse.Namespace) -> None:
    chosen = shippable_training_prompts(prompts)
    fit = train_blend(chosen, features=prompt_features(chosen))
    sources = sorted({p.source for p in chosen})
    counts = ", ".join(f"{name}={sum(p.source == name for p in chosen)}" for name in sources)
    out = Path(args.out)
    document = terms_weights_document(fit, version=args.version or out.stem, trained_on=counts)
    document["recipe"] = BLEND_RECIPE
    document["l2"] = {"invariant": INVARIANT_L2, "pooled": BLEND_POOLED_L2, "terms": BLEND_TERM_L2}
    document["blend"] = BLEND_INVARIANT_SHARE
    document["source_weights"] = BLEND_SOURCE_WEIGHTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {out} ({len(chosen)} of {len(prompts)} prompts: {counts}; {len(fit.terms)} terms, "
        f"{int(np.count_nonzero(fit.weights))} of {len(DENSE_NAMES)} signals)"
    )
    print(f"calibration slope {fit.slope:+.3f} offset {fit.offset:+.3f}")
    for i in np.argsort(-np.abs(fit.weights))[:15]:
        print(f"  {DENSE_NAMES[i]:<26} {fit.weights[i]:+.3f}")
    for term, weight in sorted(fit.terms.items(), key=lambda item: -abs(item[1]))[:15]:
        print(f"  term {term!r:<26} {weight:+.3f}")


# ---------------------------------------------------------------------------------------------
# Weights format 2: task-type signals and ask terms on top of the format-1 signals, calibrated.

DENSE_NAMES: tuple[str, ...] = (*SIGNAL_NAMES, *TASK_SIGNAL_NAMES)
DEFAULT_TERM_L2 = 10.0
DEFAULT_DENSE_L2 = 10.0
# A term must occur in this many prompts and in this many training sources to get a weight:
# a word only one benchmark uses teaches the benchmark, not the task.
DEFAULT_MIN_PROMPTS = 3
DEFAULT_MIN_SOURCES = 2
# Hand-written product prompts are clean and separable; at full weight they would drown the
# measured outcomes of the benchmarks.
DEFAULT_TERMS_SOURCE_WEIGHTS = {"product": 0.3}
CALIBRATION_FOLDS = 3
# Shipped term weights below this size change no score by a visible amount.
MIN_SHIPPED_TERM_WEIGHT = 1e-5


@dataclass(frozen=True)
class PromptFeatures:
    """Dense signals (DENSE_NAMES) and the ask terms of each prompt."""

    dense: np.ndarray
    terms: list[set[str]]

    def subset(self, mask: np.ndarray) -> PromptFeatures:
        return PromptFeatures(self.dense[mask], [self.terms[i] for i in np.flatnonzero(mask)])


def prompt_features(prompts: Sequence[LabeledPrompt]) -> PromptFeatures:
    rows, terms = [], []
    for prompt in prompts:
        signals, window = extract_features(prompt.messages, prompt.tools)
        task = task_type_signals(window)
        rows.append([signals[name] for name in SIGNAL_NAMES] + [task[name] for name in TASK_SIGNAL_NAMES])
        terms.append(ask_terms(window))
    return PromptFeatures(np.array(rows, dtype=float).reshape(len(prompts), len(DENSE_NAMES)), terms)


def frontier_needed_labels(prompts: Sequence[LabeledPrompt]) -> np.ndarray:
    """How much the frontier model's answer beats the small one's, 0 when it does not: the calibration target."""
    return target_labels(prompts, "strong_gain")


@dataclass(frozen=True)
class TermsFit:
    """A fitted format-2 model: standardised dense weights, term weights, and the calibration on top."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    terms: dict[str, float]
    intercept: float
    slope: float = 1.0
    offset: float = 0.0

    def logits(self, features: PromptFeatures) -> np.ndarray:
        dense = ((features.dense - self.mean) / self.scale) @ self.weights + self.intercept
        terms = np.array([sum(self.terms.get(term, 0.0) for term in row) for row in features.terms])
        return dense + terms

    def probabilities(self, features: PromptFeatures) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * self.logits(features) + self.offset)))


def _term_matrix(terms: list[set[str]], vocabulary: dict[str, int]) -> Any:
    from scipy.sparse import csr_matrix

    rows, columns = [], []
    for row, present in enumerate(terms):
        for term in present:
            column = vocabulary.get(term)
            if column is not None:
                rows.append(row)
                columns.append(column)
    return csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(terms), len(vocabulary)))


def term_vocabulary(
    terms: list[set[str]], sources: Sequence[str], *, min_prompts: int, min_sources: int
) -> dict[str, int]:
    prompt_count: dict[str, int] = {}
    source_sets: dict[str, set[str]] = {}
    for present, source in zip(terms, sources, strict=True):
        for term in present:
            prompt_count[term] = prompt_count.get(term, 0) + 1
            source_sets.setdefault(term, set()).add(source)
    kept = sorted(
        t for t, n in prompt_count.items() if n >= min_prompts and len(source_sets[t]) >= min_sources
    )
    return {term: column for column, term in enumerate(kept)}


def _fit_ranking(
    features: PromptFeatures,
    labels: np.ndarray,
    sources: Sequence[str],
    sample_weight: np.ndarray,
    *,
    l2: float,
    term_l2: float,
    min_prompts: int,
    min_sources: int,
) -> TermsFit:
    """Soft-label logistic fit, one intercept per source, L2 on dense and (harder) on term weights."""
    dense = features.dense
    mean = np.average(dense, axis=0, weights=sample_weight)
    scale = np.sqrt(np.average((dense - mean) ** 2, axis=0, weights=sample_weight))
    scale = np.where(scale < 1e-9, 1.0, scale)
    x = (dense - mean) / scale
    vocabulary = term_vocabulary(features.terms, sources, min_prompts=min_prompts, min_sources=min_sources)
    t = _term_matrix(features.terms, vocabulary)
    group_names, group_of_row = np.unique(np.array(list(sources)), return_inverse=True)
    d, m, k = x.shape[1], t.shape[1], len(group_names)
    total = sample_weight.sum()

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, v, b = params[:d], params[d : d + m], params[d + m :]
        z = x @ w + t @ v + b[group_of_row]
        log_p = -np.logaddexp(0.0, -z)
        log_not_p = -np.logaddexp(0.0, z)
        loss = -np.sum(sample_weight * (labels * log_p + (1 - labels) * log_not_p)) / total
        residual = sample_weight * (np.exp(log_p) - labels) / total
        gradient = np.concatenate(
            [x.T @ residual + l2 * w, t.T @ residual + term_l2 * v, np.bincount(group_of_row, residual, k)]
        )
        return loss + 0.5 * l2 * float(w @ w) + 0.5 * term_l2 * float(v @ v), gradient

    result = minimize(
        loss_and_gradient, np.zeros(d + m + k), jac=True, method="L-BFGS-B", options={"maxiter": 3000}
    )
    weights, term_weights = result.x[:d], result.x[d : d + m]
    terms = {
        term: float(term_weights[column])
        for term, column in vocabulary.items()
        if abs(term_weights[column]) >= MIN_SHIPPED_TERM_WEIGHT
    }
    return TermsFit(mean, scale, weights, terms, float(result.x[d + m :].mean()))


def fit_calibration(logits: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray) -> tuple[float, float]:
    """Platt scaling: slope and offset so sigmoid(slope * logit + offset) matches the labels."""

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * logits + params[1]
        log_p = -np.logaddexp(0.0, -z)
        log_not_p = -np.logaddexp(0.0, z)
        loss = -np.sum(sample_weight * (labels * log_p + (1 - labels) * log_not_p)) / sample_weight.sum()
        residual = sample_weight * (np.exp(log_p) - labels) / sample_weight.sum()
        return loss, np.array([residual @ logits, residual.sum()])

    result = minimize(loss_and_gradient, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


def train_terms(
    prompts: Sequence[LabeledPrompt],
    *,
    features: PromptFeatures | None = None,
    l2: float = DEFAULT_DENSE_L2,
    term_l2: float = DEFAULT_TERM_L2,
    min_prompts: int = DEFAULT_MIN_PROMPTS,
    min_sources: int = DEFAULT_MIN_SOURCES,
    source_weight: dict[str, float] | None = None,
    calibration_folds: int = CALIBRATION_FOLDS,
    seed: int = 0,
) -> TermsFit:
    """Rank by expected quality gain, then calibrate out-of-fold logits to the chance the frontier is needed.

    The calibration is fitted on logits of prompts the ranking fit did not see (k folds), with every
    source weighted equally, so one probability scale serves all sources.
    """
    features = prompt_features(prompts) if features is None else features
    sources = [p.source for p in prompts]
    labels = target_labels(prompts, DEFAULT_TARGET)
    weights = source_balanced_weights(
        sources, DEFAULT_TERMS_SOURCE_WEIGHTS if source_weight is None else source_weight
    )
    options = {"l2": l2, "term_l2": term_l2, "min_prompts": min_prompts, "min_sources": min_sources}
    fit = _fit_ranking(features, labels, sources, weights, **options)
    if calibration_folds < 2:
        return fit
    folds = np.random.default_rng(seed).permutation(len(prompts)) % calibration_folds
    out_of_fold = np.zeros(len(prompts))
    for fold in range(calibration_folds):
        inside = folds != fold
        part = _fit_ranking(
            features.subset(inside),
            labels[inside],
            [s for s, keep in zip(sources, inside, strict=True) if keep],
            weights[inside],
            **options,
        )
        out_of_fold[~inside] = part.logits(features.subset(~inside))
    slope, offset = fit_calibration(out_of_fold, frontier_needed_labels(prompts), weights)
    return TermsFit(fit.mean, fit.scale, fit.weights, fit.terms, fit.intercept, slope, offset)


def terms_weights_document(fit: TermsFit, *, version: str, trained_on: str) -> dict[str, Any]:
    return {
        "format": TERMS_FORMAT,
        "version": version,
        "trained_on": trained_on,
        "target": DEFAULT_TARGET,
        "calibration": {
            "target": "frontier_needed",
            "slope": round(fit.slope, 8),
            "offset": round(fit.offset, 8),
        },
        "intercept": round(fit.intercept, 8),
        "signals": {
            name: {
                "mean": round(float(fit.mean[i]), 8),
                "scale": round(float(fit.scale[i]), 8),
                "weight": round(float(fit.weights[i]), 8),
            }
            for i, name in enumerate(DENSE_NAMES)
        },
        "terms": {term: round(weight, 7) for term, weight in sorted(fit.terms.items())},
    }


# ---------------------------------------------------------------------------------------------
# complexity-v3: signals whose effect agrees across sources ("invariant" weights), calibrated on
# sources the ranking never saw.
#
# A pooled fit learns whatever separates the sources it sees; on a source it has never seen (the
# case that matters in production) such weights can point the wrong way: word length raises the
# score on the hand-written product prompts and lowers the chance the frontier model is needed on
# MMLU. So each source is fitted on its own, and a signal keeps a weight only when every source
# agrees on its sign (the mean of their weights); a signal that any source contradicts, or that
# some source cannot measure (zero weight), is left out. Term weights are left out too: in
# leave-one-source-out tests they did not move any held-out source.

INVARIANT_L2 = 1.0
# A source with fewer prompts than this gets no vote (its weights would be noise), unless no source has that many.
MIN_VOTING_PROMPTS = 50
INVARIANT_RECIPE = "invariant"


def _source_fit_raw_weights(features: PromptFeatures, labels: np.ndarray, l2: float) -> np.ndarray:
    """One source's dense-signal weights in raw (unstandardised) units."""
    n = len(labels)
    empty = PromptFeatures(features.dense, [set() for _ in range(n)])
    fit = _fit_ranking(
        empty,
        labels,
        ["one"] * n,
        np.ones(n),
        l2=l2,
        term_l2=DEFAULT_TERM_L2,
        min_prompts=n + 1,
        min_sources=2,
    )
    return fit.weights / fit.scale


def invariant_weights(
    features: PromptFeatures, prompts: Sequence[LabeledPrompt], *, l2: float = INVARIANT_L2
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Raw-unit weights kept where every voting source agrees on the sign, and each source's own weights."""
    sources = np.array([p.source for p in prompts])
    labels = target_labels(prompts, DEFAULT_TARGET)
    names = sorted(set(sources))
    voting = [name for name in names if (sources == name).sum() >= MIN_VOTING_PROMPTS] or names
    per_source: dict[str, np.ndarray] = {}
    for source in voting:
        members = sources == source
        per_source[source] = _source_fit_raw_weights(features.subset(members), labels[members], l2)
    if not per_source:
        raise ValueError("no labelled prompts to fit")
    stacked = np.array(list(per_source.values()))
    signs = np.sign(stacked)
    agree = np.all(signs == signs[0], axis=0) & (signs[0] != 0)
    return np.where(agree, stacked.mean(axis=0), 0.0), per_source


def fit_grouped_calibration(
    logits: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray, groups: Sequence[str]
) -> tuple[float, float]:
    """Platt scaling with one slope and an offset per source; the shipped offset is their mean.

    Sources differ in how often the frontier model is needed at all (base rate), and a pooled
    fit would learn those differences instead of how the score moves the chance within a
    source: across sources a longer prompt can even mean a lower chance. The shared slope is the
    within-source relation; the mean offset is the middle of the sources' base rates, and a
    feature's own offset comes from its outcomes.
    """
    names, group_of_row = np.unique(np.array(list(groups)), return_inverse=True)
    k = len(names)
    total = sample_weight.sum()

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * logits + params[1:][group_of_row]
        log_p = -np.logaddexp(0.0, -z)
        log_not_p = -np.logaddexp(0.0, z)
        loss = -np.sum(sample_weight * (labels * log_p + (1 - labels) * log_not_p)) / total
        residual = sample_weight * (np.exp(log_p) - labels) / total
        return loss, np.concatenate([[residual @ logits], np.bincount(group_of_row, residual, k)])

    result = minimize(loss_and_gradient, np.concatenate([[1.0], np.zeros(k)]), jac=True, method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1:].mean())


TASK_LAYER_L2 = 0.1


def task_layer(
    features: PromptFeatures, prompts: Sequence[LabeledPrompt], raw: np.ndarray, *, l2: float = TASK_LAYER_L2
) -> tuple[np.ndarray, float]:
    """The task-type layer on top of the invariant weights: raw-unit weights and intercept of the whole logit.

    The invariant weights are mostly about how much an ask says; whether it is a transform,
    extraction or classification task (routine) or a reasoning, design, debugging or proof task is
    what the hand-labelled product prompts teach. One joint fit over every source (each source
    weighted equally, its own intercept) scales the invariant logit and gives each task-type signal
    a weight, with an L2 penalty towards zero; the benchmarks, where these signals rarely fire,
    keep them from moving the benchmark ranking much.
    """
    base = features.dense @ raw
    spread = float(base.std()) or 1.0
    base = base / spread
    columns = [DENSE_NAMES.index(name) for name in TASK_SIGNAL_NAMES]
    task = features.dense[:, columns]
    sources = [p.source for p in prompts]
    labels = target_labels(prompts, DEFAULT_TARGET)
    weights = source_balanced_weights(sources, {})
    names, group = np.unique(np.array(sources), return_inverse=True)
    k, m = len(names), task.shape[1]
    total = weights.sum()

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        scale, v, b = params[0], params[1 : 1 + m], params[1 + m :]
        z = scale * base + task @ v + b[group]
        log_p = -np.logaddexp(0.0, -z)
        log_not_p = -np.logaddexp(0.0, z)
        loss = -np.sum(weights * (labels * log_p + (1 - labels) * log_not_p)) / total
        residual = weights * (np.exp(log_p) - labels) / total
        gradient = np.concatenate(
            [[residual @ base], task.T @ residual + l2 * v, np.bincount(group, residual, k)]
        )
        return loss + 0.5 * l2 * float(v @ v), gradient

    start = np.concatenate([[1.0], np.zeros(m + k)])
    result = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    combined = result.x[0] * raw / spread
    combined[columns] += result.x[1 : 1 + m]
    return combined, float(result.x[1 + m :].mean())


def invariant_logit_weights(
    features: PromptFeatures, prompts: Sequence[LabeledPrompt], *, l2: float = INVARIANT_L2
) -> tuple[np.ndarray, float]:
    """Both stages: raw-unit weights and intercept, so the logit is dense @ weights + intercept."""
    raw, _ = invariant_weights(features, prompts, l2=l2)
    return task_layer(features, prompts, raw)


def train_invariant(
    prompts: Sequence[LabeledPrompt],
    *,
    features: PromptFeatures | None = None,
    l2: float = INVARIANT_L2,
    calibrate: bool = True,
) -> TermsFit:
    """The complexity-v3 recipe: sign-agreeing per-source weights and a task-type layer, then a
    calibration fitted on leave-one-source-out logits (each source scored by weights fitted
    without it), every source weighted equally, so the probability scale is the one an unseen
    source gets."""
    features = prompt_features(prompts) if features is None else features
    raw, intercept = invariant_logit_weights(features, prompts, l2=l2)
    dense = features.dense
    mean = dense.mean(axis=0)
    scale = dense.std(axis=0)
    scale = np.where(scale < 1e-9, 1.0, scale)
    # Stored in the format-2 layout: ((x - mean) / scale) @ (raw * scale) + (mean @ raw + b) == x @ raw + b.
    fit = TermsFit(mean, scale, raw * scale, {}, float(mean @ raw) + intercept)
    sources = np.array([p.source for p in prompts])
    names = sorted(set(sources))
    if not calibrate or len(names) < 2:
        return fit
    out_of_source = np.zeros(len(prompts))
    for source in names:
        inside = sources != source
        held_raw, held_intercept = invariant_logit_weights(
            features.subset(inside), [prompts[i] for i in np.flatnonzero(inside)], l2=l2
        )
        out_of_source[~inside] = dense[~inside] @ held_raw + held_intercept
    weights = source_balanced_weights(list(sources), {})
    slope, offset = fit_grouped_calibration(
        out_of_source, frontier_needed_labels(prompts), weights, list(sources)
    )
    return TermsFit(fit.mean, fit.scale, fit.weights, {}, fit.intercept, slope, offset)


# ---------------------------------------------------------------------------------------------
# complexity-v4: the v3 logit blended with a pooled fit over every signal and the ask terms.
#
# The invariant (v3) weights rank exam-style sources well but lean on length, which on open-ended
# chat prompts points the wrong way; a pooled fit (one intercept per source, strong L2 on signals
# and on word/word-pair/lead-word terms, product prompts weighted up) reads the task type better
# and leans less on length. Each logit is standardised on the training prompts and the two are
# averaged with fixed, untuned shares, so the result is again one linear model in format 2.

BLEND_RECIPE = "blend"
BLEND_INVARIANT_SHARE = 0.5
BLEND_POOLED_L2 = 10.0
BLEND_TERM_L2 = 10.0
# The hand-written product prompts are the only source of product task types; at benchmark weight
# they would be noise next to 14k exam questions.
BLEND_SOURCE_WEIGHTS = {"product": 3.0}


def blend_logit_weights(
    features: PromptFeatures, prompts: Sequence[LabeledPrompt], *, share: float = BLEND_INVARIANT_SHARE
) -> tuple[np.ndarray, dict[str, float], float]:
    """Raw-unit signal weights, term weights and intercept of the blended logit."""
    invariant_raw, invariant_intercept = invariant_logit_weights(features, prompts)
    invariant_logits = features.dense @ invariant_raw + invariant_intercept
    sources = [p.source for p in prompts]
    pooled = _fit_ranking(
        features,
        target_labels(prompts, DEFAULT_TARGET),
        sources,
        source_balanced_weights(sources, BLEND_SOURCE_WEIGHTS),
        l2=BLEND_POOLED_L2,
        term_l2=BLEND_TERM_L2,
        min_prompts=DEFAULT_MIN_PROMPTS,
        min_sources=DEFAULT_MIN_SOURCES,
    )
    pooled_logits = pooled.logits(features)
    invariant_factor = share / (float(invariant_logits.std()) or 1.0)
    pooled_factor = (1.0 - share) / (float(pooled_logits.std()) or 1.0)
    pooled_raw = pooled.weights / pooled.scale
    raw = invariant_factor * invariant_raw + pooled_factor * pooled_raw
    terms = {term: pooled_factor * weight for term, weight in pooled.terms.items()}
    intercept = invariant_factor * (invariant_intercept - float(invariant_logits.mean())) + pooled_factor * (
        pooled.intercept - float(pooled.mean @ pooled_raw) - float(pooled_logits.mean())
    )
    return raw, terms, intercept


def train_blend(
    prompts: Sequence[LabeledPrompt], *, features: PromptFeatures | None = None, calibrate: bool = True
) -> TermsFit:
    """The complexity-v4 recipe, calibrated on leave-one-source-out logits (each source scored by
    weights fitted without it), so the probability scale is the one an unseen source gets; see
    `fit_outcome_calibration`."""
    features = prompt_features(prompts) if features is None else features
    raw, terms, intercept = blend_logit_weights(features, prompts)
    dense = features.dense
    mean = dense.mean(axis=0)
    scale = dense.std(axis=0)
    scale = np.where(scale < 1e-9, 1.0, scale)
    terms = {term: weight for term, weight in terms.items() if abs(weight) >= MIN_SHIPPED_TERM_WEIGHT}
    fit = TermsFit(mean, scale, raw * scale, terms, float(mean @ raw) + intercept)
    sources = np.array([p.source for p in prompts])
    names = sorted(set(sources))
    if not calibrate or len(names) < 2:
        return fit
    out_of_source = np.zeros(len(prompts))
    for source in names:
        inside = sources != source
        held_raw, held_terms, held_intercept = blend_logit_weights(
            features.subset(inside), [prompts[i] for i in np.flatnonzero(inside)]
        )
        held = np.flatnonzero(~inside)
        out_of_source[held] = (
            dense[held] @ held_raw
            + held_intercept
            + np.array([sum(held_terms.get(term, 0.0) for term in features.terms[i]) for i in held])
        )
    slope, offset = fit_outcome_calibration(out_of_source, frontier_needed_labels(prompts), sources)
    return TermsFit(fit.mean, fit.scale, fit.weights, fit.terms, fit.intercept, slope, offset)


def fit_outcome_calibration(
    logits: np.ndarray, labels: np.ndarray, sources: np.ndarray
) -> tuple[float, float]:
    """The slope from measured outcomes only, the offset from every source.

    Hand-labelled task sources (routine 0 / complex 1, ranked almost perfectly) would steepen a shared
    slope that the noisy benchmark outcomes do not support, so the within-source slope comes from
    the outcome sources alone; then each source gets its own offset at that slope and the shipped
    offset is their mean, the middle of the sources' base rates.
    """
    outcome = ~np.isin(sources, list(TASK_SOURCES))
    if not outcome.any():
        outcome = np.ones(len(sources), dtype=bool)
    slope, _ = fit_grouped_calibration(
        logits[outcome],
        labels[outcome],
        source_balanced_weights(list(sources[outcome]), {}),
        list(sources[outcome]),
    )
    offsets = [
        _fit_offset(slope * logits[sources == source], labels[sources == source])
        for source in sorted(set(sources))
    ]
    return slope, float(np.mean(offsets))


def _fit_offset(logits: np.ndarray, labels: np.ndarray) -> float:
    """The shift d maximising the likelihood of sigmoid(logit + d) (soft labels allowed)."""

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = logits + params[0]
        loss = -np.sum(labels * -np.logaddexp(0.0, -z) + (1 - labels) * -np.logaddexp(0.0, z))
        return float(loss), np.array([np.sum(1.0 / (1.0 + np.exp(-z)) - labels)])

    return float(minimize(loss_and_gradient, np.zeros(1), jac=True, method="L-BFGS-B").x[0])


if __name__ == "__main__":
    main()
