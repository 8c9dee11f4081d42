"""Face detection, primary-face choice and landmarks with dlib (HOG + shape predictors).

Everything here works in the RGB image's pixel coordinates and returns plain `Face`
records, so landmarks can be stored in tables and turned back into dlib shapes later
(`face_shape`) to recompute crops or scores without re-running detection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import dlib
import numpy as np

from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.weights import weight_path

if TYPE_CHECKING:
    from exprbench.settings import AlignMode

# Two faces whose box areas differ by less than this fraction count as the same size,
# and the detector's confidence decides between them (see `choose_primary`).
NEAR_TIE_AREA = 0.10


def box_to_rect(box: Sequence[float]) -> dlib.rectangle:
    """(x, y, width, height) -> dlib.rectangle with dlib's inclusive right/bottom."""
    x, y, w, h = (round(float(v)) for v in box)
    return dlib.rectangle(x, y, x + w - 1, y + h - 1)


def rect_to_box(rect: dlib.rectangle) -> tuple[float, float, float, float]:
    """dlib.rectangle -> (x, y, width, height); width counts pixels (right - left + 1)."""
    return (float(rect.left()), float(rect.top()), float(rect.width()), float(rect.height()))


def shape_points(shape: dlib.full_object_detection) -> np.ndarray:
    """Landmarks of a dlib shape as an (n, 2) float32 array of (x, y)."""
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32).reshape(-1, 2)


def face_shape(face: Face, points: Literal[5, 68] = 5) -> dlib.full_object_detection:
    """Rebuild the dlib shape of a stored Face (5- or 68-point) for chips and descriptors.

    dlib landmarks are integer pixels, so a Face made by `FaceDetector` round-trips exactly.
    """
    marks = face.landmarks5 if points == 5 else face.landmarks68
    marks = np.asarray(marks)
    if marks.shape != (points, 2):
        raise ValueError(
            f"face_shape: expected {points} landmarks of shape ({points}, 2), got {marks.shape}"
        )
    parts = dlib.points([dlib.point(round(float(x)), round(float(y))) for x, y in marks])
    return dlib.full_object_detection(box_to_rect(face.box), parts)


def _area(face: Face) -> float:
    return float(face.box[2]) * float(face.box[3])


def choose_primary(faces: Sequence[Face]) -> Face | None:
    """The largest and most confident face, or None when there is none.

    Rule: take every face whose box area is within NEAR_TIE_AREA (10%) of the largest
    area; among those, the highest detector score wins (then the larger area, then the
    first given). Why: HOG boxes come in a few fixed sizes, so two real faces (or a face
    and a badge) are often near-equal in size, and the score separates them.
    """
    if not faces:
        return None
    largest = max(_area(f) for f in faces)
    contenders = [f for f in faces if _area(f) >= (1.0 - NEAR_TIE_AREA) * largest]
    return max(contenders, key=lambda f: (f.score, _area(f)))


def order_faces(faces: Sequence[Face]) -> list[Face]:
    """Primary face first (see `choose_primary`), then the rest by area, then score."""
    primary = choose_primary(faces)
    if primary is None:
        return []
    rest = [f for f in faces if f is not primary]
    rest.sort(key=lambda f: (_area(f), f.score), reverse=True)
    return [primary, *rest]


class FaceDetector:
    """dlib's HOG frontal-face detector plus the 5- and 68-point shape predictors.

    Loading the predictors takes ~1 s, so build one detector and reuse it.
    """

    def __init__(self) -> None:
        self._detector = dlib.get_frontal_face_detector()
        self._shape5 = dlib.shape_predictor(str(weight_path("dlib-landmarks-5")))
        self._shape68 = dlib.shape_predictor(str(weight_path("dlib-landmarks-68")))

    def detect(self, image: np.ndarray, *, upsample: int = 1, min_score: float = 0.0) -> list[Face]:
        """Faces in an H x W x 3 uint8 RGB image, primary face first.

        upsample: how many times dlib doubles the image first (finds faces down to ~40 px
        at 1, ~80 px at 0, at about 4x the cost). min_score: drop detections whose HOG
        score is below it (low scores are often badges or patterns, not faces).
        """
        image = check_rgb_image(image, "FaceDetector.detect")
        if upsample < 0:
            raise ValueError(f"FaceDetector.detect: upsample must be >= 0, got {upsample}")
        rects, scores, _ = self._detector.run(image, upsample, 0.0)
        faces = [
            Face(
                box=rect_to_box(rect),
                score=float(score),
                landmarks5=shape_points(self._shape5(image, rect)),
                landmarks68=shape_points(self._shape68(image, rect)),
            )
            for rect, score in zip(rects, scores, strict=True)
            if score >= min_score
        ]
        return order_faces(faces)


def detect_record(
    detector: FaceDetector,
    rgb: np.ndarray,
    *,
    upsample: int,
    min_score: float,
    align_mode: AlignMode,
    crop_size: int,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The faces stage's result for one image as a JSON-able record, plus the aligned crop
    of the primary face (None: no face)."""
    from exprbench.align import align  # align imports this module

    faces = detector.detect(rgb, upsample=upsample, min_score=min_score)
    primary = choose_primary(faces)
    if primary is None:
        return {"face_found": False, "face_count": 0, "face_reason": "no face detected"}, None
    crop = align(rgb, primary, align_mode, crop_size)
    return {
        "face_found": True,
        "face_count": len(faces),
        "face_reason": f"{len(faces)} faces; scored the primary (largest, most confident)"
        if len(faces) > 1
        else None,
        "box": list(primary.box),
        "detector_score": primary.score,
        "landmarks5": primary.landmarks5.reshape(-1).tolist(),
        "landmarks68": primary.landmarks68.reshape(-1).tolist(),
        "align_detail": crop.describe(),
    }, crop.image


def face_from_record(record: Mapping[str, Any]) -> Face:
    """Rebuild the primary face from a faces-table row (box_*, detector_score, landmarks)."""
    return Face(
        box=(record["box_x"], record["box_y"], record["box_w"], record["box_h"]),
        score=record["detector_score"],
        landmarks5=np.asarray(record["landmarks5"], dtype=np.float32).reshape(5, 2),
        landmarks68=np.asarray(record["landmarks68"], dtype=np.float32).reshape(68, 2),
    )
