"""face-api.js FaceLandmark68Net: 68 landmarks from a face crop.

FaceFeatureExtractor + a 256 -> 136 fully connected layer giving (x, y) pairs relative to
the 112 x 112 padded input; `postprocess` removes the centring padding and divides by the
crop's scaled size (FaceLandmark68NetBase.postProcess, in float32), giving positions
relative to the crop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from exprbench.faceapi.feature_extractor import INPUT_SIZE, face_net_graph
from exprbench.faceapi.graph import Graph, Network
from exprbench.faceapi.model_cache import network_model

NUM_POINTS = 68


def build_graph(weights: Mapping[str, np.ndarray]) -> Graph:
    """FaceFeatureExtractor + fc: input N x 112 x 112 x 3 -> `output` N x 136."""
    return face_net_graph("face_landmark_68", weights, softmax=False)


class FaceLandmark68Net:
    """Weights from `face_landmark_68_model` (decoded manifest)."""

    def __init__(self, weights: Mapping[str, np.ndarray], threads: int | None = None) -> None:
        self.network = Network(network_model(weights, build_graph), threads)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """N x 112 x 112 x 3 normalised crops -> N x 136 raw outputs (float32)."""
        return self.network.run(input=batch)["output"]


def postprocess(output: np.ndarray, crop_sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """Raw N x 136 outputs -> N x 68 x 2 positions relative to each (height, width) crop."""
    out = np.empty((len(crop_sizes), NUM_POINTS, 2), dtype=np.float32)
    for i, (height, width) in enumerate(crop_sizes):
        scale = INPUT_SIZE / max(height, width)
        w, h = width * scale, height * scale
        pad_x = abs(w - h) / 2 if w < h else 0.0
        pad_y = abs(w - h) / 2 if h < w else 0.0
        pts = output[i].reshape(NUM_POINTS, 2) * np.float32(INPUT_SIZE)
        pts = pts - np.array([pad_x, pad_y], dtype=np.float32)
        out[i] = pts / np.array([w, h], dtype=np.float32)
    return out


def to_pixels(
    relative: np.ndarray, height: int, width: int, shift: tuple[float, float]
) -> np.ndarray:
    """Relative crop positions -> image pixels as face-api.js computes them (float64):
    FaceLandmarks68(rel, crop dims) then shiftBy(detection box x, y), which round-trips
    through relative positions once more."""
    rel = relative.astype(np.float64)
    dims = np.array([width, height], dtype=np.float64)
    positions = rel * dims  # constructor, shift (0, 0)
    return (positions - 0.0) / dims * dims + np.array(shift, dtype=np.float64)
