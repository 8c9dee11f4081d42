"""Stage 3, faces: detect, pick the primary face, keep landmarks, store an aligned crop."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout
from exprbench.faces import detect_record
from exprbench.fingerprint import code_digest, weight_digests
from exprbench.imageio import load_rgb
from exprbench.schema import FACES, KEY_COLUMNS, UPSCALE, read_table, write_rows
from exprbench.settings import Settings
from tasks.common import StageResult, materialise, progress


@task(name="faces", cache_policy=NONE)
def faces(layout: Layout, settings: Settings) -> StageResult:
    options = settings.faces
    max_pixels = settings.ingest.max_pixels  # upscale keeps its images within this too
    identity = [
        code_digest("exprbench.faces", "exprbench.align"),
        weight_digests("dlib-landmarks"),
        options,
    ]
    images = read_table(layout.upscale_table, UPSCALE).to_pylist()
    cache = ContentCache(layout.cache, "faces")
    detector = None
    rows: list[dict] = []
    for image in progress(images, "faces"):

        def compute(image: dict = image) -> dict:
            nonlocal detector
            if detector is None:
                from exprbench.faces import FaceDetector

                detector = FaceDetector()
            rgb = load_rgb(layout.resolve(image["work_path"]), max_pixels=max_pixels)
            record, crop = detect_record(
                detector,
                rgb,
                upsample=options.upsample,
                min_score=options.min_score,
                align_mode=options.align,
                crop_size=options.crop_size,
            )
            if crop is not None:
                record["crop_sha256"] = cache.put_image(crop)
            return record

        record = cache.get_or_compute(cache_key("faces", identity, image["work_sha256"]), compute)
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
