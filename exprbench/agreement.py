"""Judgements built on several recognizers: agreement, the 0.6 weighting, confusions, age
against the prompt, gender by majority. Pure functions (no I/O, no registry).

The aggregate stage computes the same quantities in DuckDB (`exprbench.aggregate`,
`build_judgement_tables`); the functions here are the reference the tests check that
SQL against, and the row-level ones are what the score stage stores. Definitions:

* Recognizers: every scorer whose declared columns (scores.parquet's schema metadata)
  include `top1` (expression) or `gender` (gender); none is named here.
* Majority label of an image: the label most recognizers give as their top-1. A tie on
  the count is broken by the summed top-1 probability of the recognizers voting for each
  tied label (the more confident side wins), then by the canonical expression order
  (`EXPRESSIONS`; for gender, alphabetical); the image is marked `tied`.
  Agreement rate = recognizers giving the majority label / recognizers with a label.
* Fleiss' kappa (Fleiss 1971), per generator/version over its images labelled by every
  recognizer that labelled any of its images (m raters, N images, categories the 7
  expressions): P_i = (sum_j n_ij^2 - m) / (m (m - 1)), P = mean P_i,
  p_j = sum_i n_ij / (N m), P_e = sum_j p_j^2, kappa = (P - P_e) / (1 - P_e). Undefined
  (NULL) for m < 2, N = 0, or P_e = 1 (every vote in one category: no variation to agree
  on beyond chance).
* The seed study's weighting: per image, confidence c = the mean `image_confidence` of
  the judges that scored it (a scorer declaring that metric: CLIP), else the row's own
  `target_prob`; lambda = 1 if c >= tau, else c; `ambiguous` = c < tau. Weighted mean of
  x = sum(lambda x) / sum(lambda).
* Accuracy over 7: top-1 equals the requested expression, over every image with a top-1.
  Accuracy over 6: on images requesting one of the six non-neutral expressions, the most
  probable of the six non-neutral classes (neutral removed from the label set; ties by
  canonical order) is the requested one.
* Structural confusion rate of a look-alike pair (a, b): among the images requested as a
  or b with a top-1, the share whose top-1 is the other class of the pair:
  scr(a, b) = (n(a -> b) + n(b -> a)) / (n(a) + n(b)). mSCR = mean of scr over the pairs
  (fear/surprise, disgust/angry, sad/neutral) that have any image. FFE-Bench (PixelSmile,
  2026) reports an mSCR over semantically overlapping pairs; its exact pooling was not
  available here, so this is our definition and may differ from theirs in weighting.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from exprbench.judgement_specs import AGE_IN_PROMPT_RANGE, AGE_PROMPT_ERROR, TABLE_METRICS
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.metrics import MetricSpec
from exprbench.prompt_age import AgeFormError, parse_requested_age

NON_NEUTRAL: tuple[str, ...] = tuple(e for e in EXPRESSIONS if e != NEUTRAL)


@dataclass(frozen=True)
class Majority:
    label: str
    votes: int
    n_raters: int
    tied: bool

    @property
    def agreement_rate(self) -> float:
        return self.votes / self.n_raters


def majority(
    votes: Mapping[str, tuple[str, float | None]], order: Sequence[str] = EXPRESSIONS
) -> Majority:
    """The majority of `votes` (rater -> (label, its probability)); see the module docstring."""
    if not votes:
        raise ValueError("majority of no votes")
    counts: Counter[str] = Counter()
    confidence: dict[str, float] = defaultdict(float)
    for label, prob in votes.values():
        counts[label] += 1
        confidence[label] += 0.0 if prob is None else float(prob)
    top = max(counts.values())
    tied = [label for label, n in counts.items() if n == top]
    rank = {label: i for i, label in enumerate(order)}
    best = min(tied, key=lambda label: (-confidence[label], rank.get(label, len(rank)), label))
    return Majority(best, top, len(votes), len(tied) > 1)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of an images x categories table of rater counts (the same number of
    raters on every image); None where it is undefined (see the module docstring)."""
    if not counts:
        return None
    raters = {sum(row) for row in counts}
    if len(raters) != 1:
        raise ValueError(f"every image needs the same number of raters; got {sorted(raters)}")
    m = raters.pop()
    if m < 2:
        return None
    n = len(counts)
    p_i = [(sum(c * c for c in row) - m) / (m * (m - 1)) for row in counts]
    p_bar = sum(p_i) / n
    p_j = [sum(row[j] for row in counts) / (n * m) for j in range(len(counts[0]))]
    p_e = sum(p * p for p in p_j)
    if abs(1.0 - p_e) <= 1e-12:  # the same tolerance as the aggregate's SQL
        return None
    return (p_bar - p_e) / (1.0 - p_e)


# --------------------------------------------------------------------------- weighting


def lambda_weight(confidence: float, tau: float) -> float:
    """The seed study's weight: 1 if confidence >= tau, else the confidence."""
    return 1.0 if confidence >= tau else float(confidence)


def add_weights(rows: Iterable[dict], tau: float, judges: Iterable[str] = ()) -> list[dict]:
    """Fill lambda_weight and ambiguous on every row with a target_prob.

    `judges`: scorers that declare `image_confidence`; their target_prob is copied there,
    and the image's confidence is its judges' mean (else each row's own target_prob).
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must lie in (0, 1]; got {tau}")
    rows = list(rows)
    judges = set(judges)
    by_image: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["scorer"] in judges and row.get("target_prob") is not None:
            row["image_confidence"] = row["target_prob"]
            by_image[row["path"]].append(float(row["target_prob"]))
    for row in rows:
        if row.get("target_prob") is None:
            continue
        judged = by_image.get(row["path"])
        confidence = sum(judged) / len(judged) if judged else float(row["target_prob"])
        row["lambda_weight"] = lambda_weight(confidence, tau)
        row["ambiguous"] = confidence < tau
    return rows


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float | None:
    total = sum(weights)
    if total <= 0:
        return None
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total


# --------------------------------------------------------------------------- confusions


def top1_of_six(probabilities: Mapping[str, float]) -> str:
    """The most probable non-neutral expression (ties by canonical order)."""
    return max(NON_NEUTRAL, key=lambda e: (probabilities[e], -NON_NEUTRAL.index(e)))


@dataclass(frozen=True)
class ConfusionRates:
    n_7: int
    accuracy_7: float | None
    n_6: int
    accuracy_6: float | None
    scr: dict[str, float | None]  # scr_<a>_<b>
    mscr: float | None


def confusion_rates(
    images: Iterable[tuple[str, str, Mapping[str, float]]],
    pairs: Sequence[tuple[str, str]],
) -> ConfusionRates:
    """Rates of (requested, top-1, probabilities) triples of one recognizer and run."""
    items = list(images)
    n_7 = len(items)
    correct_7 = sum(requested == top1 for requested, top1, _ in items)
    six = [(requested, probs) for requested, _, probs in items if requested != NEUTRAL]
    correct_6 = sum(requested == top1_of_six(probs) for requested, probs in six)
    scr: dict[str, float | None] = {}
    for a, b in pairs:
        members = [(r, t) for r, t, _ in items if r in (a, b)]
        confused = sum((r, t) in ((a, b), (b, a)) for r, t in members)
        scr[f"scr_{a}_{b}"] = confused / len(members) if members else None
    defined = [v for v in scr.values() if v is not None]
    return ConfusionRates(
        n_7,
        correct_7 / n_7 if n_7 else None,
        len(six),
        correct_6 / len(six) if six else None,
        scr,
        sum(defined) / len(defined) if defined else None,
    )


# --------------------------------------------------------------------------- age vs prompt


def age_prompt_columns(age: float | None, requested: str | None) -> tuple[dict, str | None]:
    """(age_in_prompt_range / age_prompt_error, a note when the requested age is unusable)."""
    if age is None or requested is None:
        return {}, None
    try:
        wanted = parse_requested_age(requested)
    except AgeFormError as error:
        return {}, f"age_prompt: {error}"
    error_years = wanted.error(float(age))
    return {
        AGE_PROMPT_ERROR.column: error_years,
        AGE_IN_PROMPT_RANGE.column: error_years == 0.0,
    }, None


# --------------------------------------------------------------------------- table checks


def _spec_of(column: str, specs: Mapping[str, MetricSpec]) -> MetricSpec | None:
    for name in (column, column.removeprefix("mean_"), column.removeprefix("share_")):
        if name in specs:
            return specs[name]
    return None


def table_range_violations(
    tables: Mapping[str, pa.Table], specs: Sequence[MetricSpec] = TABLE_METRICS
) -> list[str]:
    """One line per value of a judgement table outside its declared [low, high]."""
    by_column = {spec.column: spec for spec in specs}
    problems = []
    for name, table in tables.items():
        for column in table.column_names:
            spec = _spec_of(column, by_column)
            if spec is None:
                continue
            for index, value in enumerate(table.column(column).to_pylist()):
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                if not spec.low - 1e-9 <= float(value) <= spec.high + 1e-9:
                    problems.append(
                        f"{name}.{column} row {index}: {value} outside "
                        f"[{spec.low:g}, {spec.high:g}] ({spec.description})"
                    )
    return problems
