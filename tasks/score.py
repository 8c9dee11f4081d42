"""Stage 4, score: run every configured scorer on each primary face (long format)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout
from exprbench.faces import FaceDetector, face_from_record
from exprbench.fingerprint import code_digest
from exprbench.gallery import (
    GALLERY_DETECTION,
    descriptor_cache_dir,
    gallery_descriptor,
    gallery_paths,
)
from exprbench.identity import add_impostor_measures
from exprbench.imageio import load_rgb
from exprbench.schema import (
    FACES,
    IMAGES,
    THRESHOLD_METADATA_KEY,
    THRESHOLDS_METADATA_KEY,
    UPSCALE,
    read_table,
    scores_schema,
    write_rows,
)
from exprbench.scorers import (
    ModelUnavailableError,
    PairScorer,
    Scorer,
    ScorerFoundNoFaceError,
    get_scorer_class,
)
from exprbench.scoring import identity_thresholds, output_to_dict, score_rows
from exprbench.settings import Settings
from exprbench.unavailable import summary, whole_scorer
from tasks.common import StageResult, progress


@task(name="score", cache_policy=NONE)
def score(layout: Layout, settings: Settings) -> StageResult:
    options = settings.score
    max_pixels = settings.ingest.max_pixels  # upscale keeps its images within this too
    classes = {name: get_scorer_class(name) for name in options.scorers}  # unknown names fail
    identities = {
        name: cls.cache_identity(options.options_for(name)) for name, cls in classes.items()
    }
    faces = read_table(layout.faces_table, FACES).to_pylist()
    upscaled = {r["path"]: r for r in read_table(layout.upscale_table, UPSCALE).to_pylist()}
    images = read_table(layout.images, IMAGES).to_pylist()
    genders = {r["path"]: r["subject_gender"] for r in images}
    ages = {r["path"]: r["subject_age"] for r in images}
    cache = ContentCache(layout.cache, "score")
    instances: dict[str, Scorer] = {}
    failed: dict[str, ModelUnavailableError] = {}  # scorers that cannot run in this process
    loaded: dict[str, np.ndarray] = {}  # the current image, shared by its scorers

    def scorer(name: str) -> Scorer:
        if name in failed:
            raise failed[name]
        if name not in instances:
            try:
                instances[name] = classes[name](options.options_for(name))
            except ModelUnavailableError as error:
                failed[name] = error
                raise
        return instances[name]

    def cached(name: str, key: str, compute: Any) -> dict:
        # an unavailable model's rows get null outputs and its reason, and are not cached:
        # the next run, with the model provided, computes them
        try:
            return cache.get_or_compute(key, compute)
        except ModelUnavailableError as error:
            failed.setdefault(name, error)
            return {"unavailable": whole_scorer(failed[name])}

    def work_image(face_row: Mapping[str, Any]) -> np.ndarray:
        path = upscaled[face_row["path"]]["work_path"]
        if path not in loaded:
            loaded.clear()
            loaded[path] = load_rgb(layout.resolve(path), max_pixels=max_pixels)
        return loaded[path]

    def run(name: str, face_row: Mapping[str, Any]) -> dict:
        def compute() -> dict:
            try:
                face = face_from_record(face_row)
                return output_to_dict(scorer(name).score(work_image(face_row), face))
            except ScorerFoundNoFaceError as error:
                return {"no_face": f"{name}: {error}"}

        geometry = [face_row[k] for k in ("landmarks5", "box_x", "box_y", "box_w", "box_h")]
        key = cache_key("score", identities[name], face_row["work_sha256"], geometry)
        return cached(name, key, compute)

    def compare(name: str, row: Mapping[str, Any], reference: Mapping[str, Any]) -> dict:
        def compute() -> dict:
            pair = scorer(name)
            assert isinstance(pair, PairScorer)
            crop, ref = (
                load_rgb(layout.crops_dir / f"{r['crop_sha256']}.png") for r in (row, reference)
            )
            return output_to_dict(pair.compare(crop, ref))

        key = cache_key("pair", identities[name], row["crop_sha256"], reference["crop_sha256"])
        return cached(name, key, compute)

    # Impostor gallery: each identity scorer's descriptor of each gallery face, computed
    # once per (scorer identity, image content) and cached like any image's scores.
    gallery_files, gallery_note = gallery_paths(options.impostor_gallery)
    # shared by every run (exprbench.gallery.descriptor_cache_dir); counted apart
    gallery_cache = ContentCache(descriptor_cache_dir(), "gallery")
    detectors: list[FaceDetector] = []

    def gallery_output(name: str, path: Any) -> dict:
        if not detectors:
            detectors.append(FaceDetector())
        return gallery_descriptor(detectors[0], scorer(name), load_rgb(path, max_pixels=max_pixels))

    gallery: dict[str, list[tuple[str, list[float]]]] = {}
    gallery_code = code_digest("exprbench.gallery")  # detection + scoring of a gallery face
    for name, cls in classes.items():
        if "identity" not in cls.outputs:
            continue
        gallery[name] = []
        try:
            for gallery_id, path, sha256 in gallery_files:
                key = cache_key(
                    "gallery", identities[name], gallery_code, sha256, GALLERY_DETECTION
                )
                result = gallery_cache.get_or_compute(key, partial(gallery_output, name, path))
                if result.get("descriptor") is not None:
                    gallery[name].append((gallery_id, result["descriptor"]))
        except ModelUnavailableError as error:
            # its rows say why (unavailable, via `cached`); the run goes on without it
            failed.setdefault(name, error)
            gallery[name] = []

    rows = score_rows(
        faces,
        upscaled,
        genders,
        classes,
        run,
        compare,
        options.same_identity_threshold,
        progress=lambda items: progress(items, "score"),
        age_by_path=ages,
        tau=options.tau,
    )
    rows = add_impostor_measures(rows, gallery, gallery_note)
    schema = scores_schema(
        [spec for cls in classes.values() for spec in cls.metrics()],
        {name: cls.filled_columns() for name, cls in classes.items()},
    )
    # validate checks same_identity against the threshold it was computed with
    schema = schema.with_metadata(
        {
            **(schema.metadata or {}),
            THRESHOLD_METADATA_KEY: str(options.same_identity_threshold).encode(),
            THRESHOLDS_METADATA_KEY: json.dumps(
                identity_thresholds(classes, options.same_identity_threshold), sort_keys=True
            ).encode(),
        }
    )
    write_rows(rows, layout.scores, schema)
    result = StageResult(
        "score",
        {
            "images": len(faces),
            "rows": len(rows),
            "scorers": ", ".join(options.scorers),
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            # what a missing model left unmeasured; the reasons are in the report
            "unavailable": "; ".join(f"{e['scorer']}: {e['outputs']}" for e in summary(rows))
            or "none",
            "gallery_cache_misses": gallery_cache.misses,
            "impostor_gallery": gallery_note
            or ", ".join(f"{name}: {len(faces)} faces" for name, faces in gallery.items()),
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
