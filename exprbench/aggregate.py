"""Study tables from the scores Parquet files, with DuckDB.

All SQL lives in `_SETUP_SQL` and `TABLE_SQL` below. Conventions every table follows:

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
* Neutral rows are the reference for identity and age drift: their identity and
  age_delta values are excluded everywhere (identity tables have no neutral column).
* Leaderboard (per scorer x generator x version): mean_target_prob over non-neutral
  images; top1_accuracy over every image with a prediction, neutral included; identity
  and |age_delta| over non-neutral images; gender_match_rate over images with a subject
  gender; n_missing_cells from `missing_cells` (the same for every scorer of a run).
* Files are read with `hive_partitioning=false`: every SCORES row carries its generator
  and version, so directory names are not needed (and cannot retype versions like '10').
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.schema import SCORES

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


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _setup_sql(scores_glob: str) -> list[str]:
    """Temp objects each table query builds on (nothing here is stored in the file)."""
    expressions = ", ".join(
        f"({_sql_string(name)}, {order})" for order, name in enumerate(EXPRESSIONS)
    )
    small_t = ", ".join(f"{t!r}" for t in _T975_SMALL_DF)
    z = f"{_Z975!r}::DOUBLE"  # a bare literal is DECIMAL and overflows in z^9
    cornish_fisher = (
        f"{z} + ({z}^3 + {z}) / (4 * df) + (5 * {z}^5 + 16 * {z}^3 + 3 * {z}) / (96 * df^2)"
        f" + (3 * {z}^7 + 19 * {z}^5 + 17 * {z}^3 - 15 * {z}) / (384 * df^3)"
        f" + (79 * {z}^9 + 776 * {z}^7 + 1482 * {z}^5 - 1920 * {z}^3 - 945 * {z})"
        f" / (92160 * df^4)"
    )
    neutral = _sql_string(NEUTRAL)
    return [
        f"""CREATE TEMP TABLE expression_order AS
            SELECT * FROM (VALUES {expressions}) AS t(expression, expression_order)""",
        f"""CREATE TEMP MACRO t975(df) AS CASE
              WHEN df IS NULL OR df < 1 THEN NULL
              WHEN df <= {len(_T975_SMALL_DF)} THEN list_extract([{small_t}]::DOUBLE[], df::BIGINT)
              ELSE {cornish_fisher} END""",
        "CREATE TEMP MACRO ci_half(sd, n) AS t975(n - 1) * sd / sqrt(n)",
        # descriptors are large and unused here: leave them in the files.
        f"""CREATE TEMP TABLE scores AS
            SELECT * EXCLUDE (descriptor) FROM read_parquet({_sql_string(scores_glob)},
                hive_partitioning = false, union_by_name = true)""",
        f"""CREATE TEMP TABLE subjects AS
            SELECT generator, version, subject,
                   coalesce(any_value(subject_gender), {_sql_string(UNKNOWN_GENDER)})
                       AS subject_gender
            FROM scores GROUP BY generator, version, subject""",
        """CREATE TEMP TABLE runs AS SELECT DISTINCT scorer, generator, version FROM scores""",
        # One row per image and scorer, reference-relative values nulled on neutral rows.
        f"""CREATE TEMP TABLE scored AS
            SELECT s.scorer, s.scorer_version, s.generator, s.version, s.subject,
                   j.subject_gender, s.expression, s.replicate, s.face_found,
                   s.target_prob, s.top1, s.age, s.gender_match::DOUBLE AS gender_match,
                   CASE WHEN s.expression <> {neutral} THEN s.age_delta END AS age_delta,
                   CASE WHEN s.expression <> {neutral} THEN s.identity_similarity END
                       AS identity_similarity,
                   CASE WHEN s.expression <> {neutral} THEN s.same_identity::DOUBLE END
                       AS same_identity,
                   s.brisque, s.niqe, s.piqe,
                   CASE WHEN s.expression <> {neutral} THEN s.stlpips_vgg END AS stlpips_vgg,
                   CASE WHEN s.expression <> {neutral} THEN s.stlpips_alex END AS stlpips_alex
            FROM scores s JOIN subjects j USING (generator, version, subject)""",
        # Which study tables a scorer belongs in, from what it filled (no registry needed).
        """CREATE TEMP TABLE producers AS
            SELECT scorer,
                   bool_or(target_prob IS NOT NULL) AS expression,
                   bool_or(age IS NOT NULL) AS age,
                   bool_or(brisque IS NOT NULL OR piqe IS NOT NULL) AS quality,
                   bool_or(stlpips_vgg IS NOT NULL) AS perceptual,
                   bool_or(identity_similarity IS NOT NULL) AS identity
            FROM scored GROUP BY scorer""",
    ]


def _stats(column: str, label: str | None = None) -> str:
    """n, mean and 95% t-interval of `column` over the group, as SELECT items."""
    name = label or column
    return f"""count({column}) AS n_{name}, avg({column}) AS mean_{name},
        avg({column}) - ci_half(stddev_samp({column}), count({column})) AS ci95_low_{name},
        avg({column}) + ci_half(stddev_samp({column}), count({column})) AS ci95_high_{name}"""


_CELL_KEYS = "scorer, generator, version, subject_gender, expression"
QUALITY_COLUMNS = ("brisque", "niqe", "piqe", "stlpips_vgg", "stlpips_alex")
# Counts of the `measured` CTE below: 0, not NULL, on a grid cell with no image.
_CELL_COUNTS = (
    "n_images",
    "n_faces",
    "n_target_prob",
    "n_age",
    "n_age_delta",
    "n_identity_similarity",
    "n_gender",
    *(f"n_{column}" for column in QUALITY_COLUMNS),
)
_CELL_ORDER = "scorer, generator, version, subject_gender, expression_order"

# name -> query; executed in this order, each stored as a table in the database.
TABLE_SQL: dict[str, str] = {
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
                   count_if(face_found)::BIGINT AS n_faces,
                   {_stats("target_prob")},
                   {_stats("age")},
                   {_stats("age_delta")},
                   avg(abs(age_delta)) AS mean_abs_age_delta,
                   {_stats("identity_similarity")},
                   avg(same_identity) AS share_same_identity,
                   count(gender_match) AS n_gender, avg(gender_match) AS gender_match_rate,
                   {", ".join(_stats(column) for column in QUALITY_COLUMNS)}
            FROM scored GROUP BY ALL)
        SELECT grid.scorer, grid.generator, grid.version, grid.subject_gender,
               grid.expression, grid.expression_order,
               coalesce(expected.n_subjects, 0) AS n_subjects,
               coalesce(missing.n_missing, 0) AS n_missing,
               {", ".join(f"coalesce(measured.{n}, 0) AS {n}" for n in _CELL_COUNTS)},
               measured.* EXCLUDE ({_CELL_KEYS}, {", ".join(_CELL_COUNTS)})
        FROM grid
        LEFT JOIN expected USING (generator, version, subject_gender)
        LEFT JOIN missing USING (generator, version, subject_gender, expression)
        LEFT JOIN measured USING (scorer, generator, version, subject_gender, expression)
        ORDER BY {_CELL_ORDER}""",
    # Study table 1: probability of the requested expression.
    "expression_fidelity": f"""
        SELECT {_CELL_KEYS}, n_subjects, n_missing, n_images, n_faces,
               n_target_prob, mean_target_prob, ci95_low_target_prob, ci95_high_target_prob
        FROM cells WHERE scorer IN (SELECT scorer FROM producers WHERE expression)
        ORDER BY {_CELL_ORDER}""",
    # Study table 2: apparent age and its drift from the subject's neutral image.
    "age": f"""
        SELECT {_CELL_KEYS}, n_subjects, n_missing, n_images, n_faces,
               n_age, mean_age, ci95_low_age, ci95_high_age,
               n_age_delta, mean_age_delta, ci95_low_age_delta, ci95_high_age_delta,
               mean_abs_age_delta
        FROM cells WHERE scorer IN (SELECT scorer FROM producers WHERE age)
        ORDER BY {_CELL_ORDER}""",
    # Study table 3: identity kept relative to the neutral image (no neutral column).
    # Image quality (no-reference, lower is better) of what was scored.
    "quality": f"""
        SELECT {_CELL_KEYS}, n_subjects, n_missing, n_images, n_faces,
               {
        ", ".join(
            f"n_{c}, mean_{c}, ci95_low_{c}, ci95_high_{c}" for c in ("brisque", "niqe", "piqe")
        )
    }
        FROM cells WHERE scorer IN (SELECT scorer FROM producers WHERE quality)
        ORDER BY {_CELL_ORDER}""",
    # ST-LPIPS distance of each expression's aligned face to the neutral's (lower = closer).
    "perceptual": f"""
        SELECT {_CELL_KEYS}, n_subjects, n_missing, n_images, n_faces,
               {
        ", ".join(
            f"n_{c}, mean_{c}, ci95_low_{c}, ci95_high_{c}" for c in ("stlpips_vgg", "stlpips_alex")
        )
    }
        FROM cells WHERE scorer IN (SELECT scorer FROM producers WHERE perceptual)
          AND expression <> {_sql_string(NEUTRAL)}
        ORDER BY {_CELL_ORDER}""",
    "identity": f"""
        SELECT {_CELL_KEYS}, n_subjects, n_missing, n_images, n_faces,
               n_identity_similarity, mean_identity_similarity,
               ci95_low_identity_similarity, ci95_high_identity_similarity,
               share_same_identity
        FROM cells WHERE scorer IN (SELECT scorer FROM producers WHERE identity)
          AND expression <> {_sql_string(NEUTRAL)}
        ORDER BY {_CELL_ORDER}""",
    # Requested vs predicted; a pair that never happened has no row (a true zero count).
    "confusion": """
        SELECT c.scorer, c.generator, c.version, c.expression, c.top1, c.n,
               c.n / sum(c.n) OVER (PARTITION BY c.scorer, c.generator, c.version,
                                                 c.expression) AS share
        FROM (SELECT scorer, generator, version, expression, top1, count(*) AS n
              FROM scored WHERE top1 IS NOT NULL GROUP BY ALL) c
        LEFT JOIN expression_order r ON r.expression = c.expression
        LEFT JOIN expression_order p ON p.expression = c.top1
        ORDER BY c.scorer, c.generator, c.version, r.expression_order NULLS LAST,
                 p.expression_order NULLS LAST, c.top1""",
    "leaderboard": f"""
        WITH missing AS (
            SELECT generator, version, count(*) AS n_missing_cells
            FROM missing_cells GROUP BY ALL),
        expected AS (
            SELECT generator, version, count(*) AS n_subjects FROM subjects GROUP BY ALL)
        SELECT s.scorer, string_agg(DISTINCT s.scorer_version, ',') AS scorer_version,
               s.generator, s.version,
               avg(s.target_prob) FILTER (WHERE s.expression <> {_sql_string(NEUTRAL)})
                   AS mean_target_prob,
               avg((s.top1 = s.expression)::DOUBLE) AS top1_accuracy,
               avg(s.identity_similarity) AS mean_identity_similarity,
               avg(s.same_identity) AS share_same_identity,
               avg(abs(s.age_delta)) AS mean_abs_age_delta,
               avg(s.gender_match) AS gender_match_rate,
               count(*) AS n_images,
               count_if(s.face_found)::BIGINT AS n_faces,
               count_if(NOT s.face_found)::BIGINT AS n_no_face,
               any_value(e.n_subjects) AS n_subjects,
               coalesce(any_value(m.n_missing_cells), 0) AS n_missing_cells
        FROM scored s
        JOIN expected e USING (generator, version)
        LEFT JOIN missing m USING (generator, version)
        GROUP BY s.scorer, s.generator, s.version
        ORDER BY s.scorer, mean_target_prob DESC NULLS LAST, s.generator, s.version""",
    # For plots: both genders pooled; cells without any value are absent.
    "target_prob_by_expression": f"""
        SELECT s.scorer, s.generator, s.version,
               s.generator || ' ' || s.version AS generator_version,
               s.expression, {_stats("s.target_prob", "target_prob")}
        FROM scored s JOIN expression_order e USING (expression)
        WHERE s.target_prob IS NOT NULL
        GROUP BY s.scorer, s.generator, s.version, s.expression, e.expression_order
        ORDER BY s.scorer, s.generator, s.version, e.expression_order""",
}
TABLE_NAMES: tuple[str, ...] = tuple(TABLE_SQL)  # built and stored in this order


class NoScoresError(FileNotFoundError):
    """The scores glob matched no Parquet file."""


def _check_columns(con: duckdb.DuckDBPyConnection, scores_glob: str) -> None:
    described = con.sql(
        f"DESCRIBE SELECT * FROM read_parquet({_sql_string(scores_glob)}, "
        "hive_partitioning = false, union_by_name = true)"
    ).fetchall()
    present = {row[0] for row in described}
    missing = [name for name in SCORES.names if name not in present]
    if missing:
        raise ValueError(f"{scores_glob}: scores files lack SCORES columns {missing}")


def _build(con: duckdb.DuckDBPyConnection, scores_glob: str) -> dict[str, pa.Table]:
    try:
        _check_columns(con, scores_glob)
    except duckdb.IOException as error:
        raise NoScoresError(f"no scores Parquet files match {scores_glob!r}: {error}") from error
    for statement in _setup_sql(scores_glob):
        con.execute(statement)
    tables = {}
    for name in TABLE_NAMES:
        con.execute(f"CREATE TABLE {name} AS {TABLE_SQL[name]}")
        tables[name] = con.sql(f"SELECT * FROM {name}").to_arrow_table()
    return tables


def compute_tables(scores_glob: str) -> dict[str, pa.Table]:
    """All tables, in memory (no files written)."""
    with duckdb.connect() as con:
        return _build(con, scores_glob)


def build_tables(scores_glob: str, database: Path, csv_dir: Path) -> dict[str, pa.Table]:
    """Build every table into `database` (DuckDB file) and `csv_dir/<name>.csv`.

    Both are replaced atomically: built under temporary names beside them, then renamed.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    # A private folder beside the target: same filesystem for the rename, and room for
    # DuckDB's .wal file, which it may create next to the database while building.
    staging = Path(tempfile.mkdtemp(prefix=f".{database.name}.", dir=database.parent))
    try:
        tmp_db = staging / database.name
        with duckdb.connect(str(tmp_db)) as con:
            tables = _build(con, scores_glob)
            con.execute("CHECKPOINT")
        write_csvs(tables, csv_dir)
        os.replace(tmp_db, database)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tables


def write_csvs(tables: Mapping[str, pa.Table], csv_dir: Path) -> list[Path]:
    """Write `<name>.csv` for each table into `csv_dir`, swapping the whole folder in."""
    csv_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{csv_dir.name}.", dir=csv_dir.parent))
    try:
        for name, table in tables.items():
            # NULL is written as an empty field: a missing cell never reads back as 0.
            pacsv.write_csv(table, staging / f"{name}.csv")
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

# Leaderboard columns reported as DVC metrics.
HEADLINE_METRICS: tuple[str, ...] = (
    "mean_target_prob",
    "top1_accuracy",
    "mean_identity_similarity",
    "share_same_identity",
    "mean_abs_age_delta",
    "gender_match_rate",
    "n_images",
    "n_no_face",
    "n_missing_cells",
)


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def metrics_summary(tables: Mapping[str, pa.Table]) -> dict[str, dict[str, dict[str, Any]]]:
    """{'<generator>/<version>': {scorer: {metric: value}}} from the leaderboard.

    Metrics a scorer does not produce (NULL) are left out rather than written as null.
    """
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for row in tables["leaderboard"].to_pylist():
        values = {name: row[name] for name in HEADLINE_METRICS if _finite(row[name])}
        run = f"{row['generator']}/{row['version']}"
        summary.setdefault(run, {})[row["scorer"]] = {
            name: round(value, 6) if isinstance(value, float) else value
            for name, value in values.items()
        }
    return summary


def plot_frames(tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Long-format frames for `dvc plots` (x, y and a series column; no NULL rows)."""
    target = tables["target_prob_by_expression"].select(
        ["scorer", "generator_version", "expression", "mean_target_prob", "n_target_prob"]
    )
    leaderboard = tables["leaderboard"]
    keep = [
        name
        for name in ("scorer", "generator", "version", *HEADLINE_METRICS)
        if name in leaderboard.column_names
    ]
    return {"target_prob": target, "leaderboard": leaderboard.select(keep)}
