"""The per-image rows the report reads, in DuckDB, and the contact sheet in pages.

The report never holds the scores in Python: `ReportScores` keeps them in DuckDB (a
scores Parquet file read in place, under a memory limit with a spill folder, or a
DataFrame registered as is) and hands out only what a section needs: the scorers and
their versions, the rows of one generator/version at a time (geometry), the rows with an
`unavailable` note, and the contact sheet one subject row at a time, in order.

A contact sheet with more than `page_size` images is cut into pages at subject rows (a
page holds whole rows, at most `page_size` images unless one row alone has more); each
page is its own HTML file in `<report stem>_sheets/` beside the report, which links them,
so index.html stays bounded. Thumbnails are decoded page by page, never all at once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from exprbench.duckdb_memory import (
    connect,
    hash_conditions,
    parquet_list,
    run_conditions,
    sorted_parts,
    sql_string,
)
from exprbench.fileio import current_umask
from exprbench.geometry_report import COLUMNS as GEOMETRY_COLUMNS
from exprbench.settings import DuckdbSettings
from exprbench.unavailable import COLUMN as UNAVAILABLE

Row = dict[str, Any]
# (paths, their faces rows) -> (path -> thumbnail file, path -> provenance note)
Lookup = Callable[
    [Sequence[str], Sequence[Row]], tuple[Mapping[str, Path], Mapping[str, str | None]]
]
GroupKey = tuple[str, str, str]  # generator, version, subject: one row of the sheet

DEFAULT_PAGE_SIZE = 200  # params report.sheet_page_size
PAGE_TEMPLATE = "contact_sheet_page.html.j2"
# included by report.html.j2 and PAGE_TEMPLATE (named here for DVC deps)
PARTIALS = ("_report_style.html.j2", "_sheet_table.html.j2")
_EXCLUDED = ("descriptor", "impostor_ids", "impostor_distances")  # large, unused here
# What the sheets read of a face (its landmarks, a few hundred numbers each, would be
# decoded with every row group a page's lookup reads)
SHEET_FACE_COLUMNS = ("path", "face_found", "face_reason", "face_count", "crop_path")
# rows come as Python dicts of every column (a few KB each): a small batch keeps them few
_BATCH_ROWS = 2048
_SHEET_ORDER = "generator, version, subject, _row"
# score rows (every column) sorted at once into the sheet's order: 100,000 need over 48MB
SHEET_ROWS_PER_PASS = 20_000


def _rows(table: pa.Table) -> list[Row]:
    return table.to_pylist()


def _frame_lookup(thumbnails: Mapping[str, Path], notes: Mapping[str, str | None] | None) -> Lookup:
    return lambda paths, _: (
        {p: thumbnails[p] for p in paths if p in thumbnails},
        {p: (notes or {}).get(p) for p in paths},
    )


@dataclass
class ReportScores:
    """Scores (view `scores`, with `_row` = the source order) and faces (view `faces`, if
    any) in DuckDB, and `lookup`, the thumbnails and notes of a few images at a time."""

    con: duckdb.DuckDBPyConnection
    has_faces: bool
    lookup: Lookup
    # every score row in contact-sheet order (generator, version, subject, source order)
    sheet_query: str = f"SELECT * EXCLUDE (_row) FROM scores ORDER BY {_SHEET_ORDER}"
    _sheet_rows: list[tuple[GroupKey, int]] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_frames(
        cls,
        scores: pd.DataFrame,
        faces: pd.DataFrame | None,
        thumbnails: Mapping[str, Path],
        notes: Mapping[str, str | None] | None = None,
    ) -> ReportScores:
        """In-memory frames (tests, small runs), read in place by DuckDB."""
        con = connect()
        frame = scores.drop(columns=list(_EXCLUDED), errors="ignore").reset_index(drop=True)
        con.register("scores_frame", frame.assign(_row=range(len(frame))))
        con.execute("CREATE TABLE scores AS SELECT * FROM scores_frame")
        if faces is not None:
            con.register("faces_frame", faces)
            con.execute("CREATE TABLE faces AS SELECT * FROM faces_frame")
        return cls(con, faces is not None, _frame_lookup(thumbnails, notes))

    @classmethod
    def from_files(
        cls,
        scores: Path,
        faces: Path,
        images: Path,
        spill: Path,
        bounds: DuckdbSettings,
        thumbnail: Callable[[Row], Path],
        note: Callable[[Row], str | None],
        image_columns: Sequence[str] | None = None,
    ) -> ReportScores:
        """The stage's Parquet files, read in place. `thumbnail(row)` and `note(row)` make
        an image's thumbnail file and provenance note from its images row (of
        `image_columns`, default all: what they read) joined with its faces row
        (`crop_path`)."""
        con = connect(bounds=bounds, spill=spill)
        con.execute(
            f"""CREATE VIEW scores AS
                SELECT * EXCLUDE ({", ".join(_EXCLUDED)}, file_row_number),
                       file_row_number AS _row
                FROM read_parquet({parquet_list([scores])}, file_row_number = true)"""
        )
        # Sorted by path into Parquet files in the spill folder, read through views: a
        # page's lookup reads the few row groups its paths fall in, and nothing of them
        # stays in memory between lookups (a table would hold every image's row).
        _sorted_view(
            con,
            "faces",
            f"SELECT {', '.join(SHEET_FACE_COLUMNS)} FROM read_parquet({parquet_list([faces])})",
            spill,
        )
        # (an image's crop is looked up in `faces` with it: joining every image to its
        # face before sorting needs all the faces in memory at once)
        chosen = ", ".join(dict.fromkeys(["path", *image_columns])) if image_columns else "*"
        _sorted_view(
            con, "image_info", f"SELECT {chosen} FROM read_parquet({parquet_list([images])})", spill
        )
        # The contact sheet's order, sorted once now, while little else is in memory, and
        # read back in file order (DuckDB keeps a scan's insertion order) page by page:
        # sorting while the pages are rendered would add DuckDB's sort to their memory.
        _sorted_view(
            con,
            "sheet_order",
            "SELECT * FROM scores",
            spill,
            _SHEET_ORDER,
            runs=("generator", "version", "subject"),
            rows_per_pass=SHEET_ROWS_PER_PASS,
        )

        def lookup(
            paths: Sequence[str], faces: Sequence[Row]
        ) -> tuple[dict[str, Path], dict[str, str | None]]:
            crops = {r["path"]: r["crop_path"] for r in faces}
            rows = [
                r | {"crop_path": crops.get(r["path"])} for r in _of_paths(con, "image_info", paths)
            ]
            return {r["path"]: thumbnail(r) for r in rows}, {r["path"]: note(r) for r in rows}

        return cls(con, True, lookup, "SELECT * EXCLUDE (_row) FROM sheet_order")

    def _stream(self, query: str) -> Iterator[Row]:
        """The rows of `query`, a batch at a time, on a cursor of its own (the connection
        stays free for the lookups made while the rows are consumed)."""
        with (
            self.con.cursor() as cursor,
            cursor.sql(query).fetch_arrow_reader(_BATCH_ROWS) as reader,
        ):
            for batch in reader:
                yield from batch.to_pylist()

    def columns(self) -> set[str]:
        return {row[0] for row in self.con.sql("DESCRIBE scores").fetchall()}

    def scorer_rows(self) -> list[Row]:
        """One row per (scorer, scorer_version), in the order the scores first name them."""
        return _rows(
            self.con.sql(
                """SELECT scorer, scorer_version FROM scores GROUP BY ALL
                   ORDER BY min(_row)"""
            ).to_arrow_table()
        )

    def n_images(self) -> int:
        """Distinct paths: the sum of the sheet rows' images (an image has one generator,
        version and subject), counted a pass of runs at a time, each reading only its
        runs' row groups (DuckDB holds a DISTINCT's values in memory of its own)."""
        return sum(n for _, n in self.sheet_rows())

    def unavailable_rows(self) -> Iterator[Row]:
        """The rows with an `unavailable` note (scorer, path, note), streamed."""
        if UNAVAILABLE not in self.columns():
            return iter(())
        return self._stream(
            f"SELECT scorer, path, {UNAVAILABLE} FROM scores WHERE {UNAVAILABLE} IS NOT NULL"
        )

    def geometry_scorers(self) -> list[str]:
        present = [c for c in GEOMETRY_COLUMNS if c in self.columns()]
        if not present:
            return []
        condition = " OR ".join(f"{c} IS NOT NULL" for c in present)
        query = f"SELECT DISTINCT scorer FROM scores WHERE {condition} ORDER BY scorer"
        return [str(row[0]) for row in self.con.sql(query).fetchall()]

    def recognizers(self) -> list[str]:
        if "top1" not in self.columns():
            return []
        query = "SELECT DISTINCT scorer FROM scores WHERE top1 IS NOT NULL ORDER BY scorer"
        return [str(row[0]) for row in self.con.sql(query).fetchall()]

    def runs(self) -> Iterator[list[Row]]:
        """Every row of one generator/version at a time, in source order."""
        runs = self.con.sql("SELECT DISTINCT generator, version FROM scores ORDER BY ALL")
        for generator, version in runs.fetchall():
            yield _rows(
                self.con.sql(
                    """SELECT * EXCLUDE (_row) FROM scores
                       WHERE generator IS NOT DISTINCT FROM ? AND version IS NOT DISTINCT FROM ?
                       ORDER BY _row""",
                    params=[generator, version],
                ).to_arrow_table()
            )

    def sheet_rows(self) -> list[tuple[GroupKey, int]]:
        """Each row of the contact sheet (generator, version, subject) and its images, in
        sheet order; counted a pass of generator/versions at a time (DuckDB holds the
        DISTINCTs' values in memory of its own), once: the image count and the pages both
        read them (a few bytes a subject and run)."""
        if self._sheet_rows is None:
            runs = ("generator", "version")
            found: list[tuple[GroupKey, int]] = []
            for condition in run_conditions(
                self.con, "SELECT generator, version FROM scores", runs
            ):
                query = f"""SELECT generator, version, subject, count(DISTINCT path) AS n
                            FROM scores WHERE {condition}
                            GROUP BY ALL ORDER BY generator, version, subject"""
                for row in self._stream(query):
                    key = (str(row["generator"]), str(row["version"]), str(row["subject"]))
                    found.append((key, int(row["n"])))
            self._sheet_rows = found
        return self._sheet_rows

    def sheet_groups(self) -> Iterator[tuple[GroupKey, list[Row]]]:
        """The score rows of each sheet row, in sheet order, one row at a time."""
        current: GroupKey | None = None
        members: list[Row] = []
        for row in self._stream(self.sheet_query):
            key = (str(row["generator"]), str(row["version"]), str(row["subject"]))
            if key != current:
                if current is not None:
                    yield current, members
                current, members = key, []
            members.append(row)
        if current is not None:
            yield current, members

    def versions(self) -> dict[str, list[str]]:
        """Each generator's versions (sorted by name)."""
        found: dict[str, list[str]] = {}
        query = "SELECT DISTINCT generator, version FROM scores ORDER BY ALL"
        for generator, version in self.con.sql(query).fetchall():
            found.setdefault(str(generator), []).append(str(version))
        return found

    def cells_rows(
        self, generator: str, versions: Sequence[str], cells: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Row]]:
        """The score rows of each (subject, expression) cell of `versions`, in source
        order: one query for all the cells."""
        if not cells:
            return {}
        self.con.register(
            "wanted_cells",
            pa.table({"subject": [c[0] for c in cells], "expression": [c[1] for c in cells]}),
        )
        try:
            rows = _rows(
                self.con.sql(
                    """SELECT * EXCLUDE (_row) FROM scores
                       WHERE generator = ? AND list_contains(?::VARCHAR[], version)
                       AND (subject, expression) IN
                           (SELECT (subject, expression) FROM wanted_cells)
                       ORDER BY _row""",
                    params=[generator, list(versions)],
                ).to_arrow_table()
            )
        finally:
            self.con.unregister("wanted_cells")
        found: dict[tuple[str, str], list[Row]] = {(s, e): [] for s, e in cells}
        for row in rows:
            found[(str(row["subject"]), str(row["expression"]))].append(row)
        return found

    def reading(self, database: Path) -> duckdb.DuckDBPyConnection:
        """A cursor on this DuckDB that reads `database` (read-only, by its table names):
        one memory limit and one buffer pool for the whole stage, not one per database."""
        self.con.execute(f"ATTACH {sql_string(str(database))} AS aggregate (READ_ONLY)")
        cursor = self.con.cursor()
        cursor.execute("USE aggregate")
        return cursor

    def faces_of(self, paths: Sequence[str]) -> list[Row]:
        if not self.has_faces:
            return []
        return _of_paths(self.con, "faces", paths)

    def images_of(
        self, paths: Sequence[str]
    ) -> tuple[Mapping[str, Path], Mapping[str, str | None], list[Row]]:
        """The thumbnail files, provenance notes and faces rows of `paths` (the faces
        are read once, for the rows and for the crops the thumbnails show)."""
        faces = self.faces_of(paths)
        thumbnails, notes = self.lookup(paths, faces)
        return thumbnails, notes, faces


def _sorted_view(
    con: duckdb.DuckDBPyConnection,
    name: str,
    query: str,
    folder: Path,
    order: str = "path",
    runs: Sequence[str] = (),
    rows_per_pass: int | None = None,
) -> None:
    """View `name`: the rows of `query` sorted by `order`, in Parquet files in `folder`,
    sorted a pass at a time (DuckDB's sort needs memory that grows with its rows): passes
    of whole runs (rows with the same `runs` columns, which `order` begins with: the
    files read in turn give the whole order), or else of paths by their hash (each file
    sorted by path, for lookups that skip row groups by path)."""
    if runs:
        conditions = run_conditions(con, query, runs, rows_per_pass)
    else:
        conditions = hash_conditions(con, query, "path", rows_per_pass)
    parts = sorted_parts(con, query, order, conditions, folder, f"{name}_sorted")
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({parquet_list(parts)})")


def _of_paths(con: duckdb.DuckDBPyConnection, table: str, paths: Sequence[str]) -> list[Row]:
    """The rows of `table` (sorted by path) for `paths`; the range filter lets DuckDB skip
    the row groups outside the paths' span."""
    if not paths:
        return []
    return _rows(
        con.sql(
            f"""SELECT * FROM {table} WHERE path BETWEEN $first AND $last
                AND list_contains($paths, path)""",
            params={"first": min(paths), "last": max(paths), "paths": list(paths)},
        ).to_arrow_table()
    )


@dataclass(frozen=True, slots=True)
class SheetPage:
    """One page of a paged contact sheet: its first and last sheet row, how many rows
    and images it holds (not the rows themselves: a large sheet has tens of thousands)."""

    first: GroupKey
    last: GroupKey
    rows: int
    images: int


def pages(rows: Iterable[tuple[GroupKey, int]], page_size: int) -> list[SheetPage]:
    """Sheet rows (in sheet order, with their images) cut into pages of whole rows, at
    most `page_size` images each (a row with more has a page of its own)."""
    out: list[SheetPage] = []
    for key, n in rows:
        if not out or out[-1].images + n > page_size:
            out.append(SheetPage(key, key, 1, n))
        else:
            page = out[-1]
            out[-1] = SheetPage(page.first, key, page.rows + 1, page.images + n)
    return out


def pages_dir(out_html: Path) -> Path:
    """Where the pages of `out_html`'s contact sheet go."""
    return out_html.with_name(f"{out_html.stem}_sheets")


def write_pages(out_html: Path, render: Callable[[Path], Iterator[tuple[str, str]]]) -> None:
    """Write the pages `render(folder)` yields as (file name, html) into `pages_dir`,
    swapping the whole folder in (stale pages never survive); no pages: no folder."""
    target = pages_dir(out_html)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        written = 0
        for name, html in render(staging):
            (staging / name).write_text(html, encoding="utf-8")
            written += 1
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it 0700
        if target.exists():
            shutil.rmtree(target)
        if written:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
