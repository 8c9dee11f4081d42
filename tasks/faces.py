"""Stage 3, faces: detect, pick the primary face, keep landmarks, store an aligned crop."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout
from exprbench.faces import detect_record
from exprbench.fingerprint import code_digest, weight_digests
from exprbench.imageio import load_rgb
from exprbench.schema import FACES, KEY_COLUMNS, UPSCALE, ParquetRowWriter
from exprbench.settings import FacesSettings, Settings
from tasks.common import StageResult, keep_detail, materialise, progress_bar, table_rows
from tasks.runner import BatchResult, Tally, absolute_layout, face_detector, map_table


@task(name="faces-batch", cache_policy=NONE)
def faces_batch(
    batch: list[dict], layout: Layout, options: FacesSettings, max_pixels: int, identity: list
) -> BatchResult:
    """The faces table's rows of a batch of upscale rows (a worker's own face detector)."""
    cache = ContentCache(layout.cache, "faces")
    rows: list[dict] = []
    for image in batch:

        def compute(image: dict = image) -> dict:
            rgb = load_rgb(layout.resolve(image["work_path"]), max_pixels=max_pixels)
            record, crop = detect_record(
                face_detector(),
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
    return BatchResult(rows, cache.hits, cache.misses)


@task(name="faces", cache_policy=NONE)
def faces(layout: Layout, settings: Settings) -> StageResult:
    options = settings.faces
    max_pixels = settings.ingest.max_pixels  # upscale keeps its images within this too
    identity = [
        code_digest("exprbench.faces", "exprbench.align"),
        weight_digests("dlib-landmarks"),
        options,
    ]
    runner = settings.runner
    counts = {"images": 0, "no_face": 0, "multi_face": 0}
    tally = Tally()
    no_face: list[dict] = []
    many: list[dict] = []
    bar = progress_bar("faces", table_rows(layout.upscale_table))
    with ParquetRowWriter(layout.faces_table, FACES) as out:
        for rows in map_table(
            faces_batch,
            layout.upscale_table,
            UPSCALE,
            out,
            runner,
            tally,
            bar,
            layout=absolute_layout(layout),
            options=options,
            max_pixels=max_pixels,
            identity=identity,
        ):
            for r in rows:
                counts["images"] += 1
                detail = {"path": r["path"], "faces": r["face_count"], "note": r["face_reason"]}
                if not r["face_found"]:
                    counts["no_face"] += 1
                    keep_detail(no_face, detail)
                if r["face_count"] > 1:
                    counts["multi_face"] += 1
                    keep_detail(many, detail)
    bar.close()
    result = StageResult(
        "faces",
        {**counts, **tally.counts()},
    )
    result.rows = no_face + many
    return result
