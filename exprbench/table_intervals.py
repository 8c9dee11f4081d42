"""Bootstrap intervals written into the aggregate tables (`exprbench.uncertainty` on DuckDB).

The aggregate stage builds each table with NULL `boot95_low*`/`boot95_high*` columns
beside the t-interval; `fill_intervals` computes the seeded hierarchical bootstrap of the
same means from the per-image values (subjects, then images within subjects, resampled
within each table row's group) and writes them in.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from exprbench.uncertainty import grouped_bootstrap

BOOT_LOW = "boot95_low"
BOOT_HIGH = "boot95_high"


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


def fill_intervals(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: IntervalSource,
    *,
    seed: int,
    resamples: int,
) -> int:
    """Compute and store the bootstrap intervals of `table`; returns the groups filled."""
    if resamples < 1 or not source.stems:
        return 0
    data = con.sql(source.sql).to_arrow_table()
    if data.num_rows == 0:
        return 0
    columns = [data.column(k).to_pylist() for k in source.keys]
    group_keys = [(table, *key) for key in zip(*columns, strict=True)]
    subjects = data.column("subject").to_pylist()
    values = np.column_stack(
        [
            data.column(f"v{i}").cast(pa.float64()).to_numpy(zero_copy_only=False)
            for i in range(len(source.stems))
        ]
    )
    intervals = grouped_bootstrap(group_keys, subjects, values, seed=seed, resamples=resamples)
    rows: list[dict] = []
    for key, (low, high) in intervals.items():
        base = dict(zip(source.keys, key[1:], strict=True))
        if source.long_column is None:
            row = dict(base)
            for i, stem in enumerate(source.stems):
                row[f"{BOOT_LOW}_{stem}"] = _float(low[i])
                row[f"{BOOT_HIGH}_{stem}"] = _float(high[i])
            rows.append(row)
        else:
            for i, stem in enumerate(source.stems):
                rows.append(
                    base
                    | {
                        source.long_column: stem,
                        BOOT_LOW: _float(low[i]),
                        BOOT_HIGH: _float(high[i]),
                    }
                )
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
    return len(intervals)
