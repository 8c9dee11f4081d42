"""What changed between two versions of a generator: per scorer and metric, the delta of
every subject x expression cell, of every expression and overall, with a paired bootstrap
interval, what is missing on either side, and which deltas break the regression rule.

How a delta is measured (`compare_versions`):

* Metrics: every metric the scores file declares (its `MetricSpec`s) that has a direction
  (`higher_is_better` not None), for every scorer that filled it in either version. A
  value is what the study tables use: derived metrics computed, bools as 0/1, metrics
  relative to the neutral image null on the neutral row.
* Cell: subject x expression. Its value is the mean over its images (replicates); the
  cell's delta is head mean - base mean, with a two-sample bootstrap 95% interval (each
  version's images resampled with replacement, independently: the images of two
  versions are not paired) when both sides have at least 2 images, else none.
* Expression (subject None) and overall (subject and expression None): over the cells
  both versions have a value for (the shared cells); base_mean and head_mean are the
  means of the cell values over those cells, delta = head_mean - base_mean, and the 95%
  interval is the paired bootstrap of `exprbench.uncertainty.paired_comparison`
  (subjects resampled, then each drawn subject's shared cells). With no shared cell: each
  side's mean over its own cells and no delta. Cells are weighted equally, so the overall
  mean is not the leaderboard's image-weighted one.
* Missing: cells (from the images table: every accepted image, face or not) only one
  version has, in `Comparison.missing`; per delta, the cells (images for a single cell)
  with a value on one side only.
* Regression (`RegressionRule`, params `compare:`): a watched metric worse by more than
  `min_delta` (in its better direction), and, with `interval_excludes_zero`, the 95%
  interval entirely on the worse side of 0 (a delta without an interval then never
  counts).

Memory: DuckDB reads the scores Parquet and returns one row per scorer x metric x cell x
version (its images' mean and values), streamed in batches; the single cells' deltas are
worked out a few subjects at a time, and only one scorer x metric's cell means are held
(for its pooled deltas); nothing holds the image rows of the corpus. The result holds one
CellDelta per scorer x metric x cell, or, with `subjects_shown` (the report), only the
pooled deltas, the regressed cells and the cells of that many subjects (a second, filtered
pass computes those: a cell's delta and interval depend on its own values and stream only,
so they are the same), which bounds it whatever the number of subjects. Time: a scorer's
metrics are found in one grouped pass and only filled ones are queried; with
`subjects_shown`, the first pass draws intervals only for the cells whose delta could
break the rule (a watched metric worse by more than `min_delta`).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from exprbench.duckdb_memory import DEFAULT_BOUNDS, bounded_connection
from exprbench.labels import EXPRESSIONS
from exprbench.metrics import MetricSpec
from exprbench.settings import CompareSettings, DuckdbSettings
from exprbench.uncertainty import group_rng, paired_comparison
from exprbench.versions import VersionOrder, version_orders

LEVEL = 0.95
_BATCH_ROWS = 65_536


class UnknownVersionError(ValueError):
    """A generator or version asked for is not in the images table; says what exists."""


@dataclass(frozen=True)
class RegressionRule:
    """params.yaml section `compare:` (settings.compare)."""

    metrics: tuple[str, ...]  # MetricSpec columns the rule watches
    min_delta: float  # worse by more than this (in the metric's better direction)
    interval_excludes_zero: bool  # and the paired bootstrap interval excludes 0

    @classmethod
    def from_settings(cls, settings: CompareSettings) -> RegressionRule:
        return cls(settings.metrics, settings.min_delta, settings.interval_excludes_zero)

    def may_regress(self, metric: str, better: str, delta: float | None) -> bool:
        """Whether a delta (head - base) breaks the rule if its interval allows it: a
        watched metric, worse by more than `min_delta`."""
        if metric not in self.metrics or delta is None:
            return False
        sign = 1.0 if better == "higher" else -1.0  # worse = a move against `better`
        return -sign * delta > self.min_delta

    def regressed(
        self, metric: str, better: str, delta: float | None, low: float | None, high: float | None
    ) -> bool:
        """Whether a delta (head - base) breaks the rule."""
        if not self.may_regress(metric, better, delta):
            return False
        if not self.interval_excludes_zero:
            return True
        if low is None or high is None:
            return False
        return high < 0 if better == "higher" else low > 0

    def describe(self) -> str:
        zero = ", with the 95% interval excluding 0" if self.interval_excludes_zero else ""
        return f"{', '.join(self.metrics)} worse by more than {self.min_delta:g}{zero}"


@dataclass(frozen=True, slots=True)  # slots: a large comparison holds one per cell x metric
class CellDelta:
    scorer: str
    metric: str  # MetricSpec column
    subject: str | None  # None with expression None = overall
    expression: str | None
    base_mean: float | None
    head_mean: float | None
    delta: float | None  # head - base (raw units of the metric)
    low: float | None  # paired bootstrap 95% interval of delta over the shared cells
    high: float | None
    n_shared: int  # shared subject x expression cells (a single cell: its images, both sides)
    base_only: int  # cells/images only in base
    head_only: int
    better: str  # "higher" | "lower" (from the MetricSpec direction)
    regressed: bool  # by the rule
    n_base: int = 0  # values on the base side: images for a single cell, else cells
    n_head: int = 0

    @property
    def where(self) -> str:
        """'scorer/metric/subject/expression' ('*' for all subjects or expressions)."""
        return f"{self.scorer}/{self.metric}/{self.subject or '*'}/{self.expression or '*'}"

    @property
    def level(self) -> str:
        """'overall', 'expression' or 'cell'."""
        if self.subject is not None:
            return "cell"
        return "overall" if self.expression is None else "expression"


@dataclass(frozen=True)
class Comparison:
    generator: str
    base: str
    head: str
    order: VersionOrder
    deltas: tuple[CellDelta, ...]  # all, or what `subjects_shown` keeps (compare_pair)
    missing: dict[str, list[str]]  # {"base_only": ["subject/expression"], "head_only": [...]}
    rule: RegressionRule | None = None
    digits: dict[str, int] = field(default_factory=dict)  # metric -> digits to show
    n_subjects: int = 0  # subjects with a cell on either side (also those not in deltas)
    regressed_cells_left_out: int = 0  # by `essentials`: counted, no longer held

    def regressions(self) -> list[CellDelta]:
        return [d for d in self.deltas if d.regressed]

    @property
    def n_regressions(self) -> int:
        """Every regressed delta, also the single cells `essentials` left out."""
        return len(self.regressions()) + self.regressed_cells_left_out

    def essentials(self) -> Comparison:
        """This comparison's pooled deltas and the number of its regressed cells (what the
        headline deltas need; a large corpus has a delta per cell x metric, and
        thousands of regressed cells when a version is worse)."""
        kept = tuple(d for d in self.deltas if d.level != "cell")
        return replace(
            self,
            deltas=kept,
            regressed_cells_left_out=self.n_regressions - sum(d.regressed for d in kept),
        )

    def overall(self) -> list[CellDelta]:
        return [d for d in self.deltas if d.level == "overall"]

    def to_json(self) -> dict[str, Any]:
        """What `exprbench compare --json` prints (one per generator)."""
        return {
            "generator": self.generator,
            "base": self.base,
            "head": self.head,
            "order": asdict(self.order),
            "rule": asdict(self.rule) if self.rule is not None else None,
            "regressions": [d.where for d in self.regressions()],
            "missing": self.missing,
            "n_subjects": self.n_subjects,
            "deltas": [{**asdict(d), "level": d.level} for d in self.deltas],
        }

    def _fmt(self, metric: str, value: float | None, signed: bool = False) -> str:
        if value is None:
            return "-"
        digits = self.digits.get(metric, 3)
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"

    def _interval(self, d: CellDelta) -> str:
        if d.low is None or d.high is None:
            return "-"
        return f"[{self._fmt(d.metric, d.low, True)}, {self._fmt(d.metric, d.high, True)}]"

    def _regression_lines(self) -> list[str]:
        return [
            f"{d.where}: {self._fmt(d.metric, d.base_mean)} -> "
            f"{self._fmt(d.metric, d.head_mean)} (delta {self._fmt(d.metric, d.delta, True)}, "
            f"95% {self._interval(d)}, {d.better} is better)"
            for d in self.regressions()
        ]

    def _headline(self) -> list[str]:
        lines = [f"Version order: {' < '.join(self.order.versions)} ({self.order.source})."]
        if self.order.warning:
            lines.append(f"Warning: {self.order.warning}.")
        found = self.regressions()
        if self.rule is not None:
            verdict = f"{len(found)} regression{'s' if len(found) != 1 else ''}"
            lines.append(f"{verdict} by the rule ({self.rule.describe()}).")
        return lines

    def _missing_lines(self) -> list[str]:
        lines = []
        for side, version in (("base_only", self.base), ("head_only", self.head)):
            cells = self.missing.get(side, [])
            if cells:
                shown = ", ".join(cells[:20]) + (
                    f" and {len(cells) - 20} more" if len(cells) > 20 else ""
                )
                plural = "s" if len(cells) != 1 else ""
                lines.append(f"Only in {version} ({len(cells)} cell{plural}): {shown}.")
        return lines

    def _overall_rows(self) -> list[list[str]]:
        return [
            [
                d.scorer,
                d.metric,
                d.better,
                self._fmt(d.metric, d.base_mean),
                self._fmt(d.metric, d.head_mean),
                self._fmt(d.metric, d.delta, True),
                self._interval(d),
                str(d.n_shared),
                f"{d.base_only}/{d.head_only}",
                "REGRESSED" if d.regressed else "",
            ]
            for d in self.overall()
        ]

    _HEADINGS = ("scorer", "metric", "better", "base", "head", "delta", "95% interval",
                 "cells", "only base/head", "")  # fmt: skip

    def markdown(self) -> str:
        """Short "what changed in <generator> <head> vs <base>" summary, regressions named as
        scorer/metric/subject/expression."""

        def cell(text: str) -> str:
            return text.replace("|", "\\|")

        lines = [f"### What changed in {self.generator} {self.head} vs {self.base}", ""]
        lines += self._headline()
        regressions = self._regression_lines()
        if regressions:
            lines += ["", *(f"- **{cell(line)}**" for line in regressions)]
        rows = self._overall_rows()
        if rows:
            lines += ["", "Overall (mean over the shared subject x expression cells):", ""]
            lines.append("| " + " | ".join(self._HEADINGS) + " |")
            lines.append("|" + "---|" * len(self._HEADINGS))
            lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
        missing = self._missing_lines()
        if missing:
            lines += ["", *missing]
        return "\n".join(lines)

    def text(self) -> str:
        """The terminal table of `exprbench compare`."""
        lines = [f"{self.generator}: {self.head} vs {self.base}", *self._headline()]
        rows = [list(self._HEADINGS), *self._overall_rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEADINGS))]
        lines.append("")
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                  for row in rows]  # fmt: skip
        regressions = self._regression_lines()
        if regressions:
            lines += ["", "Regressed:", *(f"  {line}" for line in regressions)]
        missing = self._missing_lines()
        if missing:
            lines += ["", *missing]
        return "\n".join(lines)


# --------------------------------------------------------------------------- choosing pairs


def found_versions(
    images: Path, bounds: DuckdbSettings = DEFAULT_BOUNDS, con: Any = None
) -> list[tuple[str, str]]:
    """(generator, version) pairs with an accepted image in the images table; DuckDB
    within `bounds`, or a cursor of `con` (see compare_pair)."""
    source = Path(images)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: missing; run the pipeline (ingest) first")
    with con.cursor() if con is not None else bounded_connection(bounds) as db:
        rows = db.execute(
            "SELECT DISTINCT generator, version FROM read_parquet(?) ORDER BY ALL", [str(source)]
        ).fetchall()
    return [(str(g), str(v)) for g, v in rows]


def plan_pairs(
    orders: dict[str, VersionOrder],
    generator: str | None = None,
    base: str | None = None,
    head: str | None = None,
) -> list[tuple[VersionOrder, str, str]]:
    """(order, base, head) to compare. Default: each generator's newest vs the previous.

    head alone: against the version before it; base alone: the newest against it. A
    generator with one version gives no pair (unless asked for by name: an error). Unknown
    generator or version -> UnknownVersionError naming what exists.
    """
    if generator is not None and generator not in orders:
        raise UnknownVersionError(
            f"no generator {generator!r} in the images table; generators: "
            f"{', '.join(orders) or 'none'}"
        )
    chosen = [orders[generator]] if generator is not None else list(orders.values())
    for name, version in (("--base", base), ("--head", head)):
        if version is not None and not any(version in o.versions for o in chosen):
            known = "; ".join(f"{o.generator}: {', '.join(o.versions)}" for o in chosen)
            raise UnknownVersionError(f"no version {version!r} ({name}); versions: {known}")
    if base is not None and base == head:
        raise UnknownVersionError(f"--base and --head are both {base!r}: nothing to compare")
    pairs = []
    for order in chosen:
        versions = order.versions
        if (base is not None and base not in versions) or (
            head is not None and head not in versions
        ):
            continue  # another generator's versions
        if head is not None:
            new = head
            old = base if base is not None else _before(versions, head)
        else:
            new = versions[-1]
            old = base if base is not None else _before(versions, new)
        if old is None or old == new:
            if generator is not None and (base is not None or head is not None):
                problem = (
                    f"no version before {new!r} to compare it with"
                    if old is None
                    else f"{new!r} is the newest version: give a --head to compare it with"
                )
                raise UnknownVersionError(
                    f"{order.generator}: {problem}; versions (oldest first): {', '.join(versions)}"
                )
            continue
        pairs.append((order, old, new))
    if (base is not None or head is not None) and not pairs:
        known = "; ".join(f"{o.generator}: {', '.join(o.versions)}" for o in chosen)
        raise UnknownVersionError(f"no generator has both versions asked for; versions: {known}")
    return pairs


def _before(versions: Sequence[str], version: str) -> str | None:
    index = versions.index(version)
    return versions[index - 1] if index > 0 else None


# --------------------------------------------------------------------------- measuring


def directed_specs(scores: Path) -> tuple[MetricSpec, ...]:
    """The metrics with a direction that the scores file declares (its schema metadata)."""
    import pyarrow.parquet as pq

    from exprbench.schema import metric_specs

    source = Path(scores)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: missing; run the pipeline (score stage) first")
    specs = metric_specs(pq.read_schema(source), str(source))
    return tuple(spec for spec in specs if spec.higher_is_better is not None)


def _compared_rows_sql(scores: Path, columns: str, condition: str = "") -> str:
    """The score rows of the two compared versions ($generator, $base, $head) with
    `columns` (metric values as `_value_sql` makes them), as CTE `s`."""
    from exprbench.duckdb_memory import sql_string

    return f"""
        WITH s AS (
            SELECT {columns}
            FROM read_parquet({sql_string(str(scores))}, hive_partitioning = false) s
            WHERE s.generator = $generator AND s.version IN ($base, $head) {condition})"""


def _has_value(column: str) -> str:
    """A metric value that counts (a cell's mean, a filled pair): not null, not NaN."""
    return f"{column} IS NOT NULL AND NOT isnan({column})"


def _cells_sql(scores: Path, spec: MetricSpec, only_subjects: bool = False) -> str:
    """One row per subject x expression x version of one scorer's one metric, sorted
    (`only_subjects`: of the subjects in the $subjects list parameter). A scorer x metric
    a query: grouping every metric at once holds a generator's every cell, with its
    values, in DuckDB at once (over 48MB at a million score rows)."""
    from exprbench.aggregate import _value_sql

    condition = "AND s.scorer = $scorer"
    if only_subjects:
        condition += " AND list_contains($subjects, s.subject)"
    columns = f"s.version, s.subject, s.expression, s.replicate, {_value_sql(spec)}"
    return f"""{_compared_rows_sql(scores, columns, condition)}
        SELECT subject, expression, version, avg({spec.column}) AS mean,
               list({spec.column} ORDER BY replicate) AS vals
        FROM s WHERE {_has_value(spec.column)}
        GROUP BY subject, expression, version
        ORDER BY subject, expression, version"""


_DRAWS_AT_ONCE = 250_000  # single-cell bootstrap draws held at once (~2 MB an array)
Side = tuple[float, list[float]]  # a cell on one side: mean, its images' values
Cells = dict[tuple[str, str], dict[str, Side]]  # (subject, expression) -> version -> side
Means = dict[tuple[str, str], dict[str, float]]  # (subject, expression) -> version -> mean
_CHUNK_SUBJECTS = 256  # subjects whose single cells are worked out at once (bounds memory)


def _stream(con: Any, sql: str, params: dict[str, str]) -> Iterator[tuple[Any, ...]]:
    reader = con.sql(sql, params=params).to_arrow_reader(_BATCH_ROWS)
    for batch in reader:
        yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)


def _cell_intervals(
    cells: Sequence[tuple[list[float], list[float], Callable[[], np.random.Generator]]],
    resamples: int,
) -> list[tuple[float, float]]:
    """Two-sample bootstrap interval of mean(head) - mean(base) of each (base, head,
    stream) cell (>= 2 images a side; `stream()` makes the cell's random stream, made
    only when its cell is drawn: a Generator is ~1 KB, and a comparison has tens of
    thousands of cells): each side's images resampled independently, from the cell's own
    stream (n uniform picks among a side's n images), so a cell's interval depends on
    its own values and stream only. Cells of the same sizes are resampled together, one
    array operation for all of them."""
    tail = 100 * (1 - LEVEL) / 2
    out: list[tuple[float, float]] = [(math.nan, math.nan)] * len(cells)
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, (base, head, _) in enumerate(cells):
        by_size[(len(base), len(head))].append(index)
    for sizes, same in by_size.items():
        # a bounded number of draws in memory at once, whatever the number of cells
        step = max(1, _DRAWS_AT_ONCE // (resamples * sum(sizes)))
        for first in range(0, len(same), step):
            members = same[first : first + step]
            streams = [cells[i][2]() for i in members]
            means = []
            for side, n in enumerate(sizes):  # base then head: the order the streams expect
                values = np.asarray([cells[i][side] for i in members], dtype=np.float64)
                draws = np.stack([stream.random(resamples * n) for stream in streams])
                picked = np.minimum((draws * n).astype(np.int64), n - 1)
                picked = picked.reshape(-1, resamples, n)
                gathered = np.take_along_axis(values[:, None, :], picked, axis=2)
                means.append(gathered.sum(axis=2) / n)
            low, high = np.percentile(means[1] - means[0], [tail, 100 - tail], axis=1)
            for k, index in enumerate(members):
                out[index] = (float(low[k]), float(high[k]))
    return out


def _pooled(
    scorer: str,
    spec: MetricSpec,
    means: Means,
    where: tuple[str | None, str | None],
    versions: tuple[str, str],
    key: tuple[str, ...],
    rule: RegressionRule,
    seed: int,
    resamples: int,
) -> CellDelta:
    """Delta over the cells of `means` (already chosen: one expression, or all), paired
    on the cells both versions have."""
    base, head = versions
    values = {
        side: {k: sides[side] for k, sides in means.items() if side in sides} for side in versions
    }
    shared = sorted(values[base].keys() & values[head].keys())  # a fixed summation order
    better = "higher" if spec.higher_is_better else "lower"
    paired = paired_comparison(
        values[head], values[base], seed=seed, resamples=resamples, key=(*key, *where)
    )

    def mean(side: str, keys: Iterable[tuple[str, str]]) -> float | None:
        picked = [values[side][k] for k in keys]
        return float(np.mean(picked)) if picked else None

    if paired is None:
        base_mean, head_mean = mean(base, values[base]), mean(head, values[head])
        delta = low = high = None
    else:
        base_mean, head_mean = mean(base, shared), mean(head, shared)
        delta, low, high = paired.mean_diff, paired.low, paired.high
    return CellDelta(
        scorer,
        spec.column,
        where[0],
        where[1],
        base_mean,
        head_mean,
        delta,
        low,
        high,
        len(shared),
        len(values[base].keys() - shared),
        len(values[head].keys() - shared),
        better,
        rule.regressed(spec.column, better, delta, low, high),
        len(values[base]),
        len(values[head]),
    )


def _pooled_deltas(
    scorer: str,
    spec: MetricSpec,
    means: Means,
    versions: tuple[str, str],
    key: tuple[str, ...],
    rule: RegressionRule,
    seed: int,
    resamples: int,
) -> list[CellDelta]:
    """The overall, then each expression's delta of one scorer x metric."""
    args = (versions, (*key, scorer, spec.column), rule, seed, resamples)
    out = [_pooled(scorer, spec, means, (None, None), *args)]
    rank = {name: i for i, name in enumerate(EXPRESSIONS)}
    expressions = sorted({e for _, e in means}, key=lambda e: (rank.get(e, len(rank)), e))
    for expression in expressions:
        chosen = {k: v for k, v in means.items() if k[1] == expression}
        out.append(_pooled(scorer, spec, chosen, (None, expression), *args))
    return out


def _cell_deltas(
    scorer: str,
    spec: MetricSpec,
    cells: Cells,
    versions: tuple[str, str],
    key: tuple[str, ...],
    rule: RegressionRule,
    seed: int,
    resamples: int,
    regressed_only: bool = False,
) -> list[CellDelta]:
    """The delta of each single cell in `cells` (some or all of one scorer x metric's: a
    cell's interval depends on its own values and random stream only). `regressed_only`:
    only the cells that break the rule (the others' intervals are not drawn)."""
    base, head = versions
    better = "higher" if spec.higher_is_better else "lower"
    rank = {name: i for i, name in enumerate(EXPRESSIONS)}
    ordered = sorted(cells.items(), key=lambda item: (item[0][0], rank.get(item[0][1], len(rank))))
    if regressed_only:
        ordered = [
            (cell, sides)
            for cell, sides in ordered
            if base in sides
            and head in sides
            and rule.may_regress(spec.column, better, sides[head][0] - sides[base][0])
        ]
    # single cells with >= 2 images a side get an interval (else none, and no stream to seed)
    resampled = [
        (subject, expression)
        for (subject, expression), sides in ordered
        if resamples >= 1
        and len(sides.get(base, (0, []))[1]) > 1
        and len(sides.get(head, (0, []))[1]) > 1
    ]
    streams = [
        (
            cells[c][base][1],
            cells[c][head][1],
            partial(group_rng, seed, ("compare-cell", *key, scorer, spec.column, *c)),
        )
        for c in resampled
    ]
    intervals = dict(zip(resampled, _cell_intervals(streams, resamples), strict=True))
    out: list[CellDelta] = []
    for (subject, expression), sides in ordered:
        b, h = sides.get(base), sides.get(head)
        delta = low = high = None
        if b is not None and h is not None:
            delta = h[0] - b[0]
            low, high = intervals.get((subject, expression), (None, None))
        n_base, n_head = len(b[1]) if b else 0, len(h[1]) if h else 0
        both = b is not None and h is not None
        out.append(
            CellDelta(
                scorer,
                spec.column,
                subject,
                expression,
                b[0] if b else None,
                h[0] if h else None,
                delta,
                low,
                high,
                n_base + n_head if both else 0,
                0 if both else n_base,
                0 if both else n_head,
                better,
                rule.regressed(spec.column, better, delta, low, high),
                n_base,
                n_head,
            )
        )
    return [d for d in out if d.regressed] if regressed_only else out


def _missing_cells(
    con: Any, images: Path, generator: str, base: str, head: str
) -> dict[str, list[str]]:
    rows = con.execute(
        """SELECT DISTINCT version, subject, expression FROM read_parquet(?)
           WHERE generator = ? AND version IN (?, ?)""",
        [str(images), generator, base, head],
    ).fetchall()
    cells: dict[str, set[str]] = {base: set(), head: set()}
    for version, subject, expression in rows:
        cells[version].add(f"{subject}/{expression}")
    return {
        "base_only": sorted(cells[base] - cells[head]),
        "head_only": sorted(cells[head] - cells[base]),
    }


def compare_pair(
    scores: Path,
    images: Path,
    order: VersionOrder,
    base: str,
    head: str,
    rule: RegressionRule,
    seed: int,
    resamples: int,
    specs: Sequence[MetricSpec] | None = None,
    bounds: DuckdbSettings = DEFAULT_BOUNDS,
    con: Any = None,
    subjects_shown: int | None = None,
) -> Comparison:
    """One generator's `head` against its `base` (see the module docstring). DuckDB works
    within `bounds` (params duckdb) and spills the rest; with `con`
    (a DuckDB connection), a cursor of it: its database's limit and buffers are shared.
    `subjects_shown`: keep the single cells of only that many subjects (those with a
    regressed cell first, then by name) besides every regressed cell and pooled delta."""
    specs = tuple(specs) if specs is not None else directed_specs(scores)
    args = (specs, order.generator, base, head, rule, seed, resamples)
    with con.cursor() if con is not None else bounded_connection(bounds) as db:
        missing = _missing_cells(db, images, order.generator, base, head)
        if subjects_shown is None:
            deltas, subjects = _deltas(db, scores, *args)
        else:
            deltas, subjects = _deltas(db, scores, *args, regressed_cells_only=True)
            regressed = {d.subject for d in deltas if d.regressed and d.subject is not None}
            shown = sorted(subjects, key=lambda s: (s not in regressed, s))[:subjects_shown]
            if shown:  # their other cells (the regressed ones are in already)
                more, _ = _deltas(db, scores, *args, shown, kept=_not_regressed)
                deltas += more
    order_of = {spec.column: i for i, spec in enumerate(specs)}
    rank = {name: i for i, name in enumerate(EXPRESSIONS)}
    # per scorer x metric: overall, each expression, then the cells by subject
    deltas.sort(
        key=lambda d: (
            d.scorer,
            order_of[d.metric],
            d.subject is not None,
            d.subject or "",
            -1 if d.expression is None else rank.get(d.expression, len(rank)),
            d.expression or "",
        )
    )
    digits = {spec.column: max(spec.digits, 2) for spec in specs}
    return Comparison(
        order.generator,
        base,
        head,
        order,
        tuple(deltas),
        missing,
        rule,
        digits,
        len(subjects),
    )


def _not_regressed(delta: CellDelta) -> bool:
    return not delta.regressed


def _deltas(
    con: Any,
    scores: Path,
    specs: Sequence[MetricSpec],
    generator: str,
    base: str,
    head: str,
    rule: RegressionRule,
    seed: int,
    resamples: int,
    only_subjects: Sequence[str] | None = None,
    kept: Callable[[CellDelta], bool] | None = None,
    regressed_cells_only: bool = False,
) -> tuple[list[CellDelta], set[str]]:
    """(every scorer x metric's deltas that `kept` keeps, the subjects with a cell): the
    single cells of `_CHUNK_SUBJECTS` subjects in memory at a time (filtered as they are
    made), and one scorer x metric's cell means for its pooled deltas. `only_subjects`:
    those subjects' single cells only (no pooled deltas: they would be over a subset).
    `regressed_cells_only`: of the single cells, only those that break the rule (only
    their intervals are drawn)."""
    deltas: list[CellDelta] = []
    subjects: set[str] = set()
    params: dict[str, Any] = {"generator": generator, "base": base, "head": head}
    if only_subjects is not None:
        params["subjects"] = list(only_subjects)
    key = ("compare", generator, base, head)
    for scorer, spec in _filled_pairs(con, scores, specs, params):
        rows = _stream(
            con, _cells_sql(scores, spec, only_subjects is not None), params | {"scorer": scorer}
        )
        means: Means = {}
        # one subject's rows each (a list: groupby's groups end when it moves on)
        by_subject = (list(rows_of) for _, rows_of in itertools.groupby(rows, lambda r: r[0]))
        # the single cells a few subjects at a time, only the means of all of them
        while chunk := list(itertools.islice(by_subject, _CHUNK_SUBJECTS)):
            cells: Cells = {}
            for subject_rows in chunk:
                for subject, expression, version, mean, vals in subject_rows:
                    cells.setdefault((subject, expression), {})[version] = (float(mean), vals)
                    means.setdefault((subject, expression), {})[version] = float(mean)
            found = _cell_deltas(
                scorer, spec, cells, (base, head), key, rule, seed, resamples, regressed_cells_only
            )
            deltas += found if kept is None else filter(kept, found)
        if not means:  # the scorer does not fill this metric
            continue
        subjects.update(subject for subject, _ in means)
        if only_subjects is None:  # pooled over a subset of subjects would mislead
            found = _pooled_deltas(scorer, spec, means, (base, head), key, rule, seed, resamples)
            deltas += found if kept is None else filter(kept, found)
    return deltas, subjects


def _filled_pairs(
    con: Any, scores: Path, specs: Sequence[MetricSpec], params: dict[str, Any]
) -> list[tuple[str, MetricSpec]]:
    """The (scorer, metric) pairs with a value in the compared versions, by scorer then in
    `specs`' order: one grouped pass over the two versions' rows, so that a comparison
    queries only the metrics each scorer fills (a scorer fills a few of the metrics)."""
    from exprbench.aggregate import _value_sql

    if not specs:
        return []
    columns = ", ".join(["s.scorer", *(_value_sql(spec) for spec in specs)])
    counts = ", ".join(f"count(*) FILTER (WHERE {_has_value(s.column)})" for s in specs)
    query = f"""{_compared_rows_sql(scores, columns)}
        SELECT scorer, {counts} FROM s GROUP BY scorer ORDER BY scorer"""
    found = con.sql(query, params={k: params[k] for k in ("generator", "base", "head")})
    return [
        (scorer, spec)
        for scorer, *filled in found.fetchall()
        for spec, n in zip(specs, filled, strict=True)
        if n
    ]


def compare_versions(
    scores: Path,
    images: Path,
    raw_dir: Path,
    rule: RegressionRule,
    seed: int,
    resamples: int,
    generator: str | None = None,
    base: str | None = None,
    head: str | None = None,
    bounds: DuckdbSettings = DEFAULT_BOUNDS,
    con: Any = None,
    subjects_shown: int | None = None,
) -> Iterator[Comparison]:
    """Default: each generator's newest version vs the previous one (by version_orders),
    one generator's Comparison at a time (computed as it is asked for). Unknown
    generator/version -> ValueError naming what exists, raised at the call (the plan is
    made then). A generator with one version: no Comparison (and the CLI says so).
    `con`, `subjects_shown`: see compare_pair."""
    orders = version_orders(raw_dir, found_versions(images, bounds, con))
    pairs = plan_pairs(orders, generator, base, head)
    specs = directed_specs(scores)
    return (
        compare_pair(
            scores,
            images,
            order,
            old,
            new,
            rule,
            seed,
            resamples,
            specs,
            bounds,
            con,
            subjects_shown,
        )
        for order, old, new in pairs
    )
