"""Unit tests of exprbench.faceapi and the faceapi scorer (no Node needed).

Agreement with face-api.js itself is tests/test_faceapi_parity.py.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from exprbench.faceapi import (
    CANONICAL,
    FACEAPI_LABELS,
    FaceApi,
    FaceApiOptions,
)
from exprbench.faceapi.boxes import align_dlib, clip_at_image_borders, iou, min_bbox_padded
from exprbench.faceapi.expression import to_canonical
from exprbench.faceapi.preprocess import js_round, pad_to_square, resize_bilinear, to_batch_tensor
from exprbench.faceapi.weights import (
    NETWORK_WEIGHTS,
    WeightFormatError,
    decode_weights,
    dequantize,
    network_weights,
)
from exprbench.geometry import Face
from exprbench.labels import EXPRESSIONS
from exprbench.scorers.base import OUTPUT_METRICS, available_scorers, get_scorer_class
from exprbench.scorers.faceapi import (
    FaceApiScorer,
    NoMatchingFaceError,
    best_match,
    faceapi_json,
)
from tests.conftest import load_rgb_array

# ---------------------------------------------------------------- weights


def test_dequantize_matches_tfjs_formula():
    q = np.array([0, 1, 128, 255], dtype=np.uint8)
    scale, minimum = 0.0057930146946626555, -0.7125408074435067
    out = dequantize(q, scale, minimum)
    assert out.dtype == np.float32
    # tfjs: Float32Array[i] = q * scale + min, evaluated in float64 then stored as float32
    expected = np.array([np.float32(v * scale + minimum) for v in q.tolist()], dtype=np.float32)
    np.testing.assert_array_equal(out, expected)
    assert dequantize(np.array([2], np.uint8), 1.0, 3.0, "int32").tolist() == [5]  # int32


def test_decode_weights_walks_entries_in_order():
    manifest = [
        {
            "paths": ["a.bin"],
            "weights": [
                {
                    "name": "q",
                    "shape": [2, 2],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
                },
                {"name": "f", "shape": [2], "dtype": "float32"},
                {
                    "name": "i",
                    "shape": [],
                    "dtype": "int32",
                    "quantization": {"dtype": "uint8", "scale": 1, "min": 5118},
                },
            ],
        }
    ]
    data = bytes([0, 1, 2, 255]) + struct.pack("<2f", 1.5, -2.25) + bytes([0])
    tensors = decode_weights(manifest, lambda path: data)
    np.testing.assert_array_equal(tensors["q"], [[-1.0, -0.5], [0.0, 126.5]])
    np.testing.assert_array_equal(tensors["f"], [1.5, -2.25])
    assert tensors["i"].shape == () and int(tensors["i"]) == 5118
    with pytest.raises(WeightFormatError):
        decode_weights(manifest, lambda path: data + b"\0")  # bytes left over
    with pytest.raises(WeightFormatError):
        decode_weights(manifest, lambda path: data[:-2])  # too short


@pytest.mark.usefixtures("models")
@pytest.mark.parametrize("network", sorted(NETWORK_WEIGHTS))
def test_real_weights_decode_within_their_quantisation_range(network):
    from exprbench.weights import weight_path

    tensors = network_weights(network)
    manifest = json.loads(weight_path(f"{NETWORK_WEIGHTS[network]}-manifest").read_text())
    for spec in manifest[0]["weights"]:
        values = tensors[spec["name"]]
        assert values.shape == tuple(spec["shape"])
        quant = spec.get("quantization")
        if quant and spec["dtype"] == "float32":
            low, high = quant["min"], quant["min"] + 255 * quant["scale"]
            assert values.min() >= np.float32(low) - 1e-6
            assert values.max() <= np.float32(high) + 1e-6


# ---------------------------------------------------------------- labels and geometry


def test_expression_labels_map_onto_canonical_names():
    assert FACEAPI_LABELS == (
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgusted",
        "surprised",
    )
    assert sorted(CANONICAL.values()) == sorted(EXPRESSIONS)
    probs = np.array([0.1, 0.2, 0.05, 0.05, 0.3, 0.25, 0.05], dtype=np.float32)
    canonical = to_canonical(probs)
    assert list(canonical) == list(EXPRESSIONS)
    assert canonical["fear"] == pytest.approx(0.3)
    assert canonical["disgust"] == pytest.approx(0.25)
    assert canonical["surprise"] == pytest.approx(0.05)
    assert canonical["happy"] == pytest.approx(0.2)


def test_js_round_and_pad_to_square():
    assert [js_round(v) for v in (0.5, 1.5, 2.5, -0.5)] == [1, 2, 3, 0]
    img = np.ones((4, 9, 3), np.float32)
    centred = pad_to_square(img, center=True)  # diff 5: 3 rows after, 2 before
    assert centred.shape == (9, 9, 3)
    assert centred[:2].sum() == 0 and centred[6:].sum() == 0 and centred[2:6].all()
    corner = pad_to_square(img, center=False)  # all padding after
    assert corner[:4].all() and corner[4:].sum() == 0


def test_resize_bilinear_is_tensorflow_legacy_mode():
    # tfjs-core's own resize_bilinear_test: [[2, 2], [4, 4]] -> 3 x 3, alignCorners false
    x = np.array([2, 2, 4, 4], np.float32).reshape(2, 2, 1)
    out = resize_bilinear(x, 3, 3)[..., 0]
    np.testing.assert_allclose(out, [[2, 2, 2], [10 / 3, 10 / 3, 10 / 3], [4, 4, 4]], rtol=1e-6)
    img = np.random.default_rng(0).random((112, 112, 3), dtype=np.float32)
    np.testing.assert_array_equal(to_batch_tensor(img, 112, center=True), img)


def test_box_helpers():
    assert clip_at_image_borders((-3.5, 2.7, 20.2, 10.9), 10, 8) == (0, 2, 10, 5)
    assert iou((0, 0, 2, 2), (1, 0, 2, 2)) == pytest.approx(1 / 3)
    assert iou((0, 0, 1, 1), (5, 5, 1, 1)) == 0.0
    pts = np.array([[10.0, 20.0], [30.0, 60.0]])
    assert min_bbox_padded(pts) == pytest.approx((8.0, 16.0, 24.0, 48.0))
    # alignDlib: the square depends only on eye and mouth centres
    points = np.zeros((68, 2))
    points[36:42] = (40.0, 50.0)
    points[42:48] = (80.0, 50.0)
    points[48:68] = (60.0, 95.0)
    size = int(np.floor(np.hypot(20, 45) / 0.45))
    x, y, w, h = align_dlib(points, 500, 500)
    assert (w, h) == (size, size)
    assert x == np.floor(60 - 0.5 * size) and y == np.floor(65 - 0.43 * size)


def test_missing_weights_say_what_to_run(tmp_path, monkeypatch):
    from exprbench.scorers.base import ModelUnavailableError

    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(ModelUnavailableError, match="exprbench fetch-models"):
        network_weights("face_expression")


def test_options_are_validated():
    with pytest.raises(ValueError):
        FaceApiOptions(detector="mtcnn")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaceApiOptions(min_confidence=1.0)
    with pytest.raises(ValueError):
        FaceApiOptions(detector="tiny", input_size=400)


# ---------------------------------------------------------------- scorer


def test_scorer_is_registered():
    cls = available_scorers()["faceapi"]
    assert cls is FaceApiScorer is get_scorer_class("faceapi")
    assert cls.outputs == frozenset({"expression", "age", "gender", "identity"})
    columns = {spec.column for spec in cls.metrics()}
    for output in cls.outputs:
        assert {spec.column for spec in OUTPUT_METRICS[output]} <= columns
    with pytest.raises(ValueError, match="unknown options"):
        FaceApiScorer({"detectr": "tiny"})


def _face(box):
    return Face(box=box, score=1.0, landmarks5=np.zeros((5, 2)), landmarks68=np.zeros((68, 2)))


@pytest.mark.usefixtures("models")
def test_no_face_image_gives_no_faces(photos):
    api = FaceApi()
    assert api.detect_all(np.full((300, 400, 3), 128, np.uint8)) == []
    assert api.detect_all(load_rgb_array(photos["feat_no_face"])) == []
    assert faceapi_json(np.zeros((64, 64, 3), np.uint8)) == {"faces": []}
    scorer = FaceApiScorer()
    with pytest.raises(NoMatchingFaceError) as info:
        scorer.score(np.full((300, 400, 3), 128, np.uint8), _face((100.0, 100.0, 80.0, 80.0)))
    assert info.value.faces_found == 0 and info.value.best_iou == 0.0


@pytest.mark.usefixtures("models")
def test_scorer_scores_the_matching_faceapi_face(photos):
    image = load_rgb_array(photos["feat_multi_face"])
    scorer = FaceApiScorer()
    faces = scorer.faces(image)
    assert len(faces) == 5
    target = faces[2]
    x, y, w, h = target.box
    dlib_like = _face((x + 0.1 * w, y + 0.15 * h, 0.8 * w, 0.8 * h))  # tighter, as dlib's
    out = scorer.score(image, dlib_like)
    assert out.descriptor is not None and out.descriptor.shape == (128,)
    np.testing.assert_array_equal(out.descriptor, target.descriptor)
    assert out.age == pytest.approx(target.age)
    assert out.gender == target.gender and out.gender_prob == pytest.approx(
        target.gender_probability
    )
    assert out.probabilities is not None and list(out.probabilities) == list(EXPRESSIONS)
    assert sum(out.probabilities.values()) == pytest.approx(1.0, abs=1e-12)
    batch = scorer.score_batch([(image, dlib_like), (image, _face(faces[0].box))])
    np.testing.assert_array_equal(batch[1].descriptor, faces[0].descriptor)
    with pytest.raises(NoMatchingFaceError):
        best_match(faces, (0.0, 0.0, 5.0, 5.0))


@pytest.mark.usefixtures("models")
def test_faceapi_json_shape_and_identity(photos):
    data = faceapi_json(load_rgb_array(photos["obama"]))
    assert len(data["faces"]) == 1
    face = data["faces"][0]
    assert set(face) == {
        "box",
        "score",
        "expressions",
        "age",
        "gender",
        "gender_probability",
        "descriptor",
    }
    assert len(face["box"]) == 4 and len(face["descriptor"]) == 128
    assert list(face["expressions"]) == list(EXPRESSIONS)
    assert face["gender"] == "male" and 0.5 < face["gender_probability"] <= 1.0
    json.dumps(data)  # JSON-able
    other = faceapi_json(load_rgb_array(photos["obama2"]))["faces"][0]
    biden = faceapi_json(load_rgb_array(photos["biden"]))["faces"][0]

    def distance(a: list[float], b: list[float]) -> float:
        return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))

    # face-api.js's (and dlib's) same-person threshold: L2 distance < 0.6
    assert distance(face["descriptor"], other["descriptor"]) < 0.6
    assert distance(face["descriptor"], biden["descriptor"]) >= 0.6
