"""Score every face of one image with one scorer, as JSON-able data (`exprbench score`).

The faceapi scorer reports face-api.js's own detections in face-api.js's order; every other
scorer is applied to each face the pipeline's detector finds, primary first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from exprbench.labels import EXPRESSIONS
from exprbench.scorers import Scorer, ScorerFoundNoFaceError


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
