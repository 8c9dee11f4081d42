"""Explicit Arrow schemas for every table a stage writes, and atomic Parquet I/O.

Each stage writes exactly one of these schemas; readers validate on read so a stale or
hand-edited file fails with a message naming the file and the column, not deep inside SQL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exprbench.fileio import atomic_target
from exprbench.labels import EXPRESSIONS
from exprbench.metrics import MetricSpec, merge_specs
from exprbench.scorers.base import BUILTIN_METRICS

# Scores Parquet metadata written by the score stage, read by validate and the identity
# tables: the global same-person threshold, and JSON {scorer: threshold} for the threshold
# each scorer's same_identity came from (a scorer may declare its own)
THRESHOLD_METADATA_KEY = b"exprbench.same_identity_threshold"
THRESHOLDS_METADATA_KEY = b"exprbench.same_identity_thresholds"

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in EXPRESSIONS)


class SchemaMismatchError(ValueError):
    """A Parquet file does not carry the columns its stage promises."""


# Columns that identify one input image; every table after ingest carries them.
_KEY_FIELDS = [
    pa.field("generator", pa.string(), nullable=False),
    pa.field("version", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("expression", pa.string(), nullable=False),
    pa.field("replicate", pa.int32(), nullable=False),
    pa.field("path", pa.string(), nullable=False),  # relative to the input root, POSIX
    pa.field("sha256", pa.string(), nullable=False),  # of the file's bytes
]

KEY_COLUMNS: tuple[str, ...] = tuple(field.name for field in _KEY_FIELDS)

IMAGES = pa.schema(
    [
        *_KEY_FIELDS,
        pa.field("label", pa.string()),  # the label as written by the user
        pa.field("format", pa.string()),
        pa.field("mode", pa.string()),  # colour mode before conversion to RGB
        pa.field("width", pa.int32()),  # after EXIF orientation
        pa.field("height", pa.int32()),
        pa.field("exif_orientation", pa.int32()),
        pa.field("subject_gender", pa.string()),
        pa.field("subject_age", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("flags", pa.string()),  # ';'-joined notes that did not stop scoring
        # where later stages read the image: 'input:<path>', or 'interim:cells/<sha256>.png'
        # for a cell cut from an image sheet (its `path` is then '<sheet path>#r<row>c<col>')
        pa.field("source", pa.string(), nullable=False),
        pa.field("sheet_path", pa.string()),  # the sheet a cell was cut from
        pa.field("sheet_sha256", pa.string()),
        pa.field("sheet_row", pa.int32()),  # 1-based
        pa.field("sheet_column", pa.int32()),
        pa.field("cut_method", pa.string()),  # gutter | even, '+frame' when a frame was trimmed
        # what the file's own generation metadata says (exprbench.genmeta)
        pa.field("meta_generator", pa.string()),
        pa.field("meta_version", pa.string()),
        pa.field("meta_model", pa.string()),
        pa.field("meta_prompt", pa.string()),
        pa.field("meta_seed", pa.int64()),
        pa.field("meta_source", pa.string()),  # where they were read: png:parameters, c2pa, ...
        pa.field("meta_details", pa.string()),  # JSON: sampler, steps, source type, notes
        pa.field("label_conflict", pa.string()),  # metadata vs the given labels, not resolved
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("sha256", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

UPSCALE = pa.schema(
    [
        *_KEY_FIELDS,
        pa.field("work_path", pa.string(), nullable=False),  # the image later stages read
        pa.field("work_sha256", pa.string(), nullable=False),
        pa.field("upscale_method", pa.string(), nullable=False),  # 'none' when not applied
        pa.field("upscale_factor", pa.float64(), nullable=False),
        pa.field("upscale_detail", pa.string()),  # how the factor was produced
        pa.field("measured_px", pa.int32()),  # face (or image) short side that decided it
        pa.field("measured_on", pa.string()),  # 'face' | 'image'
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
    ]
)

FACES = pa.schema(
    [
        *_KEY_FIELDS,
        pa.field("work_sha256", pa.string(), nullable=False),
        pa.field("upscale_factor", pa.float64(), nullable=False),
        pa.field("face_found", pa.bool_(), nullable=False),
        pa.field("face_count", pa.int32(), nullable=False),
        pa.field("face_reason", pa.string()),  # why no face / why flagged
        pa.field("box_x", pa.float64()),  # in work-image pixels
        pa.field("box_y", pa.float64()),
        pa.field("box_w", pa.float64()),
        pa.field("box_h", pa.float64()),
        pa.field("detector_score", pa.float64()),
        pa.field("landmarks5", pa.list_(pa.float32())),  # x0, y0, x1, y1, ...
        pa.field("landmarks68", pa.list_(pa.float32())),
        pa.field("crop_path", pa.string()),  # content-addressed aligned crop
        pa.field("crop_sha256", pa.string()),
        pa.field("align_detail", pa.string()),  # how the stored crop was aligned (faces.align)
    ]
)

# Columns of every scores row that are not metrics: which image, which scorer, labels and
# raw outputs (top1, gender, descriptor), and the note that says why a value is null.
_SCORE_ID_FIELDS = [
    *_KEY_FIELDS,
    pa.field("subject_gender", pa.string()),
    pa.field("subject_age", pa.string()),  # the age or age group subjects.csv asked for
    pa.field("scorer", pa.string(), nullable=False),
    pa.field("scorer_version", pa.string(), nullable=False),  # derived from code + weights
    pa.field("scorer_crop", pa.string()),  # the crop this recognizer scored
    pa.field("face_found", pa.bool_(), nullable=False),
    pa.field("face_count", pa.int32(), nullable=False),
    pa.field("upscale_method", pa.string(), nullable=False),
    pa.field("upscale_factor", pa.float64(), nullable=False),
]
_SCORE_TAIL_FIELDS = [
    pa.field("top1", pa.string()),
    pa.field("gender", pa.string()),
    pa.field("descriptor", pa.list_(pa.float32())),
    # identity against impostors (exprbench.identity): who each distance is to
    pa.field("impostor_ids", pa.list_(pa.string())),
    pa.field("impostor_distances", pa.list_(pa.float32())),
    pa.field("note", pa.string()),  # why a value is null (no face, no neutral, ...)
    # JSON {output kind or "*": reason}: outputs a missing model left null (exprbench.unavailable)
    pa.field("unavailable", pa.string()),
]
SCORE_BASE_COLUMNS: tuple[str, ...] = tuple(f.name for f in _SCORE_ID_FIELDS + _SCORE_TAIL_FIELDS)
_ARROW_TYPES = {"float64": pa.float64(), "bool": pa.bool_()}
METRICS_METADATA_KEY = b"exprbench.metrics"
SCORERS_METADATA_KEY = b"exprbench.scorers"


def scores_schema(
    specs: Iterable[MetricSpec] = (), declared: Mapping[str, Sequence[str]] | None = None
) -> pa.Schema:
    """The scores table: the built-in metrics plus `specs`, one column per stored metric.

    The specs themselves (derived ones too) and `declared` (scorer name -> the columns it
    fills) are kept in the schema's metadata, so every later stage reads what each column
    means, and what each scorer promised, from the file it is given.
    """
    specs = merge_specs([BUILTIN_METRICS, specs])
    clash = [s.column for s in specs if s.column in SCORE_BASE_COLUMNS]
    if clash:
        raise ValueError(f"metric columns {clash} clash with the scores table's own columns")
    metric_fields = [pa.field(s.column, _ARROW_TYPES[s.dtype]) for s in specs if s.stored]
    metadata = {METRICS_METADATA_KEY: json.dumps([json.loads(s.to_json()) for s in specs])}
    if declared is not None:
        metadata[SCORERS_METADATA_KEY] = json.dumps({k: list(v) for k, v in declared.items()})
    return pa.schema(
        [*_SCORE_ID_FIELDS, *metric_fields, *_SCORE_TAIL_FIELDS],
        metadata={k: v.encode() for k, v in metadata.items()},
    )


def declared_columns(schema: pa.Schema) -> dict[str, list[str]] | None:
    """Scorer name -> the columns it fills, as the score stage recorded them."""
    payload = (schema.metadata or {}).get(SCORERS_METADATA_KEY)
    return None if payload is None else json.loads(payload)


def metric_specs(schema: pa.Schema, where: str = "scores table") -> tuple[MetricSpec, ...]:
    """The metric specs a scores table carries (see `scores_schema`)."""
    payload = (schema.metadata or {}).get(METRICS_METADATA_KEY)
    if payload is None:
        raise SchemaMismatchError(
            f"{where}: no metric specs in its schema metadata; it was not written by the "
            "score stage of this version: rerun the score stage"
        )
    return tuple(MetricSpec.from_json(json.dumps(item)) for item in json.loads(payload))


SCORES = scores_schema()  # the built-in scorers' metrics


def write_table(table: pa.Table, path: str | os.PathLike[str], schema: pa.Schema) -> Path:
    """Cast `table` to `schema` and write it atomically (temp file + rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise SchemaMismatchError(f"{target}: table lacks columns {missing}")
    table = table.select(schema.names).cast(schema)
    with atomic_target(target) as tmp:
        pq.write_table(table, tmp)
    return target


def write_rows(rows: list[dict], path: str | os.PathLike[str], schema: pa.Schema) -> Path:
    """Write a list of row dicts (missing keys become null) atomically."""
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return write_table(pa.Table.from_pydict(columns, schema=schema), path, schema)


def check_table(path: str | os.PathLike[str], schema: pa.Schema) -> Path:
    """Check a stage's Parquet output has the promised columns and types, from its schema
    alone (nothing is read into memory); returns the path."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: missing; run the stage that writes it first")
    _check_columns(source, pq.read_schema(source), schema)
    return source


def _check_columns(source: Path, found: pa.Schema, schema: pa.Schema) -> None:
    for field in schema:
        if field.name not in found.names:
            raise SchemaMismatchError(f"{source}: column {field.name!r} is missing")
        actual = found.field(field.name).type
        if actual != field.type:
            raise SchemaMismatchError(
                f"{source}: column {field.name!r} has type {actual}, expected {field.type}"
            )


def iter_rows(
    path: str | os.PathLike[str],
    schema: pa.Schema,
    batch_size: int,
    where: pc.Expression | None = None,
) -> Iterator[list[dict]]:
    """A stage's Parquet output as lists of at most `batch_size` row dicts, checked like
    `read_table`; only one batch is held at a time. `where`: only the rows it selects."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: missing; run the stage that writes it first")
    file = pq.ParquetFile(source)
    _check_columns(source, file.schema_arrow, schema)
    for batch in file.iter_batches(batch_size=batch_size, columns=schema.names):
        yield (batch if where is None else batch.filter(where)).to_pylist()


ROW_GROUP_ROWS = 8192


class ParquetRowWriter:
    """Rows written to a Parquet file as they come, atomically (temp file, then rename on a
    clean exit), with the explicit `schema` (missing keys become null).

    Rows are held as Arrow until a row group of `row_group_rows` is full: memory stays
    bounded, and the file is the same whatever the sizes of the lists given to `write`.
    """

    def __init__(
        self, path: str | os.PathLike[str], schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.row_group_rows = row_group_rows
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._stack = ExitStack()
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetRowWriter:
        with ExitStack() as stack:
            tmp = stack.enter_context(atomic_target(self.path))
            self._writer = stack.enter_context(pq.ParquetWriter(tmp, self.schema))
            self._stack = stack.pop_all()
        return self

    def write(self, rows: Sequence[Mapping]) -> None:
        columns = {name: [row.get(name) for row in rows] for name in self.schema.names}
        self._pending.append(pa.Table.from_pydict(columns, schema=self.schema))
        self._pending_rows += len(rows)
        self.rows += len(rows)
        while self._pending_rows >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _flush(self, n: int) -> None:
        assert self._writer is not None, "ParquetRowWriter used outside its `with`"
        table = pa.concat_tables(self._pending)
        self._writer.write_table(table.slice(0, n), row_group_size=self.row_group_rows)
        rest = table.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None and self._pending_rows:
            try:
                self._flush(self._pending_rows)
            except BaseException as error:  # the temp file goes, the error stays
                self._stack.__exit__(type(error), error, error.__traceback__)
                raise
        self._stack.__exit__(*exc)


def read_table(path: str | os.PathLike[str], schema: pa.Schema) -> pa.Table:
    """Read a stage's Parquet output, checking it has the promised columns and types."""
    return pq.read_table(check_table(path, schema)).select(schema.names)


def check_scores(path: str | os.PathLike[str]) -> tuple[MetricSpec, ...]:
    """The metric specs the score stage's output carries, checked against its columns
    (`read_scores` without reading the rows)."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: missing; run the stage that writes it first")
    specs = metric_specs(pq.read_schema(source), str(source))
    check_table(source, scores_schema(specs))
    return specs


def read_scores(path: str | os.PathLike[str]) -> tuple[pa.Table, tuple[MetricSpec, ...]]:
    """The score stage's output and the metric specs it carries, checked against each other."""
    specs = check_scores(path)
    return read_table(path, scores_schema(specs)), specs
