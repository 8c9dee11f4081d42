"""What a score column means, declared once: everything downstream is generated from it.

A `MetricSpec` is the only place a metric is written down. From the specs come the scores
table's Arrow schema (`exprbench.schema.scores_schema`), the validation suite's range and
not-null rules (`exprbench.validation.suite`), every aggregate table's statistics and the
leaderboard (`exprbench.aggregate`), the report's heatmaps, legends and leaderboard
colours (`exprbench.report`), the DVC metrics and plots, and the resolution study's
per-output columns. The specs travel with the data: the score stage writes them into
scores.parquet's schema metadata, so later stages (and other processes) need no registry.

Kept free of the scorer registry so metric packages (exprbench.quality) can declare their
columns without importing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Dtype = Literal["float64", "bool"]
LeaderboardStatistic = Literal["mean", "mean_abs"]
Nullable = Literal["no", "with_note", "yes"]


@dataclass(frozen=True)
class Heatmap:
    """How a metric is drawn in the report: one heatmap per metric that has one.

    colour_by: another metric whose mean colours the cell (default: this one);
    delta: a metric shown beside the value as "(Δ x)" (the neutral column shows "(ref)").
    """

    title: str
    note: str = ""
    colour_by: str | None = None
    delta: str | None = None


@dataclass(frozen=True)
class Leaderboard:
    """The metric's column in the leaderboard (one row per scorer x generator x version)."""

    column: str  # e.g. mean_target_prob
    heading: str  # short heading in the report
    statistic: LeaderboardStatistic = "mean"
    include_neutral: bool = True  # False: averaged over non-neutral images only
    rank: bool = False  # the leaderboard is sorted by this column (best first)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: a score column (or a value derived from a row in SQL) and its meaning.

    Positional fields (column, low, high, higher_is_better, description) describe the
    value; the keyword fields say how the pipeline treats it:

    dtype: float64, or bool (a 0/1 outcome: its mean is a rate).
    relative_to_neutral: measured against the subject's neutral image, so it is null on
        the neutral row itself (the reference) and excluded from every aggregate there.
    nullable: when null is legitimate on a row with a face from a scorer that declares the
        metric: "no" never, "with_note" when the row's note says why (e.g. NIQE below 192
        px; always so for relative_to_neutral metrics), "yes" always (e.g. gender_match
        without a subject gender).
    table: the study table it is aggregated in (n, mean, 95% interval per cell); None: none.
    abs_mean: the table also reports the mean absolute value (for signed drifts).
    heatmap / leaderboard: see those classes; None: not drawn / not on the leaderboard.
    plot: written to the DVC plots (one bar per generator/version and scorer).
    caption: its short label in the report's contact-sheet captions (None: not shown),
        with `caption_digits` (default `digits`).
    sql: for a metric not stored in the scores table, the SQL expression that derives it
        from a scores row (e.g. whether top1 equals the requested expression).
    """

    column: str
    low: float
    high: float
    higher_is_better: bool | None  # None: no direction (e.g. an age)
    description: str
    dtype: Dtype = "float64"
    unit: str = ""
    relative_to_neutral: bool = False
    nullable: Nullable = "no"
    table: str | None = None
    abs_mean: bool = False
    digits: int = 2
    heatmap: Heatmap | None = None
    leaderboard: Leaderboard | None = None
    plot: bool = False
    caption: str | None = None
    caption_digits: int | None = None
    sql: str | None = None

    def __post_init__(self) -> None:
        if not self.column.isidentifier() or self.column != self.column.lower():
            raise ValueError(f"metric column {self.column!r} must be a lower-case identifier")
        if not self.low <= self.high:
            raise ValueError(f"metric {self.column!r}: low {self.low} > high {self.high}")
        if self.dtype not in ("float64", "bool"):
            raise ValueError(f"metric {self.column!r}: dtype must be float64 or bool")
        if self.dtype == "bool" and (self.low, self.high) != (0.0, 1.0):
            raise ValueError(f"metric {self.column!r}: a bool metric's range is [0, 1]")

    @property
    def stored(self) -> bool:
        """Whether the column is in the scores table (derived metrics are computed in SQL)."""
        return self.sql is None

    @property
    def mean_name(self) -> str:
        """The table column of its mean: share_<c> for an outcome, mean_<c> otherwise."""
        return f"{'share' if self.dtype == 'bool' else 'mean'}_{self.column}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> MetricSpec:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"metric spec has unknown fields {sorted(unknown)}: {text!r}")
        if data.get("heatmap") is not None:
            data["heatmap"] = Heatmap(**data["heatmap"])
        if data.get("leaderboard") is not None:
            data["leaderboard"] = Leaderboard(**data["leaderboard"])
        return cls(**data)


@dataclass(frozen=True)
class StudyTable:
    """A study table's title and note; tables a spec names but nobody declared get defaults."""

    name: str
    title: str
    note: str = ""
    order: int = 100  # position in the report and the DuckDB file


def merge_specs(groups: Iterable[Iterable[MetricSpec]]) -> tuple[MetricSpec, ...]:
    """All specs, first occurrence order; the same column declared twice must agree."""
    merged: dict[str, MetricSpec] = {}
    for group in groups:
        for spec in group:
            existing = merged.get(spec.column)
            if existing is not None and existing != spec:
                raise ValueError(
                    f"metric {spec.column!r} is declared twice with different specs:\n"
                    f"  {existing}\n  {spec}"
                )
            merged.setdefault(spec.column, spec)
    return tuple(merged.values())


def spec_index(specs: Iterable[MetricSpec]) -> dict[str, MetricSpec]:
    return {spec.column: spec for spec in specs}
