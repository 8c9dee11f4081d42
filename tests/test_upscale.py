"""Upscale decisions and classical resampling."""

from __future__ import annotations

import numpy as np
import pytest

from exprbench import upscale as up
from tests.conftest import load_rgb_array


@pytest.mark.parametrize(
    ("measured", "expected_factor"),
    [(200, 1), (112, 1), (60, 2), (56, 2), (40, 4), (20, 8), (5, 8)],
)
def test_smallest_factor_reaching_the_target(measured, expected_factor):
    decision = up.decide(measured, "face", method="bicubic", min_face_px=112, max_factor=8)
    assert decision.factor == expected_factor
    assert decision.method == ("none" if expected_factor == 1 else "bicubic")


def test_max_factor_caps_and_none_disables():
    assert up.decide(20, "face", method="lanczos", min_face_px=112, max_factor=2).factor == 2
    assert up.decide(20, "face", method="none", min_face_px=112, max_factor=8).factor == 1


def test_bad_params_are_named():
    with pytest.raises(ValueError, match=r"upscale\.method 'esrgan'"):
        up.decide(20, "face", method="esrgan", min_face_px=112, max_factor=8)
    with pytest.raises(ValueError, match=r"upscale\.max_factor"):
        up.decide(20, "face", method="bicubic", min_face_px=112, max_factor=3)


@pytest.mark.parametrize("method", sorted(up.METHODS))
def test_resamplers_keep_the_picture(photos, method):
    original = load_rgb_array(photos["grace_hopper"])
    small = original[::4, ::4]
    decision = up.decide(40, "face", method=method, min_face_px=112, max_factor=4)
    big = up.apply(small, decision)
    assert big.shape == (small.shape[0] * 4, small.shape[1] * 4, 3)
    assert big.dtype == np.uint8
    # an x4 reconstruction of a /4 image stays close to the original (mean abs error)
    h, w = min(big.shape[0], original.shape[0]), min(big.shape[1], original.shape[1])
    error = np.abs(big[:h, :w].astype(float) - original[:h, :w].astype(float)).mean()
    assert error < 20, f"{method}: mean abs error {error:.1f}"


def test_fixed_factor_and_learned_methods_are_offered():
    decision = up.decide(60, "face", method="bicubic", min_face_px=112, max_factor=8, factor=8)
    assert decision.factor == 8
    assert (
        up.decide(200, "face", method="bicubic", min_face_px=112, max_factor=8, factor=4).factor
        == 1
    )  # large enough faces are left alone
    with pytest.raises(ValueError, match=r"upscale\.factor"):
        up.decide(60, "face", method="bicubic", min_face_px=112, max_factor=8, factor=3)
    for name in (
        "realesrgan-x4plus",
        "esrgan-slim",
        "esrgan-medium",
        "esrgan-thick",
        "lanczos+unsharp",
    ):
        assert name in up.METHODS
    assert "Lanczos" in up.describe("realesrgan-x4plus", 8)
    assert up.describe("bicubic", 2) == "bicubic x2 (Pillow bicubic resampling)"
    assert up.describe("none", 1) == "not upscaled"


def test_upscale_stage_with_a_learned_model(tmp_path, photos, models):
    from pathlib import Path

    from PIL import Image

    from exprbench.config import Layout
    from exprbench.schema import UPSCALE, read_table
    from exprbench.settings import Settings, load_params
    from tasks.ingest import ingest
    from tasks.upscale import upscale

    raw = tmp_path / "raw" / "g" / "v" / "s"
    raw.mkdir(parents=True)
    small = Image.open(photos["grace_hopper"]).convert("RGB").resize((128, 150))
    small.save(raw / "neutral.png")
    params = load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    params["upscale"] = {**params["upscale"], "method": "esrgan-slim"}
    layout = Layout.for_output(tmp_path / "raw", tmp_path / "out")
    ingest.fn(layout, Settings.from_params(params))
    upscale.fn(layout, Settings.from_params(params))
    row = read_table(layout.upscale_table, UPSCALE).to_pylist()[0]
    assert row["upscale_method"] == "esrgan-slim" and row["upscale_factor"] > 1
    assert "esrgan-slim" in row["upscale_detail"]
    out = Image.open(layout.resolve(row["work_path"]))
    assert out.size == (128 * row["upscale_factor"], 150 * row["upscale_factor"])


def test_learned_method_names_match_the_sr_registry():
    from exprbench.sr import SR_METHODS

    assert set(up.SR_METHOD_NAMES) == set(SR_METHODS)
