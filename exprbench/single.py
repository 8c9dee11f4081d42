"""Score every face of one image with one scorer, as JSON-able data (`exprbench score`).

The faceapi scorer reports face-api.js's own detections in face-api.js's order; every other
scorer is applied to each face the pipeline's detector finds, primary first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from exprbench.imageio import ImageRejected, load_rgb
from exprbench.labels import EXPRESSIONS
from exprbench.scorers import Scorer, ScorerFoundNoFaceError

# Scorers whose score_image may run on several images at once (faceapi: onnxruntime
# sessions and pure numpy; its results do not depend on the thread count).
THREAD_SAFE = frozenset({"faceapi"})


def face_json(box: Any, score: float, output: Any) -> dict:
    """One face in the `exprbench score --json` format; absent outputs are omitted."""
    face: dict[str, Any] = {"box": [float(v) for v in box], "score": float(score)}
    if output.probabilities is not None:
        face["expressions"] = {name: float(output.probabilities[name]) for name in EXPRESSIONS}
    if output.age is not None:
        face["age"] = float(output.age)
    if output.gender is not None:
        face["gender"] = output.gender
        face["gender_probability"] = float(output.gender_prob)
    if output.descriptor is not None:
        face["descriptor"] = [float(v) for v in np.asarray(output.descriptor)]
    return face


def score_image(rgb: np.ndarray, scorer: Scorer, detector: Any, min_score: float = 0.0) -> dict:
    """{"faces": [...]} for one image (see `face_json`); `min_score` filters the detector."""
    if scorer.name == "faceapi":
        from exprbench.scorers.faceapi import faceapi_json

        return faceapi_json(rgb, scorer.options)
    faces = []
    for face in detector.detect(rgb, upsample=1, min_score=min_score):
        try:
            faces.append(face_json(face.box, face.score, scorer.score(rgb, face)))
        except ScorerFoundNoFaceError:
            continue
    return {"faces": faces}


def image_workers(
    scorer_name: str, options: Mapping[str, Any], images: int
) -> tuple[dict[str, Any], int]:
    """(scorer options, images scored at once) for `exprbench score` on `images` files.

    With several images and no `threads` option, a thread-safe scorer scores one image
    per CPU at once with one onnxruntime thread each: more images per second than every
    core on one image (threads wait for each other on each layer), and the same results.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cpus or 1, images)
    if scorer_name not in THREAD_SAFE or "threads" in options or workers < 2:
        return dict(options), 1
    return {**options, "threads": 1}, workers


def score_paths(
    paths: Sequence[str], scorer: Scorer, detector: Any, min_score: float = 0.0, workers: int = 1
) -> Iterator[dict]:
    """{"path", "faces"} per image, in order (or {"path", "error"} for a file that cannot
    be read); `workers` images are read and scored at once."""

    def one(path: str) -> dict:
        try:
            return {"path": path, **score_image(load_rgb(path), scorer, detector, min_score)}
        except (ImageRejected, OSError) as error:
            return {"path": path, "error": str(error)}

    if workers < 2:
        yield from map(one, paths)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(one, paths)
