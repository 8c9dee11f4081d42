"""The one check of image inputs: an H x W x 3 uint8 RGB numpy array.

Face detection, alignment, the scorers, super-resolution, the quality metrics and the
face-api.js port all take pixels in this form and validate them here, so a bad array
fails the same way everywhere, with a message that says what was wrong and where:

    check_rgb_image(rgba, "FaceDetector.detect")
    ValueError: FaceDetector.detect: expected shape (H, W, 3) for an H x W x 3 uint8 RGB
    array, got shape (512, 512, 4) (convert RGBA/grey images to RGB first)

Only numpy is imported, so any module can use it without pulling in dlib, cv2 or torch.
"""

from __future__ import annotations

import numpy as np


def check_rgb_image(
    image: object,
    where: str = "image",
    *,
    min_side: int = 1,
    error: type[ValueError] = ValueError,
) -> np.ndarray:
    """Return `image` as a C-contiguous H x W x 3 uint8 RGB array, or raise `error`.

    where: names the caller (a function, scorer or metric), first in the message, so a bad
    array is traced to its source. min_side: the least height and width accepted (1: not
    empty). error: the ValueError subclass to raise (e.g. `imageio.ImageRejected`).
    A C-contiguous input is returned as is; a view (a crop, a ::-1 flip) is copied, since
    dlib and cv2 need contiguous rows.
    """
    if not isinstance(image, np.ndarray):
        raise error(
            f"{where}: expected a numpy array (H x W x 3 uint8 RGB), got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise error(
            f"{where}: expected dtype uint8 for an H x W x 3 uint8 RGB array (0-255), "
            f"got dtype {image.dtype}"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise error(
            f"{where}: expected shape (H, W, 3) for an H x W x 3 uint8 RGB array, "
            f"got shape {image.shape}"
            + (" (convert RGBA/grey images to RGB first)" if image.ndim in (2, 3) else "")
        )
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise error(f"{where}: image is empty, expected a non-empty image, got shape {image.shape}")
    if min(height, width) < min_side:
        raise error(
            f"{where}: expected an image at least {min_side} px on each side, "
            f"got {width}x{height} (width x height)"
        )
    return np.ascontiguousarray(image)
