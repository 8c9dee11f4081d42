"""face-api.js box and landmark geometry, in float64 with face-api.js's order of operations.

Boxes are (x, y, width, height) tuples of Python floats in image pixels. face-api.js
round-trips boxes through relative coordinates (x * (1/W) * W ...) before it floors them
into crops; the same double-precision steps are taken here so every crop has the same
integer bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]

# FaceLandmarks.alignDlib constants
_REL_X = 0.5
_REL_Y = 0.43
_REL_SCALE = 0.45


def rescale(box: Box, sx: float, sy: float) -> Box:
    """Box.rescale."""
    x, y, w, h = box
    return (x * sx, y * sy, w * sx, h * sy)


def detection_box(relative: Box, width: int, height: int) -> Box:
    """The pixel box of an ObjectDetection built from a relative box (Box.rescale(dims))."""
    return rescale(relative, width, height)


def relative_box(box: Box, width: int, height: int) -> Box:
    """ObjectDetection.relativeBox: Box.rescale(imageDims.reverse())."""
    return rescale(box, 1 / width, 1 / height)


def for_size(box: Box, width: int, height: int) -> Box:
    """ObjectDetection.forSize(W, H).box for a detection of a W x H image."""
    return detection_box(relative_box(box, width, height), width, height)


def clip_at_image_borders(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Box.clipAtImageBorders(W, H): clip the top-left, cap the size, floor everything."""
    x, y, w, h = box
    right, bottom = x + w, y + h
    cx, cy = max(x, 0), max(y, 0)
    cw = min(right - cx, width - cx)
    ch = min(bottom - cy, height - cy)
    return (math.floor(cx), math.floor(cy), math.floor(cw), math.floor(ch))


def crop(image: np.ndarray, bounds: tuple[int, int, int, int]) -> np.ndarray:
    """tf.slice3d(image, [y, x, 0], [h, w, 3]) for bounds from `clip_at_image_borders`."""
    x, y, w, h = bounds
    return image[y : y + h, x : x + w]


def center_point(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """getCenterPoint: sequential sum from (0, 0), then divided by the count."""
    sx = sy = 0.0
    for px, py in points:
        sx, sy = sx + px, sy + py
    n = len(points)
    return (sx / n, sy / n)


def min_bbox_padded(points: np.ndarray, padding: float = 0.2) -> Box:
    """FaceLandmarks.alignMinBbox: minBbox of the points (max starts at 0, as in face-api.js),
    then Box.pad(width * padding, height * padding)."""
    xs = [float(v) for v in points[:, 0]]
    ys = [float(v) for v in points[:, 1]]
    min_x, min_y = min(xs), min(ys)
    max_x, max_y = max(0.0, *xs), max(0.0, *ys)
    w, h = max_x - min_x, max_y - min_y
    pad_x, pad_y = w * padding, h * padding
    return (min_x - pad_x / 2, min_y - pad_y / 2, w + pad_x, h + pad_y)


def align_dlib(points: np.ndarray, image_width: float, image_height: float) -> Box:
    """FaceLandmarks.alignDlib: the square face-api.js crops for the recognition net.

    `image_width`/`image_height` are the landmarks' own image dimensions, which in
    face-api.js's chain are those of the detection crop, not of the image.
    """
    pts = [(float(x), float(y)) for x, y in points]
    left_eye = center_point(pts[36:42])
    right_eye = center_point(pts[42:48])
    mouth = center_point(pts[48:68])

    def dist_to_mouth(pt: tuple[float, float]) -> float:
        dx, dy = mouth[0] - pt[0], mouth[1] - pt[1]
        return math.sqrt(dx * dx + dy * dy)

    eye_to_mouth = (dist_to_mouth(left_eye) + dist_to_mouth(right_eye)) / 2
    size = math.floor(eye_to_mouth / _REL_SCALE)
    ref = center_point([left_eye, right_eye, mouth])
    x = math.floor(max(0, ref[0] - _REL_X * size))
    y = math.floor(max(0, ref[1] - _REL_Y * size))
    return (
        float(x),
        float(y),
        float(min(size, image_width + x)),
        float(min(size, image_height + y)),
    )


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes (ops/iou.ts with isIOU)."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
