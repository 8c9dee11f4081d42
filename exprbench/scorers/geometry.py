"""Expression geometry: action-unit-related landmark displacements from the neutral face.

No training data decides anything here: dlib's 68 landmarks are fitted on the faces
stage's aligned crop of the image and of the same subject's neutral image, and
`exprbench.expression_geometry` reads the displacement of each measure (lip corners,
mouth, jaw, brows, lids, nostrils) in inter-ocular distances. docs/GEOMETRY.md has the
definitions, the FACS action units and the limits.

Why the crops (the PairScorer contract) and not the faces stage's landmarks on the full
image: both faces of a pair are measured the same way, at the same scale (faces.crop_size)
and upright, and on the demo photos the crop's landmarks reproduce the full image's
measures within 0.005-0.024 IOD (sd per measure) except the chin, whose position depends on
the detector box (a constant offset of about -0.04 IOD, which the neutral's cancels).
The detection nearest the crop's centre is used, so a neighbour's face at the crop's edge
is never measured; a crop where dlib finds no face gets null measures and a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import dlib
import numpy as np

from exprbench.expression_geometry import COLUMNS, FEAR_VS_SURPRISE, GEOMETRY_METRICS, displacement
from exprbench.faces import shape_points
from exprbench.imagecheck import check_rgb_image
from exprbench.metrics import MetricSpec
from exprbench.scorers.base import Output, PairScorer, ScoreOutput, register
from exprbench.weights import weight_path


@register
class GeometryScorer(PairScorer):
    name: ClassVar[str] = "geometry"
    weights: ClassVar[tuple[str, ...]] = ("dlib-landmarks-68",)
    outputs: ClassVar[frozenset[Output]] = frozenset()
    extra_metrics: ClassVar[tuple[MetricSpec, ...]] = GEOMETRY_METRICS
    crop: ClassVar[str] = (
        "the faces stage's aligned crop (faces.align, faces.crop_size); dlib HOG and 68 "
        "landmarks refitted on it"
    )
    description: ClassVar[str] = (
        "expression geometry: displacement of action-unit-related landmark measures (lip "
        "corners, mouth, jaw, brows, lids, nose) from the neutral image, in inter-ocular "
        "distances; fear-vs-surprise score (docs/GEOMETRY.md)"
    )
    license: ClassVar[str] = "68-point model: iBUG 300-W terms, non-commercial"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._detector = dlib.get_frontal_face_detector()
        self._shape68 = dlib.shape_predictor(str(weight_path("dlib-landmarks-68")))

    def landmarks(self, crop: np.ndarray) -> np.ndarray | None:
        """68 landmarks (68 x 2, crop pixels) of the face nearest the crop's centre, or
        None when dlib's HOG detector finds none (tried at upsample 0, then 1)."""
        crop = check_rgb_image(crop, "geometry")
        centre = np.array([crop.shape[1], crop.shape[0]], dtype=np.float64) / 2 - 0.5
        for upsample in (0, 1):
            rects = self._detector(crop, upsample)
            if len(rects):
                rect = min(
                    rects,
                    key=lambda r: float(
                        np.hypot(*(np.array([r.center().x, r.center().y]) - centre))
                    ),
                )
                return shape_points(self._shape68(crop, rect)).astype(np.float64)
        return None

    def compare(self, crop: np.ndarray, reference: np.ndarray) -> ScoreOutput:
        face, neutral = self.landmarks(crop), self.landmarks(reference)
        unmeasured = ScoreOutput(metrics=dict.fromkeys((*COLUMNS, FEAR_VS_SURPRISE)))
        if face is None or neutral is None:
            return unmeasured
        try:
            return ScoreOutput(metrics=dict(displacement(face, neutral)))
        except ValueError:  # landmarks too small or not face-like: nothing to measure
            return unmeasured
