"""face-api.js FaceRecognitionNet: the 128-d face descriptor (a dlib-style ResNet-34 port).

150 x 150 input (the dlib-aligned crop, zero-padded to a centred square, resized,
normalised with the mean RGB / 255), a 7 x 7 stride-2 'valid' conv + scale layer, 3 x 3
stride-2 max pool, residual stages of 32/64/128/256 channels (down-sampling blocks add an
average-pooled, zero-channel-padded shortcut), global mean, and a 256 -> 128 projection.
Descriptors of one person lie within L2 distance 0.6.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from exprbench.faceapi.graph import Graph, Network
from exprbench.faceapi.model_cache import network_model

INPUT_SIZE = 150

_STAGES: tuple[tuple[str, bool], ...] = (
    ("conv32_1", False),
    ("conv32_2", False),
    ("conv32_3", False),
    ("conv64_down", True),
    ("conv64_1", False),
    ("conv64_2", False),
    ("conv64_3", False),
    ("conv128_down", True),
    ("conv128_1", False),
    ("conv128_2", False),
    ("conv256_down", True),
    ("conv256_1", False),
    ("conv256_2", False),
    ("conv256_down_out", True),
)


def _conv_layer(
    g: Graph,
    x: str,
    size: int,
    weights: Mapping[str, np.ndarray],
    prefix: str,
    down: bool = False,
) -> tuple[str, int]:
    """conv + bias, then the scale layer (x * weights + biases), folded into the conv.
    down: stride 2, 'valid' (convDown); else stride 1, 'same'."""
    scale = weights[f"{prefix}/scale/weights"]
    filters = (weights[f"{prefix}/conv/filters"] * scale).astype(np.float32)
    bias = (weights[f"{prefix}/conv/bias"] * scale + weights[f"{prefix}/scale/biases"]).astype(
        np.float32
    )
    if down:
        return g.conv(x, size, filters, bias, 2, padding="valid")
    return g.conv(x, size, filters, bias)


def _residual(
    g: Graph, x: str, size: int, weights: Mapping[str, np.ndarray], prefix: str, down: bool
) -> tuple[str, int]:
    out, out_sz = _conv_layer(g, x, size, weights, f"{prefix}/conv1", down)
    out, _ = _conv_layer(g, g.relu(out), out_sz, weights, f"{prefix}/conv2")
    if not down:
        return g.relu(g.add(out, x)), size
    pooled, pooled_sz = g.avg_pool(x, size, 2, 2)
    if pooled_sz != out_sz:  # one zero row below and one zero column right of `out`
        out = g.op("Pad", [out, g.const(np.array([0, 0, 0, 0, 0, 0, 1, 1]))])
    channels_in = weights[f"{prefix}/conv1/conv/filters"].shape[2]
    channels_out = weights[f"{prefix}/conv2/conv/filters"].shape[3]
    if channels_in != channels_out:  # zero channels appended to the shortcut
        extra = channels_out - channels_in
        pooled = g.op("Pad", [pooled, g.const(np.array([0, 0, 0, 0, 0, extra, 0, 0]))])
    return g.relu(g.add(pooled, out)), pooled_sz


def build_graph(weights: Mapping[str, np.ndarray]) -> Graph:
    """Input N x 150 x 150 x 3 -> `descriptor` N x 128."""
    g = Graph("face_recognition")
    x = g.nhwc_to_nchw(g.input("input", ["N", INPUT_SIZE, INPUT_SIZE, 3]))
    out, size = _conv_layer(g, x, INPUT_SIZE, weights, "conv32_down", down=True)
    out, size = g.max_pool(g.relu(out), size, 3, 2, "valid")
    for name, down in _STAGES:
        out, size = _residual(g, out, size, weights, name, down)
    mean = g.op("ReduceMean", [out], axes=[2, 3], keepdims=0)
    g.output(g.op("MatMul", [mean, g.const(weights["fc"], "fc")]), "descriptor")
    return g


class FaceRecognitionNet:
    """Weights from `face_recognition_model` (decoded manifest)."""

    def __init__(self, weights: Mapping[str, np.ndarray], threads: int | None = None) -> None:
        self.network = Network(network_model(weights, build_graph), threads)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """N x 150 x 150 x 3 normalised crops -> N x 128 descriptors (float32)."""
        return self.network.run(input=batch)["descriptor"]
