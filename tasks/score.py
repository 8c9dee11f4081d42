"""Stage 4, score: run every configured scorer on each primary face (long format)."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout, get
from exprbench.geometry import Face
from exprbench.imageio import load_rgb
from exprbench.schema import FACES, IMAGES, KEY_COLUMNS, SCORES, UPSCALE, read_table, write_rows
from exprbench.scorers import PairScorer, ScorerFoundNoFaceError, get_scorer_class
from exprbench.scoring import (
    add_relative_measures,
    output_columns,
    output_from_dict,
    output_to_dict,
)
from tasks.common import StageResult, progress

SCORE_VERSION = "1"  # bump when row construction changes what is cached


def face_from_row(row: dict) -> Face:
    """Rebuild the primary face from a FACES row."""
    return Face(
        box=(row["box_x"], row["box_y"], row["box_w"], row["box_h"]),
        score=row["detector_score"],
        landmarks5=np.asarray(row["landmarks5"], dtype=np.float32).reshape(5, 2),
        landmarks68=np.asarray(row["landmarks68"], dtype=np.float32).reshape(68, 2),
    )


def _pair_measure(name, cls, options, scorers: dict, cache: ContentCache, layout: Layout):
    """(row, reference row) -> columns for a pair scorer, cached by both crops' content."""

    def measure(row: dict, reference: dict) -> dict:
        key = cache_key(
            "pair",
            SCORE_VERSION,
            name,
            cls.version,
            options,
            row["crop_sha256"],
            reference["crop_sha256"],
        )
        cached = cache.get_json(key)
        if cached is None:
            if name not in scorers:
                scorers[name] = cls(options)
            crop, ref = (
                load_rgb(layout.crops_dir / f"{r['crop_sha256']}.png") for r in (row, reference)
            )
            cached = output_to_dict(scorers[name].compare(crop, ref))
            cache.put_json(key, cached)
        return output_columns(output_from_dict(cached), row["expression"], row["subject_gender"])

    return measure


@task(name="score", cache_policy=NONE)
def score(layout: Layout, params: dict[str, Any]) -> StageResult:
    names = get(params, "score.scorers", list)
    threshold = float(get(params, "score.same_identity_threshold", (int, float)))
    options = (params.get("score") or {}).get("options") or {}
    classes = {name: get_scorer_class(name) for name in names}  # unknown names fail here
    faces = read_table(layout.faces_table, FACES).to_pylist()
    upscaled = {r["path"]: r for r in read_table(layout.upscale_table, UPSCALE).to_pylist()}
    genders = {
        r["path"]: r["subject_gender"] for r in read_table(layout.images, IMAGES).to_pylist()
    }
    cache = ContentCache(layout.cache, "score")
    scorers: dict[str, Any] = {}
    rows: list[dict] = []
    for face_row in progress(faces, "score"):
        up = upscaled[face_row["path"]]
        base = {k: face_row[k] for k in KEY_COLUMNS}
        base.update(
            subject_gender=genders.get(face_row["path"]),
            face_found=face_row["face_found"],
            face_count=face_row["face_count"],
            upscale_method=up["upscale_method"],
            upscale_factor=up["upscale_factor"],
        )
        rgb = None
        for name, cls in classes.items():
            row = {**base, "scorer": name, "scorer_version": cls.version, "scorer_crop": cls.crop}
            rows.append(row)
            if not face_row["face_found"]:
                row["note"] = face_row["face_reason"] or "no face detected"
                continue
            if face_row["face_count"] > 1:
                row["note"] = f"{face_row['face_count']} faces in image; scored the primary"
            if issubclass(cls, PairScorer):
                # measured against the neutral's crop once every row exists (below)
                row["crop_sha256"] = face_row["crop_sha256"]
                continue
            key = cache_key(
                "score",
                SCORE_VERSION,
                name,
                cls.version,
                options.get(name),
                face_row["work_sha256"],
                face_row["landmarks5"],
                face_row["box_x"],
                face_row["box_y"],
                face_row["box_w"],
                face_row["box_h"],
            )
            cached = cache.get_json(key)
            if cached is None:
                if name not in scorers:
                    scorers[name] = cls(options.get(name))
                if rgb is None:
                    rgb = load_rgb(layout.resolve(up["work_path"]))
                try:
                    cached = output_to_dict(scorers[name].score(rgb, face_from_row(face_row)))
                except ScorerFoundNoFaceError as error:
                    cached = {"no_face": f"{name}: {error}"}
                cache.put_json(key, cached)
            if "no_face" in cached:
                row.update(face_found=False, note=cached["no_face"])
                continue
            row.update(
                output_columns(output_from_dict(cached), row["expression"], row["subject_gender"])
            )
            unmeasured = [k for k, v in (cached.get("metrics") or {}).items() if v is None]
            if unmeasured:
                note = f"{name}: {', '.join(unmeasured)} not measurable on this image"
                row["note"] = f"{row['note']}; {note}" if row.get("note") else note
    pair_measures = {
        name: _pair_measure(name, cls, options.get(name), scorers, cache, layout)
        for name, cls in classes.items()
        if issubclass(cls, PairScorer)
    }
    rows = add_relative_measures(rows, threshold, pair_measures)
    write_rows(rows, layout.scores, SCORES)
    result = StageResult(
        "score",
        {
            "images": len(faces),
            "rows": len(rows),
            "scorers": ", ".join(names),
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
        },
    )
    per_scorer: dict[str, list[float]] = {}
    for row in rows:
        if row.get("target_prob") is not None:
            per_scorer.setdefault(row["scorer"], []).append(row["target_prob"])
    result.rows = [
        {"scorer": s, "faces": len(v), "mean_target_prob": round(float(np.mean(v)), 4)}
        for s, v in per_scorer.items()
    ]
    return result
