"""face-api.js AgeGenderNet: apparent age and gender from an aligned face crop.

TinyXception backbone (entry conv, two reduction blocks, two residual main blocks, an
exit reduction block and separable conv; 112 x 112 input normalised like the other face
nets), a 7 x 7 average pool, then two fully connected heads: age (512 -> 1, years) and
gender (512 -> 2, softmax; index 0 is male).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from exprbench.faceapi.graph import Graph, Network
from exprbench.faceapi.model_cache import network_model

INPUT_SIZE = 112
NUM_MAIN_BLOCKS = 2


def _conv(
    g: Graph, x: str, size: int, weights: Mapping[str, np.ndarray], prefix: str, stride: int
) -> tuple[str, int]:
    return g.conv(x, size, weights[f"{prefix}/filters"], weights[f"{prefix}/bias"], stride)


def _reduction_block(
    g: Graph,
    x: str,
    size: int,
    weights: Mapping[str, np.ndarray],
    prefix: str,
    activate_input: bool = True,
) -> tuple[str, int]:
    out = g.relu(x) if activate_input else x
    out, _ = g.separable_conv(out, size, weights, f"{prefix}/separable_conv0")
    out, _ = g.separable_conv(g.relu(out), size, weights, f"{prefix}/separable_conv1")
    out, pooled_size = g.max_pool(out, size, 3, 2, "same")
    expansion, _ = _conv(g, x, size, weights, f"{prefix}/expansion_conv", 2)
    return g.add(out, expansion), pooled_size


def _main_block(g: Graph, x: str, size: int, weights: Mapping[str, np.ndarray], prefix: str) -> str:
    out = x
    for i in range(3):
        out, _ = g.separable_conv(g.relu(out), size, weights, f"{prefix}/separable_conv{i}")
    return g.add(out, x)


def build_graph(weights: Mapping[str, np.ndarray]) -> Graph:
    """TinyXception(2) + heads: input N x 112 x 112 x 3 -> `age` (N x 1), `gender`
    (N x 2 softmax)."""
    g = Graph("age_gender")
    x = g.nhwc_to_nchw(g.input("input", ["N", INPUT_SIZE, INPUT_SIZE, 3]))
    out, size = _conv(g, x, INPUT_SIZE, weights, "entry_flow/conv_in", 2)
    out = g.relu(out)
    out, size = _reduction_block(
        g, out, size, weights, "entry_flow/reduction_block_0", activate_input=False
    )
    out, size = _reduction_block(g, out, size, weights, "entry_flow/reduction_block_1")
    for i in range(NUM_MAIN_BLOCKS):
        out = _main_block(g, out, size, weights, f"middle_flow/main_block_{i}")
    out, size = _reduction_block(g, out, size, weights, "exit_flow/reduction_block")
    out, _ = g.separable_conv(out, size, weights, "exit_flow/separable_conv")
    pooled, _ = g.avg_pool(g.relu(out), size, 7, 2)
    pooled = g.flatten(pooled)
    g.output(g.dense(pooled, weights["fc/age/weights"], weights["fc/age/bias"]), "age")
    gender = g.dense(pooled, weights["fc/gender/weights"], weights["fc/gender/bias"])
    g.output(g.softmax(gender), "gender")
    return g


class AgeGenderNet:
    """Weights from `age_gender_model` (decoded manifest)."""

    def __init__(self, weights: Mapping[str, np.ndarray], threads: int | None = None) -> None:
        self.network = Network(network_model(weights, build_graph), threads)

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N x 112 x 112 x 3 normalised crops -> (ages N, gender probabilities N x 2)."""
        out = self.network.run(input=batch)
        return out["age"][:, 0], out["gender"]


def gender_from_probabilities(probs: np.ndarray) -> tuple[str, float]:
    """AgeGenderNet.predictAgeAndGender: male when P(male) > 0.5; probability of that."""
    prob_male = float(probs[0])
    if prob_male > 0.5:
        return "male", prob_male
    return "female", 1 - prob_male
