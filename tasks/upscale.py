"""Stage 2, upscale: measure each face (or the image) and upscale what is too small."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from exprbench import upscale as up
from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout
from exprbench.fingerprint import code_digest, weight_digests
from exprbench.imageio import load_rgb
from exprbench.schema import IMAGES, KEY_COLUMNS, UPSCALE, ParquetRowWriter
from exprbench.settings import Settings, UpscaleSettings
from tasks.common import StageResult, keep_detail, materialise, progress_bar, table_rows
from tasks.runner import BatchResult, Tally, absolute_layout, face_detector, map_table


def _rules(options: UpscaleSettings) -> dict[str, Any]:
    return {
        "method": options.method,
        "min_face_px": options.min_face_px,
        "max_factor": options.max_factor,
        "factor": options.factor,
    }


@task(name="upscale-batch", cache_policy=NONE)
def upscale_batch(
    batch: list[dict],
    layout: Layout,
    options: UpscaleSettings,
    max_pixels: int,
    identity: list[Any],
) -> BatchResult:
    """The upscale table's rows of a batch of images (a worker's own face detector)."""
    rules = _rules(options)
    cache = ContentCache(layout.cache, "upscale")
    rows: list[dict] = []
    for image in batch:

        def compute(image: dict = image) -> dict:
            rgb = load_rgb(layout.resolve(image["source"]), max_pixels=max_pixels)
            detector = face_detector()
            measured_px, measured_on = up.measure(detector, rgb, options.detect_upsample)
            height, width = rgb.shape[:2]
            decision = up.cap(
                up.decide(measured_px, measured_on, **rules), height, width, max_pixels
            )
            work = up.apply(rgb, decision)
            return {
                "method": decision.method,
                "factor": decision.factor,
                "capped_from": decision.capped_from,
                "measured_px": measured_px,
                "measured_on": measured_on,
                "height": work.shape[0],
                "width": work.shape[1],
                "work_sha256": cache.put_image(work) if decision.factor > 1 else None,
            }

        record = cache.get_or_compute(cache_key("upscale", identity, image["sha256"]), compute)
        if record["factor"] > 1:
            name = materialise(cache, record["work_sha256"], "png", layout.upscaled_dir)
            work_ref, work_sha = f"interim:upscaled/{name}", record["work_sha256"]
        else:
            work_ref, work_sha = image["source"], image["sha256"]
        rows.append(
            {
                **{k: image[k] for k in KEY_COLUMNS},
                "work_path": work_ref,
                "work_sha256": work_sha,
                "upscale_method": record["method"],
                "upscale_factor": record["factor"],
                "upscale_detail": up.describe(
                    record["method"], record["factor"], record.get("capped_from")
                ),
                "measured_px": record["measured_px"],
                "measured_on": record["measured_on"],
                "width": record["width"],
                "height": record["height"],
            }
        )
    return BatchResult(rows, cache.hits, cache.misses)


@task(name="upscale", cache_policy=NONE)
def upscale(layout: Layout, settings: Settings) -> StageResult:
    options = settings.upscale
    # images are read, and upscaled images capped, under the limit ingest accepted them with
    max_pixels = settings.ingest.max_pixels
    rules = _rules(options)
    up.decide(options.min_face_px, "image", **rules)  # validates the params before any work
    # the face measurement (dlib HOG + landmarks) and a learned method's own weights
    method_weights = (options.method,) if options.method in up.SR_METHOD_NAMES else ()
    identity = [
        code_digest("exprbench.upscale"),
        weight_digests("dlib-landmarks", *method_weights),
        rules,
        options.detect_upsample,
        max_pixels,
    ]
    runner = settings.runner
    layout.upscaled_dir.mkdir(parents=True, exist_ok=True)
    counts = {"images": 0, "upscaled": 0, "capped": 0}
    tally = Tally()
    details: list[dict] = []
    bar = progress_bar("upscale", table_rows(layout.images))
    with ParquetRowWriter(layout.upscale_table, UPSCALE) as out:
        for rows in map_table(
            upscale_batch,
            layout.images,
            IMAGES,
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
                counts["capped"] += "capped from" in r["upscale_detail"]
                if r["upscale_factor"] > 1:
                    counts["upscaled"] += 1
                    keep_detail(
                        details,
                        {
                            "path": r["path"],
                            "factor": r["upscale_factor"],
                            "measured_px": r["measured_px"],
                            "on": r["measured_on"],
                        },
                    )
    bar.close()
    result = StageResult(
        "upscale",
        {
            **counts,
            "method": rules["method"],
            **tally.counts(),
        },
    )
    result.rows = details
    return result
