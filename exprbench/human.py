"""Human's face networks (`@vladmandic/human`): faceres and mobilefacenet, as Human runs them.

Both are tfjs graph models run on onnxruntime through `exprbench.tfjs_graph`. The crop and
normalisation follow Human 3.3.6's source (`src/face/blazeface.ts`, `facemeshutil.ts`,
`faceres.ts`, `mobilefacenet.ts`, default config):

1. the face box is enlarged 1.4 times about its centre (`config.face.detector.scale`) and
   made square with the longer side (`enlargeBox`, `squarifyBox`: corners rounded to
   whole pixels);
2. that square is cut with `tf.image.cropAndResize` (bilinear, zero outside the image) to
   192 x 192, FaceMesh's input size, and divided by 255 (`cutAndResize`; no rotation:
   `config.face.detector.rotation` is false);
3. faceres: `tf.image.resizeBilinear` to 224 x 224 (align_corners false, TensorFlow's
   legacy pixel mapping), times 255; mobilefacenet: `resizeBilinear` to 112 x 112, left in
   0..1.

Human gets the box from its own BlazeFace detector; here it is the box of the face the
pipeline detected (dlib HOG), which is ~1.1 times smaller, so the scorers enlarge it 1.55
times (`DLIB_BOX_SCALE`) to cut Human's crop; the remaining difference is where the two
detectors put the box.

Outputs, as `faceres.ts` derives them: gender = 'female' if the sigmoid <= 0.5 else 'male'
(the sigmoid is P(male)); age from the 100-bin softmax: with i = argmax and p the larger
of its two neighbours' probabilities, age = i - 10 p (left neighbour larger) or i + 10 p,
rounded to 0.1 year. The descriptors are the raw `global_pooling/Mean` (1024-d, faceres)
and `embeddings` (192-d, mobilefacenet, already L2-normalised by the graph).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from exprbench.tfjs_graph import GraphModel

DETECTOR_SCALE = 1.4  # config.face.detector.scale
# The scorers' default for a dlib (HOG) box: BlazeFace's boxes, which Human enlarges by 1.4,
# are ~1.1 times the side of dlib's for the same face, so 1.4 x 1.1 cuts Human's crop
# (measured against Human's own chain on package photos: benchmarks/bench_human.py).
DLIB_BOX_SCALE = 1.55
CROP_SIZE = 192  # FaceMesh's input size: the face tensor Human hands to faceres
FACERES_SIZE = 224
MOBILEFACENET_SIZE = 112
AGE_BINS = 100

# Human's output node names
FACERES_DESCRIPTOR = "global_pooling/Mean"
FACERES_GENDER = "gender_pred/Sigmoid"
FACERES_AGE = "age_pred/Softmax"
MOBILEFACENET_EMBEDDING = "embeddings"


def _js_round(value: float) -> float:
    """JavaScript's Math.round (halves go up)."""
    return float(math.floor(value + 0.5))


def human_box(
    box: Sequence[float], scale: float = DETECTOR_SCALE
) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of Human's square face crop for a face box (x, y, w, h):
    `squarifyBox(enlargeBox(box, scale))`."""
    x, y, w, h = (float(v) for v in box)
    cx, cy = x + w / 2, y + h / 2
    half = max(scale * w, scale * h) / 2
    return (
        _js_round(cx - half),
        _js_round(cy - half),
        _js_round(cx + half),
        _js_round(cy + half),
    )


def crop_and_resize(image: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """tf.image.cropAndResize(image, [[y1/h, x1/w, y2/h, x2/w]], [0], [size, size]) for an
    (H, W, C) image and a pixel box (x1, y1, x2, y2): bilinear, 0 outside the image.
    float32 (size, size, C)."""
    img = np.asarray(image, dtype=np.float32)
    height, width = img.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    ys = _crop_coords(y1 / height, y2 / height, height, size)
    xs = _crop_coords(x1 / width, x2 / width, width, size)
    out = np.zeros((size, size, img.shape[2]), dtype=np.float32)
    valid_y = (ys >= 0) & (ys <= height - 1)
    valid_x = (xs >= 0) & (xs <= width - 1)
    if not valid_y.any() or not valid_x.any():
        return out
    yv, xv = ys[valid_y], xs[valid_x]
    top, left = np.floor(yv).astype(np.int64), np.floor(xv).astype(np.int64)
    bottom, right = np.ceil(yv).astype(np.int64), np.ceil(xv).astype(np.int64)
    y_lerp = (yv - top).astype(np.float32)[:, None, None]
    x_lerp = (xv - left).astype(np.float32)[None, :, None]
    top_left = img[top][:, left]
    top_right = img[top][:, right]
    bottom_left = img[bottom][:, left]
    bottom_right = img[bottom][:, right]
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    out[np.ix_(valid_y, valid_x)] = upper + (lower - upper) * y_lerp
    return out


def _crop_coords(start: float, end: float, length: int, size: int) -> np.ndarray:
    """Source coordinates of cropAndResize's output rows (or columns), as TensorFlow's
    kernel computes them (in float32)."""
    if size > 1:
        step = np.float32((end - start) * (length - 1) / (size - 1))
        return np.float32(start * (length - 1)) + np.arange(size, dtype=np.float32) * step
    return np.array([0.5 * (start + end) * (length - 1)], dtype=np.float32)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """tf.image.resizeBilinear(image, [size, size], alignCorners=false) (legacy, no half-
    pixel centres) for an (H, W, C) float32 image."""
    img = np.asarray(image, dtype=np.float32)
    height, width = img.shape[:2]

    def coords(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(size, dtype=np.float32) * np.float32(length / size)
        low = np.floor(src).astype(np.int64)
        high = np.minimum(low + 1, length - 1)
        return low, high, (src - low).astype(np.float32)

    top, bottom, y_lerp = coords(height)
    left, right, x_lerp = coords(width)
    y_lerp, x_lerp = y_lerp[:, None, None], x_lerp[None, :, None]
    top_left, top_right = img[top][:, left], img[top][:, right]
    bottom_left, bottom_right = img[bottom][:, left], img[bottom][:, right]
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    return upper + (lower - upper) * y_lerp


def face_tensor(image: np.ndarray, box: Sequence[float], scale: float = DETECTOR_SCALE):
    """Human's 192 x 192 face tensor in 0..1 (`cutAndResize` of the enlarged square box)."""
    crop = crop_and_resize(image, human_box(box, scale), CROP_SIZE)
    return crop / np.float32(255)


def faceres_input(face: np.ndarray) -> np.ndarray:
    """faceres.ts `enhance`: resizeBilinear to 224 x 224, times 255 (float32, NHWC batch)."""
    return (resize_bilinear(face, FACERES_SIZE) * np.float32(255))[None]


def mobilefacenet_input(face: np.ndarray) -> np.ndarray:
    """mobilefacenet.ts: resizeBilinear to 112 x 112, values left in 0..1."""
    return resize_bilinear(face, MOBILEFACENET_SIZE)[None]


def age_from_bins(probabilities: np.ndarray) -> float:
    """faceres.ts's age: i = argmax; i -/+ 10 x the larger neighbour's probability, rounded
    to 0.1. At the last bin Human reads past the array and gets NaN; a missing neighbour
    counts as 0 here (the only place this differs from Human)."""
    p = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    if p.size != AGE_BINS:
        raise ValueError(f"expected {AGE_BINS} age bins, got {p.size}")
    i = int(np.argmax(p))
    before = float(p[i - 1]) if i > 0 else None
    after = float(p[i + 1]) if i + 1 < p.size else 0.0
    left = before is not None and before > after
    value = 10 * i - 100 * before if left and before is not None else 10 * i + 100 * after
    return _js_round(value) / 10


def gender_from_sigmoid(value: float) -> tuple[str, float]:
    """(gender, probability of that gender): 'female' if P(male) <= 0.5 (Human's rule).
    Human reports genderScore = trunc(200 |p - 0.5|) / 100 instead of the probability, and
    'unknown' when that is <= 0.1 (config.face.description.minConfidence)."""
    p = float(value)
    return ("female", 1.0 - p) if p <= 0.5 else ("male", p)


@dataclass
class FaceResOutput:
    descriptor: np.ndarray  # (1024,) float32, raw global_pooling/Mean
    gender_sigmoid: float  # P(male)
    age_bins: np.ndarray  # (100,) softmax

    @cached_property
    def age(self) -> float:
        return age_from_bins(self.age_bins)

    @cached_property
    def gender(self) -> tuple[str, float]:
        return gender_from_sigmoid(self.gender_sigmoid)


class FaceRes:
    """HSE FaceRec (faceres.json) on onnxruntime; `run` takes faceres inputs (N, 224, 224, 3)."""

    def __init__(self, model_json: Path, weights_bin: Path, threads: int | None = None) -> None:
        self.model = GraphModel.load(
            model_json,
            {"faceres.bin": weights_bin},
            outputs=[FACERES_DESCRIPTOR, FACERES_GENDER, FACERES_AGE],
            threads=threads,
        )

    def run(self, inputs: np.ndarray) -> list[FaceResOutput]:
        out = self.model.run(inputs)
        return [
            FaceResOutput(
                out[FACERES_DESCRIPTOR][i].astype(np.float32),
                float(out[FACERES_GENDER][i, 0]),
                out[FACERES_AGE][i].astype(np.float32),
            )
            for i in range(inputs.shape[0])
        ]


class MobileFaceNet:
    """MobileFaceNet (mobilefacenet.json) on onnxruntime; `run` takes (N, 112, 112, 3)."""

    def __init__(self, model_json: Path, weights_bin: Path, threads: int | None = None) -> None:
        self.model = GraphModel.load(
            model_json,
            {"mobilefacenet.bin": weights_bin},
            outputs=[MOBILEFACENET_EMBEDDING],
            threads=threads,
        )

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 192) float32 embeddings (unit length)."""
        return self.model.run(inputs)[MOBILEFACENET_EMBEDDING].astype(np.float32)
