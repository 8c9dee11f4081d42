"""The resolution study: degrade scored faces to 48 and 24 px, upscale them back with every
method, rescore with every recognizer, and compare with the full-resolution prediction."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from prefect import task
from prefect.cache_policies import NONE

from exprbench import upscale as up
from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout
from exprbench.faces import face_from_record
from exprbench.fingerprint import code_digest, weight_digests
from exprbench.imageio import load_rgb
from exprbench.schema import FACES, UPSCALE, read_table
from exprbench.scorers import Scorer, get_scorer_class
from exprbench.settings import ParamsError, Settings
from tasks.common import StageResult, progress


@task(name="resolution", cache_policy=NONE)
def resolution(layout: Layout, settings: Settings) -> StageResult:
    from exprbench.resolution import analyse_face, render_study_page, summarise

    study_settings = settings.resolution
    if study_settings is None:
        raise ParamsError("params: the resolution study needs a `resolution` section")
    # max_faces picks which faces are studied, not what one face's study gives
    options = {k: v for k, v in asdict(study_settings).items() if k != "max_faces"}
    classes = {n: get_scorer_class(n) for n in study_settings.scorers}
    identity = [
        code_digest("exprbench.resolution"),
        weight_digests(*(m for m in study_settings.methods if m in up.SR_METHOD_NAMES)) or None,
        {name: cls.cache_identity(None) for name, cls in classes.items()},
        options,
    ]
    faces = [r for r in read_table(layout.faces_table, FACES).to_pylist() if r["face_found"]]
    if study_settings.max_faces > 0:
        faces = faces[: study_settings.max_faces]
    work = {r["path"]: r for r in read_table(layout.upscale_table, UPSCALE).to_pylist()}
    cache = ContentCache(layout.cache, "resolution")
    scorers: dict[str, Scorer] = {}
    rows: list[dict] = []
    montages: dict[str, np.ndarray] = {}
    for face_row in progress(faces, "resolution"):

        def compute(face_row: dict = face_row) -> dict:
            if not scorers:
                scorers.update({n: cls() for n, cls in classes.items()})
            image = load_rgb(layout.resolve(work[face_row["path"]]["work_path"]))
            study = analyse_face(
                image,
                face_from_record(face_row),
                scorers,
                list(study_settings.methods),
                list(study_settings.sizes),
                study_settings.crop_px,
                expression=face_row["expression"],
            )
            return {"rows": study.rows, "montage_sha256": cache.put_image(study.montage())}

        geometry = [face_row[k] for k in ("landmarks5", "box_x", "box_y")]
        key = cache_key(
            "resolution", identity, face_row["work_sha256"], geometry, face_row["expression"]
        )
        record = cache.get_or_compute(key, compute)
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
        "sizes": list(study_settings.sizes),
        "crop px": study_settings.crop_px,
        "scorers": ", ".join(study_settings.scorers),
        "methods": "; ".join(
            up.describe(m, study_settings.crop_px // size)
            for size in study_settings.sizes
            for m in study_settings.methods
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
