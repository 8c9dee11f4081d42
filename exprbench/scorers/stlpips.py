"""ST-LPIPS perceptual distance of each image's aligned face crop to its neutral's crop.

Shift-tolerant LPIPS with VGG and AlexNet (stlpips-pytorch 0.0.2 weights, our own torch
modules). Named ST-LPIPS everywhere: its values are not comparable to published LPIPS.
Both crops come from the faces stage (same alignment and size), so the distance measures
how the face changed, not framing or background.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from exprbench.scorers.base import Output, PairScorer, ScoreOutput, register


@register
class StLpipsScorer(PairScorer):
    name: ClassVar[str] = "stlpips"
    weights: ClassVar[tuple[str, ...]] = ("stlpips-vgg", "stlpips-alex")
    outputs: ClassVar[frozenset[Output]] = frozenset({"perceptual"})
    crop: ClassVar[str] = (
        "the faces stage's aligned crop (faces.align, faces.crop_size), resized to 256 px"
    )
    description: ClassVar[str] = (
        "ST-LPIPS (shift-tolerant LPIPS, VGG and AlexNet) distance to the neutral image's "
        "aligned crop; not comparable to published LPIPS values"
    )
    license: ClassVar[str] = "weights BSD-2-Clause (stlpips-pytorch 0.0.2)"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        from exprbench.quality import STLPIPS

        self._nets = {net: STLPIPS(net) for net in ("vgg", "alex")}

    def compare(self, crop: np.ndarray, reference: np.ndarray) -> ScoreOutput:
        return ScoreOutput(
            metrics={
                f"stlpips_{net}": float(model.distance(reference, crop))
                for net, model in self._nets.items()
            }
        )
