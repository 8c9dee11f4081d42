"""face-api.js FaceExpressionNet: 7 expression probabilities from an aligned face crop.

FaceFeatureExtractor + a 256 -> 7 fully connected layer + softmax, in face-api.js's label
order; `CANONICAL` maps those labels onto exprbench's expression names.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from exprbench.faceapi.feature_extractor import face_net_graph
from exprbench.faceapi.graph import Graph, Network
from exprbench.faceapi.model_cache import network_model
from exprbench.labels import EXPRESSIONS

# faceExpressionNet/FaceExpressions.ts FACE_EXPRESSION_LABELS (output order)
FACEAPI_LABELS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgusted",
    "surprised",
)
CANONICAL: dict[str, str] = {
    "neutral": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "fearful": "fear",
    "disgusted": "disgust",
    "surprised": "surprise",
}
assert set(CANONICAL.values()) == set(EXPRESSIONS), "face-api.js labels must cover ours"


def build_graph(weights: Mapping[str, np.ndarray]) -> Graph:
    """FaceFeatureExtractor + fc + softmax: input N x 112 x 112 x 3 -> `output` N x 7."""
    return face_net_graph("face_expression", weights, softmax=True)


class FaceExpressionNet:
    """Weights from `face_expression_model` (decoded manifest)."""

    def __init__(self, weights: Mapping[str, np.ndarray], threads: int | None = None) -> None:
        self.network = Network(network_model(weights, build_graph), threads)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """N x 112 x 112 x 3 normalised crops -> N x 7 probabilities (face-api.js order)."""
        return self.network.run(input=batch)["output"]


def to_canonical(probabilities: np.ndarray) -> dict[str, float]:
    """One row in face-api.js order -> {canonical expression: p} in EXPRESSIONS order."""
    by_label = {CANONICAL[k]: float(v) for k, v in zip(FACEAPI_LABELS, probabilities, strict=True)}
    return {name: by_label[name] for name in EXPRESSIONS}
