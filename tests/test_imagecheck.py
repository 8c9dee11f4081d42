"""The one RGB-input check (exprbench.imagecheck), and that every entry point uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import exprbench.imagecheck
from exprbench.imagecheck import check_rgb_image
from exprbench.imageio import ImageRejected


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ([[0, 0, 0]], r"^where: expected a numpy array \(H x W x 3 uint8 RGB\), got list$"),
        (np.zeros((4, 4, 3), np.float32), r"^where: expected dtype uint8 .* got dtype float32$"),
        (
            np.zeros((4, 4, 4), np.uint8),
            r"^where: expected shape \(H, W, 3\) .* got shape \(4, 4, 4\) "
            r"\(convert RGBA/grey images to RGB first\)$",
        ),
        (np.zeros((4, 4), np.uint8), r"^where: expected shape \(H, W, 3\) .*\(4, 4\)"),
        (np.zeros((1, 4, 4, 3), np.uint8), r"got shape \(1, 4, 4, 3\)$"),
        (np.zeros((0, 4, 3), np.uint8), r"^where: image is empty, expected a non-empty image"),
    ],
)
def test_bad_input_says_what_and_where(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_rgb_image(image, "where")


def test_min_side_and_error_class() -> None:
    with pytest.raises(ValueError, match=r"^NIQE: expected an image at least 192 px .* 200x191"):
        check_rgb_image(np.zeros((191, 200, 3), np.uint8), "NIQE", min_side=192)
    with pytest.raises(ImageRejected, match=r"^decoded image: expected shape"):
        check_rgb_image(np.zeros((4, 4), np.uint8), "decoded image", error=ImageRejected)


def test_returns_a_contiguous_array_copying_only_views() -> None:
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    assert check_rgb_image(rgb) is rgb
    flipped = rgb[:, ::-1]
    out = check_rgb_image(flipped)
    assert out.flags.c_contiguous and out is not flipped
    np.testing.assert_array_equal(out, flipped)


def test_light_import_and_one_check_everywhere() -> None:
    # Importable anywhere: numpy only, none of the heavy libraries.
    code = (
        "import sys, exprbench.imagecheck\n"
        "heavy = {'dlib', 'cv2', 'torch', 'PIL', 'onnxruntime', 'scipy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    root = Path(exprbench.imagecheck.__file__).parents[1]  # this checkout, not another install
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    # The old per-module checks are gone or call this one.
    from exprbench.faceapi import FaceApi
    from exprbench.sr import check_input

    bad = np.zeros((4, 4, 4), np.uint8)
    for call, where in [
        (lambda: FaceApi.__new__(FaceApi).detect_faces(bad), "FaceApi.detect_faces"),
        (lambda: check_input(bad, 4), "upscale"),
    ]:
        with pytest.raises(ValueError, match=rf"^{where}: expected shape \(H, W, 3\)"):
            call()
