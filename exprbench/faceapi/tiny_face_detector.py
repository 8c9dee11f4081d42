"""face-api.js TinyFaceDetector: a Tiny-YOLOv2-style detector with separable convs.

Input: the image zero-padded at the bottom/right to a square, resized bilinearly to
`input_size` (a multiple of 32, default 416), minus its own mean RGB, / 255. A 3 x 3
'valid' conv and five depthwise-separable convs (explicit 1-pixel zero padding, leaky
ReLU 0.1) with 2 x 2 max pools, then a 1 x 1 conv: a 13 x 13 grid (at 416) of 5 anchors
x (x, y, w, h, score). Boxes above `score_threshold` go through greedy NMS at IoU 0.4.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from exprbench.faceapi.boxes import detection_box, iou, relative_box
from exprbench.faceapi.graph import Graph, Network
from exprbench.faceapi.model_cache import network_model
from exprbench.faceapi.preprocess import js_round, normalize, to_batch_tensor
from exprbench.faceapi.ssd_mobilenetv1 import Detection

IOU_THRESHOLD = 0.4
MEAN_RGB = np.array([117.001, 114.697, 97.404], dtype=np.float32)
ANCHORS: tuple[tuple[float, float], ...] = (
    (1.603231, 2.094468),
    (6.041143, 7.080126),
    (2.882459, 3.518061),
    (4.266906, 5.178857),
    (9.041765, 10.66308),
)
_LEAK = np.float32(0.10000000149011612)


def _leaky(g: Graph, x: str) -> str:
    """tinyYolov2/leaky.ts: relu(x - 0.1x) + 0.1x."""
    low = g.op("Mul", [x, g.const(_LEAK)])
    return g.add(g.relu(g.op("Sub", [x, low])), low)


def tiny_input(image: np.ndarray, input_size: int) -> np.ndarray:
    """uint8 H x W x 3 -> 1 x S x S x 3 normalised float32 input."""
    return normalize(to_batch_tensor(image, input_size, center=False)[None], MEAN_RGB)


def build_graph(weights: Mapping[str, np.ndarray], input_size: int) -> Graph:
    """Input N x S x S x 3 -> `output` N x S/32 x S/32 x 25 (NHWC, as tfjs has it)."""
    g = Graph("tiny_face_detector")
    x = g.nhwc_to_nchw(g.input("input", ["N", input_size, input_size, 3]))
    out, size = g.conv(
        x, input_size, weights["conv0/filters"], weights["conv0/bias"], padding="valid"
    )
    out, size = g.max_pool(_leaky(g, out), size, 2, 2, "same")
    for i in range(1, 6):
        # explicit 1-pixel zero pad + 'valid' == 'same' for a 3 x 3, stride-1 conv
        out, size = g.separable_conv(out, size, weights, f"conv{i}")
        out, size = g.max_pool(_leaky(g, out), size, 2, 2 if i < 5 else 1, "same")
    out, _ = g.conv(out, size, weights["conv8/filters"], weights["conv8/bias"], padding="valid")
    g.output(g.op("Transpose", [out], perm=[0, 2, 3, 1]), "output")
    return g


class TinyFaceDetector:
    """Weights from `tiny_face_detector_model` (decoded manifest); one graph per input size."""

    def __init__(self, weights: Mapping[str, np.ndarray], threads: int | None = None) -> None:
        self.weights = weights
        self.threads = threads
        self._networks: dict[int, Network] = {}

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """N x S x S x 3 normalised input -> N x S/32 x S/32 x 25 raw output (NHWC)."""
        size = batch.shape[1]
        if size not in self._networks:
            model = network_model(self.weights, build_graph, size)
            self._networks[size] = Network(model, self.threads)
        return self._networks[size].run(input=batch)["output"]

    def locate_faces(
        self, image: np.ndarray, input_size: int = 416, score_threshold: float = 0.5
    ) -> list[Detection]:
        """TinyFaceDetector.locateFaces on one uint8 RGB image."""
        if input_size % 32 != 0:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        if not 0 < score_threshold < 1:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        out = self.forward(tiny_input(image, input_size))[0]
        height, width = image.shape[:2]
        return decode_detections(out, width, height, input_size, score_threshold)


def _sigmoid(x: float) -> float:
    return 1 / (1 + float(np.exp(-x)))


def decode_detections(
    out: np.ndarray, width: int, height: int, input_size: int, score_threshold: float
) -> list[Detection]:
    """TinyYolov2Base.extractBoxes + NMS + TinyFaceDetector.locateFaces, in float64."""
    scale = input_size / max(height, width)
    reshaped_w, reshaped_h = js_round(width * scale), js_round(height * scale)
    side = max(reshaped_w, reshaped_h)
    corr_x, corr_y = side / reshaped_w, side / reshaped_h
    cells = out.shape[0]
    grid = out.reshape(cells, cells, len(ANCHORS), 5)
    boxes, scores = [], []
    for row in range(cells):
        for col in range(cells):
            for anchor, (ax, ay) in enumerate(ANCHORS):
                tx, ty, tw, th, ts = (float(v) for v in grid[row, col, anchor])
                score = _sigmoid(ts)
                if score <= score_threshold:
                    continue
                ct_x = ((col + _sigmoid(tx)) / cells) * corr_x
                ct_y = ((row + _sigmoid(ty)) / cells) * corr_y
                w = ((float(np.exp(tw)) * ax) / cells) * corr_x
                h = ((float(np.exp(th)) * ay) / cells) * corr_y
                x, y = ct_x - w / 2, ct_y - h / 2
                boxes.append((x, y, (x + w) - x, (y + h) - y))
                scores.append(score)
    keep = non_max_suppression(
        [
            (b[0] * input_size, b[1] * input_size, b[2] * input_size, b[3] * input_size)
            for b in boxes
        ],
        scores,
        IOU_THRESHOLD,
    )
    detections = []
    for idx in keep:
        # ObjectDetection(box relative) -> TinyFaceDetector re-wraps its relativeBox
        box = detection_box(boxes[idx], width, height)
        box = detection_box(relative_box(box, width, height), width, height)
        detections.append(Detection(scores[idx], box, width, height))
    return detections


def non_max_suppression(
    boxes: list[tuple[float, float, float, float]], scores: list[float], iou_threshold: float
) -> list[int]:
    """ops/nonMaxSuppression.ts: repeatedly take the best remaining box, drop those that
    overlap it by IoU > threshold (ties: the later index first, as a stable sort + pop)."""
    remaining = sorted(range(len(scores)), key=lambda i: scores[i])
    picked: list[int] = []
    while remaining:
        current = remaining.pop()
        picked.append(current)
        remaining = [i for i in remaining if iou(boxes[current], boxes[i]) <= iou_threshold]
    return picked
