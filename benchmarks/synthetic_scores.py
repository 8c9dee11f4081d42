"""Synthetic, schema-valid stage outputs for the scale benchmark and its test.

A scores.parquet with the real scores schema and metric specs (`exprbench.schema`,
BUILTIN_METRICS) and seeded random values in each metric's range: generators x versions x
subjects x expressions x replicates images, each scored by SCORERS (an expression
recognizer with probabilities that sum to 1 and its top-1, an age/gender model, an
identity model with impostor distances, a quality model). Relative-to-neutral metrics are
null on neutral rows. Written in row groups, never all rows at once. Optionally the
images/faces/quarantine tables and a few placeholder thumbnails (shared by every image)
that the report stage reads. These are not results of any model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from exprbench.identity import THRESHOLD_METADATA_KEY
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.schema import FACES, IMAGES, QUARANTINE, scores_schema
from exprbench.scorers.base import BUILTIN_METRICS

SCORERS: dict[str, tuple[str, ...]] = {
    "syn_expression": ("expression",),
    "syn_age_gender": ("age", "gender"),
    "syn_identity": ("identity",),
    "syn_quality": ("quality",),
}
GALLERY = 8  # impostor ids per identity row (gallery faces), besides 2 other subjects
N_THUMBNAILS = 16


def shape_for(rows: int, generators: int = 4, versions: int = 5) -> tuple[int, int]:
    """(subjects per run, replicates) so that the corpus has about `rows` score rows."""
    per_run = rows / (generators * versions * len(SCORERS) * len(EXPRESSIONS))
    replicates = 2
    return max(2, round(per_run / replicates)), replicates


def _images(generators: int, versions: int, subjects: int, replicates: int) -> Iterator[dict]:
    for g in range(generators):
        for v in range(versions):
            for s in range(subjects):
                for expression in EXPRESSIONS:
                    for r in range(1, replicates + 1):
                        path = f"gen{g}/v{v}/subject{s:05d}/{r}-{expression}.png"
                        yield {
                            "generator": f"gen{g}",
                            "version": f"v{v}",
                            "subject": f"subject{s:05d}",
                            "expression": expression,
                            "replicate": r,
                            "path": path,
                            "sha256": f"{abs(hash(path)):064x}"[:64],
                        }


def _fill(schema: pa.Schema, rows: list[dict]) -> pa.Table:
    """Every column of `schema`: the given values, else a plain one of its type (null
    where the field allows it)."""
    columns = {}
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if all(v is None for v in values) and not field.nullable:
            plain = {pa.string(): "synthetic", pa.bool_(): True, pa.float64(): 1.0}
            values = [plain.get(field.type, 0)] * len(rows)
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=schema)


def _score_rows(images: list[dict], rng: np.random.Generator) -> list[dict]:
    out = []
    for image in images:
        neutral = image["expression"] == NEUTRAL
        gender = "female" if int(image["subject"][-1]) % 2 else "male"
        base = image | {
            "subject_gender": gender,
            "subject_age": "30",
            "scorer_crop": "aligned",
            "face_found": True,
            "face_count": 1,
            "upscale_method": "none",
            "upscale_factor": 1.0,
        }
        for scorer, kinds in SCORERS.items():
            row = base | {"scorer": scorer, "scorer_version": f"{scorer}-0001"}
            if "expression" in kinds:
                weights = np.full(len(EXPRESSIONS), 0.5)
                weights[EXPRESSIONS.index(image["expression"])] = 3.0
                probs = rng.dirichlet(weights)
                row |= {f"p_{e}": float(p) for e, p in zip(EXPRESSIONS, probs, strict=True)}
                top = int(probs.argmax())
                row |= {
                    "target_prob": float(probs[EXPRESSIONS.index(image["expression"])]),
                    "top1": EXPRESSIONS[top],
                    "top1_prob": float(probs[top]),
                }
            if "age" in kinds:
                age = float(rng.normal(32, 6))
                row |= {"age": age, "age_delta": None if neutral else float(rng.normal(0, 3))}
            if "gender" in kinds:
                predicted = (
                    gender if rng.random() < 0.9 else ("male" if gender == "female" else "female")
                )
                row |= {
                    "gender": predicted,
                    "gender_prob": float(rng.uniform(0.5, 1)),
                    "gender_match": predicted == gender,
                }
            if "identity" in kinds and not neutral:
                own = float(rng.uniform(0.2, 0.7))
                ids = [f"gallery:{k}" for k in range(GALLERY)] + [
                    f"subject:other{k}" for k in range(2)
                ]
                distances = rng.uniform(0.5, 1.1, size=len(ids)).astype(np.float32)
                rank = 1 + int((distances <= own).sum())
                row |= {
                    "identity_distance": own,
                    "identity_similarity": max(0.0, 1 - own / 2),
                    "same_identity": own < 0.6,
                    "identity_rank": float(rank),
                    "identity_rank1": rank == 1,
                    "identity_margin": float(distances.min()) - own,
                    "impostor_distance": float(distances.min()),
                    "identity_n_impostors": float(len(ids)),
                    "impostor_ids": ids,
                    "impostor_distances": distances.tolist(),
                }
            if "quality" in kinds:
                row |= {
                    "brisque": float(rng.uniform(10, 60)),
                    "niqe": float(rng.uniform(3, 9)),
                    "piqe": float(rng.uniform(10, 60)),
                    "niqe_reliable": True,
                }
            out.append(row)
    return out


def write_corpus(
    root: Path,
    rows: int,
    *,
    seed: int = 11,
    generators: int = 4,
    versions: int = 5,
    stage_inputs: bool = False,
) -> int:
    """Write `root/scores/scores.parquet` (about `rows` score rows) and, with
    `stage_inputs`, `root/interim/{images,faces,quarantine}.parquet` and the placeholder
    crops; returns the number of score rows written."""
    subjects, replicates = shape_for(rows, generators, versions)
    rng = np.random.default_rng(seed)
    schema = scores_schema(BUILTIN_METRICS).with_metadata(
        {**scores_schema(BUILTIN_METRICS).metadata, THRESHOLD_METADATA_KEY: b"0.6"}
    )
    (root / "scores").mkdir(parents=True, exist_ok=True)
    interim = root / "interim"
    if stage_inputs:
        (interim / "crops").mkdir(parents=True, exist_ok=True)
        for k in range(N_THUMBNAILS):
            colour = (40 + 13 * k, 90, 160)
            Image.new("RGB", (96, 96), colour).save(interim / "crops" / f"placeholder{k}.png")
    written = 0
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        writers["scores"] = pq.ParquetWriter(root / "scores" / "scores.parquet", schema)
        if stage_inputs:
            for name, table_schema in (("images", IMAGES), ("faces", FACES)):
                writers[name] = pq.ParquetWriter(interim / f"{name}.parquet", table_schema)
        batch: list[dict] = []
        for image in _images(generators, versions, subjects, replicates):
            batch.append(image)
            if len(batch) == 2048:
                written += _write(writers, batch, rng, schema)
                batch = []
        if batch:
            written += _write(writers, batch, rng, schema)
    finally:
        for writer in writers.values():
            writer.close()
    if stage_inputs:
        pq.write_table(_fill(QUARANTINE, []), interim / "quarantine.parquet")
    return written


def _write(
    writers: dict[str, pq.ParquetWriter],
    images: list[dict],
    rng: np.random.Generator,
    schema: pa.Schema,
) -> int:
    scores = _score_rows(images, rng)
    writers["scores"].write_table(_fill(schema, scores))
    if "images" in writers:
        writers["images"].write_table(
            _fill(
                IMAGES,
                [i | {"source": f"input:{i['path']}", "label": i["expression"]} for i in images],
            )
        )
        crops = [
            i
            | {
                "face_found": True,
                "face_count": 1,
                "upscale_factor": 1.0,
                "crop_path": f"interim:crops/placeholder{k % N_THUMBNAILS}.png",
            }
            for k, i in enumerate(images)
        ]
        writers["faces"].write_table(_fill(FACES, crops))
    return len(scores)


def describe(rows: int) -> str:
    subjects, replicates = shape_for(rows)
    return json.dumps({"subjects_per_run": subjects, "replicates": replicates})
