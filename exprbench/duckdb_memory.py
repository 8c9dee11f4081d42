"""DuckDB under a memory limit, spilling to a folder: every stage that queries the corpus
(aggregate, report, compare) holds at most `duckdb.memory_limit` in DuckDB's buffers,
whatever the corpus size."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from exprbench.settings import DEFAULT_MEMORY_LIMIT

if TYPE_CHECKING:  # imported where a connection is made: importing this module stays cheap
    import duckdb


def bound_memory(con: duckdb.DuckDBPyConnection, memory_limit: str, spill: Path) -> None:
    """DuckDB keeps under `memory_limit` and spills what does not fit into `spill`."""
    spill.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET memory_limit = '{_quoted(memory_limit)}'")
    con.execute(f"SET temp_directory = '{_quoted(str(spill))}'")


@contextmanager
def bounded_connection(
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory connection under `memory_limit`, spilling into a private temporary
    folder removed on exit (never the working directory's `.tmp`)."""
    import duckdb

    with (
        tempfile.TemporaryDirectory(prefix="exprbench-duckdb-") as spill,
        duckdb.connect() as con,
    ):
        bound_memory(con, memory_limit, Path(spill))
        yield con


def _quoted(text: str) -> str:
    return text.replace("'", "''")
