"""DuckDB under bounds, spilling to a folder: every database the stages open (aggregate,
report, compare) holds at most `duckdb.memory_limit` in DuckDB's buffers with
`duckdb.threads` threads, whatever the corpus size."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from exprbench.settings import DuckdbSettings

if TYPE_CHECKING:  # imported where a connection is made: importing this module stays cheap
    import duckdb

DEFAULT_BOUNDS = DuckdbSettings()


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
