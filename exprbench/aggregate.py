"""Study tables from the scores Parquet files, with DuckDB.

Every query is generated from the metric specs the scores files carry
(`exprbench.metrics.MetricSpec`, written by the score stage into the files' schema): the
`scored` view, one study table per `table` the specs name (n, mean or share, 95% interval
of each of its metrics per cell), the leaderboard (each spec's `leaderboard` entry) and
one `<metric>_by_expression` table per plotted metric. Conventions every table follows:

* Unit of analysis: one image (row of SCORES for one scorer). Replicates of a cell count
  as separate images; means are over images with a non-null value.
* Split: scorer x generator x version x subject_gender x expression. subject_gender is the
  subject's gender from subjects.csv ('unknown' when not given).
* MISSING cells: an expected (subject, expression) pair with no image at all - the
  generator did not produce it, or ingest quarantined it. Expected subjects are those with
  at least one image for that generator/version; every subject is expected to have all 7
  expressions. Missing pairs are listed in `missing_cells`. The study tables carry one row
  for every scorer x generator x version x subject_gender x expression combination; a
  cell with no image has `n_images = 0` and NULL statistics (an empty field in CSV),
  never 0, and `n_missing` says how many subjects lack it.
* 95% CI: Student t-interval, mean ± t(0.975, n-1) * sd / sqrt(n), NULL for n < 2, not
  clipped to the metric's range. t comes from a table for n-1 <= 30 and a 4-term
  Cornish-Fisher expansion above (error < 3e-8 there).
* Bootstrap 95% interval (`boot95_low_*`, `boot95_high_*`; `boot95_low`/`boot95_high` in
  run_intervals): seeded hierarchical bootstrap of the same mean, resampling subjects and
  then images within subjects inside each row's group (`exprbench.uncertainty`,
  `exprbench.table_intervals`); NULL with fewer than 2 values or without `uncertainty`.
  The report shows it where present. `_build` checks every interval is ordered.
* `subject_cells`: per scorer x generator x version x subject x expression, the mean of
  every run statistic (what the report's paired comparison pairs up).
* `identity_separability`, `identity_histogram`: identity against impostors
  (`exprbench.identity`); the leaderboard gets `identity_auc` from the first.
* Neutral rows are the reference for metrics measured against the neutral image
  (`relative_to_neutral`: identity, age drift, ST-LPIPS): their values are excluded
  everywhere, and a table of such metrics only has no neutral column.
* An outcome (a bool metric such as same_identity) is averaged as a share (`share_<c>`).
* Leaderboard (per scorer x generator x version): each metric's entry, over non-neutral
  images where the spec says so (mean_target_prob), else over every image with a value
  (top1_accuracy includes neutral); n_missing_cells from `missing_cells` (the same for
  every scorer of a run).
* Run intervals (`run_intervals`, long format): per scorer x generator x version, n, mean,
  sd and 95% t-interval of every leaderboard entry (named by its leaderboard column and
  computed with the same rules, so its mean equals the leaderboard's value) and of every
  other study metric (named by its mean_<c>/share_<c>, over every image with a value).
  The report shows them beside the leaderboard and ranks generators with them.
* Files are read with `hive_partitioning=false`: every SCORES row carries its generator
  and version, so directory names are not needed (and cannot retype versions like '10').
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from exprbench.agreement import table_range_violations
from exprbench.duckdb_memory import (
    DEFAULT_BOUNDS,
    SCRATCH_FORMAT,
    connect,
    parquet_list,
    run_conditions,
    sorted_parts,
    sql_string,
)
from exprbench.fileio import current_umask
from exprbench.identity import IDENTITY_TABLES, add_leaderboard_auc, identity_tables
from exprbench.judgement_specs import AMBIGUOUS, LAMBDA_WEIGHT, PER_IMAGE_TABLES, SCR_PAIRS
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.metrics import MetricSpec, StudyTable, merge_specs
from exprbench.schema import METRICS_METADATA_KEY as METRICS_KEY
from exprbench.schema import declared_columns, metric_specs, scores_schema
from exprbench.scorers.base import BUILTIN_METRICS, STUDY_TABLES
from exprbench.settings import DuckdbSettings
from exprbench.table_intervals import (
    BOOT_HIGH,
    BOOT_LOW,
    IntervalSource,
    check_tables,
    fill_intervals,
)

Uncertainty = tuple[int, int]  # (seed, resamples) of the bootstrap (params `uncertainty`)

UNKNOWN_GENDER = "unknown"

# t(0.975, df) for df = 1..30; beyond that the expansion in `t975` is used.
_T975_SMALL_DF: tuple[float, ...] = (
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.131450,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.045230,
    2.042272,
)
_Z975 = 1.959963984540054


def _value_sql(spec: MetricSpec) -> str:
    """A metric's value on a `scored` row: derived, cast to DOUBLE, nulled on the reference."""
    value = spec.sql or f"s.{spec.column}"
    if spec.dtype == "bool":
        value = f"({value})::DOUBLE"
    if spec.relative_to_neutral:
        value = f"CASE WHEN s.expression <> {sql_string(NEUTRAL)} THEN {value} END"
    return f"{value} AS {spec.column}"


def tabled(specs: Iterable[MetricSpec]) -> dict[str, list[MetricSpec]]:
    """Study table name -> its metrics, tables in their declared order (then by name)."""
    grouped: dict[str, list[MetricSpec]] = {}
    for spec in specs:
        if spec.table is not None:
            grouped.setdefault(spec.table, []).append(spec)
    return dict(sorted(grouped.items(), key=lambda item: (study_table(item[0]).order, item[0])))


def study_table(name: str) -> StudyTable:
    """The declared title of a study table, or a default one for a table nobody declared."""
    declared = {table.name: table for table in STUDY_TABLES}
    return declared.get(name) or StudyTable(name, name.replace("_", " ").capitalize())


def _scratch_view(name: str, query: str, scratch: Path) -> list[str]:
    """Statements that make `name` a view over `query`'s rows, written to a Parquet file
    in `scratch`. In place of a temp table: DuckDB keeps a temp table's rows in its
    buffers (at a million rows, most of `duckdb.memory_limit`, leaving too little for the
    sorts and joins that read it) but reads a Parquet file a row group at a time."""
    file = sql_string(str(scratch / f"{name}.parquet"))
    return [
        f"COPY ({query}) TO {file} {SCRATCH_FORMAT}",
        f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({file})",
    ]


@dataclass(frozen=True)
class RunSorted:
    """The rows of `query` in `order`, whose first columns (`runs`) name a run: a table
    that grows with the corpus, sorted and stored a pass of whole runs at a time.
    `counted`: the rows whose number per run sizes the passes (default `query`'s own; a
    grouped query names the rows it groups, so counting does not group them all)."""

    query: str
    order: str
    runs: tuple[str, ...] = ("generator", "version")
    counted: str | None = None

    def __post_init__(self) -> None:
        if [c.strip() for c in self.order.split(",")][: len(self.runs)] != list(self.runs):
            raise ValueError(f"order {self.order!r} must begin with the runs {self.runs}")


def _create_table(
    con: duckdb.DuckDBPyConnection, name: str, query: str | RunSorted, scratch: Path
) -> None:
    """Store `query`'s rows as table `name`, in its order, within `duckdb.memory_limit`.

    Through Parquet files with small row groups: sorting straight into a table holds a
    whole row group of the table (122,880 rows) beside the sort. A `RunSorted` query is
    sorted a pass of runs at a time (`run_conditions`), the passes appended in order."""
    if isinstance(query, str):
        parts = [scratch / f"{name}.parquet"]
        con.execute(f"COPY ({query}) TO {sql_string(str(parts[0]))} {SCRATCH_FORMAT}")
    else:
        conditions = run_conditions(con, query.counted or query.query, query.runs)
        parts = sorted_parts(con, query.query, query.order, conditions, scratch, name)
    for index, part in enumerate(parts):
        rows = f"SELECT * FROM read_parquet({parquet_list([part])})"
        con.execute(f"INSERT INTO {name} {rows}" if index else f"CREATE TABLE {name} AS {rows}")
        part.unlink()


def _setup_sql(
    scores_glob: str, scratch: Path, specs: Sequence[MetricSpec] = BUILTIN_METRICS
) -> list[str]:
    """Temp objects each table query builds on (nothing here is stored in the database;
    those that grow with the corpus are Parquet files in `scratch`, see `_scratch_view`)."""
    expressions = ", ".join(
        f"({sql_string(name)}, {order})" for order, name in enumerate(EXPRESSIONS)
    )
    small_t = ", ".join(f"{t!r}" for t in _T975_SMALL_DF)
    z = f"{_Z975!r}::DOUBLE"  # a bare literal is DECIMAL and overflows in z^9
    cornish_fisher = (
        f"{z} + ({z}^3 + {z}) / (4 * df) + (5 * {z}^5 + 16 * {z}^3 + 3 * {z}) / (96 * df^2)"
        f" + (3 * {z}^7 + 19 * {z}^5 + 17 * {z}^3 - 15 * {z}) / (384 * df^3)"
        f" + (79 * {z}^9 + 776 * {z}^7 + 1482 * {z}^5 - 1920 * {z}^3 - 945 * {z})"
        f" / (92160 * df^4)"
    )
    producers = ",\n".join(
        f"bool_or({' OR '.join(f'{m.column} IS NOT NULL' for m in metrics)}) AS {table}"
        for table, metrics in tabled(specs).items()
    )
    return [
        f"""CREATE TEMP TABLE expression_order AS
            SELECT * FROM (VALUES {expressions}) AS t(expression, expression_order)""",
        f"""CREATE TEMP MACRO t975(df) AS CASE
              WHEN df IS NULL OR df < 1 THEN NULL
              WHEN df <= {len(_T975_SMALL_DF)} THEN list_extract([{small_t}]::DOUBLE[], df::BIGINT)
              ELSE {cornish_fisher} END""",
        "CREATE TEMP MACRO ci_half(sd, n) AS t975(n - 1) * sd / sqrt(n)",
        # descriptors are large and unused here: leave them in the files.
        f"""CREATE TEMP VIEW scores AS
            SELECT * EXCLUDE (descriptor, impostor_ids, impostor_distances)
            FROM read_parquet({sql_string(scores_glob)},
                hive_partitioning = false, union_by_name = true)""",
        *_scratch_view(
            "subjects",
            f"""SELECT generator, version, subject,
                   coalesce(any_value(subject_gender), {sql_string(UNKNOWN_GENDER)})
                       AS subject_gender
                FROM scores GROUP BY generator, version, subject""",
            scratch,
        ),
        """CREATE TEMP TABLE runs AS SELECT DISTINCT scorer, generator, version FROM scores""",
        # One row per image and scorer: every metric as DOUBLE, reference-relative ones
        # nulled on neutral rows, derived ones computed.
        *_scratch_view(
            "scored",
            f"""SELECT s.scorer, s.scorer_version, s.generator, s.version, s.subject,
                   j.subject_gender, s.expression, s.replicate, s.face_found, s.top1,
                   {", ".join(_value_sql(spec) for spec in specs)}
                FROM scores s JOIN subjects j USING (generator, version, subject)""",
            scratch,
        ),
        # Which study tables a scorer belongs in, from what it filled (no registry needed).
        f"""CREATE TEMP TABLE producers AS
            SELECT scorer{"," if producers else ""} {producers}
            FROM scored GROUP BY scorer""",
    ]


def _stats(spec: MetricSpec, source: str | None = None) -> str:
    """n, mean (share for an outcome) and 95% t-interval of a metric, as SELECT items."""
    column, name = source or spec.column, spec.column
    items = [
        f"count({column}) AS n_{name}",
        f"avg({column}) AS {spec.mean_name}",
        f"avg({column}) - ci_half(stddev_samp({column}), count({column})) AS ci95_low_{name}",
        f"avg({column}) + ci_half(stddev_samp({column}), count({column})) AS ci95_high_{name}",
    ]
    # filled by the bootstrap (exprbench.table_intervals) once the table exists
    items += [f"NULL::DOUBLE AS {BOOT_LOW}_{name}", f"NULL::DOUBLE AS {BOOT_HIGH}_{name}"]
    if spec.abs_mean:
        items.append(f"avg(abs({column})) AS mean_abs_{name}")
    return ", ".join(items)


def _stat_columns(spec: MetricSpec) -> list[str]:
    names = [f"n_{spec.column}", spec.mean_name, f"ci95_low_{spec.column}"]
    names.append(f"ci95_high_{spec.column}")
    names += [f"{BOOT_LOW}_{spec.column}", f"{BOOT_HIGH}_{spec.column}"]
    if spec.abs_mean:
        names.append(f"mean_abs_{spec.column}")
    return names


_CELL_KEYS = "scorer, generator, version, subject_gender, expression"
_CELL_ORDER = "scorer, generator, version, subject_gender, expression_order"
_CELL_FACTS = "n_subjects, n_missing, n_images, n_faces"


def _leaderboard_value(spec: MetricSpec) -> tuple[str, str | None]:
    """(value, condition or None) a leaderboard entry averages, on a `scored` row `s`."""
    board = spec.leaderboard
    assert board is not None
    value = f"abs(s.{spec.column})" if board.statistic == "mean_abs" else f"s.{spec.column}"
    scope = None if board.include_neutral else f"s.expression <> {sql_string(NEUTRAL)}"
    return value, scope


def _leaderboard_item(spec: MetricSpec) -> str:
    assert spec.leaderboard is not None
    value, scope = _leaderboard_value(spec)
    where = "" if scope is None else f" FILTER (WHERE {scope})"
    return f"avg({value}){where} AS {spec.leaderboard.column}"


def run_statistics(specs: Sequence[MetricSpec]) -> list[tuple[str, MetricSpec]]:
    """(statistic name, spec) of each row kind in `run_intervals`, in spec order.

    A leaderboard entry under its leaderboard column; every other study metric (one with
    a `table`) as its plain mean, `mean_<c>` or `share_<c>`.
    """
    named: list[tuple[str, MetricSpec]] = []
    for spec in specs:
        if spec.leaderboard is not None:
            named.append((spec.leaderboard.column, spec))
        elif spec.table is not None:
            named.append((spec.mean_name, spec))
    return named


def _run_value(spec: MetricSpec) -> tuple[str, str | None]:
    """(value, condition or None) of a `run_intervals` statistic on a `scored` row `s`."""
    if spec.leaderboard is not None:
        return _leaderboard_value(spec)
    return f"s.{spec.column}", None


def interval_sources(specs: Sequence[MetricSpec]) -> dict[str, IntervalSource]:
    """Table -> the per-image values its bootstrap intervals resample (see `table_sql`)."""
    cell_metrics = [spec for metrics in tabled(specs).values() for spec in metrics]
    keys = tuple(k.strip() for k in _CELL_KEYS.split(","))
    values = ", ".join(f"{spec.column} AS v{i}" for i, spec in enumerate(cell_metrics))
    sources = {
        "cells": IntervalSource(
            keys,
            f"SELECT {_CELL_KEYS}, subject{', ' if values else ''}{values} FROM scored",
            tuple(spec.column for spec in cell_metrics),
        )
    }
    for spec in specs:
        if spec.plot:
            sources[f"{spec.column}_by_expression"] = IntervalSource(
                ("scorer", "generator", "version", "expression"),
                f"""SELECT scorer, generator, version, expression, subject,
                       {spec.column} AS v0 FROM scored WHERE {spec.column} IS NOT NULL""",
                (spec.column,),
            )
    statistics = run_statistics(specs)
    run_values = []
    for i, (_, spec) in enumerate(statistics):
        value, scope = _run_value(spec)
        run_values.append(f"CASE WHEN {scope or 'true'} THEN ({value})::DOUBLE END AS v{i}")
    sources["run_intervals"] = IntervalSource(
        ("scorer", "generator", "version"),
        f"SELECT s.scorer, s.generator, s.version, s.subject, s.expression"
        f"{''.join(f', {v}' for v in run_values)} FROM scored s",
        tuple(name for name, _ in statistics),
        long_column="statistic",
    )
    return sources


SUBJECT_CELLS = "subject_cells"
# tables with a row per image or per subject x expression: left in the database by
# `build_tables`, read from it when asked for
STORED_TABLES: tuple[str, ...] = (*PER_IMAGE_TABLES, SUBJECT_CELLS)


def subject_cells_query(run: IntervalSource) -> RunSorted:
    """`subject_cells`: per scorer x generator/version x subject x expression, the mean
    of each run statistic over that cell's images (what the report's paired comparison
    of two runs pairs up; named like `run_intervals`' statistics). Grouped a pass of runs
    at a time: one GROUP BY over every cell holds all their running sums at once."""
    means = "".join(f", avg(v{i}) AS {name}" for i, name in enumerate(run.stems))
    return RunSorted(
        f"""SELECT scorer, generator, version, subject, expression{means}
            FROM ({run.sql}) GROUP BY ALL""",
        "scorer, generator, version, subject, expression",
        runs=("scorer", "generator", "version"),
        counted=run.sql,
    )


def _run_intervals_sql(specs: Sequence[MetricSpec]) -> str:
    """n, mean, sd and 95% interval per scorer x generator x version of each statistic."""
    parts = []
    for order, (name, spec) in enumerate(run_statistics(specs)):
        value, scope = _run_value(spec)
        parts.append(
            f"""SELECT s.scorer, s.generator, s.version, {sql_string(spec.column)} AS metric,
                   {sql_string(name)} AS statistic, {order} AS statistic_order,
                   count(v) AS n, avg(v) AS mean, stddev_samp(v) AS sd,
                   avg(v) - ci_half(stddev_samp(v), count(v)) AS ci95_low,
                   avg(v) + ci_half(stddev_samp(v), count(v)) AS ci95_high,
                   NULL::DOUBLE AS {BOOT_LOW}, NULL::DOUBLE AS {BOOT_HIGH}
            FROM (SELECT s.*, ({value})::DOUBLE AS v FROM scored s
                  {"" if scope is None else f"WHERE {scope}"}) s
            GROUP BY s.scorer, s.generator, s.version HAVING count(v) > 0"""
        )
    if not parts:  # no study metric at all: an empty table with the same columns
        parts.append(
            """SELECT NULL::VARCHAR AS scorer, NULL::VARCHAR AS generator,
                   NULL::VARCHAR AS version, NULL::VARCHAR AS metric,
                   NULL::VARCHAR AS statistic, 0 AS statistic_order, 0::BIGINT AS n,
                   NULL::DOUBLE AS mean, NULL::DOUBLE AS sd, NULL::DOUBLE AS ci95_low,
                   NULL::DOUBLE AS ci95_high, NULL::DOUBLE AS boot95_low,
                   NULL::DOUBLE AS boot95_high
            WHERE false"""
        )
    union = "\n            UNION ALL\n            ".join(parts)
    return f"""
        SELECT * EXCLUDE (statistic_order) FROM ({union})
        ORDER BY scorer, generator, version, statistic_order"""


def table_sql(specs: Sequence[MetricSpec] = BUILTIN_METRICS) -> dict[str, str]:
    """name -> query for every table, generated from the metric specs, in build order."""
    tables = tabled(specs)
    cell_metrics = [spec for metrics in tables.values() for spec in metrics]
    counts = ["n_images", "n_faces", *(f"n_{spec.column}" for spec in cell_metrics)]
    queries: dict[str, str] = {
        "missing_cells": """
        SELECT s.generator, s.version, s.subject, s.subject_gender, e.expression
        FROM subjects s CROSS JOIN expression_order e
        WHERE NOT EXISTS (
            SELECT 1 FROM scores p
            WHERE p.generator = s.generator AND p.version = s.version
              AND p.subject = s.subject AND p.expression = e.expression)
        ORDER BY s.generator, s.version, s.subject, e.expression_order""",
        # Full grid, so a cell nobody produced is a row with n_images = 0 and NULL statistics.
        "cells": f"""
        WITH grid AS (
            SELECT r.scorer, r.generator, r.version, g.subject_gender, e.expression,
                   e.expression_order
            FROM runs r
            CROSS JOIN (SELECT DISTINCT subject_gender FROM subjects) g
            CROSS JOIN expression_order e),
        expected AS (
            SELECT generator, version, subject_gender, count(*) AS n_subjects
            FROM subjects GROUP BY ALL),
        missing AS (
            SELECT generator, version, subject_gender, expression, count(*) AS n_missing
            FROM missing_cells GROUP BY ALL),
        measured AS (
            SELECT {_CELL_KEYS},
                   count(*) AS n_images,
                   count_if(face_found)::BIGINT AS n_faces
                   {"".join(f", {_stats(spec)}" for spec in cell_metrics)}
            FROM scored GROUP BY ALL)
        SELECT grid.scorer, grid.generator, grid.version, grid.subject_gender,
               grid.expression, grid.expression_order,
               coalesce(expected.n_subjects, 0) AS n_subjects,
               coalesce(missing.n_missing, 0) AS n_missing,
               {", ".join(f"coalesce(measured.{n}, 0) AS {n}" for n in counts)},
               measured.* EXCLUDE ({_CELL_KEYS}, {", ".join(counts)})
        FROM grid
        LEFT JOIN expected USING (generator, version, subject_gender)
        LEFT JOIN missing USING (generator, version, subject_gender, expression)
        LEFT JOIN measured USING (scorer, generator, version, subject_gender, expression)
        ORDER BY {_CELL_ORDER}""",
    }
    # One study table per `table` the specs name. A table of reference-relative measures
    # only (identity, perceptual) has no neutral column: the neutral is the reference.
    for name, metrics in tables.items():
        only_relative = all(spec.relative_to_neutral for spec in metrics)
        columns = ", ".join(c for spec in metrics for c in _stat_columns(spec))
        neutral = f"AND expression <> {sql_string(NEUTRAL)}" if only_relative else ""
        queries[name] = f"""
        SELECT {_CELL_KEYS}, {_CELL_FACTS}, {columns}
        FROM cells WHERE scorer IN (SELECT scorer FROM producers WHERE {name}) {neutral}
        ORDER BY {_CELL_ORDER}"""
    # Requested vs predicted; a pair that never happened has no row (a true zero count).
    queries["confusion"] = """
        SELECT c.scorer, c.generator, c.version, c.expression, c.top1, c.n,
               c.n / sum(c.n) OVER (PARTITION BY c.scorer, c.generator, c.version,
                                                 c.expression) AS share
        FROM (SELECT scorer, generator, version, expression, top1, count(*) AS n
              FROM scored WHERE top1 IS NOT NULL GROUP BY ALL) c
        LEFT JOIN expression_order r ON r.expression = c.expression
        LEFT JOIN expression_order p ON p.expression = c.top1
        ORDER BY c.scorer, c.generator, c.version, r.expression_order NULLS LAST,
                 p.expression_order NULLS LAST, c.top1"""
    board = [spec for spec in specs if spec.leaderboard is not None]
    ranked = next((spec for spec in board if spec.leaderboard and spec.leaderboard.rank), None)
    rank = ""
    if ranked is not None and ranked.leaderboard is not None:
        direction = "ASC" if ranked.higher_is_better is False else "DESC"
        rank = f"{ranked.leaderboard.column} {direction} NULLS LAST, "
    queries["leaderboard"] = f"""
        WITH missing AS (
            SELECT generator, version, count(*) AS n_missing_cells
            FROM missing_cells GROUP BY ALL),
        expected AS (
            SELECT generator, version, count(*) AS n_subjects FROM subjects GROUP BY ALL)
        SELECT s.scorer, string_agg(DISTINCT s.scorer_version, ',') AS scorer_version,
               s.generator, s.version,
               {"".join(f"{_leaderboard_item(spec)}, " for spec in board)}
               count(*) AS n_images,
               count_if(s.face_found)::BIGINT AS n_faces,
               count_if(NOT s.face_found)::BIGINT AS n_no_face,
               any_value(e.n_subjects) AS n_subjects,
               coalesce(any_value(m.n_missing_cells), 0) AS n_missing_cells
        FROM scored s
        JOIN expected e USING (generator, version)
        LEFT JOIN missing m USING (generator, version)
        GROUP BY s.scorer, s.generator, s.version
        ORDER BY s.scorer, {rank}s.generator, s.version"""
    queries["run_intervals"] = _run_intervals_sql(specs)
    # For plots: both genders pooled; cells without any value are absent.
    for spec in specs:
        if spec.plot:
            queries[f"{spec.column}_by_expression"] = f"""
        SELECT s.scorer, s.generator, s.version,
               s.generator || ' ' || s.version AS generator_version,
               s.expression, {_stats(spec, f"s.{spec.column}")}
        FROM scored s JOIN expression_order e USING (expression)
        WHERE s.{spec.column} IS NOT NULL
        GROUP BY s.scorer, s.generator, s.version, s.expression, e.expression_order
        ORDER BY s.scorer, s.generator, s.version, e.expression_order"""
    return queries


# The judgement tables (build_judgement_tables), built after the study tables.
JUDGEMENT_TABLE_NAMES: tuple[str, ...] = (
    "image_agreement",
    "agreement",
    "weighted_expression",
    "confusion_summary",
    "gender_agreement",
    "gender_runs",
)
CSV_BATCH_ROWS = 16_384
# the built-in metrics' tables, in order, then the judgements', then identity against impostors
TABLE_NAMES: tuple[str, ...] = (
    *table_sql(),
    *JUDGEMENT_TABLE_NAMES,
    SUBJECT_CELLS,
    *IDENTITY_TABLES,
)


class NoScoresError(FileNotFoundError):
    """The scores glob matched no Parquet file."""


def scores_specs(scores_glob: str) -> tuple[MetricSpec, ...]:
    """The metric specs carried by the scores files the glob matches (they must agree).

    A file without specs in its metadata (written by another tool) is read with the
    built-in metrics' specs, and must then have their columns.
    """
    files = sorted(glob.glob(scores_glob, recursive=True))
    if not files:
        raise NoScoresError(f"no scores Parquet files match {scores_glob!r}")

    def specs_of(path: str) -> tuple[MetricSpec, ...]:
        schema = pq.read_schema(path)
        if METRICS_KEY not in (schema.metadata or {}):
            return BUILTIN_METRICS
        return metric_specs(schema, path)

    try:
        return merge_specs(specs_of(f) for f in files)
    except ValueError as error:
        raise ValueError(f"{scores_glob}: scores files disagree on a metric: {error}") from error


def _check_columns(
    con: duckdb.DuckDBPyConnection, scores_glob: str, specs: Sequence[MetricSpec]
) -> None:
    described = con.sql(
        f"DESCRIBE SELECT * FROM read_parquet({sql_string(scores_glob)}, "
        "hive_partitioning = false, union_by_name = true)"
    ).fetchall()
    present = {row[0] for row in described}
    missing = [name for name in scores_schema(specs).names if name not in present]
    if missing:
        raise ValueError(f"{scores_glob}: scores files lack columns {missing}")


def _build(
    con: duckdb.DuckDBPyConnection,
    scores_glob: str,
    uncertainty: Uncertainty | None = None,
    *,
    scratch: Path,
    per_image: bool = True,
) -> dict[str, pa.Table]:
    """Build every table in `con`; return them, less those that grow with the corpus
    (STORED_TABLES: the per-image ones, checked in batches, and subject_cells, which has
    nothing to check) unless `per_image`: those are left in `con`. `scratch`: a folder
    for the `scored` file (see `_setup_sql`), removed by the caller."""
    specs = scores_specs(scores_glob)
    try:
        _check_columns(con, scores_glob, specs)
    except duckdb.IOException as error:
        raise NoScoresError(f"no scores Parquet files match {scores_glob!r}: {error}") from error
    for statement in _setup_sql(scores_glob, scratch, specs):
        con.execute(statement)
    tables = {}
    sources = interval_sources(specs)
    for name, query in table_sql(specs).items():
        _create_table(con, name, query, scratch)
        if uncertainty is not None and name in sources:
            fill_intervals(con, name, sources[name], seed=uncertainty[0], resamples=uncertainty[1])
    _create_table(con, SUBJECT_CELLS, subject_cells_query(sources["run_intervals"]), scratch)
    for name, table in identity_tables(scores_glob, con).items():
        con.register("identity_source", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM identity_source")
        con.unregister("identity_source")
    add_leaderboard_auc(con)
    for name in [*table_sql(specs), SUBJECT_CELLS, *IDENTITY_TABLES]:
        if per_image or name not in STORED_TABLES:
            tables[name] = con.sql(f"SELECT * FROM {name}").to_arrow_table()
    tables.update(
        build_judgement_tables(
            con, scores_declared(scores_glob), scratch=scratch, per_image=per_image
        )
    )
    check_tables(tables)  # intervals ordered, AUCs and rates in [0, 1]
    return tables


def compute_tables(
    scores_glob: str,
    uncertainty: Uncertainty | None = None,
    bounds: DuckdbSettings = DEFAULT_BOUNDS,
) -> dict[str, pa.Table]:
    """All tables, in memory (no file written outside a temporary folder); DuckDB works
    within `bounds`."""
    with (
        tempfile.TemporaryDirectory(prefix="exprbench-aggregate-") as scratch,
        connect(bounds=bounds, spill=Path(scratch) / "spill") as con,
    ):
        return _build(con, scores_glob, uncertainty, scratch=Path(scratch))


class StoredTables(Mapping[str, pa.Table]):
    """Every table by name: the small ones in memory, those that grow with the corpus
    (STORED_TABLES) read from the database only when asked for."""

    def __init__(
        self, tables: Mapping[str, pa.Table], database: Path, bounds: DuckdbSettings
    ) -> None:
        self._tables = dict(tables)
        self._database = database
        self._bounds = bounds
        self._names = [*tables, *STORED_TABLES]

    def __getitem__(self, name: str) -> pa.Table:
        if name in self._tables:
            return self._tables[name]
        if name not in self._names:
            raise KeyError(name)
        with connect(self._database, self._bounds, read_only=True) as con:
            return con.sql(f"SELECT * FROM {name}").to_arrow_table()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def build_tables(
    scores: str | Path,
    database: Path,
    csv_dir: Path,
    uncertainty: Uncertainty | None = None,
    bounds: DuckdbSettings = DEFAULT_BOUNDS,
) -> StoredTables:
    """Build every table into `database` (DuckDB file) and `csv_dir/<name>.csv`; return
    them (those that grow with the corpus, STORED_TABLES, are read from `database` when
    asked for).

    Bounded memory: DuckDB works within `bounds` and spills to a folder beside the
    database; the CSVs are written from the database in batches. Python holds the small
    per-cell/per-run tables only (and, for the bootstrap and identity, one group or one
    generator/version at a time).

    `scores` is a glob of scores Parquet files (str), or exactly one file (Path): then only
    that file is read, whatever else lies beside it. `uncertainty` (seed, resamples) fills
    the bootstrap intervals (`boot95_*`); None leaves them NULL. Both outputs are replaced
    atomically: built under temporary names beside them, then renamed.
    """
    if isinstance(scores, Path):
        if not scores.is_file():
            raise NoScoresError(f"{scores}: missing; run the score stage first")
        if glob.has_magic(str(scores)):
            raise ValueError(
                f"{scores}: the path contains glob characters (*?[); DuckDB would read it "
                "as a pattern. Move the scores to a path without them"
            )
    scores_glob = str(scores)
    database.parent.mkdir(parents=True, exist_ok=True)
    # A private folder beside the target: same filesystem for the rename, and room for
    # DuckDB's .wal file, which it may create next to the database while building.
    staging = Path(tempfile.mkdtemp(prefix=f".{database.name}.", dir=database.parent))
    try:
        tmp_db = staging / database.name
        with connect(tmp_db, bounds, spill=staging / "spill") as con:
            tables = _build(con, scores_glob, uncertainty, scratch=staging, per_image=False)
            con.execute("CHECKPOINT")
            write_csvs(_table_readers(con, [*tables, *STORED_TABLES]), csv_dir)
        os.replace(tmp_db, database)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return StoredTables(tables, database, bounds)


def table_counts(database: Path) -> dict[str, int | float | str]:
    """Rows of every table in the aggregate's database."""
    with connect(database, read_only=True) as con:
        names = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
        return {
            name: int(con.sql(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]) for name in names
        }


def _table_readers(
    con: duckdb.DuckDBPyConnection, names: Iterable[str]
) -> dict[str, Callable[[], pa.RecordBatchReader]]:
    def reader(name: str) -> Callable[[], pa.RecordBatchReader]:
        return lambda: con.sql(f"SELECT * FROM {name}").fetch_arrow_reader(CSV_BATCH_ROWS)

    return {name: reader(name) for name in names}


def write_csvs(
    tables: Mapping[str, pa.Table | Callable[[], pa.RecordBatchReader]], csv_dir: Path
) -> list[Path]:
    """Write `<name>.csv` for each table (or batch reader) into `csv_dir`, swapping the
    whole folder in."""
    csv_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{csv_dir.name}.", dir=csv_dir.parent))
    try:
        for name, table in tables.items():
            # NULL is written as an empty field: a missing cell never reads back as 0.
            if isinstance(table, pa.Table):
                pacsv.write_csv(table, staging / f"{name}.csv")
                continue
            with table() as reader, pacsv.CSVWriter(staging / f"{name}.csv", reader.schema) as out:
                for batch in reader:
                    out.write_batch(batch)
        # mkdtemp makes the folder 0700; the tables are meant to be shared like the files.
        os.chmod(staging, 0o777 & ~current_umask())
        retired = None
        if csv_dir.exists():
            retired = csv_dir.with_name(f".{csv_dir.name}.old-{os.getpid()}")
            os.replace(csv_dir, retired)
        os.replace(staging, csv_dir)
        if retired is not None:
            shutil.rmtree(retired)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return [csv_dir / f"{name}.csv" for name in tables]


# --------------------------------------------------------------------------- DVC outputs

# Leaderboard columns that are not headline metrics (the rest are: every spec's
# leaderboard entry, n_images, n_no_face, n_missing_cells).
_NOT_HEADLINE = frozenset(
    {"scorer", "scorer_version", "generator", "version", "n_faces", "n_subjects"}
)


_COUNTS = ("n_images", "n_no_face", "n_missing_cells")


def _headline(leaderboard: pa.Table) -> list[str]:
    return [c for c in leaderboard.column_names if c not in _NOT_HEADLINE]


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def metrics_summary(tables: Mapping[str, pa.Table]) -> dict[str, dict[str, dict[str, Any]]]:
    """{'<generator>/<version>': {scorer: {metric: value}}} from the leaderboard.

    Metrics a scorer does not produce (NULL) are left out rather than written as null.
    """
    board = tables["leaderboard"]
    headline = _headline(board)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for row in board.to_pylist():
        values = {name: row[name] for name in headline if _finite(row[name])}
        run = f"{row['generator']}/{row['version']}"
        summary.setdefault(run, {})[row["scorer"]] = {
            name: round(value, 6) if isinstance(value, float) else value
            for name, value in values.items()
        }
    return summary


def plot_frames(tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Long-format frames for `dvc plots` (x, y and a series column; no NULL rows)."""
    frames = {
        name.removesuffix("_by_expression"): table.select(
            [
                "scorer",
                "generator_version",
                "expression",
                *(c for c in table.column_names if c.startswith(("mean_", "share_", "n_"))),
            ]
        )
        for name, table in tables.items()
        if name.endswith("_by_expression")
    }
    leaderboard = tables["leaderboard"]
    keep = ["scorer", "generator", "version", *_headline(leaderboard)]
    return {**frames, "leaderboard": leaderboard.select(keep)}


def headline_metrics(
    tables: Mapping[str, pa.Table], scorer_order: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The DVC metrics: small and flat, so `dvc exp show` and `dvc metrics diff` stay legible.

    For each leaderboard metric, the value of the first scorer in `scorer_order` that
    measures it (the study's instrument, faceapi, by default), averaged over
    generator/versions (each weighs the same, whatever its number of images); and the
    image counts of that run. The per generator/version values are in `metrics_summary`.
    """
    board = tables["leaderboard"].to_pylist()
    measured: dict[str, dict[str, list[float]]] = {}
    for column in _headline(tables["leaderboard"]):
        if column in _COUNTS:
            continue
        for scorer in scorer_order:
            values = [r[column] for r in board if r["scorer"] == scorer and _finite(r[column])]
            if values:
                measured.setdefault(scorer, {})[column] = values
                break
    headline: dict[str, dict[str, Any]] = {
        scorer: {c: round(sum(v) / len(v), 6) for c, v in columns.items()}
        for scorer, columns in measured.items()
    }
    first = next((s for s in scorer_order if any(r["scorer"] == s for r in board)), None)
    runs = [r for r in board if r["scorer"] == first]
    headline["images"] = {
        "n_runs": len(runs),
        **{count: sum(int(r[count]) for r in runs) for count in _COUNTS},
    }
    return headline


# --------------------------------------------------------------------------- judgements
# Agreement between recognizers, Fleiss' kappa, the lambda-weighted means, confusion
# rates and gender by majority (definitions: exprbench.agreement). Recognizers are the
# scorers whose declared columns include `top1` (expression) or `gender` (gender).


def scores_declared(scores_glob: str) -> dict[str, set[str]] | None:
    """Scorer -> the columns it declared, over the files the glob matches; None when a
    file carries no declaration (written by another tool)."""
    declared: dict[str, set[str]] = {}
    for path in sorted(glob.glob(scores_glob, recursive=True)):
        columns = declared_columns(pq.read_schema(path))
        if columns is None:
            return None
        for scorer, names in columns.items():
            declared.setdefault(scorer, set()).update(names)
    return declared


def _recognizers(
    con: duckdb.DuckDBPyConnection, declared: Mapping[str, set[str]] | None, column: str
) -> list[str]:
    """Scorers declaring `column`; without declarations, those that filled it."""
    if declared is not None:
        return sorted(s for s, columns in declared.items() if column in columns)
    found = con.execute(f"SELECT DISTINCT scorer FROM scores WHERE {column} IS NOT NULL")
    return sorted(row[0] for row in found.fetchall())


def _in_list(names: Sequence[str]) -> str:
    return "(" + ", ".join(sql_string(n) for n in names) + ")" if names else "(NULL)"


def _majority_statements(votes: str, prefix: str, order: str, scratch: Path) -> list[str]:
    """Per image of `votes` (generator, version, path, scorer, label, prob): each label's
    votes and the image's number of raters (`image_raters`) into `<prefix>_tally`, the
    majority label with its tie rule into `<prefix>_majority` (exprbench.agreement.majority).
    A tie is counted by a window (`same_votes`: the image's labels with as many votes),
    not by a subquery per image, which DuckDB joins back to the whole tally at once."""
    return [
        *_scratch_view(
            f"{prefix}_tally",
            f"""SELECT t.*, max(t.votes) OVER (PARTITION BY t.generator, t.version, t.path)
                       AS top_votes,
                   sum(t.votes) OVER (PARTITION BY t.generator, t.version, t.path)
                       AS image_raters,
                   count(*) OVER (PARTITION BY t.generator, t.version, t.path, t.votes)
                       AS same_votes,
                   row_number() OVER (PARTITION BY t.generator, t.version, t.path
                       ORDER BY t.votes DESC, t.confidence DESC, {order}, t.label) AS rk
            FROM (SELECT generator, version, path, label, count(*) AS votes,
                         sum(coalesce(prob, 0)) AS confidence
                  FROM {votes} GROUP BY ALL) t
            LEFT JOIN expression_order o ON o.expression = t.label""",
            scratch,
        ),
        *_scratch_view(
            f"{prefix}_majority",
            f"""SELECT m.generator, m.version, m.path, m.label AS majority,
                   m.votes AS majority_votes, m.same_votes > 1 AS tied
            FROM {prefix}_tally m WHERE m.rk = 1""",
            scratch,
        ),
    ]


def _image_verdicts_sql(
    votes: str, prefix: str, raters: Sequence[str], scratch: Path, extra: str = ""
) -> tuple[list[str], RunSorted]:
    """(statements, query): one row per image with its raters, verdicts, majority and
    agreement rate. Each step is written out before the next reads it (the votes grouped
    per image, then joined with the majority, then sorted): a join feeding an aggregate
    or a sort holds both in memory at once, over `duckdb.memory_limit` at a million rows."""
    # the verdicts as one column per rater joined in rater order: a plain aggregate that
    # spills, where an ordered string_agg holds every image's votes in memory
    verdicts = ", ".join(
        f"max(CASE WHEN scorer = {sql_string(rater)} THEN {sql_string(rater + ': ')}"
        " || label || coalesce(' ' || printf('%.2f', prob), '') END)"
        for rater in sorted(raters)
    )
    statements = _scratch_view(
        f"{prefix}_images",
        f"""SELECT generator, version, subject, expression, replicate, path,
               any_value(subject_gender) AS subject_gender, count(*) AS n_raters,
               {f"concat_ws('; ', {verdicts})" if raters else "NULL::VARCHAR"} AS verdicts
            FROM {votes} GROUP BY generator, version, subject, expression, replicate, path""",
        scratch,
    )
    statements += _scratch_view(
        f"{prefix}_verdicts",
        f"""SELECT i.generator, i.version, i.subject, i.expression, i.replicate, i.path,
               i.subject_gender, i.n_raters, i.verdicts, m.majority, m.majority_votes,
               m.tied, m.majority_votes / i.n_raters AS agreement_rate,
               m.majority_votes = i.n_raters AS unanimous
               {extra}
            FROM {prefix}_images i JOIN {prefix}_majority m USING (generator, version, path)""",
        scratch,
    )
    query = RunSorted(
        f"SELECT * FROM {prefix}_verdicts", "generator, version, subject, expression, replicate"
    )
    return statements, query


def _top1_of_six_sql() -> str:
    six = [e for e in EXPRESSIONS if e != NEUTRAL]
    best = f"greatest({', '.join(f'p_{e}' for e in six)})"
    cases = " ".join(f"WHEN p_{e} = {best} THEN {sql_string(e)}" for e in six)
    return f"CASE {cases} END"


def _scr_sql(a: str, b: str) -> str:
    """Structural confusion of the pair (a, b): images requested as either, top-1 the other."""
    qa, qb = sql_string(a), sql_string(b)
    confused = f"(expression = {qa} AND top1 = {qb} OR expression = {qb} AND top1 = {qa})"
    return f"avg({confused}::DOUBLE) FILTER (WHERE expression IN ({qa}, {qb})) AS scr_{a}_{b}"


def _judgement_queries(
    expression_raters: Sequence[str],
    gender_raters: Sequence[str],
    columns: set[str],
    scratch: Path,
) -> tuple[list[str], dict[str, str | RunSorted]]:
    """(temp statements, name -> query of each judgement table)."""
    statements = [
        *_scratch_view(
            "votes",
            f"""SELECT s.generator, s.version, s.subject, j.subject_gender, s.expression,
                   s.replicate, s.path, s.scorer, s.top1 AS label, s.top1_prob AS prob
            FROM scores s JOIN subjects j USING (generator, version, subject)
            WHERE s.scorer IN {_in_list(expression_raters)} AND s.top1 IS NOT NULL""",
            scratch,
        ),
        *_majority_statements("votes", "expr", "coalesce(o.expression_order, 99)", scratch),
        *_scratch_view(
            "gender_votes",
            f"""SELECT s.generator, s.version, s.subject, j.subject_gender, s.expression,
                   s.replicate, s.path, s.scorer, s.gender AS label, s.gender_prob AS prob
            FROM scores s JOIN subjects j USING (generator, version, subject)
            WHERE s.scorer IN {_in_list(gender_raters)} AND s.gender IS NOT NULL""",
            scratch,
        ),
        *_majority_statements("gender_votes", "gender", "0", scratch),
    ]
    image_statements, image_query = _image_verdicts_sql(
        "votes",
        "expr",
        expression_raters,
        scratch,
        ", m.majority = i.expression AS majority_is_requested",
    )
    gender_statements, gender_query = _image_verdicts_sql(
        "gender_votes",
        "gender",
        gender_raters,
        scratch,
        ", CASE WHEN i.subject_gender IN ('female', 'male') THEN "
        "m.majority = i.subject_gender END AS majority_matches",
    )
    statements += [*image_statements, *gender_statements]
    queries: dict[str, str | RunSorted] = {
        "image_agreement": image_query,
        # Fleiss' kappa over the images every recognizer of the run labelled.
        "agreement": """
        WITH raters AS (
            SELECT generator, version, count(DISTINCT scorer) AS n_raters,
                   string_agg(DISTINCT scorer, ', ' ORDER BY scorer) AS recognizers
            FROM votes GROUP BY ALL),
        cells AS (  -- the label counts of the images every recognizer labelled
            SELECT t.generator, t.version, t.path, t.label, t.votes AS n_ij
            FROM expr_tally t JOIN raters r USING (generator, version)
            WHERE t.image_raters = r.n_raters),
        per_image AS (
            SELECT c.generator, c.version, c.path,
                   (sum(c.n_ij * c.n_ij) - any_value(r.n_raters))::DOUBLE
                   / (any_value(r.n_raters) * (any_value(r.n_raters) - 1)) AS p_i
            FROM cells c JOIN raters r USING (generator, version)
            WHERE r.n_raters >= 2 GROUP BY ALL),
        p_bar AS (
            SELECT generator, version, avg(p_i) AS p_bar, count(*) AS n
            FROM per_image GROUP BY ALL),
        p_e AS (
            SELECT generator, version, sum(p_j * p_j) AS p_e FROM (
                SELECT c.generator, c.version, c.label,
                       sum(c.n_ij)::DOUBLE / (any_value(b.n) * any_value(r.n_raters)) AS p_j
                FROM cells c JOIN p_bar b USING (generator, version)
                JOIN raters r USING (generator, version) GROUP BY ALL)
            GROUP BY ALL),
        counts AS (
            SELECT i.generator, i.version, count(*) AS n_labelled,
                   count(*) FILTER (WHERE i.n_raters = r.n_raters) AS n_images,
                   avg(i.agreement_rate) FILTER (WHERE i.n_raters = r.n_raters)
                       AS mean_agreement_rate,
                   avg(i.unanimous::DOUBLE) FILTER (WHERE i.n_raters = r.n_raters)
                       AS share_unanimous,
                   count(*) FILTER (WHERE i.n_raters = r.n_raters AND NOT i.unanimous)
                       AS n_disagree,
                   count(*) FILTER (WHERE i.n_raters = r.n_raters AND i.tied) AS n_tied
            FROM image_agreement i JOIN raters r USING (generator, version) GROUP BY ALL)
        SELECT r.generator, r.version, r.recognizers, r.n_raters, c.n_images,
               c.n_labelled - c.n_images AS n_images_partial,
               CASE WHEN r.n_raters >= 2 AND abs(1 - e.p_e) > 1e-12
                    THEN (b.p_bar - e.p_e) / (1 - e.p_e) END AS fleiss_kappa,
               c.mean_agreement_rate, c.share_unanimous, c.n_disagree, c.n_tied
        FROM raters r JOIN counts c USING (generator, version)
        LEFT JOIN p_bar b USING (generator, version)
        LEFT JOIN p_e e USING (generator, version)
        ORDER BY r.generator, r.version""",
        "confusion_summary": f"""
        SELECT *, list_avg([{", ".join(f"scr_{a}_{b}" for a, b in SCR_PAIRS)}]) AS mscr
        FROM (
            SELECT scorer, generator, version,
                   count(*) AS n_7, avg((top1 = expression)::DOUBLE) AS accuracy_7,
                   count(*) FILTER (WHERE expression <> {sql_string(NEUTRAL)}) AS n_6,
                   avg(({_top1_of_six_sql()} = expression)::DOUBLE)
                       FILTER (WHERE expression <> {sql_string(NEUTRAL)}) AS accuracy_6,
                   {", ".join(_scr_sql(a, b) for a, b in SCR_PAIRS)}
            FROM scores WHERE top1 IS NOT NULL AND scorer IN {_in_list(expression_raters)}
            GROUP BY scorer, generator, version)
        ORDER BY scorer, generator, version""",
        "gender_agreement": gender_query,
        "gender_runs": """
        SELECT g.generator, g.version,
               (SELECT string_agg(DISTINCT scorer, ', ' ORDER BY scorer) FROM gender_votes v
                WHERE v.generator = g.generator AND v.version = g.version) AS recognizers,
               max(g.n_raters) AS n_raters,
               count(*) FILTER (WHERE g.n_raters >= 2) AS n_images,
               count(*) FILTER (WHERE g.n_raters >= 2 AND NOT g.unanimous) AS n_disagree,
               avg((NOT g.unanimous)::DOUBLE) FILTER (WHERE g.n_raters >= 2)
                   AS share_gender_disagree,
               count(g.majority_matches) AS n_with_subject_gender,
               avg(g.majority_matches::DOUBLE) AS gender_majority_match_rate
        FROM gender_agreement g GROUP BY g.generator, g.version
        ORDER BY g.generator, g.version""",
    }
    # scores from before the weighting have no lambda columns: an empty table then
    source = "scores"
    if not {LAMBDA_WEIGHT.column, AMBIGUOUS.column} <= columns:
        source = "(SELECT *, NULL::DOUBLE AS lambda_weight, NULL::BOOLEAN AS ambiguous FROM scores)"
    per = f"""scorer, generator, version, count(target_prob) AS n_target_prob,
           avg(target_prob) AS mean_target_prob,
           sum(lambda_weight * target_prob) / nullif(sum(lambda_weight), 0)
               AS weighted_mean_target_prob,
           avg((top1 = expression)::DOUBLE) AS top1_accuracy,
           sum(lambda_weight * (top1 = expression)::DOUBLE)
               / nullif(sum(lambda_weight), 0) AS weighted_top1_accuracy,
           sum(lambda_weight) AS sum_lambda,
           count_if(ambiguous) AS n_ambiguous, avg(ambiguous::DOUBLE) AS share_ambiguous
    FROM {source} WHERE target_prob IS NOT NULL AND lambda_weight IS NOT NULL"""
    queries["weighted_expression"] = f"""
    SELECT w.* FROM (
        SELECT 'expression' AS scope, expression, {per}
        GROUP BY scorer, generator, version, expression
        UNION ALL
        SELECT 'non-neutral' AS scope, NULL AS expression, {per}
          AND expression <> {sql_string(NEUTRAL)}
        GROUP BY scorer, generator, version) w
    LEFT JOIN expression_order o USING (expression)
    ORDER BY scorer, generator, version, scope, o.expression_order"""
    return statements, queries


def build_judgement_tables(
    con: duckdb.DuckDBPyConnection,
    declared: Mapping[str, set[str]] | None,
    *,
    scratch: Path,
    per_image: bool = True,
) -> dict[str, pa.Table]:
    """The judgement tables, in `con` (after `_setup_sql`) and returned (the per-image
    ones only with `per_image`); each value is checked against its declared range
    (exprbench.judgement_specs.TABLE_METRICS), a per-image table batch by batch."""
    columns = {row[0] for row in con.execute("DESCRIBE scores").fetchall()}
    statements, queries = _judgement_queries(
        _recognizers(con, declared, "top1"),
        _recognizers(con, declared, "gender"),
        columns,
        scratch,
    )
    for statement in statements:
        con.execute(statement)
    tables = {}
    problems: list[str] = []
    for name, query in queries.items():
        _create_table(con, name, query, scratch)
        if per_image or name not in PER_IMAGE_TABLES:
            tables[name] = con.sql(f"SELECT * FROM {name}").to_arrow_table()
            continue
        with con.sql(f"SELECT * FROM {name}").fetch_arrow_reader(CSV_BATCH_ROWS) as reader:
            for batch in reader:
                problems += table_range_violations({name: pa.Table.from_batches([batch])})
    problems += table_range_violations(tables)
    if problems:
        raise ValueError(
            "judgement tables hold values outside their declared ranges (a bug in the "
            "queries or corrupt scores):\n  " + "\n  ".join(problems[:20])
        )
    return tables
