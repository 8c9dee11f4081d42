"""Stage 3, faces: detect, pick the primary face, keep landmarks, store an aligned crop."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout, get
from exprbench.imageio import load_rgb
from exprbench.schema import FACES, KEY_COLUMNS, UPSCALE, read_table, write_rows
from tasks.common import StageResult, materialise, progress

FACES_VERSION = "2"  # bump when detection, primary-face choice or cropping changes


def detect_record(
    detector, rgb, *, upsample: int, min_score: float, align_mode: str, crop_size: int
) -> tuple[dict, np.ndarray | None]:
    """Detection result as a JSON-able record, plus the aligned crop (None: no face)."""
    from exprbench.align import align
    from exprbench.faces import choose_primary

    faces = detector.detect(rgb, upsample=upsample, min_score=min_score)
    primary = choose_primary(faces)
    if primary is None:
        return {"face_found": False, "face_count": 0, "face_reason": "no face detected"}, None
    crop = align(rgb, primary, align_mode, crop_size)
    return {
        "face_found": True,
        "face_count": len(faces),
        "face_reason": f"{len(faces)} faces; scored the primary (largest, most confident)"
        if len(faces) > 1
        else None,
        "box": list(primary.box),
        "detector_score": primary.score,
        "landmarks5": primary.landmarks5.reshape(-1).tolist(),
        "landmarks68": primary.landmarks68.reshape(-1).tolist(),
        "align_detail": crop.describe(),
    }, crop.image


@task(name="faces", cache_policy=NONE)
def faces(layout: Layout, params: dict[str, Any]) -> StageResult:
    options = {
        "upsample": get(params, "faces.upsample", int),
        "min_score": float(get(params, "faces.min_score", (int, float))),
        "crop_size": get(params, "faces.crop_size", int),
        "align_mode": get(params, "faces.align", str),
    }
    images = read_table(layout.upscale_table, UPSCALE).to_pylist()
    cache = ContentCache(layout.cache, "faces")
    detector = None
    rows: list[dict] = []
    for image in progress(images, "faces"):
        key = cache_key("faces", FACES_VERSION, image["work_sha256"], options)
        record = cache.get_json(key)
        if record is None:
            if detector is None:
                from exprbench.faces import FaceDetector

                detector = FaceDetector()
            rgb = load_rgb(layout.resolve(image["work_path"]))
            record, crop = detect_record(detector, rgb, **options)
            if crop is not None:
                record["crop_sha256"] = cache.put_image(crop)
            cache.put_json(key, record)
        row = {k: image[k] for k in KEY_COLUMNS}
        row.update(
            work_sha256=image["work_sha256"],
            upscale_factor=image["upscale_factor"],
            face_found=record["face_found"],
            face_count=record["face_count"],
            face_reason=record.get("face_reason"),
        )
        if record["face_found"]:
            name = materialise(cache, record["crop_sha256"], "png", layout.crops_dir)
            box_x, box_y, box_w, box_h = record["box"]
            row.update(
                box_x=box_x,
                box_y=box_y,
                box_w=box_w,
                box_h=box_h,
                detector_score=record["detector_score"],
                landmarks5=record["landmarks5"],
                landmarks68=record["landmarks68"],
                crop_path=f"interim:crops/{name}",
                crop_sha256=record["crop_sha256"],
                align_detail=record["align_detail"],
            )
        rows.append(row)
    write_rows(rows, layout.faces_table, FACES)
    no_face = [r for r in rows if not r["face_found"]]
    many = [r for r in rows if r["face_count"] > 1]
    result = StageResult(
        "faces",
        {
            "images": len(rows),
            "no_face": len(no_face),
            "multi_face": len(many),
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
        },
    )
    result.rows = [
        {"path": r["path"], "faces": r["face_count"], "note": r["face_reason"]}
        for r in no_face + many
    ]
    return result
