"""Face detection, primary-face choice and alignment on real photos (exprbench.faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import load_rgb_array

from exprbench.faces import (
    FaceDetector,
    choose_primary,
    face_shape,
    order_faces,
    shape_points,
)
from exprbench.geometry import Face


@pytest.fixture(scope="module")
def detector(models: None) -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def images(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    names = ["astronaut", "grace_hopper", "feat_multi_face", "feat_no_face"]
    return {name: load_rgb_array(photos[name]) for name in names}


def _face(box: tuple[float, float, float, float], score: float) -> Face:
    return Face(
        box=box,
        score=score,
        landmarks5=np.zeros((5, 2), np.float32),
        landmarks68=np.zeros((68, 2), np.float32),
    )


def test_one_face_on_grace_hopper(detector: FaceDetector, images: dict[str, np.ndarray]) -> None:
    image = images["grace_hopper"]
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    assert face.score > 0.5
    assert x >= 0 and y >= 0 and x + w <= image.shape[1] and y + h <= image.shape[0]
    assert 150 <= face.size_px <= 250  # her face is ~190 px wide in this 512 x 600 photo
    assert face.landmarks5.shape == (5, 2) and face.landmarks5.dtype == np.float32
    assert face.landmarks68.shape == (68, 2) and face.landmarks68.dtype == np.float32
    # every landmark lies in (or next to) the face box
    for marks in (face.landmarks5, face.landmarks68):
        assert (marks[:, 0] > x - 0.2 * w).all() and (marks[:, 0] < x + 1.2 * w).all()
        assert (marks[:, 1] > y - 0.2 * h).all() and (marks[:, 1] < y + 1.2 * h).all()


def test_several_faces_on_multi_face(detector: FaceDetector, images: dict[str, np.ndarray]) -> None:
    # Five people; HOG misses the one in sunglasses (dlib 20.0.1 finds the other four).
    faces = detector.detect(images["feat_multi_face"])
    assert 3 <= len(faces) <= 5
    assert len({f.box for f in faces}) == len(faces)
    assert faces[0] is choose_primary(faces)


def test_no_face_on_landscape(detector: FaceDetector, images: dict[str, np.ndarray]) -> None:
    assert detector.detect(images["feat_no_face"]) == []


def test_min_score_drops_mission_patch_and_primary_is_the_face(
    detector: FaceDetector, images: dict[str, np.ndarray]
) -> None:
    # Upsampled, HOG also fires weakly on the astronaut's mission patch, a box almost
    # exactly the size of her face: the near-tie rule must still pick her face.
    image = images["astronaut"]
    everything = detector.detect(image, upsample=1, min_score=0.0)
    assert len(everything) == 2
    face, patch = everything
    assert face.box[1] < 150 < patch.box[1]  # face at the top, patch on her chest
    assert face.score > 0.5 > patch.score
    confident = detector.detect(image, upsample=1, min_score=0.5)
    assert [f.box for f in confident] == [face.box]


def test_choose_primary_rule() -> None:
    assert choose_primary([]) is None
    small_sure = _face((0, 0, 50, 50), 3.0)
    big_unsure = _face((100, 0, 100, 100), 0.2)
    assert choose_primary([small_sure, big_unsure]) is big_unsure  # clearly larger wins
    near_tie = _face((300, 0, 97, 97), 1.5)  # 94% of the largest area: a near tie
    assert choose_primary([big_unsure, near_tie]) is near_tie  # the score decides
    assert order_faces([small_sure, big_unsure, near_tie]) == [near_tie, big_unsure, small_sure]


def test_stored_landmarks_round_trip(detector: FaceDetector, images: dict[str, np.ndarray]) -> None:
    image = images["astronaut"]
    face = detector.detect(image, min_score=0.5)[0]
    # Stored landmarks (e.g. read back from a table as float64) give the same dlib shapes.
    stored = Face(
        box=tuple(float(v) for v in face.box),
        score=face.score,
        landmarks5=np.array(face.landmarks5.tolist()),
        landmarks68=np.array(face.landmarks68.tolist()),
    )
    np.testing.assert_array_equal(shape_points(face_shape(stored, 5)), face.landmarks5)
    np.testing.assert_array_equal(shape_points(face_shape(stored, 68)), face.landmarks68)


def test_non_contiguous_view_is_accepted(
    detector: FaceDetector, images: dict[str, np.ndarray]
) -> None:
    image = images["grace_hopper"]
    mirrored = image[:, ::-1]  # a view with negative strides
    (face,) = detector.detect(image)
    (flipped,) = detector.detect(mirrored)
    # the mirrored box's centre lands on the mirror image of the original centre
    centre = face.box[0] + face.box[2] / 2
    assert (
        abs((image.shape[1] - (flipped.box[0] + flipped.box[2] / 2)) - centre) < 0.1 * face.box[2]
    )


def test_bad_inputs_say_what_is_wrong(detector: FaceDetector, photos: dict[str, Path]) -> None:
    from PIL import Image

    with Image.open(photos["feat_rgba"]) as img:
        rgba = np.asarray(img)
    assert rgba.shape[2] == 4
    with pytest.raises(ValueError, match=r"FaceDetector.detect: expected shape .*\(.*4\)"):
        detector.detect(rgba)
    rgb = np.ascontiguousarray(rgba[:, :, :3])
    with pytest.raises(ValueError, match=r"expected dtype uint8.*float32"):
        detector.detect(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        detector.detect(rgb[:, :, 0])
    with pytest.raises(ValueError, match="expected a numpy array"):
        detector.detect(rgb.tolist())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upsample must be >= 0"):
        detector.detect(rgb, upsample=-1)
    with pytest.raises(ValueError, match=r"FaceDetector\.detect: image is empty"):
        detector.detect(rgb[:0])
