"""exprbench.tfjs_graph, exprbench.human and the human_faceres scorer on real photos.

Parity with Human / tfjs in Node is tests/test_human_parity.py; here: the interpreter's
errors, Human's box and age arithmetic, the scorer's outputs on real faces and the
per-scorer same-identity threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import missing_prerequisite

from exprbench.faces import FaceDetector
from exprbench.human import age_from_bins, gender_from_sigmoid, human_box
from exprbench.imageio import load_rgb
from exprbench.scorers.base import ModelUnavailableError
from exprbench.scoring import add_relative_measures
from exprbench.tfjs_graph import GraphModel, UnsupportedOpError
from exprbench.validation.suite import (
    THRESHOLD_ATTR,
    THRESHOLDS_ATTR,
    _same_identity_inconsistent,
)


def _tiny_graph(op: str) -> dict:
    shape = {"shape": {"dim": [{"size": "-1"}, {"size": "4"}, {"size": "4"}, {"size": "3"}]}}
    return {
        "format": "graph-model",
        "modelTopology": {
            "node": [
                {"name": "x", "op": "Placeholder", "attr": {"shape": shape}},
                {"name": "y", "op": op, "input": ["x"]},
            ]
        },
    }


def test_unsupported_op_is_named():
    with pytest.raises(UnsupportedOpError, match=r"op 'Tanh' \(node 'y'\)"):
        GraphModel(_tiny_graph("Tanh"), {})


def test_supported_unary_op_runs():
    model = GraphModel(_tiny_graph("Relu"), {}, outputs=["y"])
    x = np.linspace(-1, 1, 48, dtype=np.float32).reshape(1, 4, 4, 3)
    np.testing.assert_array_equal(model.run(x)["y"], np.maximum(x, 0))
    with pytest.raises(ValueError, match="input must be"):
        model.run(np.zeros((1, 5, 4, 3), np.float32))


def test_human_box_is_enlarged_square_with_js_rounding():
    # centre (60, 60), longer side 100 * 1.4 = 140 -> corners -10 .. 130
    assert human_box((10, 20, 100, 80)) == (-10.0, -10.0, 130.0, 130.0)
    # Math.round rounds halves up, also below zero: -0.5 -> 0
    assert human_box((0.5, 0.5, 1, 1), scale=2.0)[:2] == (0.0, 0.0)


def test_age_and_gender_follow_faceres_ts():
    bins = np.zeros(100, np.float32)
    bins[[29, 30, 31]] = [0.2, 0.5, 0.3]  # right neighbour larger: 30 + 10 * 0.3
    assert age_from_bins(bins) == pytest.approx(33.0)
    bins[[29, 31]] = [0.3, 0.2]  # left neighbour larger: 30 - 10 * 0.3
    assert age_from_bins(bins) == pytest.approx(27.0)
    assert gender_from_sigmoid(0.5) == ("female", 0.5)
    assert gender_from_sigmoid(0.8) == ("male", pytest.approx(0.8))


def test_per_scorer_threshold_decides_same_identity():
    def row(scorer: str, expression: str, descriptor: list[float]) -> dict:
        return {
            "generator": "g",
            "version": "1",
            "subject": "s",
            "scorer": scorer,
            "expression": expression,
            "replicate": 1,
            "face_found": True,
            "descriptor": descriptor,
        }

    rows = [row(s, e, [0.0, d]) for s in ("a", "b") for e, d in (("neutral", 0), ("happy", 0.7))]
    out = add_relative_measures(rows, 0.6, thresholds={"b": 0.9})
    same = {r["scorer"]: r["same_identity"] for r in out if r["expression"] == "happy"}
    assert same == {"a": False, "b": True}


def test_validation_checks_each_scorers_own_threshold():
    frame = pd.DataFrame(
        {
            "scorer": ["dlib", "human_faceres", "human_faceres"],
            "identity_distance": [0.8, 0.8, 0.95],
            "same_identity": [True, True, True],
        }
    )
    frame.attrs[THRESHOLD_ATTR] = 0.6
    frame.attrs[THRESHOLDS_ATTR] = {"dlib": 0.6, "human_faceres": 0.9}
    flagged = _same_identity_inconsistent(frame)
    assert flagged.notna().tolist() == [True, False, True]
    assert "threshold 0.9" in flagged[2] and "threshold 0.6" in flagged[0]


@pytest.fixture(scope="module")
def faceres():
    from exprbench.scorers.human import HumanFaceResScorer

    try:
        return HumanFaceResScorer()
    except ModelUnavailableError as error:
        missing_prerequisite(str(error))


def test_faceres_scorer_on_real_faces(photos, faceres):
    detector = FaceDetector()
    outputs = {}
    for name in ("obama", "obama3", "grace_hopper", "biden"):
        image = load_rgb(photos[name])
        face = max(detector.detect(image), key=lambda f: f.box[2] * f.box[3])
        outputs[name] = faceres.score(image, face)
    for name, out in outputs.items():
        assert out.descriptor is not None and out.descriptor.shape == (1024,), name
        assert np.linalg.norm(out.descriptor) == pytest.approx(1.0, abs=1e-5)
        assert out.age is not None and 15 <= out.age <= 90, (name, out.age)
        assert out.gender_prob is not None and 0.5 <= out.gender_prob <= 1
    assert outputs["biden"].gender == "male" and outputs["obama"].gender == "male"
    assert outputs["biden"].age > outputs["obama"].age  # 77 vs ~50 years old in these photos

    def distance(a: str, b: str) -> float:
        return float(np.linalg.norm(outputs[a].descriptor - outputs[b].descriptor))

    threshold = faceres.same_identity_threshold
    assert distance("obama", "obama3") < threshold < distance("obama", "grace_hopper")
    # a batch gives the same outputs as one face at a time
    image = load_rgb(photos["obama"])
    face = max(detector.detect(image), key=lambda f: f.box[2] * f.box[3])
    (batched, _) = faceres.score_batch([(image, face), (image, face)])
    np.testing.assert_allclose(batched.descriptor, outputs["obama"].descriptor, atol=1e-5)
