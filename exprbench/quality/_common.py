"""Input checks shared by the quality metrics."""

from __future__ import annotations

import numpy as np


def as_rgb(image: np.ndarray, *, metric: str, min_side: int = 1) -> np.ndarray:
    """Check that `image` is an H x W x 3 uint8 RGB array at least `min_side` px a side."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"{metric} needs an H x W x 3 uint8 RGB array, got dtype {array.dtype} "
            f"and shape {array.shape}"
        )
    if min(array.shape[:2]) < min_side:
        raise ValueError(
            f"{metric} needs images at least {min_side} px on each side, got "
            f"{array.shape[1]}x{array.shape[0]}"
        )
    return array
