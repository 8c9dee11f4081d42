"""Bootstrap intervals written into the aggregate tables (`exprbench.uncertainty` on DuckDB).

The aggregate stage builds each table with NULL `boot95_low*`/`boot95_high*` columns
beside the t-interval; `fill_intervals` computes the seeded hierarchical bootstrap of the
same means from the per-image values (subjects, then images within subjects, resampled
within each table row's group) and writes them in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exprbench.duckdb_memory import hash_conditions
from exprbench.uncertainty import SubjectBootstrap, group_rng

BOOT_LOW = "boot95_low"
BOOT_HIGH = "boot95_high"
GROUP_BATCH_ROWS = 8192
# rows DuckDB sorts at once (whole groups): its sort needs memory that grows with the
# rows it sorts (a million per-image rows do not sort in 40MB), so larger sources are
# sorted a slice of groups at a time
INTERVAL_ROWS_PER_PASS = 250_000


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


def _differs(column: pa.Array, before: object) -> np.ndarray:
    """Per row: its value differs from the row before it (`before` for the first row).

    Compared in Arrow, not as Python objects: a batch's keys and subjects would otherwise be
    tens of MB of strings."""
    changed = np.empty(len(column), dtype=bool)
    changed[0] = column[0].as_py() != before
    if len(column) > 1:
        earlier, later = column.slice(0, len(column) - 1), column.slice(1)
        unequal = pc.fill_null(pc.not_equal(earlier, later), False)
        changed[1:] = unequal.to_numpy(zero_copy_only=False) | (
            earlier.is_null().to_numpy(zero_copy_only=False)
            != later.is_null().to_numpy(zero_copy_only=False)
        )
    return changed


def _group_intervals(
    con: duckdb.DuckDBPyConnection, table: str, source: IntervalSource, seed: int, resamples: int
) -> Iterator[tuple[tuple, np.ndarray, np.ndarray]]:
    """(group key, low, high) of each group, its rows fed to `SubjectBootstrap` as they come.

    The groups are taken in passes of about INTERVAL_ROWS_PER_PASS rows, a pass being the
    groups whose key hashes to it (a group's interval depends on its own rows only, so
    the passes change which groups come together, not their intervals)."""
    keys = ", ".join(source.keys)
    for where in hash_conditions(con, source.sql, keys, INTERVAL_ROWS_PER_PASS):
        yield from _pass_intervals(con, table, source, seed, resamples, where)


def _pass_intervals(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: IntervalSource,
    seed: int,
    resamples: int,
    where: str,
) -> Iterator[tuple[tuple, np.ndarray, np.ndarray]]:
    """`_group_intervals` of the groups whose rows match `where`.

    DuckDB sorts the per-image rows by group, subject and source order (spilling to disk
    if need be), so a group arrives subject after subject in the order `bootstrap_means`
    takes them, with its number of subjects; rows with no value at all are left out (they
    cannot move any mean). Python holds one Arrow batch and one subject's rows at a time.
    """
    names = [f"v{i}" for i in range(len(source.stems))]
    keys = ", ".join(source.keys)
    rows_sql = f"""SELECT *, row_number() OVER () AS _row FROM ({source.sql})
                   WHERE coalesce({", ".join(names)}) IS NOT NULL AND {where}"""
    # each group's number of subjects, in the order the rows come (a table row each)
    group_sizes = iter(
        con.sql(
            f"""SELECT count(DISTINCT subject) FROM ({rows_sql})
                GROUP BY {keys} ORDER BY {keys}"""
        ).fetchall()
    )
    query = f"""SELECT {keys}, subject, {", ".join(names)} FROM ({rows_sql})
                ORDER BY {keys}, subject, _row"""
    key: tuple = ()
    stream: SubjectBootstrap | None = None
    # the last batch's last row: its group key and subject
    last_key: tuple = (None,) * len(source.keys)
    subject: object = None
    carried = np.empty((0, len(names)))  # that row's subject, maybe not finished
    with con.sql(query).fetch_arrow_reader(GROUP_BATCH_ROWS) as reader:
        for batch in reader:
            if not batch.num_rows:
                continue
            key_columns = [batch.column(k) for k in source.keys]
            subjects = batch.column("subject")
            values = np.column_stack(
                [batch.column(n).cast(pa.float64()).fill_null(np.nan).to_numpy() for n in names]
            )
            new_group = np.zeros(batch.num_rows, dtype=bool)
            for column, before in zip(key_columns, last_key, strict=True):
                new_group |= _differs(column, before)
            new_group[0] |= stream is None
            new_subject = new_group | _differs(subjects, subject)
            last_key = tuple(c[-1].as_py() for c in key_columns)
            subject = subjects[-1].as_py()
            # row numbers below count the carried rows first: they start a subject
            offset = carried.shape[0]
            rows = np.concatenate([carried, values]) if offset else values
            starts = np.flatnonzero(new_subject) + offset
            if offset:
                starts = np.r_[0, starts]
            group_starts = set((np.flatnonzero(new_group) + offset).tolist())
            edges = sorted({0, *group_starts, rows.shape[0]})
            for first, end in pairwise(edges):
                if first in group_starts:
                    if stream is not None:
                        yield key, *stream.interval()
                    key = tuple(c[first - offset].as_py() for c in key_columns)
                    stream = SubjectBootstrap(
                        next(group_sizes)[0],
                        len(names),
                        resamples=resamples,
                        rng=group_rng(seed, (table, *key)),
                    )
                assert stream is not None  # the first row of all starts a group
                inside = starts[(starts >= first) & (starts < end)]
                if end == rows.shape[0]:  # the last subject may go on in the next batch
                    stream.add(np.diff(inside), rows[first : inside[-1]])
                    carried = rows[inside[-1] : end].copy()
                else:
                    stream.add(np.diff(np.r_[inside, end]), rows[first:end])
    if stream is not None:
        stream.add([carried.shape[0]], carried)
        yield key, *stream.interval()


def fill_intervals(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: IntervalSource,
    *,
    seed: int,
    resamples: int,
) -> int:
    """Compute and store the bootstrap intervals of `table`; returns the groups filled.

    The per-image values stay in DuckDB: they come to Python a batch at a time, and only
    the intervals (one row per group) go back.
    """
    if resamples < 1 or not source.stems:
        return 0
    rows: list[dict] = []
    n_groups = 0
    for key, low, high in _group_intervals(con, table, source, seed, resamples):
        rows += _group_rows(source, (table, *key), low, high)
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
