"""The study's own instrument: face-api.js's expression, age/gender and 128-d descriptor.

Runs `exprbench.faceapi` (face-api.js's networks and processing on onnxruntime, matching
face-api.js in Node within 1e-3; see tests/test_faceapi_parity.py). face-api.js finds
faces itself (SsdMobilenetv1 by default) and crops them from its own landmarks, so the
scorer does not crop the `Face` it is given: it runs face-api.js's whole chain on the image
and reports the face-api.js face whose detection box overlaps the given face's box most
(intersection over union). When no face-api.js face overlaps it by at least `min_iou`
(0.3 by default; a dlib box and face-api.js's box of the same face overlap by ~0.5-0.9,
different faces by ~0), `score` raises `NoMatchingFaceError` rather than returning empty
outputs: the study would have had no measurement for that image.

Options: detector ('ssd' | 'tiny'), min_confidence (0.5), max_results (100), input_size
(416, tiny), score_threshold (0.5, tiny), threads (onnxruntime, default one per core),
min_iou (0.3).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from exprbench.faceapi import FaceApi, FaceApiError, FaceApiOptions, FaceApiResult
from exprbench.faceapi.boxes import iou
from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.labels import EXPRESSIONS
from exprbench.scorers.base import Output, ScoreOutput, Scorer, ScorerFoundNoFaceError, register

DEFAULT_MIN_IOU = 0.3
_CACHED_IMAGES = 8  # per-image chain results kept, so each face of an image runs it once


class NoMatchingFaceError(FaceApiError, ScorerFoundNoFaceError):
    """face-api.js found no face overlapping the face to score (its own detector missed it).

    Attributes: box (the face's box), best_iou (highest overlap found, 0.0 when face-api.js
    found no faces), faces_found (how many faces face-api.js found in the image).
    """

    def __init__(self, box: Sequence[float], best_iou: float, faces_found: int, min_iou: float):
        self.box = tuple(float(v) for v in box)
        self.best_iou = best_iou
        self.faces_found = faces_found
        super().__init__(
            f"face-api.js found no face matching box {self.box}: it found {faces_found} "
            f"face(s), best IoU {best_iou:.3f} < {min_iou}"
        )


def _options(options: Mapping[str, Any]) -> tuple[FaceApiOptions, float]:
    known = {
        "detector",
        "min_confidence",
        "max_results",
        "input_size",
        "score_threshold",
        "threads",
    }
    unknown = set(options) - known - {"min_iou"}
    if unknown:
        raise ValueError(f"faceapi scorer: unknown options {sorted(unknown)}")
    min_iou = float(options.get("min_iou", DEFAULT_MIN_IOU))
    if not 0 <= min_iou <= 1:
        raise ValueError(f"faceapi scorer: min_iou must be in [0, 1], got {min_iou}")
    return FaceApiOptions(**{k: v for k, v in options.items() if k in known}), min_iou


def to_score_output(result: FaceApiResult) -> ScoreOutput:
    """One face-api.js face -> ScoreOutput (probabilities renormalised to sum to 1)."""
    probs = np.array([result.expressions[name] for name in EXPRESSIONS], dtype=np.float64)
    probs = probs / probs.sum()
    return ScoreOutput(
        probabilities=dict(zip(EXPRESSIONS, probs.tolist(), strict=True)),
        age=float(result.age),
        gender=result.gender,
        gender_prob=float(result.gender_probability),
        descriptor=np.asarray(result.descriptor, dtype=np.float32),
    )


def best_match(
    results: Sequence[FaceApiResult], box: Sequence[float], min_iou: float = DEFAULT_MIN_IOU
) -> FaceApiResult:
    """The face-api.js face whose box overlaps `box` most; NoMatchingFaceError if none
    reaches `min_iou`. Ties go to the earlier (higher-scoring) face."""
    target = tuple(float(v) for v in box)
    best, best_iou = None, 0.0
    for result in results:
        overlap = iou(result.box, target)  # type: ignore[arg-type]
        if best is None or overlap > best_iou:
            best, best_iou = result, overlap
    if best is None or best_iou < min_iou or best_iou == 0.0:
        raise NoMatchingFaceError(target, best_iou, len(results), min_iou)
    return best


@register
class FaceApiScorer(Scorer):
    """face-api.js (0.22.2's networks): expressions, age, gender and identity descriptor."""

    name: ClassVar[str] = "faceapi"
    weights: ClassVar[tuple[str, ...]] = tuple(
        f"faceapi-{net}{part}"
        for net in (
            "ssd-mobilenetv1",
            "tiny-face-detector",
            "landmark68",
            "expression",
            "age-gender",
            "recognition",
        )
        for part in ("", "-manifest")
    )
    outputs: ClassVar[frozenset[Output]] = frozenset({"expression", "age", "gender", "identity"})
    crop: ClassVar[str] = (
        "face-api.js's own: its detector's box for the 68 landmarks, then landmark-aligned "
        "squares (112 px expression and age/gender, 150 px descriptor)"
    )
    description: ClassVar[str] = (
        "face-api.js as the study used it: its own SsdMobilenetv1 detection and 68 "
        "landmarks, FaceExpressionNet (7), AgeGenderNet and the 128-d FaceRecognitionNet "
        "descriptor, matching face-api.js in Node within 1e-3; scores the face-api.js face "
        "that best overlaps the given face"
    )
    license: ClassVar[str] = "MIT (face-api.js weights via @vladmandic/face-api 1.7.15)"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        api_options, self.min_iou = _options(self.options)
        self.api = FaceApi(api_options)
        self._cache: OrderedDict[tuple, list[FaceApiResult]] = OrderedDict()

    def faces(self, image: np.ndarray) -> list[FaceApiResult]:
        """face-api.js's whole chain on the image (cached for the last few images)."""
        image = check_rgb_image(image, f"{self.name} scorer")
        key = (image.shape, hashlib.blake2b(image.data, digest_size=16).digest())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        results = self.api.detect_all(image)
        self._cache[key] = results
        while len(self._cache) > _CACHED_IMAGES:
            self._cache.popitem(last=False)
        return results

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        """Outputs of the face-api.js face matching `face.box`; NoMatchingFaceError if none."""
        return to_score_output(best_match(self.faces(image), face.box, self.min_iou))

    def score_batch(self, items: Sequence[tuple[np.ndarray, Face]]) -> list[ScoreOutput]:
        # score() already runs the chain once per distinct image (cache above).
        return [self.score(image, face) for image, face in items]


def faceapi_json(
    image: np.ndarray, options: FaceApiOptions | Mapping[str, Any] | None = None
) -> dict:
    """face-api.js's results for one RGB image as JSON-able data, faces in face-api.js's
    order: {"faces": [{"box": [x, y, w, h], "score", "expressions": {canonical name: p},
    "age", "gender", "gender_probability", "descriptor": [128 floats]}]}.

    Models load once per process and are shared by every call.
    """
    results = FaceApi(options).detect_all(image)
    return {
        "faces": [
            {
                "box": [float(v) for v in r.box],
                "score": float(r.score),
                "expressions": {name: float(r.expressions[name]) for name in EXPRESSIONS},
                "age": float(r.age),
                "gender": r.gender,
                "gender_probability": float(r.gender_probability),
                "descriptor": [float(v) for v in r.descriptor],
            }
            for r in results
        ]
    }
