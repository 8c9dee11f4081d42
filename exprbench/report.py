"""One self-contained HTML report: summary, leaderboard, study heatmaps, confusion, contact sheet.

Everything is inline (CSS in the template, thumbnails as base64 JPEG data URIs), so the
file opens offline and can be mailed as is. Jinja autoescaping covers every string that
comes from users (file names, subjects, generators, notes); the only markup built here is
colours and data URIs. What is drawn comes from the metric specs the scores carry
(`exprbench.metrics.MetricSpec`): one heatmap per spec with a `heatmap`, the leaderboard's
columns from each spec's `leaderboard`, captions from `caption`, the summary's questions
from the study tables the specs name. Nothing here names a metric.

Reading a cell: its value, n (images with a value) and the 95% t-interval of the mean,
clipped to the metric's declared [low, high] (the aggregate tables keep it unclipped; the
cell's tooltip shows that). A cell with n below `min_n` (params `report.min_n`) is grey
with the reason ("n=1 < 3") and never coloured. Colours follow the specs: a metric with
a direction runs red (worse) to green (better) over the range of the coloured values the
report shows (clamped to the declared range), so the ends are the worst and best seen; one
without a direction (age drift) runs blue-white-red around 0 over the largest drift seen.
Each section's legend states its scale's ends. A cell nobody produced is drawn hatched and
labelled "missing", never as a value.

The summary ranks generator/versions per study table (its headline metric: the first
leaderboard entry with a direction, else the first directed metric) for the primary
scorer (faceapi when it measured the metric, else the first scorer of the run that did),
from the `run_intervals` table, and says whether the best and the runner-up differ: on
their shared subject x expression cells a paired comparison with a seeded bootstrap
interval (`exprbench.report_uncertainty`), else a Welch two-sample t-interval on the
difference of their means; significant when the interval excludes 0. Intervals shown are
the bootstrap ones (`boot95_*`) where the aggregate computed them, else the t-interval.
"""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
import pandas as pd
import pyarrow as pa
from PIL import Image, ImageOps, UnidentifiedImageError

from exprbench.fileio import atomic_write_text
from exprbench.geometry_report import geometry_section_by_run
from exprbench.judgement_report import disagreement_paths, judgement_context, rate_key
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.metrics import MetricSpec, StudyTable
from exprbench.report_sheets import (
    DEFAULT_PAGE_SIZE,
    PAGE_TEMPLATE,
    ReportScores,
    pages,
    pages_dir,
    write_pages,
)
from exprbench.report_uncertainty import (
    IDENTITY_TEMPLATE,
    PairedLookup,
    RunCells,
    identity_section,
    paired_lookup,
    paired_sentence,
)
from exprbench.scorers.base import BUILTIN_METRICS, STUDY_TABLES
from exprbench.thumbnails import ThumbnailCache
from exprbench.unavailable import summary as unavailable_summary
from exprbench.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED, PairedComparison

if TYPE_CHECKING:
    from exprbench.validation import ValidationReport

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
UNAVAILABLE_TEMPLATE = "_unavailable.html.j2"  # included by the report (exprbench.unavailable)
THUMBNAIL_PX = 128
THUMBNAIL_QUALITY = 80
MIN_N = 3  # default of params `report.min_n`
PRIMARY_SCORER = "faceapi"  # the study's instrument: the summary's scorer when it ran
Row = dict[str, Any]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if _missing(value):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


# --------------------------------------------------------------------------- colours


def _directed_colour(t: float) -> str:
    """t = 0 worst (red) .. 1 best (green)."""
    return f"hsl({120 * min(1.0, max(0.0, t)):.0f}, 65%, 78%)"


def _diverging_colour(value: float, extent: float) -> str:
    t = 0.0 if extent <= 0 else min(1.0, abs(value) / extent)
    hue = 0 if value > 0 else 215
    return f"hsl({hue}, 70%, {97 - 27 * t:.0f}%)"


@dataclass(frozen=True)
class ColourScale:
    """A metric's colours in one section of the report.

    Directed (`higher_is_better` True/False): red at the worse end of [low, high], green
    at the better one; values outside are clamped. Without a direction: blue (< 0) -
    white (0) - red (> 0), full at +-`high`.
    """

    higher_is_better: bool | None
    low: float
    high: float
    digits: int = 2
    seen: int = 1  # how many values it was fitted to (0: the declared range, none coloured)

    @classmethod
    def observed(
        cls,
        values: Iterable[float | None],
        higher_is_better: bool | None,
        declared: tuple[float, float],
        digits: int = 2,
    ) -> ColourScale:
        """Spanning the values seen (within the declared range), or that range if none."""
        seen = [float(v) for v in values if v is not None and not math.isnan(v)]
        low, high = declared
        if higher_is_better is None:
            bound = max(abs(low), abs(high))
            extent = min(bound, max((abs(v) for v in seen), default=bound))
            return cls(None, -extent, extent, digits, len(seen))
        if seen:
            low = min(max(min(seen), low), high)
            high = max(min(max(seen), high), low)
        return cls(higher_is_better, low, high, digits, len(seen))

    def colour(self, value: float | None) -> str | None:
        if _missing(value):
            return None
        assert value is not None
        if self.higher_is_better is None:
            return _diverging_colour(value, self.high)
        if self.high <= self.low:  # every coloured value is the same: no better or worse
            return _directed_colour(0.5)
        t = (value - self.low) / (self.high - self.low)
        return _directed_colour(t if self.higher_is_better else 1.0 - t)

    def legend(self, nothing: str = "nothing coloured") -> list[tuple[str | None, str]]:
        """(colour, label) swatches for the scale's ends (and middle); `nothing` when it
        colours no value."""
        if self.seen == 0:
            return [(None, nothing)]
        if self.higher_is_better is None:
            extent = self.high
            if extent <= 0:
                return [(self.colour(0.0), "all coloured values 0")]
            return [
                (self.colour(-extent), f"{_fmt(-extent, self.digits)} (blue)"),
                (self.colour(0.0), "0"),
                (self.colour(extent), f"{_fmt(extent, self.digits, sign=True)} (red)"),
            ]
        if self.high <= self.low:
            return [(self.colour(self.low), f"all coloured values {_fmt(self.low, self.digits)}")]
        worst, best = (self.low, self.high) if self.higher_is_better else (self.high, self.low)
        return [
            (self.colour(worst), f"{_fmt(worst, self.digits)} worst seen"),
            (self.colour(best), f"{_fmt(best, self.digits)} best seen"),
        ]


def colour_for(
    value: float | None,
    spec: MetricSpec,
    extent: float,
    domain: tuple[float, float] | None = None,
) -> str | None:
    """Background for a value of `spec`: over `domain` (default its declared range), or
    for a metric without a direction blue-white-red around 0, full at +-`extent`."""
    if spec.higher_is_better is None:
        return ColourScale(None, -extent, extent).colour(value)
    low, high = domain or (spec.low, spec.high)
    return ColourScale(spec.higher_is_better, low, high).colour(value)


# --------------------------------------------------------------------------- intervals


def statistic_range(spec: MetricSpec, statistic: str) -> tuple[float, float]:
    """The declared range of a statistic of `spec`: its own, or that of |value| for a
    leaderboard mean_abs."""
    board = spec.leaderboard
    if board is not None and board.column == statistic and board.statistic == "mean_abs":
        ends = (abs(spec.low), abs(spec.high))
        low = 0.0 if spec.low <= 0 <= spec.high else min(ends)
        return low, max(ends)
    return spec.low, spec.high


def statistic_direction(spec: MetricSpec, statistic: str) -> bool | None:
    """higher_is_better of a statistic: the spec's; a mean |drift| of a metric without a
    direction is better smaller (no drift)."""
    board = spec.leaderboard
    if spec.higher_is_better is not None:
        return spec.higher_is_better
    if board is not None and board.column == statistic and board.statistic == "mean_abs":
        return False
    return None


def clipped(
    low: float | None, high: float | None, bounds: tuple[float, float]
) -> tuple[float, float] | None:
    """A 95% interval clipped to the metric's declared range; None without an interval."""
    if _missing(low) or _missing(high):
        return None
    assert low is not None and high is not None
    return min(max(low, bounds[0]), bounds[1]), max(min(high, bounds[1]), bounds[0])


def best_interval(row: Mapping[str, Any], stem: str = "") -> tuple[Any, Any]:
    """(low, high) of a table row's 95% interval: the bootstrap one (`boot95_*`,
    exprbench.uncertainty) where the aggregate computed it, else the t-interval."""
    suffix = f"_{stem}" if stem else ""
    low, high = row.get(f"boot95_low{suffix}"), row.get(f"boot95_high{suffix}")
    if not _missing(low) and not _missing(high):
        return low, high
    return row.get(f"ci95_low{suffix}"), row.get(f"ci95_high{suffix}")


def _interval_text(interval: tuple[float, float] | None, digits: int) -> str | None:
    if interval is None:
        return None
    return f"[{_fmt(interval[0], digits)}, {_fmt(interval[1], digits)}]"


def _n_lines(
    n: int | None, interval: tuple[float, float] | None, digits: int, min_n: int
) -> tuple[bool, list[str]]:
    """(whether the value counts, small lines under it): n (with the reason when below
    min_n) and the interval."""
    if n is None:
        return False, ["n unknown"]
    enough = n >= min_n
    lines = [f"n={n}" if enough else f"n={n} < {min_n}"]
    text = _interval_text(interval, digits)
    if text is not None:
        lines.append(text)
    elif enough:
        lines.append("no CI")
    return enough, lines


# --------------------------------------------------------------------------- heatmaps


def _heatmap_text(spec: MetricSpec, delta: MetricSpec | None) -> Callable[[Row], str]:
    """A cell's text: the mean, and with a `delta` metric its mean as "(Δ x)"."""

    def text(row: Row) -> str:
        value = _fmt(row[spec.mean_name], spec.digits)
        if delta is None:
            return value
        if row["expression"] == NEUTRAL:
            return f"{value} (ref)"
        return f"{value} (Δ {_fmt(row[delta.mean_name], delta.digits, sign=True)})"

    return text


def _cell_state(row: Row, value: Any) -> tuple[str, str]:
    """(css class, label) for a cell without a value; ('', '') when it has one."""
    if row["n_images"] == 0:
        if row["n_missing"] > 0:
            return "missing", f"missing ({row['n_missing']} of {row['n_subjects']})"
        return "empty", "no subjects" if row["n_subjects"] == 0 else "no images"
    if _missing(value):
        return "novalue", "no face" if row["n_faces"] == 0 else "no value"
    return "", ""


def _ci_title(row: Row, spec: MetricSpec) -> str:
    stem = spec.column
    low, high = row.get(f"ci95_low_{stem}"), row.get(f"ci95_high_{stem}")
    parts = [f"n images={row['n_images']}", f"missing={row['n_missing']}"]
    if not _missing(low) and not _missing(high):
        parts.append(
            f"95% t-interval unclipped [{_fmt(low, spec.digits)}, {_fmt(high, spec.digits)}]"
        )
    boot_low, boot_high = row.get(f"boot95_low_{stem}"), row.get(f"boot95_high_{stem}")
    if not _missing(boot_low) and not _missing(boot_high):
        parts.append(
            f"95% bootstrap interval [{_fmt(boot_low, spec.digits)}, "
            f"{_fmt(boot_high, spec.digits)}]"
        )
    return "; ".join(parts)


def _counts(row: Row, spec: MetricSpec, min_n: int) -> bool:
    n = row.get(f"n_{spec.column}")
    return n is not None and n >= min_n


def _heatmap_section(
    spec: MetricSpec, by_column: Mapping[str, MetricSpec], rows: list[Row], min_n: int
) -> Row:
    """One block per scorer x subject gender: rows generator/version, columns expressions."""
    heatmap = spec.heatmap
    assert heatmap is not None
    colour_spec = by_column[heatmap.colour_by] if heatmap.colour_by else spec
    delta = by_column[heatmap.delta] if heatmap.delta else None
    text = _heatmap_text(spec, delta)
    colour_column = colour_spec.mean_name
    coloured = [
        r
        for r in rows
        if r.get(colour_column) is not None
        and _counts(r, spec, min_n)
        and _counts(r, colour_spec, min_n)
    ]
    scale = ColourScale.observed(
        (r[colour_column] for r in coloured),
        colour_spec.higher_is_better,
        (colour_spec.low, colour_spec.high),
        colour_spec.digits,
    )
    # The table's own expressions: identity has no neutral column.
    expressions = [e for e in EXPRESSIONS if any(r["expression"] == e for r in rows)]
    grouped: dict[tuple[str, str], dict[tuple[str, str], dict[str, Row]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for entry in rows:
        block = grouped[(entry["scorer"], entry["subject_gender"])]
        block[(entry["generator"], entry["version"])][entry["expression"]] = entry
    blocks = []
    for (scorer, gender), by_run in sorted(grouped.items()):
        body = []
        for (generator, version), cells in sorted(by_run.items()):
            line: list[Row] = []
            for expression in expressions:
                row = cells.get(expression)
                if row is None:  # not in the grid at all: treat as missing
                    line.append(
                        {"cls": "missing", "text": "missing", "lines": [], "colour": None}
                        | {"title": ""}
                    )
                    continue
                cls, label = _cell_state(row, row[spec.mean_name])
                if cls:
                    line.append(
                        {"cls": cls, "text": label, "lines": [], "colour": None}
                        | {"title": _ci_title(row, spec)}
                    )
                    continue
                interval = clipped(*best_interval(row, spec.column), (spec.low, spec.high))
                enough, lines = _n_lines(row.get(f"n_{spec.column}"), interval, spec.digits, min_n)
                colour_ok = enough and _counts(row, colour_spec, min_n)
                line.append(
                    {
                        "cls": "" if enough else "fewn",
                        "text": text(row),
                        "lines": lines,
                        "colour": scale.colour(row[colour_column]) if colour_ok else None,
                        "title": _ci_title(row, spec),
                    }
                )
            body.append({"generator": generator, "version": version, "cells": line})
        blocks.append({"scorer": scorer, "gender": gender, "rows": body})
    return {
        "title": heatmap.title,
        "note": heatmap.note or spec.description,
        "expressions": expressions,
        "blocks": blocks,
        "scale": scale.legend(f"nothing coloured: no cell has n ≥ {min_n}"),
        "colour_metric": colour_spec.column,
        "declared": f"[{_fmt(spec.low, spec.digits)}, {_fmt(spec.high, spec.digits)}]",
        "metric": spec.column,
    }


def _confusion_blocks(confusion: list[Row], fidelity: list[Row]) -> list[Row]:
    """Requested (rows) x predicted top-1 (columns) per scorer x generator/version."""
    counts: dict[tuple[str, str, str], dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for row in confusion:
        counts[(row["scorer"], row["generator"], row["version"])][row["expression"]][
            row["top1"]
        ] = row["n"]
    produced: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for row in fidelity:
        produced[(row["scorer"], row["generator"], row["version"], row["expression"])] += row[
            "n_images"
        ]
    runs = sorted({(r["scorer"], r["generator"], r["version"]) for r in fidelity})
    blocks = []
    for run in runs:
        matrix: list[Row] = []
        for requested in EXPRESSIONS:
            line = counts[run].get(requested, {})
            total = sum(line.values())
            if total == 0:
                state = "missing" if produced[(*run, requested)] == 0 else "novalue"
                label = "missing" if state == "missing" else "no face"
                matrix.append({"requested": requested, "state": state, "label": label, "cells": []})
                continue
            cells = [
                {
                    "n": line.get(p, 0),
                    "diagonal": p == requested,
                    "colour": _confusion_colour(line.get(p, 0) / total, p == requested),
                }
                for p in EXPRESSIONS
            ]
            matrix.append(
                {"requested": requested, "state": "", "label": "", "cells": cells, "total": total}
            )
        blocks.append({"scorer": run[0], "generator": run[1], "version": run[2], "matrix": matrix})
    return blocks


def _confusion_colour(share: float, diagonal: bool) -> str | None:
    if share == 0:
        return None
    hue = 120 if diagonal else 0
    return f"hsl({hue}, 60%, {95 - 30 * share:.0f}%)"


# --------------------------------------------------------------------------- leaderboard

# Counts shown after the metrics' columns.
_LEADERBOARD_COUNTS: tuple[tuple[str, str], ...] = (
    ("n_images", "images"),
    ("n_no_face", "no face"),
    ("n_missing_cells", "missing cells"),
)

RunKey = tuple[str, str, str, str]  # scorer, generator, version, statistic


def leaderboard_columns(specs: Sequence[MetricSpec]) -> list[tuple[str, str, MetricSpec | None]]:
    """(column, heading, its metric's spec or None for a count) of the leaderboard."""
    columns: list[tuple[str, str, MetricSpec | None]] = [
        (spec.leaderboard.column, spec.leaderboard.heading, spec)
        for spec in specs
        if spec.leaderboard is not None
    ]
    return columns + [(c, h, None) for c, h in _LEADERBOARD_COUNTS]


def _intervals_index(rows: Iterable[Row]) -> dict[RunKey, Row]:
    return {(r["scorer"], r["generator"], r["version"], r["statistic"]): r for r in rows}


def _leaderboard_blocks(
    board: list[Row],
    specs: Sequence[MetricSpec],
    intervals: Mapping[RunKey, Row],
    min_n: int,
) -> tuple[list[Row], list[Row]]:
    """(one block per scorer, the colour legend of each coloured column)."""

    def n_of(row: Row, column: str) -> int | None:
        found = intervals.get((row["scorer"], row["generator"], row["version"], column))
        return None if found is None else found["n"]

    scales: dict[str, ColourScale] = {}
    legend = []
    for column, heading, spec in leaderboard_columns(specs):
        direction = None if spec is None else statistic_direction(spec, column)
        if spec is None or direction is None:
            continue
        if all(r.get(column) is None for r in board):
            continue
        values = [r.get(column) for r in board if (n_of(r, column) or 0) >= min_n]
        scale = ColourScale.observed(values, direction, statistic_range(spec, column), spec.digits)
        scales[column] = scale
        nothing = f"nothing coloured: no generator/version has n ≥ {min_n}"
        legend.append({"heading": heading, "scale": scale.legend(nothing)})
    by_scorer: dict[str, list[Row]] = defaultdict(list)
    for row in board:
        by_scorer[row["scorer"]].append(row)
    blocks = []
    for scorer, rows in sorted(by_scorer.items()):
        # Only the columns this scorer fills: an age scorer has no target probability.
        columns = [
            c for c in leaderboard_columns(specs) if any(r.get(c[0]) is not None for r in rows)
        ]
        body = []
        for row in rows:
            cells: list[Row] = []
            for column, _, spec in columns:
                value = row[column]
                if spec is None:  # a count
                    cells.append({"text": str(value), "cls": "", "lines": [], "colour": None})
                    continue
                if value is None:
                    cells.append({"text": "–", "cls": "", "lines": [], "colour": None})
                    continue
                found = intervals.get((row["scorer"], row["generator"], row["version"], column))
                interval = None
                if found is not None:
                    interval = clipped(*best_interval(found), statistic_range(spec, column))
                enough, lines = _n_lines(n_of(row, column), interval, spec.digits, min_n)
                cell_scale = scales.get(column)
                cells.append(
                    {
                        "text": _fmt(value, spec.digits),
                        "cls": "" if enough else "fewn",
                        "lines": lines,
                        "colour": cell_scale.colour(value) if enough and cell_scale else None,
                    }
                )
            body.append(
                {
                    "generator": row["generator"],
                    "version": row["version"],
                    "scorer_version": row["scorer_version"],
                    "cells": cells,
                }
            )
        blocks.append({"scorer": scorer, "headings": [c[1] for c in columns], "rows": body})
    return blocks, legend


# --------------------------------------------------------------------------- summary

SUMMARY_TEST = (
    "Best vs runner-up: where they share subject x expression cells (the same subject "
    "names), a paired comparison on those cells: mean difference, effect size d_z (mean "
    "difference / sd of the differences) and a seeded bootstrap 95% interval resampling "
    "subjects, then their cells; significant when it excludes 0. Without shared cells, "
    "Welch's two-sample t-interval (unequal variances) on the difference of their means, "
    "images as the unit, and the sentence says so. Values and rankings show the bootstrap "
    "95% interval (subjects, then images within subjects) where the aggregate computed "
    "it, else the t-interval. With few subjects read it as a first indication, not a proof."
)


@dataclass(frozen=True)
class Question:
    """One question of the summary: a study table and its headline statistic."""

    title: str
    statistic: str  # leaderboard column or mean_<c>/share_<c>
    heading: str
    spec: MetricSpec
    higher_is_better: bool


def run_statistic(spec: MetricSpec) -> str:
    """The name `run_intervals` gives a metric's per-run statistic: its leaderboard
    column, else its plain mean (see `exprbench.aggregate.run_statistics`)."""
    return spec.leaderboard.column if spec.leaderboard is not None else spec.mean_name


def _study_tables(specs: Sequence[MetricSpec]) -> list[tuple[str, list[MetricSpec]]]:
    """(title, metrics) of each study table the specs name, in their declared order.

    The same order and titles as `exprbench.aggregate.tabled`/`study_table`; not imported
    from there so that pages importing this module (the resolution study) do not depend
    on the aggregate code.
    """
    declared = {table.name: table for table in STUDY_TABLES}
    grouped: dict[str, list[MetricSpec]] = {}
    for spec in specs:
        if spec.table is not None:
            grouped.setdefault(spec.table, []).append(spec)
    tables = [
        declared.get(name) or StudyTable(name, name.replace("_", " ").capitalize())
        for name in grouped
    ]
    tables.sort(key=lambda table: (table.order, table.name))
    return [(table.title, grouped[table.name]) for table in tables]


def summary_questions(specs: Sequence[MetricSpec]) -> list[Question]:
    """Per study table (in order), its headline: the ranked leaderboard entry, else the
    first leaderboard entry with a direction, else the first directed metric with a
    heatmap, else the first directed metric."""
    questions = []
    for title, metrics in _study_tables(specs):
        candidates = []
        for spec in metrics:
            statistic = run_statistic(spec)
            direction = statistic_direction(spec, statistic)
            if direction is None:
                continue
            board = spec.leaderboard
            priority = 0 if board and board.rank else 1 if board else 2 if spec.heatmap else 3
            heading = board.heading if board else statistic.replace("_", " ")
            candidates.append((priority, Question("", statistic, heading, spec, direction)))
        if not candidates:
            continue
        best = min(candidates, key=lambda c: c[0])[1]
        questions.append(
            Question(
                title,
                best.statistic,
                best.heading,
                best.spec,
                best.higher_is_better,
            )
        )
    return questions


def welch_interval(a: Row, b: Row) -> tuple[float, float, float] | None:
    """(mean a - mean b, 95% low, high) by Welch's t; None when either has n < 2."""
    if a["n"] < 2 or b["n"] < 2 or _missing(a["sd"]) or _missing(b["sd"]):
        return None
    diff = a["mean"] - b["mean"]
    va, vb = a["sd"] ** 2 / a["n"], b["sd"] ** 2 / b["n"]
    se2 = va + vb
    if se2 <= 0:  # no spread within either: the difference is what it is
        return diff, diff, diff
    from scipy.stats import t  # only needed here; heavy to import at module level

    df = se2**2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    half = float(t.ppf(0.975, df)) * math.sqrt(se2)
    return diff, diff - half, diff + half


def _scorer_order(scores: list[Row], run_info: Mapping[str, Any]) -> list[str]:
    """The primary scorer first, then the run's order (run_info, then the scores')."""
    order = [PRIMARY_SCORER, *map(str, dict(run_info.get("scorers") or {}))]
    order += [str(row["scorer"]) for row in scores]
    return list(dict.fromkeys(order))


def _run_label(row: Row) -> str:
    return f"{row['generator']} {row['version']}"


def _summary(
    questions: Sequence[Question],
    interval_rows: list[Row],
    scorer_order: Sequence[str],
    min_n: int,
    paired: PairedLookup | None = None,
) -> Row:
    by_statistic: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in interval_rows:
        if row["n"]:
            by_statistic[row["statistic"]][row["scorer"]].append(row)
    items = []
    unmeasured = []
    for question in questions:
        per_scorer = by_statistic.get(question.statistic, {})
        if not per_scorer:
            unmeasured.append(question.title)
            continue
        order = [*scorer_order, *sorted(per_scorer)]
        scorer = next(s for s in order if s in per_scorer)
        items.append(_answer(question, scorer, per_scorer, min_n, paired))
    return {
        "items": items,
        "unmeasured": unmeasured,
        "min_n": min_n,
        "primary": PRIMARY_SCORER,
        "test": SUMMARY_TEST,
        "empty": not interval_rows,
    }


def _ranked(rows: list[Row], question: Question, min_n: int) -> tuple[list[Row], list[Row]]:
    """(eligible runs best first, runs left out for n < min_n)."""
    eligible = [r for r in rows if r["n"] >= min_n and not _missing(r["mean"])]
    sign = -1.0 if question.higher_is_better else 1.0
    eligible.sort(key=lambda r: (sign * r["mean"], _run_label(r)))
    return eligible, [r for r in rows if r not in eligible]


def _verdict(
    eligible: list[Row],
    describe: Callable[[Row], str],
    digits: int,
    min_n: int,
    paired: Callable[[Row, Row], PairedComparison | None] | None = None,
) -> tuple[str, bool | None]:
    """(the sentence on best vs runner-up, significant or None when not testable)."""
    if not eligible:
        return f"No generator/version has n ≥ {min_n}: nothing to rank.", None
    best = eligible[0]
    if len(eligible) == 1:
        return (
            f"{_run_label(best)} ({describe(best)}) is the only generator/version with "
            f"n ≥ {min_n}: nothing to compare it with."
        ), None
    second = eligible[1]
    if best["mean"] == second["mean"]:
        return (
            f"{_run_label(best)} ({describe(best)}) and {_run_label(second)} "
            f"({describe(second)}) tie for first place."
        ), False
    head = (
        f"{_run_label(best)} is best ({describe(best)}), "
        f"ahead of {_run_label(second)} ({describe(second)})"
    )
    if paired is not None:
        comparison = paired(best, second)
        if comparison is not None:
            return paired_sentence(head, comparison, digits)
        head += "; no shared subject x expression cells, so Welch on all images"
    welch = welch_interval(best, second)
    if welch is None:
        return f"{head}; no test possible (n < 2).", None
    diff, low, high = welch
    if low == high:  # every image of both runs has the same value
        return (
            f"{head}: difference {_fmt(diff, digits, sign=True)}; no test possible "
            "(no spread within either run)."
        ), None
    difference = (
        f"difference {_fmt(diff, digits, sign=True)}, 95% CI "
        f"[{_fmt(low, digits, sign=True)}, {_fmt(high, digits, sign=True)}]"
    )
    if low > 0 or high < 0:
        return f"{head}: {difference}, significant.", True
    return (
        f"{head}: {difference} includes 0, not significant: the two are not "
        "distinguishable at this n."
    ), False


def _answer(
    question: Question,
    scorer: str,
    per_scorer: Mapping[str, list[Row]],
    min_n: int,
    paired: PairedLookup | None = None,
) -> Row:
    digits = question.spec.digits
    bounds = statistic_range(question.spec, question.statistic)

    def describe(row: Row) -> str:
        interval = _interval_text(clipped(*best_interval(row), bounds), digits)
        return f"{_fmt(row['mean'], digits)} {interval or 'no CI'}, n={row['n']}"

    eligible, excluded = _ranked(per_scorer[scorer], question, min_n)
    compare = None if paired is None else partial(paired, scorer, question.statistic)
    verdict, significant = _verdict(eligible, describe, digits, min_n, compare)
    others = []
    for other, rows in sorted(per_scorer.items()):
        if other != scorer:
            top, _ = _ranked(rows, question, min_n)
            others.append(f"{other}: {_run_label(top[0]) if top else f'none with n ≥ {min_n}'}")
    return {
        "title": question.title,
        "heading": question.heading,
        "direction": "higher is better" if question.higher_is_better else "lower is better",
        "scorer": scorer,
        "verdict": verdict,
        "significant": significant,
        "ranking": [f"{i}. {_run_label(r)} {describe(r)}" for i, r in enumerate(eligible, start=1)],
        "excluded": [f"{_run_label(r)} (n={r['n']} < {min_n})" for r in excluded],
        "others": others,
    }


# --------------------------------------------------------------------------- contact sheet


def thumbnail_data_uri(path: Path, size: int = THUMBNAIL_PX) -> str:
    """A JPEG thumbnail (longest side `size`) of `path` as a data URI."""
    with Image.open(path) as source:
        source.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
        image = ImageOps.exif_transpose(source).convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _records(df: pd.DataFrame | None) -> list[Row]:
    if df is None or df.empty:
        return []
    clean = df.astype(object).where(df.notna(), None)
    return clean.to_dict("records")


def _contact_sheet(
    scores: list[Row],
    faces: list[Row],
    thumbnails: Mapping[str, Path],
    thumb_px: int,
    specs: Sequence[MetricSpec],
    image_notes: Mapping[str, str | None] | None = None,
    thumbnail_cache: ThumbnailCache | None = None,
) -> list[Row]:
    captions = [
        (
            spec.column,
            spec.caption,
            spec.digits if spec.caption_digits is None else spec.caption_digits,
        )
        for spec in specs
        if spec.caption is not None and spec.stored
    ]
    face_by_path = {row["path"]: row for row in faces}
    images: dict[str, Row] = {}
    for row in scores:
        image = images.setdefault(
            row["path"],
            {
                "path": row["path"],
                "generator": row["generator"],
                "version": row["version"],
                "subject": row["subject"],
                "subject_gender": row["subject_gender"],
                "expression": row["expression"],
                "replicate": row["replicate"],
                "face_found": False,
                "face_count": row.get("face_count"),
                "face_reason": None,
                "scores": [],
            },
        )
        image["face_found"] = image["face_found"] or bool(row["face_found"])
        if row.get("note") and not image["face_reason"] and not row["face_found"]:
            image["face_reason"] = row["note"]
        values = [
            (label, _fmt(row.get(column), digits))
            for column, label, digits in captions
            if row.get(column) is not None
        ]
        if values:
            image["scores"].append({"scorer": row["scorer"], "pairs": values})
    for path, image in images.items():
        face = face_by_path.get(path)
        if face is not None:
            image["face_found"] = bool(face["face_found"])
            image["face_reason"] = face.get("face_reason") or image["face_reason"]
            image["face_count"] = face.get("face_count", image["face_count"])
        image["src"], image["thumb_error"] = _thumbnail(
            thumbnails.get(path), thumb_px, thumbnail_cache
        )
        image["note"] = (image_notes or {}).get(path)  # sheet cell, generation metadata, conflicts
    grid: dict[tuple[str, str, str], dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    genders: dict[tuple[str, str, str], str | None] = {}
    for image in images.values():
        key = (image["generator"], image["version"], image["subject"])
        grid[key][image["expression"]].append(image)
        genders[key] = genders.get(key) or image["subject_gender"]
    rows = []
    for key in sorted(grid):
        cells = [sorted(grid[key].get(e, []), key=lambda i: i["replicate"]) for e in EXPRESSIONS]
        rows.append(
            {
                "generator": key[0],
                "version": key[1],
                "subject": key[2],
                "gender": genders[key],
                "cells": cells,
            }
        )
    return rows


def _thumbnail(
    path: Path | None, size: int, cache: ThumbnailCache | None = None
) -> tuple[str | None, str | None]:
    if path is None:
        return None, "no thumbnail"
    encode = thumbnail_data_uri if cache is None else cache.data_uri
    try:
        return encode(Path(path), size), None
    except (OSError, UnidentifiedImageError) as error:
        return None, f"unreadable: {type(error).__name__}"


def _paged_sheet(
    source: ReportScores,
    out_html: Path,
    thumb_px: int,
    specs: Sequence[MetricSpec],
    page_size: int,
    environment: jinja2.Environment,
    thumbs: ThumbnailCache | None = None,
) -> tuple[list[Row], list[Row]]:
    """(the contact sheet's rows for index.html, its pages): up to `page_size` images the
    sheet is inline and there are no pages; beyond, every page is written (one at a time,
    thumbnails decoded page by page) and index.html gets the links only."""
    cut = pages(source.sheet_rows(), page_size)

    def sheet(members: list[Row]) -> list[Row]:
        paths = sorted({str(r["path"]) for r in members})
        thumbnails, notes, faces = source.images_of(paths)
        return _contact_sheet(members, faces, thumbnails, thumb_px, specs, notes, thumbs)

    if len(cut) <= 1:
        write_pages(out_html, lambda _: iter(()))  # no stale pages of an earlier run
        return sheet([r for _, members in source.sheet_groups() for r in members]), []
    names = [f"page-{k + 1:04d}.html" for k in range(len(cut))]
    folder = pages_dir(out_html).name
    template = environment.get_template(PAGE_TEMPLATE)

    def render(k: int, members: list[Row]) -> tuple[str, str]:
        html = template.render(
            contact_sheet=sheet(members),
            expressions=EXPRESSIONS,
            page_number=k + 1,
            n_pages=len(cut),
            report_href=f"../{out_html.name}",
            previous_href=names[k - 1] if k else None,
            next_href=names[k + 1] if k + 1 < len(cut) else None,
        )
        return names[k], html

    def rendered(_: Path) -> Iterator[tuple[str, str]]:
        # sheet_groups come in the order the pages were cut from: a page is its next rows
        current, rows_left = 0, cut[0].rows
        members: list[Row] = []
        for key, group in source.sheet_groups():
            if not rows_left:
                yield render(current, members)
                current, members = current + 1, []
                rows_left = cut[current].rows
            if not members and key != cut[current].first:  # the two queries disagree: a bug
                raise RuntimeError(
                    f"contact sheet: page {current + 1} starts at {key}, "
                    f"not at {cut[current].first}"
                )
            members += group
            rows_left -= 1
        yield render(current, members)

    write_pages(out_html, rendered)
    links = [
        {
            "href": f"{folder}/{names[k]}",
            "first": " ".join(page.first),
            "last": " ".join(page.last),
            "images": page.images,
        }
        for k, page in enumerate(cut)
    ]
    return [], links


# --------------------------------------------------------------------------- the page


def _scorer_versions(scores: list[Row], run_info: Mapping[str, Any]) -> dict[str, str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for row in scores:
        seen[row["scorer"]].add(str(row["scorer_version"]))
    versions = {name: ", ".join(sorted(v)) for name, v in seen.items()}
    versions.update({str(k): str(v) for k, v in dict(run_info.get("scorers") or {}).items()})
    return dict(sorted(versions.items()))


def _check_relative(link: str | None) -> str | None:
    if link is None:
        return None
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        raise ValueError(f"validation_link must be a relative path (opens offline): {link!r}")
    return link


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(
    tables: Mapping[str, pa.Table],
    scores_df: pd.DataFrame | ReportScores,
    faces_df: pd.DataFrame | None,
    quarantine_df: pd.DataFrame | None,
    thumbnails: Mapping[str, Path],
    run_info: Mapping[str, Any],
    out_html: Path,
    validation_link: str | None = None,
    *,
    validation: ValidationReport | None = None,
    thumb_px: int = THUMBNAIL_PX,
    specs: Sequence[MetricSpec] = BUILTIN_METRICS,
    min_n: int = MIN_N,
    image_notes: Mapping[str, str | None] | None = None,
    uncertainty: tuple[int, int] = (DEFAULT_SEED, DEFAULT_RESAMPLES),
    changes: Mapping[str, Any] | None = None,
    thumbnail_cache: Path | None = None,
    sheet_page_size: int = DEFAULT_PAGE_SIZE,
    subject_cells: RunCells | None = None,
) -> Path:
    """Write the report to `out_html` (atomically) and return its path.

    `scores_df`: the scores as a DataFrame, or a `ReportScores` (the stage: the Parquet
    files in DuckDB, with `faces_df`, `thumbnails` and `image_notes` inside it); either
    way the rows reach Python a sheet row or a generator/version at a time. A contact
    sheet of more than `sheet_page_size` images goes to page files beside `out_html`
    (exprbench.report_sheets), which the report links.

    `thumbnails` maps a scores `path` to the crop or image to show; `validation_link` is
    the Data Docs index relative to `out_html`; `validation` adds the pass/fail line;
    `specs` (the metrics the scores carry) decide the heatmaps, leaderboard columns,
    captions and the summary's questions; a value from fewer than `min_n` images is shown
    grey and left out of colours and rankings; `uncertainty` (seed, resamples) seeds the
    summary's paired bootstrap; `changes` (exprbench.changes_report.write_changes) links
    the "What changed" pages from the summary; `thumbnail_cache` (a cache root) keeps
    encoded thumbnails by content (`exprbench.thumbnails`).
    """
    if min_n < 1:
        raise ValueError(f"min_n must be at least 1; got {min_n}")
    by_column = {spec.column: spec for spec in specs}
    thumbs = None
    if thumbnail_cache is not None:
        thumbs = ThumbnailCache(thumbnail_cache, thumbnail_data_uri)
    link = _check_relative(validation_link)
    source = (
        scores_df
        if isinstance(scores_df, ReportScores)
        else ReportScores.from_frames(scores_df, faces_df, thumbnails, image_notes)
    )
    scores = source.scorer_rows()  # one per scorer and version, in the scores' order
    # subject_cells grows with the subjects: it stays columnar (paired_lookup)
    rows = {name: table.to_pylist() for name, table in tables.items() if name != "subject_cells"}
    judged_thumbnails, _, _ = source.images_of(disagreement_paths(rows))
    contact_sheet, sheet_pages = _paged_sheet(
        source, out_html, thumb_px, specs, sheet_page_size, _environment(), thumbs
    )
    extra_info = {
        str(k): v for k, v in run_info.items() if k not in ("timestamp", "params_hash", "scorers")
    }
    failures = (
        []
        if validation is None
        else [
            {"name": f.name, "column": f.column, "count": f.unexpected_count}
            for f in validation.failures
        ]
    )
    leaderboard, leaderboard_legend = _leaderboard_blocks(
        rows.get("leaderboard", []),
        specs,
        _intervals_index(rows.get("run_intervals", [])),
        min_n,
    )
    context = {
        "timestamp": str(
            run_info.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds")
        ),
        "params_hash": run_info.get("params_hash"),
        "scorers": _scorer_versions(scores, run_info),
        "extra_info": extra_info,
        "expressions": EXPRESSIONS,
        "summary": _summary(
            summary_questions(specs),
            rows.get("run_intervals", []),
            _scorer_order(scores, run_info),
            min_n,
            paired_lookup(
                tables.get("subject_cells", []) if subject_cells is None else subject_cells,
                *uncertainty,
            ),
        ),
        "identity": identity_section(
            rows.get("identity_separability", []), rows.get("identity_histogram", [])
        ),
        "identity_template": IDENTITY_TEMPLATE,
        "leaderboard": leaderboard,
        "leaderboard_legend": leaderboard_legend,
        "min_n": min_n,
        "heatmaps": [
            _heatmap_section(spec, by_column, rows.get(spec.table or "", []), min_n)
            for spec in specs
            if spec.heatmap is not None
        ],
        "confusion": _confusion_blocks(
            rows.get("confusion", []), rows.get("expression_fidelity", [])
        ),
        "contact_sheet": contact_sheet,
        "sheet_pages": sheet_pages,
        "sheet_page_size": sheet_page_size,
        "n_sheet_images": sum(page["images"] for page in sheet_pages),
        "judgements": judgement_context(
            rows,
            lambda path: _thumbnail(judged_thumbnails.get(path), thumb_px, thumbs),
            run_info.get("tau"),
            min_n,
        ),
        "rate_key": rate_key,
        "quarantine": _records(quarantine_df),
        "validation_link": link,
        "validation_success": None if validation is None else validation.success,
        "validation_note": None if validation is None else validation.note,
        "validation_failures": failures,
        "n_images": source.n_images(),
        "unavailable": unavailable_summary(source.unavailable_rows()),
        "unavailable_template": UNAVAILABLE_TEMPLATE,
        "geometry": geometry_section_by_run(
            source.runs(), source.geometry_scorers(), source.recognizers(), min_n, sheet_page_size
        ),
        "changes": changes,
    }
    html = _environment().get_template(TEMPLATE_NAME).render(**context)
    atomic_write_text(out_html, html)
    return out_html
