"""The resolution study: degrade scored faces to 48 and 24 px, upscale them back with every
method, rescore with every recognizer, and compare with the full-resolution prediction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from prefect import task
from prefect.cache_policies import NONE

from exprbench import upscale as up
from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout, get
from exprbench.imageio import load_rgb
from exprbench.schema import FACES, UPSCALE, read_table
from exprbench.scorers import get_scorer_class
from tasks.common import StageResult, progress
from tasks.score import face_from_row

RESOLUTION_VERSION = "1"


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    methods = get(params, "resolution.methods", list)
    unknown = [m for m in methods if m not in up.METHODS]
    if unknown:
        raise ValueError(f"resolution.methods: unknown {unknown}; known: {', '.join(up.METHODS)}")
    return {
        "methods": methods,
        "sizes": get(params, "resolution.sizes", list),
        "crop_px": get(params, "resolution.crop_px", int),
        "scorers": get(params, "resolution.scorers", list),
        "max_faces": get(params, "resolution.max_faces", int),
    }


@task(name="resolution", cache_policy=NONE)
def resolution(layout: Layout, params: dict[str, Any]) -> StageResult:
    from exprbench.resolution import analyse_face, render_study_page, summarise

    settings = _settings(params)
    faces = [r for r in read_table(layout.faces_table, FACES).to_pylist() if r["face_found"]]
    faces = faces[: settings["max_faces"]] if settings["max_faces"] > 0 else faces
    work = {r["path"]: r for r in read_table(layout.upscale_table, UPSCALE).to_pylist()}
    cache = ContentCache(layout.cache, "resolution")
    scorers: dict[str, Any] = {}
    rows: list[dict] = []
    montages: dict[str, np.ndarray] = {}
    for face_row in progress(faces, "resolution"):
        key = cache_key(
            "resolution",
            RESOLUTION_VERSION,
            face_row["work_sha256"],
            face_row["landmarks5"],
            face_row["box_x"],
            face_row["box_y"],
            face_row["expression"],
            settings,
        )
        record = cache.get_json(key)
        if record is None:
            if not scorers:
                scorers = {n: get_scorer_class(n)() for n in settings["scorers"]}
            image = load_rgb(layout.resolve(work[face_row["path"]]["work_path"]))
            study = analyse_face(
                image,
                face_from_row(face_row),
                scorers,
                settings["methods"],
                settings["sizes"],
                settings["crop_px"],
                expression=face_row["expression"],
            )
            record = {"rows": study.rows, "montage_sha256": cache.put_image(study.montage())}
            cache.put_json(key, record)
        rows += [
            {**r, "path": face_row["path"], "subject": face_row["subject"]} for r in record["rows"]
        ]
        montages[face_row["path"]] = load_rgb(cache.blob_path(record["montage_sha256"], "png"))
    summary = summarise(rows)
    out_dir = layout.reports / "resolution"
    out_dir.mkdir(parents=True, exist_ok=True)
    if summary:
        pacsv.write_csv(pa.Table.from_pylist(summary), out_dir / "summary.csv")
    run_info = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "faces": len(faces),
        "sizes": settings["sizes"],
        "crop px": settings["crop_px"],
        "scorers": ", ".join(settings["scorers"]),
        "methods": "; ".join(
            up.describe(m, settings["crop_px"] // size)
            for size in settings["sizes"]
            for m in settings["methods"]
        ),
    }
    render_study_page(summary, montages, run_info, out_dir / "index.html")
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {
                f"{r['method']}@{r['size']}/{r['scorer']}": {
                    k: r[k]
                    for k in (
                        "top1_agreement",
                        "mean_abs_delta_target_prob",
                        "mean_psnr",
                        "mean_ssim",
                    )
                    if r.get(k) is not None
                }
                for r in summary
            },
            indent=2,
            sort_keys=True,
        )
    )
    result = StageResult(
        "resolution",
        {
            "faces": len(faces),
            "rows": len(rows),
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "page": str((out_dir / "index.html").resolve()),
        },
    )
    result.rows = [
        {
            k: r.get(k)
            for k in ("method", "size", "scorer", "top1_agreement", "mean_psnr", "mean_ssim")
        }
        for r in summary
    ]
    return result
