"""face-api.js SsdMobilenetv1: MobileNetV1 + SSD box predictors, box decoding and NMS.

Input: the image zero-padded at the bottom/right to a square, resized bilinearly to
512 x 512, scaled to [-1, 1]. MobileNetV1 (depthwise conv + batch norm + relu6, pointwise
conv + offset + relu6; stride 2 at layers 0, 2, 4, 6, 12), eight extra prediction convs,
six box predictors over 5118 anchors (`Output/extra_dim`). Scores are sigmoid of class 1;
boxes decode with variances (10, 10, 5, 5). NMS keeps boxes with score > minConfidence
greedily, suppressing IoU > 0.5, then clips the boxes to the padded square and maps them
back to the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from exprbench.faceapi.boxes import Box, detection_box
from exprbench.faceapi.graph import Graph, Network
from exprbench.faceapi.model_cache import network_model
from exprbench.faceapi.preprocess import js_round, to_batch_tensor

INPUT_SIZE = 512
IOU_THRESHOLD = 0.5
BN_EPSILON = 0.0010000000474974513  # mobileNetV1.ts
NUM_ANCHORS = 5118
_STRIDE2_LAYERS = frozenset({2, 4, 6, 12})
_PREDICTION_STRIDES = (1, 2, 1, 2, 1, 2, 1, 2)


@dataclass(frozen=True)
class Detection:
    """A face-api.js FaceDetection: score and box (x, y, w, h) in the image's pixels."""

    score: float
    box: Box
    image_width: int
    image_height: int


def ssd_input(image: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 -> 1 x 512 x 512 x 3 float32 in [-1, 1] (toBatchTensor(512, false))."""
    square = to_batch_tensor(image, INPUT_SIZE, center=False)  # a new float32 array
    square /= np.float32(127.5)
    square -= np.float32(1)
    return square[None]


def build_graph(w: Mapping[str, np.ndarray]) -> Graph:
    """The network as an ONNX graph: input N x 512 x 512 x 3 -> `boxes` (N x 5118 x 4 box
    encodings) and `scores` (N x 5118, sigmoid of class 1)."""
    g = Graph("ssd_mobilenetv1")
    x = g.nhwc_to_nchw(g.input("input", ["N", INPUT_SIZE, INPUT_SIZE, 3]))
    out, size = g.conv(
        x,
        INPUT_SIZE,
        w["MobilenetV1/Conv2d_0_pointwise/weights"],
        w["MobilenetV1/Conv2d_0_pointwise/convolution_bn_offset"],
        stride=2,
    )
    out = g.relu6(out)
    conv11 = out
    for i in range(1, 14):
        dw, pw = f"MobilenetV1/Conv2d_{i}_depthwise", f"MobilenetV1/Conv2d_{i}_pointwise"
        # tf.batchNorm folded into the depthwise filter: (conv - mean) * g/sqrt(v+e) + beta
        gamma, beta = w[f"{dw}/BatchNorm/gamma"], w[f"{dw}/BatchNorm/beta"]
        mean, var = w[f"{dw}/BatchNorm/moving_mean"], w[f"{dw}/BatchNorm/moving_variance"]
        scale = (gamma / np.sqrt(var + np.float32(BN_EPSILON))).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        filters = (w[f"{dw}/depthwise_weights"] * scale[None, None, :, None]).astype(np.float32)
        stride = 2 if i in _STRIDE2_LAYERS else 1
        out, size = g.conv(out, size, filters, shift, stride, depthwise=True)
        out, _ = g.conv(g.relu6(out), size, w[f"{pw}/weights"], w[f"{pw}/convolution_bn_offset"])
        out = g.relu6(out)
        if i == 11:
            conv11 = out
    feats, p, psize = [], out, size
    for i, stride in enumerate(_PREDICTION_STRIDES):
        pw = f"Prediction/Conv2d_{i}_pointwise"
        p, psize = g.conv(p, psize, w[f"{pw}/weights"], w[f"{pw}/convolution_bn_offset"], stride)
        p = g.relu6(p)
        feats.append(p)
    sources = (conv11, out, feats[1], feats[3], feats[5], feats[7])
    encodings: list[str] = []
    classes: list[str] = []
    for i, src in enumerate(sources):
        pre = f"Prediction/BoxPredictor_{i}"
        for kind, depth, into in (
            ("BoxEncodingPredictor", 4, encodings),
            ("ClassPredictor", 3, classes),
        ):
            conv, _ = g.conv(src, 1, w[f"{pre}/{kind}/weights"], w[f"{pre}/{kind}/biases"])
            nhwc = g.op("Transpose", [conv], perm=[0, 2, 3, 1])
            into.append(g.op("Reshape", [nhwc, g.const(np.array([0, -1, depth]))]))
    g.output(g.op("Concat", encodings, axis=1), "boxes")
    logits = g.op("Gather", [g.op("Concat", classes, axis=1), g.const(np.array(1))], axis=2)
    g.output(g.op("Sigmoid", [logits]), "scores")
    return g


class SsdMobilenetv1:
    """The detector; weights from `ssd_mobilenetv1_model` (decoded manifest)."""

    def __init__(self, weights: Mapping[str, np.ndarray], threads: int | None = None) -> None:
        self.network = Network(network_model(weights, build_graph), threads)
        self.anchors = np.ascontiguousarray(weights["Output/extra_dim"].reshape(-1, 4), np.float32)
        if self.anchors.shape[0] != NUM_ANCHORS:
            raise ValueError(f"expected {NUM_ANCHORS} anchors, got {self.anchors.shape[0]}")

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N x 512 x 512 x 3 normalised input -> (boxes N x 5118 x 4 as [y0, x0, y1, x1]
        relative to the padded square, scores N x 5118), both float32."""
        out = self.network.run(input=batch)
        return decode_boxes(self.anchors, out["boxes"]), out["scores"]

    def locate_faces(
        self, image: np.ndarray, min_confidence: float = 0.5, max_results: int = 100
    ) -> list[Detection]:
        """SsdMobilenetv1.locateFaces on one uint8 RGB image."""
        boxes, scores = self.forward(ssd_input(image))
        height, width = image.shape[:2]
        return boxes_to_detections(boxes[0], scores[0], width, height, min_confidence, max_results)


def decode_boxes(anchors: np.ndarray, encoding: np.ndarray) -> np.ndarray:
    """outputLayer's decodeBoxesLayer in float32: anchors (A, 4), encodings (N, A, 4)."""
    a = anchors
    size0, size1 = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    center0 = a[:, 0] + size0 / np.float32(2)
    center1 = a[:, 1] + size1 / np.float32(2)
    e = encoding
    half0 = np.exp(e[..., 2] / np.float32(5)) * size0 / np.float32(2)
    mid0 = e[..., 0] / np.float32(10) * size0 + center0
    half1 = np.exp(e[..., 3] / np.float32(5)) * size1 / np.float32(2)
    mid1 = e[..., 1] / np.float32(10) * size1 + center1
    return np.stack([mid0 - half0, mid1 - half1, mid0 + half0, mid1 + half1], axis=-1)


def _iou_corners(a: np.ndarray, b: np.ndarray) -> float:
    """ssdMobilenetv1/nonMaxSuppression.ts IOU on [y0, x0, y1, x1] boxes (float64)."""
    ay0, ay1 = min(a[0], a[2]), max(a[0], a[2])
    ax0, ax1 = min(a[1], a[3]), max(a[1], a[3])
    by0, by1 = min(b[0], b[2]), max(b[0], b[2])
    bx0, bx1 = min(b[1], b[3]), max(b[1], b[3])
    area_a = (ay1 - ay0) * (ax1 - ax0)
    area_b = (by1 - by0) * (bx1 - bx0)
    if area_a <= 0 or area_b <= 0:
        return 0.0
    ih = max(min(ay1, by1) - max(ay0, by0), 0.0)
    iw = max(min(ax1, bx1) - max(ax0, bx0), 0.0)
    inter = ih * iw
    return inter / (area_a + area_b - inter)


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    max_output: int,
    iou_threshold: float,
    score_threshold: float,
) -> list[int]:
    """face-api.js's SSD NMS: candidates with score > threshold by descending score
    (stable), each kept unless it overlaps a kept box by IoU > iou_threshold."""
    boxes64 = boxes.astype(np.float64)
    scores64 = scores.astype(np.float64)
    candidates = np.flatnonzero(scores64 > score_threshold)
    order = candidates[np.argsort(-scores64[candidates], kind="stable")]
    limit = min(max_output, boxes.shape[0])
    selected: list[int] = []
    for idx in order:
        if len(selected) >= limit:
            break
        if all(_iou_corners(boxes64[idx], boxes64[j]) <= iou_threshold for j in reversed(selected)):
            selected.append(int(idx))
    return selected


def boxes_to_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    width: int,
    height: int,
    min_confidence: float = 0.5,
    max_results: int = 100,
) -> list[Detection]:
    """locateFaces after the network: NMS, clip to [0, 1], undo the padding, scale."""
    if not 0 < min_confidence < 1:
        raise ValueError(f"min_confidence must be in (0, 1), got {min_confidence}")
    indices = non_max_suppression(boxes, scores, max_results, IOU_THRESHOLD, min_confidence)
    scale = INPUT_SIZE / max(height, width)
    pad_x = INPUT_SIZE / js_round(width * scale)
    pad_y = INPUT_SIZE / js_round(height * scale)
    detections = []
    for idx in indices:
        b = [float(v) for v in boxes[idx]]
        top, bottom = max(0.0, b[0]) * pad_y, min(1.0, b[2]) * pad_y
        left, right = max(0.0, b[1]) * pad_x, min(1.0, b[3]) * pad_x
        relative = (left, top, right - left, bottom - top)
        detections.append(
            Detection(float(scores[idx]), detection_box(relative, width, height), width, height)
        )
    return detections
