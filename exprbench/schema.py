"""Explicit Arrow schemas for every table a stage writes, and atomic Parquet I/O.

Each stage writes exactly one of these schemas; readers validate on read so a stale or
hand-edited file fails with a message naming the file and the column, not deep inside SQL.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from exprbench.fileio import atomic_target
from exprbench.labels import EXPRESSIONS

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in EXPRESSIONS)

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

SCORES = pa.schema(
    [
        *_KEY_FIELDS,
        pa.field("subject_gender", pa.string()),
        pa.field("scorer", pa.string(), nullable=False),
        pa.field("scorer_version", pa.string(), nullable=False),
        pa.field("scorer_crop", pa.string()),  # the crop this recognizer scored
        pa.field("face_found", pa.bool_(), nullable=False),
        pa.field("face_count", pa.int32(), nullable=False),
        pa.field("upscale_method", pa.string(), nullable=False),
        pa.field("upscale_factor", pa.float64(), nullable=False),
        *[pa.field(col, pa.float64()) for col in PROB_COLUMNS],
        pa.field("target_prob", pa.float64()),
        pa.field("top1", pa.string()),
        pa.field("top1_prob", pa.float64()),
        pa.field("age", pa.float64()),
        pa.field("gender", pa.string()),
        pa.field("gender_prob", pa.float64()),
        pa.field("gender_match", pa.bool_()),  # predicted gender == subjects.csv gender
        pa.field("identity_distance", pa.float64()),
        pa.field("identity_similarity", pa.float64()),
        pa.field("same_identity", pa.bool_()),
        pa.field("age_delta", pa.float64()),
        pa.field("brisque", pa.float64()),
        pa.field("niqe", pa.float64()),
        pa.field("niqe_reliable", pa.bool_()),
        pa.field("piqe", pa.float64()),
        pa.field("stlpips_vgg", pa.float64()),  # ST-LPIPS to the neutral's aligned crop
        pa.field("stlpips_alex", pa.float64()),
        pa.field("descriptor", pa.list_(pa.float32())),
        pa.field("note", pa.string()),  # why a value is null (no face, no neutral, ...)
    ]
)


class SchemaMismatchError(ValueError):
    """A Parquet file does not carry the columns its stage promises."""


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


def read_table(path: str | os.PathLike[str], schema: pa.Schema) -> pa.Table:
    """Read a stage's Parquet output, checking it has the promised columns and types."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: missing; run the stage that writes it first")
    table = pq.read_table(source)
    for field in schema:
        if field.name not in table.column_names:
            raise SchemaMismatchError(f"{source}: column {field.name!r} is missing")
        actual = table.schema.field(field.name).type
        if actual != field.type:
            raise SchemaMismatchError(
                f"{source}: column {field.name!r} has type {actual}, expected {field.type}"
            )
    return table.select(schema.names)
