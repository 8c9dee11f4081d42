"""Human's faceres as a scorer: `human_faceres` (identity, age, gender), run as Human 3.3.6
runs it (exprbench.human; matching tfjs in Node within 1e-3, tests/test_human_parity.py).

Identity: the 1024-d descriptor is compared after scaling to unit length, so
identity_distance is the L2 distance of unit vectors (0..2; cosine similarity =
1 - distance^2 / 2). It is not calibrated for dlib's "L2 < 0.6": the scorer declares its
own `same_identity_threshold`, 0.9 (README, "Human's face networks", says how it was set).

Human's mobilefacenet is ported too (exprbench.human.MobileFaceNet, same parity test) but
is no scorer: fed as Human feeds it, its embeddings of different people lie as close as
those of one person (measured in the README), so its identity verdicts would carry nothing.

Options: threads (onnxruntime intra-op threads, default 1), scale (how much the face box
is enlarged before the square crop; default 1.55: Human's 1.4 for its BlazeFace box, which
is ~1.1 times the dlib box the pipeline gives, exprbench.human.DLIB_BOX_SCALE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from exprbench.geometry import Face
from exprbench.human import DLIB_BOX_SCALE, FaceRes, face_tensor, faceres_input
from exprbench.imagecheck import check_rgb_image
from exprbench.scorers.base import Output, ScoreOutput, Scorer, register
from exprbench.weights import weight_path


def _options(name: str, options: Mapping[str, Any]) -> tuple[int, float]:
    unknown = set(options) - {"threads", "scale"}
    if unknown:
        raise ValueError(f"{name} scorer: unknown options {sorted(unknown)}")
    threads = int(options.get("threads", 1))
    scale = float(options.get("scale", DLIB_BOX_SCALE))
    if threads < 1 or not 0.5 <= scale <= 4:
        raise ValueError(f"{name} scorer: need threads >= 1 and 0.5 <= scale <= 4")
    return threads, scale


def unit(vector: np.ndarray) -> np.ndarray:
    """The descriptor scaled to unit L2 length (float32); a zero vector stays zero."""
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / np.float32(norm) if norm > 0 else vector


@register
class HumanFaceResScorer(Scorer):
    """HSE FaceRec as Human runs it: 1024-d descriptor, gender (sigmoid), age (100 bins)."""

    name: ClassVar[str] = "human_faceres"
    weights: ClassVar[tuple[str, ...]] = ("human-faceres.json", "human-faceres.bin")
    outputs: ClassVar[frozenset[Output]] = frozenset({"identity", "age", "gender"})
    crop: ClassVar[str] = (
        "Human's face crop: the (dlib) face box enlarged 1.55x (Human: its BlazeFace box "
        "1.4x), squared, cropAndResize to 192 px (0..1), resizeBilinear to 224 px, times 255"
    )
    description: ClassVar[str] = (
        "Human 3.3.6's faceres (HSE FaceRec, MobileNet): 1024-d identity descriptor "
        "(compared at unit length), gender from its sigmoid, age from its 100 bins as "
        "Human derives it; matching tfjs in Node within 1e-3"
    )
    license: ClassVar[str] = "MIT (@vladmandic/human 3.3.6; model from HSE_FaceRec_tf)"
    same_identity_threshold: ClassVar[float | None] = 0.9

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        threads, self.scale = _options(self.name, self.options)
        self.model = FaceRes(
            weight_path("human-faceres.json"), weight_path("human-faceres.bin"), threads
        )

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        return self.score_batch([(image, face)])[0]

    def score_batch(self, items: Sequence[tuple[np.ndarray, Face]]) -> list[ScoreOutput]:
        if not items:
            return []
        inputs = np.concatenate(
            [
                faceres_input(face_tensor(check_rgb_image(image, self.name), face.box, self.scale))
                for image, face in items
            ]
        )
        outputs = []
        for result in self.model.run(inputs):
            gender, gender_prob = result.gender
            outputs.append(
                ScoreOutput(
                    age=result.age,
                    gender=gender,
                    gender_prob=gender_prob,
                    descriptor=unit(result.descriptor),
                )
            )
        return outputs
