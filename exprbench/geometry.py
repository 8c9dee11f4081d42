"""Plain face-geometry records shared by the detector, the scorers and the tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in an RGB image, in that image's pixel coordinates.

    box is (x, y, width, height); landmarks5 follows dlib's 5-point order (right eye
    outer, right eye inner, left eye outer, left eye inner, nose), landmarks68 iBUG 300-W.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks5: np.ndarray  # (5, 2) float32
    landmarks68: np.ndarray  # (68, 2) float32

    @property
    def size_px(self) -> float:
        """Shorter side of the box: the number upscaling decisions compare with."""
        return float(min(self.box[2], self.box[3]))
