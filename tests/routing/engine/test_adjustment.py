"""A feature's adjustment, fitted from its outcomes, moves that feature's scores through the real scorer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from routing.engine.adjustment import ADJUSTMENT_FORMAT, AdjustmentError, ScoreAdjustment
from routing.engine.scorer import ComplexityScorer
from routing.engine.signals import extract_features, task_type_signals
from routing.engine.tooling.adjust import fit_feature_adjustment, standardise

NAMES = ("quantitative_task", "transform_task", "classify_task")
DEMO_THRESHOLD = 0.268  # the demo policy's threshold on complexity-v3 (docs/scorer.md)

# Quantitative asks the scorer's task-type signal recognises (docs/scorer.md: the shared scorer ranks
# math word problems as low as routine work, which is what a feature's own outcomes correct).
QUANTITATIVE = [
    "A bag holds 3 red and 5 blue marbles. Two are drawn without replacement. What is the probability both are blue?",
    "A train travels 210 km at an average of 84 km/h after a 12 minute stop. Compute its arrival time.",
    "Calculate the compound interest on 2,500 dollars at 4.5% a year over 7 years, compounded monthly.",
    "What is the chance that 6 people seated at random around a round table leave two friends apart?",
    "Pens cost 3 for 2 dollars and notebooks 4 dollars; Tom spends 26 dollars on 15 items. Calculate how many pens.",
    "Estimate the expected number of rolls of a fair die until every face has appeared at least once.",
    "Compute the variance of the sum of two independent dice.",
    "Our churn is 3.2 percent a month. Estimate the share of January's customers still with us a year later.",
]
ROUTINE = [
    "Rewrite this sentence in a friendlier tone: your ticket has been closed.",
    "Translate 'the invoice is attached' into French.",
    "Classify the sentiment of this review as positive or negative: the app keeps crashing.",
    "Give this support thread a short title: customer cannot reset their password.",
    "Convert this list to JSON: name Alice, age 31, city Paris.",
    "Fix the spelling in: recieve the pakage tomorow.",
    "Summarise in one line: the meeting moved to Thursday at 3pm.",
    "Turn these notes into a bullet list: buy milk, call Sam, book flights.",
]


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _raw_signals(text: str) -> list[float]:
    signals, window = extract_features(_messages(text), None)
    signals.update(task_type_signals(window))
    return [signals[name] for name in NAMES]


def _feature_outcomes(rng: np.random.Generator, calls: int):
    """A feature whose small model fails on most quantitative asks and almost never on routine ones."""
    scorer = ComplexityScorer.for_version("complexity-v3")
    texts, labels = [], []
    for _ in range(calls):
        quantitative = rng.random() < 0.5
        pool = QUANTITATIVE if quantitative else ROUTINE
        texts.append(pool[rng.integers(len(pool))])
        labels.append(float(rng.random() < (0.85 if quantitative else 0.05)))
    shared = [scorer.explain(_messages(text))["logit"] for text in texts]
    raw = np.array([_raw_signals(text) for text in texts])
    return scorer, shared, raw, np.array(labels)


def test_a_fitted_adjustment_sends_the_kind_of_ask_the_small_model_fails_on_to_the_frontier():
    scorer, shared, raw, labels = _feature_outcomes(np.random.default_rng(7), 400)
    x, mean, scale = standardise(raw, NAMES)
    fitted = fit_feature_adjustment(shared, x, NAMES, labels)
    assert fitted.moved
    # It travels as JSON (a bundle) and is read back with the same validation a proxy applies.
    adjustment = ScoreAdjustment.from_dict(json.loads(json.dumps(fitted.runtime(mean, scale).to_dict())))

    def share_routed(pool: list[str], adjusted: ScoreAdjustment | None) -> float:
        scores = [scorer.score(_messages(text), adjustment=adjusted) for text in pool]
        return sum(score >= DEMO_THRESHOLD for score in scores) / len(scores)

    before = (share_routed(QUANTITATIVE, None), share_routed(ROUTINE, None))
    after = (share_routed(QUANTITATIVE, adjustment), share_routed(ROUTINE, adjustment))
    print(f"frontier share quantitative/routine before {before}, after {after}")
    assert after[0] == 1.0 and after[0] > before[0]
    assert after[1] == 0.0, "routine asks, which the small model handles, stay on it"


def test_no_adjustment_and_an_empty_one_leave_the_score_as_it_was():
    scorer = ComplexityScorer.default()
    text = _messages(QUANTITATIVE[0])
    empty = ScoreAdjustment.from_dict({"format": ADJUSTMENT_FORMAT, "offset": 0.0, "signals": []})
    assert scorer.score(text, adjustment=empty) == scorer.score(text) == scorer.score(text, adjustment=None)
    shifted = ScoreAdjustment(1.0)
    assert scorer.score(text, adjustment=shifted) > scorer.score(text)
    # A malformed request still gets a score, with the feature's offset applied.
    assert scorer.score(object(), adjustment=shifted) > scorer.score(object())


def test_too_few_labels_give_an_adjustment_that_changes_nothing():
    scorer, shared, raw, labels = _feature_outcomes(np.random.default_rng(8), 20)
    x, mean, scale = standardise(raw, NAMES)
    runtime = fit_feature_adjustment(shared, x, NAMES, labels).runtime(mean, scale)
    assert runtime.offset == 0.0 and runtime.signals == ()
    assert scorer.score(_messages(QUANTITATIVE[1]), adjustment=runtime) == scorer.score(
        _messages(QUANTITATIVE[1])
    )


GOOD = {
    "format": ADJUSTMENT_FORMAT,
    "offset": 0.5,
    "labels": 80,
    "signals": [{"name": "quantitative_task", "weight": 1.2, "mean": 0.1, "scale": 0.3}],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"format": "other/1"}, "$.scorer_adjustment.format"),
        ({"offset": math.nan}, "$.scorer_adjustment.offset"),
        ({"offset": 1e9}, "$.scorer_adjustment.offset"),
        ({"offset": True}, "$.scorer_adjustment.offset"),
        ({"labels": -1}, "$.scorer_adjustment.labels"),
        ({"signals": "quantitative_task"}, "$.scorer_adjustment.signals"),
        ({"signals": [{"name": "x"}] * 17}, "$.scorer_adjustment.signals"),
        ({"signals": ["quantitative_task"]}, "$.scorer_adjustment.signals[0]"),
        ({"signals": [{**GOOD["signals"][0], "name": "__class__"}]}, "$.scorer_adjustment.signals[0].name"),
        ({"signals": [GOOD["signals"][0], GOOD["signals"][0]]}, "$.scorer_adjustment.signals[1].name"),
        ({"signals": [{**GOOD["signals"][0], "scale": 0}]}, "$.scorer_adjustment.signals[0].scale"),
        ({"signals": [{**GOOD["signals"][0], "weight": math.inf}]}, "$.scorer_adjustment.signals[0].weight"),
        ({"signals": [{**GOOD["signals"][0], "mean": "0.1"}]}, "$.scorer_adjustment.signals[0].mean"),
    ],
)
def test_a_bad_adjustment_document_is_refused_naming_the_field(change, field):
    assert ScoreAdjustment.from_dict(GOOD).to_dict() == GOOD
    with pytest.raises(AdjustmentError) as refused:
        ScoreAdjustment.from_dict({**GOOD, **change})
    assert str(refused.value).startswith(field + ":")
    with pytest.raises(AdjustmentError, match=r"^\$\.scorer_adjustment: must be an object"):
        ScoreAdjustment.from_dict([GOOD])


def test_the_recorded_signals_come_with_the_same_score():
    from routing.engine.adjustment import RECORDED_SIGNALS

    scorer = ComplexityScorer.for_version("complexity-v3")
    adjustment = ScoreAdjustment.from_dict(GOOD)
    for text in QUANTITATIVE[:3] + ROUTINE[:3]:
        score, signals = scorer.score_with_signals(_messages(text), adjustment=adjustment)
        assert score == scorer.score(_messages(text), adjustment=adjustment)
        assert set(signals) == set(RECORDED_SIGNALS)
    assert scorer.score_with_signals(_messages(QUANTITATIVE[0]))[1]["quantitative_task"] > 0
    # complexity-v1 computes no task-type signals: nothing to record, the score unchanged
    v1 = ComplexityScorer.for_version("complexity-v1")
    assert v1.score_with_signals(_messages(ROUTINE[0])) == (v1.score(_messages(ROUTINE[0])), {})
