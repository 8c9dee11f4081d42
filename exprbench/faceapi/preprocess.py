"""Image preprocessing as face-api.js does it on tensor inputs (its Node/tfjs path).

Bit-exact with tfjs's wasm backend on float32 H x W x C numpy arrays: `resize_bilinear`
is `tf.image.resizeBilinear(x, size, alignCorners=false, halfPixelCenters=false)`
(TensorFlow's legacy mode: source = dst * in/out, no half-pixel offset, lerp along x then
y in float32), `pad_to_square` is face-api.js's `padToSquare`, `to_batch_tensor` is
`NetInput.toBatchTensor`. In a browser face-api.js draws images through a canvas instead,
which resamples differently; this module reproduces the tensor path only.
"""

from __future__ import annotations

import math

import numpy as np


def js_round(value: float) -> int:
    """JavaScript's Math.round: halves go up (Python's round() goes to even)."""
    return math.floor(value + 0.5)


def pad_to_square(image: np.ndarray, center: bool) -> np.ndarray:
    """face-api.js padToSquare: zero-pad the shorter side of an H x W x C array.

    Not centred: all padding after the image (bottom or right). Centred: Math.round(diff/2)
    after and the remainder before. Works on any dtype (zeros are exact in all of them).
    """
    height, width = image.shape[:2]
    if height == width:
        return image
    diff = abs(height - width)
    after = js_round(diff * (0.5 if center else 1.0))
    before = diff - after if center else 0
    side = max(height, width)
    out = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
    if height > width:
        out[:, before : before + width] = image
    else:
        out[before : before + height] = image
    return out


def _bilinear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = np.float32(size_in) / np.float32(size_out)
    src = np.arange(size_out, dtype=np.float32) * scale
    low = np.floor(src)
    frac = (src - low).astype(np.float32)
    low_i = low.astype(np.intp)
    return low_i, np.minimum(low_i + 1, size_in - 1), frac


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """tfjs resizeBilinear(alignCorners=false, halfPixelCenters=false) of an H x W x C
    array (uint8 or float32) -> height x width x C float32.

    Same float32 arithmetic as the wasm kernel (lerp along x, then along y), so the
    result is bit-identical; uint8 input gives the same result as its float32 copy.
    """
    y0, y1, fy = _bilinear_taps(image.shape[0], height)
    x0, x1, fx = _bilinear_taps(image.shape[1], width)
    # Along x once per source row used (an output row's top and bottom are lerped source
    # rows, whichever output rows share them), gathering in the input's own dtype first.
    rows, where = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    source = image[rows]
    # right - left, * fx, + left: tl + (tr - tl) * fx in float32, in place
    lerped = np.take(source, x1, axis=1).astype(np.float32)
    left = np.take(source, x0, axis=1).astype(np.float32)
    lerped -= left
    lerped *= fx[None, :, None]
    lerped += left
    top = lerped[where[:height]]
    bottom = lerped[where[height:]]
    # out = top + (bottom - top) * fy, in place
    bottom -= top
    bottom *= fy[:, None, None]
    bottom += top
    return bottom


def to_batch_tensor(image: np.ndarray, size: int, center: bool) -> np.ndarray:
    """face-api.js NetInput.toBatchTensor for one tensor input: padToSquare,
    resizeBilinear to size x size when not already that size, float32 size x size x C."""
    square = pad_to_square(image, center)
    if square.shape[0] != size or square.shape[1] != size:
        return resize_bilinear(square, size, size)
    return square.astype(np.float32)


MEAN_RGB = np.array([122.782, 117.001, 104.298], dtype=np.float32)  # face-api.js nets


def normalize(batch: np.ndarray, mean_rgb: np.ndarray = MEAN_RGB) -> np.ndarray:
    """face-api.js `normalize(x, meanRgb).div(255)` in float32, for N x H x W x 3."""
    return (batch - mean_rgb.astype(np.float32)) / np.float32(255)
