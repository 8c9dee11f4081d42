"""face-api.js FaceFeatureExtractor: the backbone of FaceLandmark68Net and FaceExpressionNet.

112 x 112 input (face crop zero-padded to a centred square, resized bilinearly, minus
the mean RGB, / 255), four dense blocks of depthwise-separable convs (the first block
opens with a plain 3 x 3 conv; each block halves the size), then a 7 x 7 average pool:
a 256-d feature per face. The two networks have their own copies of these weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from exprbench.faceapi.graph import Graph

INPUT_SIZE = 112


def dense_block4(
    g: Graph, x: str, size: int, weights: Mapping[str, np.ndarray], prefix: str, first: bool
) -> tuple[str, int]:
    """faceFeatureExtractor/denseBlock.ts denseBlock4 (isScaleDown = true)."""
    if first:
        out1, size = g.conv(
            x, size, weights[f"{prefix}/conv0/filters"], weights[f"{prefix}/conv0/bias"], 2
        )
    else:
        out1, size = g.separable_conv(x, size, weights, f"{prefix}/conv0", 2)
    out1 = g.relu(out1)
    out2, _ = g.separable_conv(out1, size, weights, f"{prefix}/conv1")
    out3, _ = g.separable_conv(g.relu(g.add(out1, out2)), size, weights, f"{prefix}/conv2")
    in4 = g.relu(g.add(out1, g.add(out2, out3)))
    out4, _ = g.separable_conv(in4, size, weights, f"{prefix}/conv3")
    return g.relu(g.add(out1, g.add(out2, g.add(out3, out4)))), size


def face_features(g: Graph, x: str, weights: Mapping[str, np.ndarray]) -> str:
    """N x 3 x 112 x 112 (NCHW value) -> N x 256 features."""
    size = INPUT_SIZE
    for i in range(4):
        x, size = dense_block4(g, x, size, weights, f"dense{i}", first=i == 0)
    pooled, _ = g.avg_pool(x, size, 7, 2)  # tf.avgPool(out, [7, 7], [2, 2], 'valid')
    return g.flatten(pooled)


def face_net_graph(name: str, weights: Mapping[str, np.ndarray], softmax: bool) -> Graph:
    """FaceFeatureExtractor + fully connected `fc` (+ softmax): input N x 112 x 112 x 3,
    output `output`."""
    g = Graph(name)
    x = g.nhwc_to_nchw(g.input("input", ["N", INPUT_SIZE, INPUT_SIZE, 3]))
    out = g.dense(face_features(g, x, weights), weights["fc/weights"], weights["fc/bias"])
    g.output(g.softmax(out) if softmax else out, "output")
    return g
