"""Stage 2, upscale: measure each face (or the image) and upscale what is too small."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from exprbench import upscale as up
from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout, get
from exprbench.imageio import load_rgb
from exprbench.schema import IMAGES, KEY_COLUMNS, UPSCALE, read_table, write_rows
from tasks.common import StageResult, materialise, progress

UPSCALE_VERSION = "2"  # bump when measurement or resampling changes


def _measure(detector, rgb, detect_upsample: int) -> tuple[int, str]:
    from exprbench.faces import choose_primary

    face = choose_primary(detector.detect(rgb, upsample=detect_upsample))
    if face is not None:
        return max(1, round(face.size_px)), "face"
    return int(min(rgb.shape[:2])), "image"


@task(name="upscale", cache_policy=NONE)
def upscale(layout: Layout, params: dict[str, Any]) -> StageResult:
    rules = {
        "method": get(params, "upscale.method", str),
        "min_face_px": get(params, "upscale.min_face_px", int),
        "max_factor": get(params, "upscale.max_factor", int),
        "factor": get(params, "upscale.factor", (int, str)),
    }
    detect_upsample = get(params, "upscale.detect_upsample", int)
    up.decide(rules["min_face_px"], "image", **rules)  # validates the params before any work
    images = read_table(layout.images, IMAGES).to_pylist()
    cache = ContentCache(layout.cache, "upscale")
    detector = None
    rows: list[dict] = []
    layout.upscaled_dir.mkdir(parents=True, exist_ok=True)
    for image in progress(images, "upscale"):
        key = cache_key("upscale", UPSCALE_VERSION, image["sha256"], rules, detect_upsample)
        record = cache.get_json(key)
        if record is None:
            rgb = load_rgb(layout.input_dir / image["path"])
            if detector is None:
                from exprbench.faces import FaceDetector

                detector = FaceDetector()
            measured_px, measured_on = _measure(detector, rgb, detect_upsample)
            decision = up.decide(measured_px, measured_on, **rules)
            work = up.apply(rgb, decision)
            record = {
                "method": decision.method,
                "factor": decision.factor,
                "measured_px": measured_px,
                "measured_on": measured_on,
                "height": work.shape[0],
                "width": work.shape[1],
                "work_sha256": None,
            }
            if decision.factor > 1:
                record["work_sha256"] = cache.put_image(work)
            cache.put_json(key, record)
        if record["factor"] > 1:
            name = materialise(cache, record["work_sha256"], "png", layout.upscaled_dir)
            work_ref, work_sha = f"interim:upscaled/{name}", record["work_sha256"]
        else:
            work_ref, work_sha = f"input:{image['path']}", image["sha256"]
        rows.append(
            {
                **{k: image[k] for k in KEY_COLUMNS},
                "work_path": work_ref,
                "work_sha256": work_sha,
                "upscale_method": record["method"],
                "upscale_factor": record["factor"],
                "upscale_detail": up.describe(record["method"], record["factor"]),
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
