"""The quality and ST-LPIPS scorers as the score stage uses them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from exprbench.scorers import PairScorer, get_scorer_class
from exprbench.scoring import add_relative_measures
from tests.conftest import load_rgb_array


@pytest.fixture(scope="module")
def quality(models):
    return get_scorer_class("quality")()


def test_quality_scorer_fills_its_columns(quality, photos):
    from exprbench.faces import FaceDetector

    image = load_rgb_array(photos["grace_hopper"])
    face = FaceDetector().detect(image)[0]
    metrics = quality.score(image, face).metrics
    assert set(metrics) == {"brisque", "niqe", "piqe", "niqe_reliable"}
    assert 0 <= metrics["piqe"] <= 100 and metrics["niqe"] > 0
    assert metrics["niqe_reliable"] is True  # 512 x 600
    small = np.asarray(Image.fromarray(image).resize((150, 176)))
    small_metrics = quality.score(small, face).metrics
    assert small_metrics["niqe"] is None and small_metrics["niqe_reliable"] is False
    assert small_metrics["brisque"] is not None


def test_stlpips_is_a_pair_scorer_measuring_change(models, photos):
    cls = get_scorer_class("stlpips")
    assert issubclass(cls, PairScorer)
    scorer = cls()
    crop = load_rgb_array(photos["franck_01829"])
    same = scorer.compare(crop, crop).metrics
    assert same == {
        "stlpips_vgg": pytest.approx(0, abs=1e-6),
        "stlpips_alex": pytest.approx(0, abs=1e-6),
    }
    other = scorer.compare(load_rgb_array(photos["franck_04117"]), crop).metrics
    assert other["stlpips_vgg"] > 0.05 and other["stlpips_alex"] > 0.05
    with pytest.raises(TypeError, match="compare"):
        scorer.score(crop, None)


def test_pair_measures_compare_with_the_neutral_crop():
    calls = []

    def measure(row, ref):
        calls.append((row["crop_sha256"], ref["crop_sha256"]))
        return {"stlpips_vgg": 0.25}

    rows = [
        {
            "generator": "g",
            "version": "1",
            "subject": "a",
            "expression": e,
            "replicate": 1,
            "scorer": "stlpips",
            "face_found": True,
            "crop_sha256": sha,
        }
        for e, sha in (("neutral", "n"), ("happy", "h"), ("sad", "s"))
    ]
    out = add_relative_measures(rows, 0.6, {"stlpips": measure})
    assert calls == [("h", "n"), ("s", "n")]
    assert out[1]["stlpips_vgg"] == 0.25 and "reference" in out[0]["note"]
