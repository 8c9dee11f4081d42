"""The deepface scorer through the real deepface 0.0.103 package, and unavailable models.

- identity: deepface's Dlib embedding on real photos. Our crop + represent equals
  `DeepFace.represent(detector_backend="dlib")` exactly when given the face deepface's own
  dlib detector found, and on the pipeline's faces it agrees with our `dlib` scorer (same
  network, a different chip: the figures go to tests/.artifacts/deepface.json).
- analyze without deepface's weight files: the outputs are unavailable with a message
  naming the file and the folder; in a real pipeline run on real photos (with a second
  scorer that is wholly unavailable) the rows are null, validation passes, the report
  lists each unavailable output once, and the run goes on.
- analyze's code path with weight files of deepface's own architectures, built with
  deepface's own model classes and initialised RANDOMLY here: only shapes, ranges and the
  label plumbing are asserted; nothing from them is a result.
- no network: the scorer, analyze files missing, runs in a network namespace under strace
  without any connect attempt (deepface would otherwise try to download them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_SET, build_raw, load_rgb_array, missing_prerequisite, record_artifact

from exprbench.config import Layout
from exprbench.faces import FaceDetector
from exprbench.geometry import Face
from exprbench.labels import EXPRESSIONS, GENDERS
from exprbench.packaged import cache_home
from exprbench.scorers.base import (
    ModelUnavailableError,
    ScoreOutput,
    Scorer,
    register,
    unregister,
)
from exprbench.settings import load_settings
from exprbench.unavailable import ALL, decode

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = [
    "astronaut",
    "grace_hopper",
    "obama",
    "obama2",
    "biden",
    "feat_happy",
    "feat_surprise",
    "feat_angry",
    "franck_01829",
    "franck_02045",
]
SAME_PERSON = 0.6  # dlib's threshold


def _deepface() -> Any:
    """deepface's DeepFace module, imported with the private home (never ~/.deepface)."""
    from exprbench.scorers.deepface_scorer import import_deepface

    try:
        return import_deepface()
    except ModelUnavailableError as error:
        missing_prerequisite(str(error))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: None) -> Path:
    """A private EXPRBENCH_HOME sharing the fetched packages, so the deepface folder (and
    any random weights a test puts there) never touches the user's cache."""
    real = cache_home() / "packages"
    root = tmp_path / "home"
    root.mkdir()
    (root / "packages").symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("EXPRBENCH_HOME", str(root))
    return root


@pytest.fixture(scope="module")
def faces(photos: dict[str, Path], models: None) -> list[tuple[str, np.ndarray, Face]]:
    detector = FaceDetector()
    items = []
    for name in PHOTOS:
        image = load_rgb_array(photos[name])
        found = detector.detect(image, min_score=0.5)
        assert found, f"no face on {name}"
        items.append((name, image, found[0]))
    return items


# ---------------------------------------------------------------- identity


def test_identity_is_deepface_s_dlib_pipeline_and_agrees_with_dlib(
    home: Path, faces: list[tuple[str, np.ndarray, Face]]
) -> None:
    deepface = _deepface()
    from deepface.models.Detector import FacialAreaRegion

    from exprbench.scorers.deepface_scorer import DeepfaceScorer, weights_folder
    from exprbench.scorers.dlib_identity import DlibIdentityScorer

    scorer = DeepfaceScorer()
    assert (weights_folder() / "dlib_face_recognition_resnet_model_v1.dat").is_file()
    assert (weights_folder() / "shape_predictor_5_face_landmarks.dat").is_file()
    dlib_scorer = DlibIdentityScorer()

    # 1. given the face deepface's dlib detector finds, our crop + represent is deepface's own
    exact = []
    for _, image, _ in faces[:4]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        reference = deepface.represent(bgr, model_name="Dlib", detector_backend="dlib")[0]
        area = reference["facial_area"]
        region = FacialAreaRegion(
            x=area["x"],
            y=area["y"],
            w=area["w"],
            h=area["h"],
            left_eye=area["left_eye"],
            right_eye=area["right_eye"],
        )
        ours = scorer.score_crop(scorer.region_crop(bgr, region)).descriptor
        assert ours is not None
        exact.append(float(np.abs(ours - np.asarray(reference["embedding"])).max()))
    assert max(exact) < 1e-6, exact

    # 2. on the pipeline's faces: the same dlib network as our `dlib` scorer, another chip
    ours_d, dlib_d = [], []
    for _, image, face in faces:
        out = scorer.score(image, face)
        assert out.descriptor is not None and out.descriptor.shape == (128,)
        assert set(out.unavailable or {}) == {"expression", "age", "gender"}
        ours_d.append(out.descriptor)
        dlib_d.append(dlib_scorer.score(image, face).descriptor)
    a, b = np.stack(ours_d), np.stack(dlib_d)
    same_face = np.linalg.norm(a - b, axis=1)
    upper = np.triu_indices(len(faces), 1)
    dist_a = np.linalg.norm(a[:, None] - a[None], axis=2)[upper]
    dist_b = np.linalg.norm(b[:, None] - b[None], axis=2)[upper]
    correlation = float(np.corrcoef(dist_a, dist_b)[0, 1])
    names = [n for n, _, _ in faces]
    obama = [names.index("obama"), names.index("obama2")]
    record_artifact(
        "deepface",
        "identity_vs_dlib",
        {
            "faces": len(faces),
            "max_abs_vs_DeepFace_represent_dlib_detector": max(exact),
            "same_face_distance_mean": float(same_face.mean()),
            "same_face_distance_max": float(same_face.max()),
            "pairwise_distance_correlation": correlation,
            "obama_obama2_deepface": float(np.linalg.norm(a[obama[0]] - a[obama[1]])),
            "obama_obama2_dlib": float(np.linalg.norm(b[obama[0]] - b[obama[1]])),
        },
    )
    # every face is "the same person" as itself across the two chips, and the two
    # embeddings order pairs of faces alike
    assert same_face.max() < SAME_PERSON, dict(zip(names, same_face.round(3), strict=True))
    assert correlation > 0.8, correlation
    # the two photos of one person are closer than any photo of two different people
    persons = {"obama": "obama", "obama2": "obama"}
    for i, j in zip(*upper, strict=True):
        same = persons.get(names[i], names[i]) == persons.get(names[j], names[j])
        if same:
            assert np.linalg.norm(a[i] - a[j]) < SAME_PERSON


# ---------------------------------------------------------------- analyze: missing weights


def test_missing_analyze_weights_say_which_file_where_and_why(
    home: Path, faces: list[tuple[str, np.ndarray, Face]], tmp_path: Path
) -> None:
    _deepface()
    from exprbench.scorers.deepface_scorer import DeepfaceScorer, weights_folder

    user = tmp_path / "my-deepface-weights"  # given, but empty
    user.mkdir()
    scorer = DeepfaceScorer({"weights_dir": str(user)})
    _, image, face = faces[0]
    out = scorer.score(image, face)
    assert out.descriptor is not None
    assert out.probabilities is None and out.age is None and out.gender is None
    files = {
        "expression": "facial_expression_model_weights.pth",
        "age": "age_model_weights.pth",
        "gender": "gender_model_weights.pth",
    }
    assert out.unavailable is not None and set(out.unavailable) == set(files)
    for kind, name in files.items():
        message = out.unavailable[kind]
        assert name in message and str(weights_folder()) in message and str(user) in message
        assert "no registry package ships it" in message and "weights_dir" in message


class NeedsWeights(Scorer):
    """A scorer whose weights the user did not give (as a CLIP scorer without a path)."""

    name: ClassVar[str] = "needs_weights_probe"
    # identity too: the score stage also asks identity models for the impostor gallery
    outputs: ClassVar[frozenset] = frozenset({"expression", "identity"})
    description: ClassVar[str] = "raises ModelUnavailableError (test scorer)"
    crop: ClassVar[str] = "none"
    REASON = "probe weights not given: set score.options.needs_weights_probe.path"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        raise ModelUnavailableError(self.REASON)

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        raise AssertionError("never built")


@pytest.fixture
def needs_weights() -> Iterator[type[Scorer]]:
    register(NeedsWeights)
    yield NeedsWeights
    unregister(NeedsWeights.name)


def test_unavailable_outputs_and_scorers_do_not_stop_the_run(
    home: Path, tmp_path: Path, photos: dict[str, Path], prefect_server: Any, needs_weights: Any
) -> None:
    _deepface()
    from flows.stages import pipeline

    raw = build_raw(tmp_path / "raw", photos, SMALL_SET)
    settings = load_settings(ROOT / "params.yaml")
    scorers = ("deepface", "dlib", "needs_weights_probe")
    settings = dataclasses.replace(
        settings, score=dataclasses.replace(settings.score, scorers=scorers)
    )
    layout = Layout.for_output(raw, tmp_path / "out")
    pipeline(layout, settings)  # the run goes on to the report

    rows = [r for r in pq.read_table(layout.scores).to_pylist() if r["face_found"]]
    by_scorer = {s: [r for r in rows if r["scorer"] == s] for s in scorers}
    assert all(by_scorer.values()), {s: len(v) for s, v in by_scorer.items()}
    for row in by_scorer["deepface"]:
        assert row["descriptor"] is not None and len(row["descriptor"]) == 128
        assert row["age"] is None and row["gender"] is None and row["p_happy"] is None
        assert set(decode(row["unavailable"])) == {"expression", "age", "gender"}
        assert "deepface: age, expression, gender not measured" in row["note"]
    compared = [r for r in by_scorer["deepface"] if r["identity_distance"] is not None]
    assert compared, "deepface's identity must be compared with the neutral"
    for row in by_scorer["needs_weights_probe"]:
        assert decode(row["unavailable"]) == {ALL: NeedsWeights.REASON}
        assert row["p_happy"] is None and row["target_prob"] is None
    assert all(r["unavailable"] is None for r in by_scorer["dlib"])

    validation = json.loads(layout.validation_json.read_text())
    assert validation["success"], validation
    assert "unavailable_outputs_are_null" in validation["checks"]

    html = layout.report_html.read_text(encoding="utf-8")
    section = re.search(r'<div class="unavailable" id="unavailable">(.*?)</div>', html, re.S)
    assert section, "the report does not list the unavailable outputs"
    items = re.findall(r"<li>(.*?)</li>", section.group(1), re.S)
    # one entry per (recognizer, reason): deepface's three files, the probe once
    assert len(items) == 4, items
    assert sum("needs_weights_probe" in i and "every output" in i for i in items) == 1
    for name in ("facial_expression_model_weights.pth", "age_model_weights.pth"):
        assert sum(name in i for i in items) == 1


def test_a_validation_rule_catches_values_marked_unavailable() -> None:
    import pandas as pd

    from exprbench.validation.suite import UNAVAILABLE_FILLED_COLUMN, with_derived_columns

    base = {
        "generator": "g",
        "version": "1",
        "subject": "s",
        "expression": "happy",
        "replicate": 1,
        "path": "g/1/s/happy.jpg",
        "scorer": "deepface",
        "face_found": True,
        "note": "deepface: age not measured: model unavailable",
        "target_prob": None,
        "same_identity": None,
        "identity_distance": None,
        **{f"p_{e}": None for e in EXPRESSIONS},
    }
    marked = json.dumps({"age": "file missing"})
    frame = pd.DataFrame(
        [
            {**base, "age": None, "unavailable": marked},
            {**base, "replicate": 2, "age": 31.0, "unavailable": marked},  # inconsistent
        ]
    )
    derived = with_derived_columns(frame, {"deepface": ["age"]})
    flagged = derived[UNAVAILABLE_FILLED_COLUMN]
    assert flagged.isna().tolist() == [True, False] and flagged.iloc[1] == "age"
    assert not derived["chk_needs_age"].any()  # the null age is excused on both rows


# ---------------------------------------------------------------- analyze: random weights


def test_analyze_code_path_with_randomly_initialised_deepface_models(
    home: Path, faces: list[tuple[str, np.ndarray, Face]], tmp_path: Path
) -> None:
    """RANDOM weights in deepface's own architectures: plumbing only, never a result."""
    _deepface()
    import cv2
    import torch
    from deepface.models.demography.pytorch import Age, Emotion, Gender
    from deepface.modules.preprocessing import resize_image

    from exprbench.scorers.deepface_scorer import DEEPFACE_EMOTIONS, DeepfaceScorer

    torch.manual_seed(0)
    random_dir = tmp_path / "RANDOM-deepface-weights-not-a-model"
    random_dir.mkdir()
    emotion = Emotion.base_model().eval()
    torch.save(emotion.state_dict(), random_dir / "facial_expression_model_weights.pth")

    # emotion only: expression measured, age and gender still unavailable
    scorer = DeepfaceScorer({"weights_dir": str(random_dir)})
    _, image, face = faces[2]
    out = scorer.score(image, face)
    assert out.descriptor is not None and out.age is None and out.gender is None
    assert set(out.unavailable or {}) == {"age", "gender"}
    assert out.probabilities is not None and set(out.probabilities) == set(EXPRESSIONS)
    assert abs(sum(out.probabilities.values()) - 1.0) < 1e-6
    # the label plumbing: deepface's output i is EMOTION_LABELS[i], mapped by name
    crop = scorer.face_crop(image, face)
    grey = cv2.resize(cv2.cvtColor(resize_image(crop, (224, 224))[0], cv2.COLOR_BGR2GRAY), (48, 48))
    with torch.no_grad():
        direct = emotion(torch.from_numpy(grey[None, None].astype(np.float32)))[0].numpy()
    for i, label in enumerate(DEEPFACE_EMOTIONS):
        assert abs(out.probabilities[label] - direct[i] / direct.sum()) < 1e-5, label

    # all three (the VGG-Face trunk twice; stored in float16 to halve the temporary files)
    for module, file in ((Age, "age_model_weights.pth"), (Gender, "gender_model_weights.pth")):
        model = module.base_model()
        torch.save({k: v.half() for k, v in model.state_dict().items()}, random_dir / file)
        del model
    scorer = DeepfaceScorer({"weights_dir": str(random_dir)})
    out = scorer.score(image, face)
    assert not out.unavailable
    assert out.age is not None and 0.0 <= out.age <= 100.0
    assert out.gender in GENDERS and out.gender_prob is not None
    assert 0.5 <= out.gender_prob <= 1.0
    assert out.probabilities is not None and out.descriptor is not None
    # without weights_dir the links to it are dropped: analyze is unavailable again
    assert set(DeepfaceScorer().unavailable) == {"expression", "age", "gender"}


# ---------------------------------------------------------------- no network

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from PIL import Image
    from exprbench.faces import FaceDetector
    from exprbench.scorers.deepface_scorer import DeepfaceScorer
    image = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
    face = FaceDetector().detect(image)[0]
    scorer = DeepfaceScorer()
    out = scorer.score(image, face)
    assert out.descriptor is not None and set(out.unavailable) == {"expression", "age", "gender"}
    """
)


def test_deepface_scorer_makes_no_network_attempt(
    home: Path, photos: dict[str, Path], tmp_path: Path
) -> None:
    _deepface()
    from test_no_network import traced_offline

    traced_offline(CHILD, [str(photos["obama"])], dict(os.environ), tmp_path / "strace.log", 300)
