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
from exprbench.schema import IMAGES, KEY_COLUMNS, UPSCALE, read_table, write_rows
from exprbench.settings import Settings
from tasks.common import StageResult, materialise, progress


@task(name="upscale", cache_policy=NONE)
def upscale(layout: Layout, settings: Settings) -> StageResult:
    options = settings.upscale
    # images are read, and upscaled images capped, under the limit ingest accepted them with
    max_pixels = settings.ingest.max_pixels
    rules: dict[str, Any] = {
        "method": options.method,
        "min_face_px": options.min_face_px,
        "max_factor": options.max_factor,
        "factor": options.factor,
    }
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
    images = read_table(layout.images, IMAGES).to_pylist()
    cache = ContentCache(layout.cache, "upscale")
    detector = None
    rows: list[dict] = []
    layout.upscaled_dir.mkdir(parents=True, exist_ok=True)
    for image in progress(images, "upscale"):

        def compute(image: dict = image) -> dict:
            nonlocal detector
            rgb = load_rgb(layout.resolve(image["source"]), max_pixels=max_pixels)
            if detector is None:
                from exprbench.faces import FaceDetector

                detector = FaceDetector()
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
    write_rows(rows, layout.upscale_table, UPSCALE)
    n_up = sum(1 for r in rows if r["upscale_factor"] > 1)
    result = StageResult(
        "upscale",
        {
            "images": len(rows),
            "upscaled": n_up,
            "capped": sum(1 for r in rows if "capped from" in r["upscale_detail"]),
            "method": rules["method"],
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
        },
    )
    result.rows = [
        {
            "path": r["path"],
            "factor": r["upscale_factor"],
            "measured_px": r["measured_px"],
            "on": r["measured_on"],
        }
        for r in rows
        if r["upscale_factor"] > 1
    ]
    return result
