"""Specs of the judgements built on several recognizers (no model imports here).

Two kinds, each declared once:

* Row-level metrics, stored in the scores table and validated like any other
  (`JUDGEMENT_METRICS`, by output kind: every scorer with that output kind fills them,
  `exprbench.scoring` computes them from its row, its image's other rows and the
  subject's requested age):
  - `lambda_weight`, `ambiguous` (expression): the seed study's 0.6 weighting;
  - `age_in_prompt_range`, `age_prompt_error` (age): apparent age against the age the
    prompt asked for (subjects.csv; forms in `exprbench.prompt_age`).
* `IMAGE_CONFIDENCE`: declared by a scorer whose target probability is a confidence that
  the *image* shows the requested expression (a CLIP zero-shot judge) through its
  `extra_metrics`; the score stage copies its target probability there, and every
  recognizer's `lambda_weight` on that image uses it instead of its own probability.
* `TABLE_METRICS`: statistics of the aggregate judgement tables (Fleiss' kappa, agreement
  rate, accuracies, structural confusion rates, weighted means), not score columns: their
  ranges are checked on the built tables (`exprbench.agreement.table_range_violations`)
  and the report formats them from here.
"""

from __future__ import annotations

from exprbench.metrics import Heatmap, Leaderboard, MetricSpec, StudyTable

DEFAULT_TAU = 0.6  # params score.tau: the seed study's threshold

LAMBDA_WEIGHT = MetricSpec(
    "lambda_weight",
    0.0,
    1.0,
    None,
    "weight of the image in lambda-weighted means: 1 if its confidence (image_confidence "
    "where a judge such as CLIP scored the image, else this row's target_prob) >= "
    "score.tau, else that confidence",
)
AMBIGUOUS = MetricSpec(
    "ambiguous",
    0.0,
    1.0,
    False,
    "the image's confidence (see lambda_weight) is below score.tau: an ambiguous image",
    dtype="bool",
    table="expression_fidelity",
)
IMAGE_CONFIDENCE = MetricSpec(
    "image_confidence",
    0.0,
    1.0,
    True,
    "a judge's confidence that the image shows the requested expression (its target "
    "probability); when present, every recognizer's lambda_weight on the image uses it",
)
AGE_IN_PROMPT_RANGE = MetricSpec(
    "age_in_prompt_range",
    0.0,
    1.0,
    True,
    "apparent age lies inside the age or age group subjects.csv asked for",
    dtype="bool",
    nullable="yes",  # no requested age, or one not understood (ingest flags it)
    table="age_prompt",
    leaderboard=Leaderboard("age_in_prompt_rate", "age in prompt range"),
)
AGE_PROMPT_ERROR = MetricSpec(
    "age_prompt_error",
    -120.0,
    120.0,
    None,
    "years outside the requested age range: 0 inside, negative younger, positive older",
    unit="years",
    nullable="yes",
    table="age_prompt",
    abs_mean=True,
    digits=1,
    heatmap=Heatmap(
        "Age against the prompt",
        "mean years outside the age subjects.csv asked for (0 inside the range; − younger, "
        "+ older)",
    ),
)

JUDGEMENT_METRICS: dict[str, tuple[MetricSpec, ...]] = {
    "expression": (LAMBDA_WEIGHT, AMBIGUOUS),
    "age": (AGE_IN_PROMPT_RANGE, AGE_PROMPT_ERROR),
}
JUDGEMENT_TABLES: tuple[StudyTable, ...] = (
    StudyTable(
        "age_prompt",
        "Age against the prompt",
        "apparent age vs the age or age group subjects.csv asked for",
        order=2,
    ),
)

# Statistics of the aggregate judgement tables (column names as in those tables).
FLEISS_KAPPA = MetricSpec(
    "fleiss_kappa",
    -1.0,
    1.0,
    True,
    "Fleiss' kappa of the recognizers' top-1 labels over the images every recognizer "
    "labelled (1 full agreement, 0 chance, < 0 below chance)",
)
AGREEMENT_RATE = MetricSpec(
    "agreement_rate",
    0.0,
    1.0,
    True,
    "share of the recognizers whose top-1 is the image's majority label",
)
MEAN_AGREEMENT_RATE = MetricSpec(
    "mean_agreement_rate", 0.0, 1.0, True, "mean agreement rate over the images"
)
SHARE_UNANIMOUS = MetricSpec(
    "share_unanimous", 0.0, 1.0, True, "share of images on which every recognizer agrees"
)
ACCURACY_7 = MetricSpec(
    "accuracy_7", 0.0, 1.0, True, "top-1 over the 7 classes equals the requested expression"
)
ACCURACY_6 = MetricSpec(
    "accuracy_6",
    0.0,
    1.0,
    True,
    "on non-neutral requests, the most probable of the 6 non-neutral classes is the "
    "requested one (neutral removed from the label set)",
)
SCR_PAIRS: tuple[tuple[str, str], ...] = (
    ("fear", "surprise"),
    ("disgust", "angry"),
    ("sad", "neutral"),
)
SCR_METRICS: tuple[MetricSpec, ...] = tuple(
    MetricSpec(
        f"scr_{a}_{b}",
        0.0,
        1.0,
        False,
        f"structural confusion {a}/{b}: share of the images requested as {a} or {b} "
        f"whose top-1 is the other one of the two",
    )
    for a, b in SCR_PAIRS
)
MSCR = MetricSpec(
    "mscr",
    0.0,
    1.0,
    False,
    "mean structural confusion rate: mean of scr over the look-alike pairs with images",
)
WEIGHTED_TARGET_PROB = MetricSpec(
    "weighted_mean_target_prob",
    0.0,
    1.0,
    True,
    "lambda-weighted mean target probability: sum(lambda * p) / sum(lambda)",
)
WEIGHTED_ACCURACY = MetricSpec(
    "weighted_top1_accuracy",
    0.0,
    1.0,
    True,
    "lambda-weighted top-1 accuracy: sum(lambda * correct) / sum(lambda)",
)
SHARE_AMBIGUOUS = MetricSpec(
    "share_ambiguous", 0.0, 1.0, False, "share of images flagged ambiguous"
)
GENDER_AGREEMENT = MetricSpec(
    "share_gender_disagree",
    0.0,
    1.0,
    False,
    "share of images on which the gender recognizers disagree",
)
GENDER_MAJORITY_MATCH = MetricSpec(
    "gender_majority_match_rate",
    0.0,
    1.0,
    True,
    "the gender recognizers' majority equals the gender subjects.csv asked for",
)

TABLE_METRICS: tuple[MetricSpec, ...] = (
    FLEISS_KAPPA,
    AGREEMENT_RATE,
    MEAN_AGREEMENT_RATE,
    SHARE_UNANIMOUS,
    ACCURACY_7,
    ACCURACY_6,
    *SCR_METRICS,
    MSCR,
    WEIGHTED_TARGET_PROB,
    WEIGHTED_ACCURACY,
    SHARE_AMBIGUOUS,
    GENDER_AGREEMENT,
    GENDER_MAJORITY_MATCH,
)


# One row per image: built and checked in DuckDB, written to CSV in batches, and returned
# to Python by `compute_tables` only (the report reads the rows it shows from the database).
PER_IMAGE_TABLES: tuple[str, ...] = ("image_agreement", "gender_agreement")
