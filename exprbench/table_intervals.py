"""Bootstrap intervals written into the aggregate tables (`exprbench.uncertainty` on DuckDB).

The aggregate stage builds each table with NULL `boot95_low*`/`boot95_high*` columns
beside the t-interval; `fill_intervals` computes the seeded hierarchical bootstrap of the
same means from the per-image values (subjects, then images within subjects, resampled
within each table row's group) and writes them in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from exprbench.uncertainty import bootstrap_means, group_rng

BOOT_LOW = "boot95_low"
BOOT_HIGH = "boot95_high"
GROUP_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class IntervalSource:
    """Where a table's bootstrap comes from.

    sql: one row per image with the `keys` columns, `subject` and v0..v{k-1} (the values
    averaged by the table's means, NULL where an image has none); stems: the name of each
    v (the table's columns are boot95_low_<stem>), or, with `long_column`, the value of
    that column on the row that holds the statistic (columns boot95_low / boot95_high).
    """

    keys: tuple[str, ...]
    sql: str
    stems: tuple[str, ...]
    long_column: str | None = None


def _float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _group_rows(
    source: IntervalSource, key: tuple, low: np.ndarray, high: np.ndarray
) -> list[dict]:
    """The interval columns of one group, as rows to match against the table's."""
    base = dict(zip(source.keys, key[1:], strict=True))
    if source.long_column is None:
        row = dict(base)
        for i, stem in enumerate(source.stems):
            row[f"{BOOT_LOW}_{stem}"] = _float(low[i])
            row[f"{BOOT_HIGH}_{stem}"] = _float(high[i])
        return [row]
    return [
        base | {source.long_column: stem, BOOT_LOW: _float(low[i]), BOOT_HIGH: _float(high[i])}
        for i, stem in enumerate(source.stems)
    ]


def _groups(
    con: duckdb.DuckDBPyConnection, table: str, source: IntervalSource
) -> Iterator[tuple[tuple, list, np.ndarray]]:
    """(group key, subjects, values) of each group, one group in memory at a time.

    DuckDB sorts the per-image rows by group (spilling to disk if need be), keeping their
    source order inside a group, so each group's draws are those of an unsorted pass.
    """
    stems = range(len(source.stems))
    keys = ", ".join(source.keys)
    query = f"""SELECT * EXCLUDE (_row) FROM (
                    SELECT *, row_number() OVER () AS _row FROM ({source.sql}))
                ORDER BY {keys}, _row"""
    current: tuple | None = None
    subjects: list = []
    parts: list[np.ndarray] = []
    with con.sql(query).fetch_arrow_reader(GROUP_BATCH_ROWS) as reader:
        for batch in reader:
            columns = [batch.column(k).to_pylist() for k in source.keys]
            batch_keys = [(table, *key) for key in zip(*columns, strict=True)]
            batch_subjects = batch.column("subject").to_pylist()
            values = np.column_stack(
                [
                    batch.column(f"v{i}").cast(pa.float64()).to_numpy(zero_copy_only=False)
                    for i in stems
                ]
            )
            start = 0
            for end in range(1, len(batch_keys) + 1):
                if end < len(batch_keys) and batch_keys[end] == batch_keys[start]:
                    continue
                if batch_keys[start] != current:
                    if current is not None:
                        yield current, subjects, np.concatenate(parts)
                    current, subjects, parts = batch_keys[start], [], []
                subjects += batch_subjects[start:end]
                parts.append(values[start:end])
                start = end
    if current is not None:
        yield current, subjects, np.concatenate(parts)


def fill_intervals(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: IntervalSource,
    *,
    seed: int,
    resamples: int,
) -> int:
    """Compute and store the bootstrap intervals of `table`; returns the groups filled.

    The per-image values stay in DuckDB: they come to Python one group (a table row's
    images) at a time, and only the intervals (one row per group) go back.
    """
    if resamples < 1 or not source.stems:
        return 0
    rows: list[dict] = []
    n_groups = 0
    for key, subjects, values in _groups(con, table, source):
        low, high = bootstrap_means(
            values,
            np.asarray(subjects, dtype=object),
            resamples=resamples,
            rng=group_rng(seed, key),
        )
        rows += _group_rows(source, key, low, high)
        n_groups += 1
    if not rows:
        return 0
    boot = pa.Table.from_pylist(rows)
    match = [*source.keys, *([source.long_column] if source.long_column else [])]
    targets = [c for c in boot.column_names if c not in match]
    con.register("boot_intervals", boot)
    try:
        assignments = ", ".join(f"{c} = b.{c}" for c in targets)
        condition = " AND ".join(f"t.{k} IS NOT DISTINCT FROM b.{k}" for k in match)
        con.execute(
            f"UPDATE {table} AS t SET {assignments} FROM boot_intervals AS b WHERE {condition}"
        )
    finally:
        con.unregister("boot_intervals")
    return n_groups


class IntervalOrderError(ValueError):
    """An aggregate table holds an interval that does not contain its mean, or an AUC or
    rate outside [0, 1]: a bug, never a result to report."""


_TOLERANCE = 1e-9


def check_tables(tables: Mapping[str, pa.Table]) -> None:
    """Every bootstrap and t-interval ordered low <= mean <= high (where all three exist),
    every identity AUC and rate in [0, 1]; raises IntervalOrderError naming the first
    offending rows."""
    problems: list[str] = []
    for name, table in tables.items():
        columns = set(table.column_names)
        pairs = []
        for column in table.column_names:
            for prefix in ("boot95_low", "ci95_low"):
                if column == prefix or column.startswith(f"{prefix}_"):
                    stem = column.removeprefix(prefix)
                    high = prefix.replace("low", "high") + stem
                    means = [f"mean{stem}", f"share{stem}"] if stem else ["mean"]
                    mean = next((m for m in means if m in columns), None)
                    if high in columns and mean is not None:
                        pairs.append((column, mean, high))
        rows = table.to_pylist() if pairs else []
        for row in rows:
            for low, mean, high in pairs:
                values = (row[low], row[mean], row[high])
                if any(v is None or v != v for v in values):
                    continue
                if not values[0] - _TOLERANCE <= values[1] <= values[2] + _TOLERANCE:
                    problems.append(
                        f"{name}: {low} {values[0]} <= {mean} {values[1]} <= "
                        f"{high} {values[2]} fails ({_row_key(row)})"
                    )
        for column in ("auc", "auc_sets", "rank1_rate", "identity_auc"):
            if column in columns:
                for row in table.to_pylist():
                    value = row[column]
                    if value is not None and not 0.0 <= value <= 1.0:
                        problems.append(
                            f"{name}: {column} {value} outside [0, 1] ({_row_key(row)})"
                        )
    if problems:
        shown = "; ".join(problems[:5])
        raise IntervalOrderError(f"{len(problems)} aggregate value(s) out of order: {shown}")


def _row_key(row: Mapping[str, object]) -> str:
    keys = ("scorer", "generator", "version", "subject_gender", "expression", "statistic")
    return ", ".join(f"{k}={row[k]}" for k in keys if k in row)
