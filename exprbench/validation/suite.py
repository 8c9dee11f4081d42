"""The expectation suite over the scores table, generated from the metric specs.

The suite is plain `Check` records (no GX import needed to build or inspect it). Every
rule about a metric comes from its `MetricSpec`: a range check per stored metric, a
not-null check per metric a scorer declares (null is legitimate where the spec says so:
on the neutral row of a metric measured against it, or where the row's note says why),
so a scorer that declares a new metric gets its checks with no edit here. Which columns a
scorer fills is passed in (the score stage records it in scores.parquet), so this module
never imports models.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from exprbench.labels import EXPRESSIONS, GENDERS, NEUTRAL
from exprbench.metrics import MetricSpec
from exprbench.schema import PROB_COLUMNS, SCORE_BASE_COLUMNS
from exprbench.scorers.base import BUILTIN_METRICS, OUTPUT_EXTRA_COLUMNS, OUTPUT_METRICS
from exprbench.unavailable import COLUMN as UNAVAILABLE
from exprbench.unavailable import excused_columns

# One input image, and one row per image and scorer.
IMAGE_KEY: tuple[str, ...] = ("generator", "version", "subject", "expression", "replicate")
KEY_COLUMNS: tuple[str, ...] = (*IMAGE_KEY, "scorer")
ROW_ID_COLUMNS: tuple[str, ...] = ("path", "scorer")
SUM_TOLERANCE = 1e-3
# target_prob is copied from p_<expression>; anything beyond float noise is a join bug.
TARGET_TOLERANCE = 1e-6

# Derived columns added to a copy of the frame; prefixed so they cannot clash with SCORES.
SUM_COLUMN = "chk_p_sum"
TARGET_GAP_COLUMN = "chk_target_gap"
# Relations between columns: each derived column holds, on an offending row, a sentence
# saying what is inconsistent, and is null elsewhere (checked with ExpectColumnValuesToBeNull).
NO_FACE_FILLED_COLUMN = "chk_filled_without_face"
TOP1_COLUMN = "chk_top1_not_argmax"
SAME_IDENTITY_COLUMN = "chk_same_identity_inconsistent"
AMBIGUOUS_COLUMN = "chk_ambiguous_not_lambda_below_1"
AGE_RANGE_COLUMN = "chk_age_in_range_not_error_0"
UNAVAILABLE_FILLED_COLUMN = "chk_unavailable_but_filled"
IMPOSTOR_COLUMN = "chk_impostor_measures_inconsistent"
# The score stage records score.same_identity_threshold here (DataFrame.attrs, from the
# scores table's schema metadata); without it the check asks that one threshold exists.
THRESHOLD_ATTR = "same_identity_threshold"
# ... and each scorer's own threshold where it declares one ({scorer: threshold}).
THRESHOLDS_ATTR = "same_identity_thresholds"
_NEEDS_PREFIX = "chk_needs_"


@dataclass(frozen=True)
class Check:
    """One expectation, independent of GX: `kind` is a GX expectation class name."""

    name: str
    kind: str
    kwargs: Mapping[str, Any]
    description: str
    condition_column: str | None = None  # boolean column: check only rows where it is True

    @property
    def column(self) -> str:
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        return ",".join(self.kwargs.get("column_list", ())) or "(table)"


def required_columns(specs: Sequence[MetricSpec]) -> list[str]:
    """Every column a scores table with these metrics has."""
    return [*SCORE_BASE_COLUMNS, *(spec.column for spec in specs if spec.stored)]


def declared_columns(
    declared: Mapping[str, Collection[str]], specs: Sequence[MetricSpec]
) -> dict[str, set[str]]:
    """Scorer -> the columns it fills; an output kind ('expression') stands for its columns."""
    known = {spec.column for spec in specs if spec.stored} | {
        c for extra in OUTPUT_EXTRA_COLUMNS.values() for c in extra
    }
    columns: dict[str, set[str]] = {}
    for scorer, items in declared.items():
        filled: set[str] = set()
        for item in items:
            if item in OUTPUT_METRICS:
                filled |= {s.column for s in OUTPUT_METRICS[item] if s.stored}
                filled |= set(OUTPUT_EXTRA_COLUMNS.get(item, ()))
            elif item in known:
                filled.add(item)
            else:
                raise ValueError(
                    f"scorer {scorer!r} declares {item!r}, which is neither an output kind "
                    f"({', '.join(OUTPUT_METRICS)}) nor a metric of the scores table"
                )
        columns[scorer] = filled
    return columns


def _needs(column: str) -> str:
    return f"{_NEEDS_PREFIX}{column}"


def _not_null_rule(column: str, specs: Mapping[str, MetricSpec]) -> tuple[bool, str] | None:
    """(excused where a note or the neutral row explains it, scope text); None: no check."""
    spec = specs.get(column)
    if spec is None:  # a raw output (top1, gender): always filled with a face
        return False, "rows"
    if spec.nullable == "yes":
        return None
    if spec.relative_to_neutral:
        return True, "non-neutral rows without a note"
    if spec.nullable == "with_note":
        return True, "rows without a note"
    return False, "rows"


def build_checks(
    declared: Mapping[str, Collection[str]], specs: Sequence[MetricSpec] = BUILTIN_METRICS
) -> list[Check]:
    """The full suite for scorers declaring `declared` (scorer -> output kinds or columns)."""
    filled = declared_columns(declared, specs)
    by_column = {spec.column: spec for spec in specs}
    low, high = 1.0 - SUM_TOLERANCE, 1.0 + SUM_TOLERANCE
    vocab = {
        "expression": EXPRESSIONS,
        "top1": EXPRESSIONS,
        "gender": GENDERS,  # the predicted gender; subject_gender is data (any label)
        "scorer": tuple(sorted(declared)),
    }
    ranges = [
        Check(
            f"range:{spec.column}",
            "ExpectColumnValuesToBeBetween",
            {"column": spec.column, "min_value": spec.low, "max_value": spec.high},
            f"{spec.column} ({spec.description}) must lie in [{spec.low:g}, {spec.high:g}]",
        )
        for spec in specs
        if spec.stored and spec.dtype == "float64"
    ]
    not_null = []
    for column in sorted({c for columns in filled.values() for c in columns}):
        rule = _not_null_rule(column, by_column)
        if rule is None:
            continue
        _, scope = rule
        not_null.append(
            Check(
                f"not_null:{column}",
                "ExpectColumnValuesToNotBeNull",
                {"column": column},
                f"{column} must be filled on {scope} where a face was found, the scorer "
                "declares it and its model was available",
                condition_column=_needs(column),
            )
        )
    return [
        Check(
            "table_has_rows",
            "ExpectTableRowCountToBeBetween",
            {"min_value": 1},
            "the scores table must have at least one row (an empty table means nothing was scored)",
        ),
        Check(
            "unique_key",
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": list(KEY_COLUMNS)},
            f"one row per ({', '.join(KEY_COLUMNS)})",
        ),
        *(
            Check(
                f"vocabulary:{column}",
                "ExpectColumnValuesToBeInSet",
                {"column": column, "value_set": list(values)},
                f"{column} must be one of {', '.join(values) or '(no scorer declared)'}",
            )
            for column, values in vocab.items()
        ),
        *ranges,
        Check(
            "probabilities_sum_to_one",
            "ExpectColumnValuesToBeBetween",
            {"column": SUM_COLUMN, "min_value": low, "max_value": high},
            f"p_* of a row must sum to 1 ± {SUM_TOLERANCE:g} where all are present "
            f"(derived column {SUM_COLUMN})",
        ),
        Check(
            "target_prob_matches",
            "ExpectColumnValuesToBeBetween",
            {"column": TARGET_GAP_COLUMN, "min_value": 0.0, "max_value": TARGET_TOLERANCE},
            f"target_prob must equal p_<expression> (derived column {TARGET_GAP_COLUMN})",
        ),
        *not_null,
        Check(
            "no_values_without_face",
            "ExpectColumnValuesToBeNull",
            {"column": NO_FACE_FILLED_COLUMN},
            "a row with face_found = false carries no metric or output value (every stored "
            f"metric and raw output; derived column {NO_FACE_FILLED_COLUMN} names those filled)",
        ),
        Check(
            "unavailable_outputs_are_null",
            "ExpectColumnValuesToBeNull",
            {"column": UNAVAILABLE_FILLED_COLUMN},
            "an output a row marks unavailable (column unavailable) carries no value "
            f"(derived column {UNAVAILABLE_FILLED_COLUMN} names those filled)",
        ),
        Check(
            "top1_is_argmax",
            "ExpectColumnValuesToBeNull",
            {"column": TOP1_COLUMN},
            f"top1 must be the expression with the highest p_* (ties within "
            f"{TARGET_TOLERANCE:g} allowed; derived column {TOP1_COLUMN})",
        ),
        Check(
            "same_identity_matches_distance",
            "ExpectColumnValuesToBeNull",
            {"column": SAME_IDENTITY_COLUMN},
            "same_identity must equal identity_distance < the scorer's threshold "
            "(score.same_identity_threshold or the scorer's own, as recorded by the score "
            "stage; if none is recorded, one threshold must separate the same from the "
            f"different; derived column {SAME_IDENTITY_COLUMN})",
        ),
        Check(
            "ambiguous_matches_lambda",
            "ExpectColumnValuesToBeNull",
            {"column": AMBIGUOUS_COLUMN},
            "ambiguous must equal lambda_weight < 1 (lambda is 1 at or above score.tau and "
            f"the confidence below it; derived column {AMBIGUOUS_COLUMN})",
        ),
        Check(
            "age_in_range_matches_error",
            "ExpectColumnValuesToBeNull",
            {"column": AGE_RANGE_COLUMN},
            "age_in_prompt_range must equal age_prompt_error = 0, and both be filled or "
            f"both empty (derived column {AGE_RANGE_COLUMN})",
        ),
        Check(
            "impostor_measures_consistent",
            "ExpectColumnValuesToBeNull",
            {"column": IMPOSTOR_COLUMN},
            "identity against impostors: identity_rank1 equals identity_rank = 1, "
            "identity_margin equals impostor_distance - identity_distance, and "
            "identity_n_impostors equals the number of impostor_distances (derived column "
            f"{IMPOSTOR_COLUMN})",
        ),
    ]


def _disagreeing(
    frame: pd.DataFrame, flag: str, value: str, implied: Callable[[pd.Series], pd.Series]
) -> pd.Series:
    """A sentence on each row where bool column `flag` differs from `implied(value)`, or
    where one of the two is filled without the other; null elsewhere."""
    out = pd.Series(None, index=frame.index, dtype=object)
    if not {flag, value} <= set(frame.columns):
        return out
    numbers = frame[value].astype("float64")
    flags = frame[flag]
    one_only = numbers.isna() != flags.isna()
    both = numbers.notna() & flags.notna()
    expected = implied(numbers.where(both, 0.0))
    bad = one_only | (both & (flags.where(both, False).astype(bool) != expected))
    for index in frame.index[bad]:
        out[index] = f"{flag} {flags[index]} with {value} {numbers[index]}"
    return out


def _value_columns(frame: pd.DataFrame, specs: Sequence[MetricSpec]) -> list[str]:
    """Every stored metric and raw output column present in `frame`."""
    columns = [spec.column for spec in specs if spec.stored]
    columns += [c for extra in OUTPUT_EXTRA_COLUMNS.values() for c in extra]
    return [c for c in dict.fromkeys(columns) if c in frame.columns]


def _filled_without_face(frame: pd.DataFrame, specs: Sequence[MetricSpec]) -> pd.Series:
    no_face = ~frame["face_found"].fillna(False).astype(bool)
    filled = frame[_value_columns(frame, specs)].notna()
    out = pd.Series(None, index=frame.index, dtype=object)
    for index in frame.index[no_face & filled.any(axis=1)]:
        out[index] = ", ".join(filled.columns[filled.loc[index]])
    return out


def _top1_not_argmax(frame: pd.DataFrame, probs: pd.DataFrame) -> pd.Series:
    out = pd.Series(None, index=frame.index, dtype=object)
    if "top1" not in frame.columns:
        return out
    complete = probs.notna().all(axis=1) & frame["top1"].isin(EXPRESSIONS)
    for index in frame.index[complete]:
        row = probs.loc[index]
        top1 = frame.at[index, "top1"]
        best = str(row.idxmax()).removeprefix("p_")
        if row[f"p_{top1}"] < row.max() - TARGET_TOLERANCE:
            out[index] = f"top1 {top1} (p {row[f'p_{top1}']:.4f}) but p_{best} is {row.max():.4f}"
    return out


def _same_identity_inconsistent(frame: pd.DataFrame) -> pd.Series:
    out = pd.Series(None, index=frame.index, dtype=object)
    if not {"same_identity", "identity_distance"} <= set(frame.columns):
        return out
    distance = frame["identity_distance"].astype("float64")
    both = distance.notna() & frame["same_identity"].notna()
    same = frame["same_identity"].where(both, False).astype(bool)
    threshold = frame.attrs.get(THRESHOLD_ATTR)
    if threshold is not None:
        per_scorer = frame.attrs.get(THRESHOLDS_ATTR) or {}
        limit = pd.Series(float(threshold), index=frame.index, dtype="float64")
        if per_scorer and "scorer" in frame.columns:
            limit = frame["scorer"].map(per_scorer).astype("float64").fillna(float(threshold))
        bad = both & (same != (distance < limit))
        for index in frame.index[bad]:
            out[index] = (
                f"identity_distance {distance[index]:.4f} with same_identity "
                f"{bool(same[index])}, threshold {float(limit[index]):g}"
            )
        return out
    different = distance[both & ~same]
    if different.empty:
        return out
    lowest = float(different.min())  # a 'same' row must lie below every 'different' one
    for index in frame.index[both & same & (distance >= lowest)]:
        out[index] = (
            f"identity_distance {distance[index]:.4f} with same_identity true, but a row at "
            f"distance {lowest:.4f} is not the same identity"
        )
    return out


def _impostor_inconsistent(frame: pd.DataFrame) -> pd.Series:
    """Per row, what contradicts itself among the impostor columns (exprbench.identity)."""
    out = pd.Series(None, index=frame.index, dtype=object)
    needed = {"identity_rank", "identity_rank1", "identity_margin", "impostor_distance"}
    if not needed <= set(frame.columns):
        return out
    rank = frame["identity_rank"].astype("float64")
    for index in frame.index[rank.notna()]:
        row = frame.loc[index]
        problems = []
        if row["identity_rank1"] is None or bool(row["identity_rank1"]) != (rank[index] == 1):
            problems.append(
                f"identity_rank {rank[index]:g} with identity_rank1 {row['identity_rank1']}"
            )
        own = row.get("identity_distance")
        if own is not None and not pd.isna(own):
            expected = float(row["impostor_distance"]) - float(own)
            if abs(float(row["identity_margin"]) - expected) > 1e-5:
                problems.append(f"identity_margin {row['identity_margin']:.5f} != {expected:.5f}")
        distances = row.get("impostor_distances")
        count = row.get("identity_n_impostors")
        if distances is not None and count is not None and len(distances) != count:
            problems.append(f"identity_n_impostors {count:g} but {len(distances)} distances")
        if problems:
            out[index] = "; ".join(problems)
    return out


def with_derived_columns(
    df: pd.DataFrame,
    declared: Mapping[str, Collection[str]],
    specs: Sequence[MetricSpec] = BUILTIN_METRICS,
) -> pd.DataFrame:
    """A copy of `df` with the derived columns the checks read."""
    frame = df.copy()
    probs = frame[list(PROB_COLUMNS)].astype("float64")
    # NaN unless every p_* is present: GX range checks skip nulls, so a partial vector is
    # left to the not-null checks rather than reported as a bad sum.
    frame[SUM_COLUMN] = probs.sum(axis=1, skipna=False)
    target_p = pd.Series(np.nan, index=frame.index, dtype="float64")
    for expression in EXPRESSIONS:
        rows = frame["expression"] == expression
        target_p[rows] = probs.loc[rows, f"p_{expression}"]
    frame[TARGET_GAP_COLUMN] = (frame["target_prob"].astype("float64") - target_p).abs()
    frame[NO_FACE_FILLED_COLUMN] = _filled_without_face(frame, specs)
    frame[TOP1_COLUMN] = _top1_not_argmax(frame, probs)
    frame[SAME_IDENTITY_COLUMN] = _same_identity_inconsistent(frame)
    frame[AMBIGUOUS_COLUMN] = _disagreeing(frame, "ambiguous", "lambda_weight", lambda v: v < 1)
    frame[AGE_RANGE_COLUMN] = _disagreeing(
        frame, "age_in_prompt_range", "age_prompt_error", lambda v: v == 0
    )
    frame[IMPOSTOR_COLUMN] = _impostor_inconsistent(frame)
    face = frame["face_found"].fillna(False).astype(bool)
    with_note = frame["note"].notna()
    neutral = frame["expression"] == NEUTRAL
    by_column = {spec.column: spec for spec in specs}
    filled = declared_columns(declared, specs)
    # per row, the columns a missing model left null (exprbench.unavailable)
    marked = frame[UNAVAILABLE] if UNAVAILABLE in frame else pd.Series(None, index=frame.index)
    unmeasured = [
        excused_columns(value, filled.get(scorer, ()))
        for value, scorer in zip(marked, frame["scorer"], strict=True)
    ]
    frame[UNAVAILABLE_FILLED_COLUMN] = [
        ", ".join(sorted(c for c in cols if c in frame and _present(frame.at[index, c]))) or None
        for index, cols in zip(frame.index, unmeasured, strict=True)
    ]
    for column in sorted({c for columns in filled.values() for c in columns}):
        rule = _not_null_rule(column, by_column)
        if rule is None:
            continue
        excusable, _ = rule
        needs = face & frame["scorer"].isin([s for s, cols in filled.items() if column in cols])
        needs &= ~pd.Series([column in cols for cols in unmeasured], index=frame.index)
        if excusable:
            spec = by_column[column]
            excused = (neutral | with_note) if spec.relative_to_neutral else with_note
            needs &= ~excused
        frame[_needs(column)] = needs
    return frame


def _present(value: Any) -> bool:
    """A filled cell: not None/NaN (a list such as a descriptor counts as filled)."""
    if value is None:
        return False
    if isinstance(value, float):
        return not np.isnan(value)
    return True
