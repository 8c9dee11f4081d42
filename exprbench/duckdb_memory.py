"""DuckDB under bounds, spilling to a folder: every database the stages open (aggregate,
report, compare) holds at most `duckdb.memory_limit` in DuckDB's buffers with
`duckdb.threads` threads, whatever the corpus size; and the means to keep a query's
memory within them (a table that grows with the corpus sorted a pass at a time)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exprbench.settings import DuckdbSettings

if TYPE_CHECKING:  # imported where a connection is made: importing this module stays cheap
    import duckdb

DEFAULT_BOUNDS = DuckdbSettings()
# the Parquet files stages write for themselves: small row groups, as DuckDB buffers one
# when it writes and decodes one at a time when it reads
SCRATCH_FORMAT = "(FORMAT parquet, ROW_GROUP_SIZE 16384)"


def connect(
    database: str | Path = ":memory:",
    bounds: DuckdbSettings = DEFAULT_BOUNDS,
    *,
    spill: Path | None = None,
    read_only: bool = False,
) -> duckdb.DuckDBPyConnection:
    """A connection to `database` under `bounds`, spilling what does not fit into `spill`
    (DuckDB's default temporary folder without one). Bounds are set when the database
    opens: a limit set later would leave what a default-sized database cached."""
    import duckdb

    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": bounds.memory_limit,
        "threads": bounds.threads,
    }
    if spill is not None:
        spill.mkdir(parents=True, exist_ok=True)
        config["temp_directory"] = str(spill)
    return duckdb.connect(str(database), read_only=read_only, config=config)


@contextmanager
def bounded_connection(
    bounds: DuckdbSettings = DEFAULT_BOUNDS,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory connection under `bounds`, spilling into a private temporary folder
    removed on exit (never the working directory's `.tmp`)."""
    with (
        tempfile.TemporaryDirectory(prefix="exprbench-duckdb-") as spill,
        connect(bounds=bounds, spill=Path(spill)) as con,
    ):
        yield con


def sql_string(value: str) -> str:
    """`value` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


# Rows DuckDB sorts at once where a table grows with the corpus: its sort needs memory
# that grows with the rows it sorts (a million per-image rows do not sort in 40MB), so
# such tables are sorted a pass at a time (see `sorted_parts`).
ROWS_PER_PASS = 100_000


def run_passes(run_rows: Sequence[tuple[tuple, int]], rows_per_pass: int) -> list[list[tuple]]:
    """Consecutive runs (in their order) batched into passes: a pass closes once it
    holds `rows_per_pass` rows (a run with more is a pass of its own)."""
    passes: list[list[tuple]] = [[]]
    filled = 0
    for run, n_rows in run_rows:
        if filled >= rows_per_pass:
            passes.append([])
            filled = 0
        passes[-1].append(run)
        filled += n_rows
    return [members for members in passes if members]


def _literal(value: object) -> str:
    return "NULL" if value is None else sql_string(str(value))


def run_conditions(
    con: duckdb.DuckDBPyConnection,
    counted: str,
    runs: Sequence[str],
    rows_per_pass: int | None = None,
) -> list[str]:
    """One SQL condition per pass, in run order: passes of whole runs (rows with the same
    `runs` columns, taken in their sort order) of about `rows_per_pass` (ROWS_PER_PASS)
    rows of the query `counted`. Passes of a query sorted by the runs first concatenate
    in its order. A pass is the range of runs from its first to its last (row values
    compare column by column, as ORDER BY sorts), or the list of its runs where one has a
    NULL (which no range holds)."""
    columns = ", ".join(runs)
    run_rows = con.sql(
        f"SELECT {columns}, count(*) FROM ({counted}) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    passes = run_passes([(r[:-1], r[-1]) for r in run_rows], rows_per_pass or ROWS_PER_PASS)
    conditions = []
    for members in passes:
        if any(v is None for run in members for v in run):
            conditions.append(
                " OR ".join(
                    "("
                    + " AND ".join(
                        f"{c} IS NOT DISTINCT FROM {_literal(v)}"
                        for c, v in zip(runs, run, strict=True)
                    )
                    + ")"
                    for run in members
                )
            )
        else:
            conditions.append(_range_condition(runs, members[0], members[-1]))
    return conditions or ["false"]


def _range_condition(runs: Sequence[str], first: Sequence[Any], last: Sequence[Any]) -> str:
    """Rows whose `runs` values lie from `first` to `last` (row values compare column by
    column, as ORDER BY sorts), led by what that implies column by column (equal leading
    columns, then the range of the next one): DuckDB hands those plain comparisons to the
    Parquet reader, which skips row groups outside them, but not a row-value comparison,
    so without them each pass would read the whole source."""
    columns = ", ".join(runs)
    implied = []
    for column, low, high in zip(runs, first, last, strict=True):
        if low == high:
            implied.append(f"{column} = {_literal(low)}")
        else:
            implied.append(f"{column} >= {_literal(low)} AND {column} <= {_literal(high)}")
            break
    whole = (
        f"row({columns}) >= row({', '.join(map(_literal, first))}) "
        f"AND row({columns}) <= row({', '.join(map(_literal, last))})"
    )
    return " AND ".join([*implied, whole])


def hash_conditions(
    con: duckdb.DuckDBPyConnection, query: str, key: str, rows_per_pass: int | None = None
) -> list[str]:
    """One SQL condition per pass: `query`'s rows split by the hash of `key` into passes
    of about `rows_per_pass` (ROWS_PER_PASS) rows, for a result whose order across
    passes does not matter (rows with the same key share a pass)."""
    [(n_rows,)] = con.sql(f"SELECT count(*) FROM ({query})").fetchall()
    passes = max(1, math.ceil(n_rows / (rows_per_pass or ROWS_PER_PASS)))
    if passes == 1:
        return ["true"]
    return [f"hash({key}) % {passes} = {part}" for part in range(passes)]


def sorted_parts(
    con: duckdb.DuckDBPyConnection,
    query: str,
    order: str,
    conditions: Sequence[str],
    folder: Path,
    name: str,
) -> list[Path]:
    """`query`'s rows matching each condition, sorted by `order`, in a Parquet file each
    (`folder/name.<pass>.parquet`)."""
    files = []
    for index, condition in enumerate(conditions):
        file = folder / f"{name}.{index}.parquet"
        con.execute(
            f"""COPY (SELECT * FROM ({query}) WHERE {condition} ORDER BY {order})
                TO {sql_string(str(file))} {SCRATCH_FORMAT}"""
        )
        files.append(file)
    return files


def parquet_list(files: Sequence[Path]) -> str:
    """read_parquet's argument for `files`, read in this order."""
    return "[" + ", ".join(sql_string(str(f)) for f in files) + "]"
