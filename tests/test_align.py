"""Face alignment (exprbench.align) on real photos: none, similarity (5 points), ffhq (68)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest
from conftest import load_rgb_array

from exprbench.align import (
    AlignedCrop,
    align,
    align_ffhq,
    ffhq_geometry,
    similarity_template,
    umeyama,
)
from exprbench.faces import FaceDetector, face_shape
from exprbench.geometry import Face


@pytest.fixture(scope="module")
def detector(models: None) -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def images(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    names = ["grace_hopper", "obama", "astronaut", "feat_angry", "feat_disgust", "franck_01829"]
    return {name: load_rgb_array(photos[name]) for name in names}


@pytest.fixture(scope="module")
def faces(detector: FaceDetector, images: dict[str, np.ndarray]) -> dict[str, Face]:
    return {name: detector.detect(image, min_score=0.5)[0] for name, image in images.items()}


def eye_centres(marks68: np.ndarray) -> np.ndarray:
    """Image-left then image-right eye centre: means of iBUG points 36-41 and 42-47."""
    marks68 = np.asarray(marks68, dtype=np.float64)
    return np.stack([marks68[36:42].mean(axis=0), marks68[42:48].mean(axis=0)])


def eye_centres5(marks5: np.ndarray) -> np.ndarray:
    """Same from dlib's 5 points (2, 3: left-in-image eye corners; 0, 1: right)."""
    marks5 = np.asarray(marks5, dtype=np.float64)
    return np.stack([marks5[2:4].mean(axis=0), marks5[0:2].mean(axis=0)])


def tilt_deg(eyes: np.ndarray) -> float:
    dx, dy = eyes[1] - eyes[0]
    return float(np.degrees(np.arctan2(dy, dx)))


def moved(face: Face, matrix: np.ndarray) -> Face:
    """The face's landmarks and box carried through a 2 x 3 affine (box: its new bounds)."""

    def carry(points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]

    x, y, w, h = face.box
    corners = carry(np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]]))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return Face(
        box=(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
        score=face.score,
        landmarks5=carry(face.landmarks5),
        landmarks68=carry(face.landmarks68),
    )


# --- ffhq ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["grace_hopper", "obama", "astronaut", "feat_angry", "franck_01829"]
)
def test_ffhq_puts_the_eyes_at_the_canonical_places(
    name: str, images: dict[str, np.ndarray], faces: dict[str, Face]
) -> None:
    size = 256
    face = faces[name]
    crop = align(images[name], face, "ffhq", size)
    assert isinstance(crop, AlignedCrop)
    assert crop.image.shape == (size, size, 3) and crop.image.dtype == np.uint8
    assert crop.mode == "ffhq" and crop.matrix.shape == (2, 3)
    assert crop.describe().startswith("ffhq 256 px from 68 landmarks")
    json.dumps(crop.as_dict())  # recordable as it is

    geometry = ffhq_geometry(face.landmarks68)
    eyes = crop.map_points(eye_centres(face.landmarks68))
    # The returned transform (composed through crop/pad offsets) agrees with the bare
    # construction: the crop square's centre at the crop's centre, x along the quad.
    np.testing.assert_allclose(eyes, geometry.eye_targets(size), atol=1e-6)
    # FFHQ's canonical placement: eyes size/4 apart when they set the scale, else the mouth
    # size/3.6 below the eyes (Franck's long face); the eye midpoint on the vertical centre
    # line and 0.472-0.5 of the way down.
    eye_to_eye = np.hypot(*(geometry.eye_right - geometry.eye_left))
    eye_to_mouth = np.hypot(*(geometry.mouth - (geometry.eye_left + geometry.eye_right) / 2))
    mouth = crop.map_points(geometry.mouth)[0]
    if 2.0 * eye_to_eye >= 1.8 * eye_to_mouth:
        assert np.hypot(*(eyes[1] - eyes[0])) == pytest.approx(size / 4, abs=1e-6)
        assert np.hypot(*(mouth - eyes.mean(axis=0))) < size / 3.6
    else:
        assert name == "franck_01829"
        assert np.hypot(*(mouth - eyes.mean(axis=0))) == pytest.approx(size / 3.6, abs=1e-6)
        assert np.hypot(*(eyes[1] - eyes[0])) < size / 4
    middle = eyes.mean(axis=0) + 0.5
    assert abs(middle[0] - size / 2) < 0.01 * size  # off only by the eye-line skew
    assert 0.47 * size <= middle[1] <= 0.5 * size
    # Level: NVlabs turns the crop to bisect the eye line and the eye-mouth normal, so the
    # eye line keeps half of their skew. These faces are near-frontal: under 2 degrees.
    assert tilt_deg(eyes) == pytest.approx(geometry.residual_tilt_deg, abs=1e-6)
    # skew: the eye line's angle from the normal of the eye-mouth line
    skew = tilt_deg(eye_centres(face.landmarks68)) - (
        np.degrees(np.arctan2(*(geometry.mouth - geometry.centre)[::-1])) - 90.0
    )
    share = eye_to_mouth / (eye_to_eye + eye_to_mouth)
    assert geometry.residual_tilt_deg == pytest.approx(skew * share, abs=0.05)
    assert abs(geometry.residual_tilt_deg) < 2.0
    if name == "grace_hopper":
        assert abs(tilt_deg(eyes)) < 1.0  # measured -0.48


def test_ffhq_crop_pixels_show_the_face_where_the_transform_says(
    detector: FaceDetector, images: dict[str, np.ndarray], faces: dict[str, Face]
) -> None:
    # Independent of the bookkeeping: find the face again in the crop's pixels.
    for name in ["obama", "astronaut"]:
        crop = align(images[name], faces[name], "ffhq", 256)
        (inner,) = detector.detect(crop.image, upsample=0)
        found = eye_centres(inner.landmarks68)
        expected = crop.map_points(eye_centres(faces[name].landmarks68))
        assert np.abs(found - expected).max() < 3.0  # px; dlib's own jitter (measured 0.7)
        assert abs(tilt_deg(found)) < 2.0


@pytest.mark.parametrize(
    ("mode", "size"),
    [("none", 256), ("similarity", 112), ("similarity", 256), ("ffhq", 256), ("ffhq", 64)],
)
def test_transform_maps_image_points_onto_crop_pixels(
    mode: str, size: int, images: dict[str, np.ndarray], faces: dict[str, Face]
) -> None:
    # Paint three small green blobs on the photo; where they land in the crop (the centroid
    # of the difference from the unpainted crop) must be where `matrix` sends them.
    image = images["grace_hopper"] // 2  # headroom, so no blob clips
    face = faces["grace_hopper"]
    spots = np.array([[230.3, 230.7], [300.6, 228.2], [265.1, 300.4]])
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    painted = image.astype(np.float64)
    for x, y in spots:
        painted[..., 1] += 120 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5**2))
    painted = np.clip(np.rint(painted), 0, 255).astype(np.uint8)
    plain, marked = align(image, face, mode, size), align(painted, face, mode, size)
    np.testing.assert_array_equal(plain.matrix, marked.matrix)
    if mode == "ffhq" and size == 64:
        assert plain.details["shrink"] == 2  # the Lanczos pre-shrink path
    diff = marked.image[..., 1].astype(np.float64) - plain.image[..., 1]
    radius = 6
    for x, y in plain.map_points(spots):
        cx, cy = round(x), round(y)
        window = diff[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1].clip(0)
        wy, wx = np.mgrid[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
        centroid = np.array([(window * wx).sum(), (window * wy).sum()]) / window.sum()
        assert np.abs(centroid - (x, y)).max() < 0.1  # px (measured <= 0.04)


def test_same_input_same_bytes(images: dict[str, np.ndarray], faces: dict[str, Face]) -> None:
    image, face = images["feat_disgust"], faces["feat_disgust"]
    # Landmarks read back from a table as float64 lists, and a non-contiguous image view.
    stored = Face(
        box=tuple(float(v) for v in face.box),
        score=face.score,
        landmarks5=np.array(face.landmarks5.tolist()),
        landmarks68=np.array(face.landmarks68.tolist()),
    )
    view = np.pad(image, ((0, 0), (0, 0), (0, 1)))[:, :, :3]
    assert not view.flags.c_contiguous
    for mode in ["none", "similarity", "ffhq"]:
        first = align(image, face, mode, 128)
        assert json.loads(json.dumps(first.as_dict()))["describe"] == first.describe()
        for again in (align(image, face, mode, 128), align(view, stored, mode, 128)):
            np.testing.assert_array_equal(again.image, first.image)
            np.testing.assert_array_equal(again.matrix, first.matrix)
            assert again.describe() == first.describe()


def test_ffhq_levels_a_photo_turned_20_degrees(
    detector: FaceDetector, images: dict[str, np.ndarray], faces: dict[str, Face]
) -> None:
    image, face = images["grace_hopper"], faces["grace_hopper"]
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), 20.0, 1.0)
    cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
    new_w, new_h = round(height * sin + width * cos), round(height * cos + width * sin)
    turn[:, 2] += ((new_w - width) / 2, (new_h - height) / 2)
    turned = cv2.warpAffine(
        image, turn, (new_w, new_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )

    # 1. Detected afresh on the turned photo, as the pipeline would.
    (found,) = detector.detect(turned)
    assert tilt_deg(eye_centres(found.landmarks68)) == pytest.approx(-22.2, abs=1.5)
    ffhq = align(turned, found, "ffhq", 256)
    level = tilt_deg(ffhq.map_points(eye_centres(found.landmarks68)))
    assert level == pytest.approx(ffhq.details["residual_tilt_deg"], abs=1e-6)
    # FFHQ keeps half the landmarks' eye/mouth skew: measured -1.4 degrees here (dlib's
    # 68 points on the turned copy are 2 degrees more skewed than on the upright photo).
    assert abs(level) < 2.0
    similar = align(turned, found, "similarity", 256)
    assert abs(tilt_deg(similar.map_points(eye_centres5(found.landmarks5)))) < 1.0  # 0.3

    # 2. The upright photo's landmarks carried through the same turn: the alignment undoes
    # it exactly, and the crops match the upright photo's up to resampling.
    carried = moved(face, turn)
    for mode in ["similarity", "ffhq"]:
        upright, undone = align(image, face, mode, 256), align(turned, carried, mode, 256)
        composed = undone.matrix[:, :2] @ turn
        composed[:, 2] += undone.matrix[:, 2]
        np.testing.assert_allclose(composed, upright.matrix, atol=1e-9)
        mad = np.abs(undone.image.astype(np.int16) - upright.image).mean()
        assert mad < 2.0, (mode, mad)  # measured 0.5 (ffhq), 1.3 (similarity)


def test_ffhq_pads_faces_at_the_border(
    images: dict[str, np.ndarray], faces: dict[str, Face]
) -> None:
    image, face = images["grace_hopper"], faces["grace_hopper"]
    size = 256
    # Cut the photo just above-left of her eyes: most of the FFHQ square lies outside.
    x0, y0 = 200, 190
    cut = np.ascontiguousarray(image[y0:, x0:])
    shifted = moved(face, np.array([[1.0, 0, -x0], [0, 1.0, -y0]]))
    full = align(image, face, "ffhq", size)
    padded = align(cut, shifted, "ffhq", size)
    bare = align_ffhq(cut, shifted.landmarks68, size, enable_padding=False)
    assert padded.details["padded"] and not full.details["padded"]
    assert not bare.details["padded"]
    assert "blur-padded" in padded.describe()
    eyes = padded.map_points(eye_centres(shifted.landmarks68))
    np.testing.assert_allclose(eyes, full.map_points(eye_centres(face.landmarks68)), atol=1e-6)

    # Where each crop pixel comes from in the cut photo.
    yy, xx = np.mgrid[:size, :size]
    source = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
    back = padded.inverse_matrix()
    source = (source @ back[:, :2].T + back[:, 2]).reshape(size, size, 2)
    qsize = ffhq_geometry(shifted.landmarks68).qsize
    deep = (source >= 0.3 * qsize).all(axis=2)  # well inside: the blur fades out before
    outside = (source < -2).any(axis=2)
    assert deep.mean() > 0.05 and outside.mean() > 0.5
    # Inside, the pixels are the full photo's crop; outside, a blurred mirror, not black.
    assert np.abs(padded.image.astype(np.int16) - full.image)[deep].mean() < 0.5
    assert (bare.image[outside] == 0).all(axis=1).mean() > 0.95
    assert padded.image[outside].min() > 10
    step = np.abs(np.diff(padded.image.astype(np.int16), axis=1)).mean(axis=2)
    assert step[outside[:, 1:]].mean() < 3.0  # smooth (measured 0.9; photo there: 10.7)


def test_ffhq_on_a_real_face_cut_by_the_frame(
    images: dict[str, np.ndarray], faces: dict[str, Face]
) -> None:
    # The 45-degree-turned face whose detector box runs off the left edge.
    image, face = images["feat_disgust"], faces["feat_disgust"]
    assert face.box[0] < 0
    for size, shrink in [(112, 2), (256, 1)]:
        crop = align(image, face, "ffhq", size)
        assert crop.details["padded"] and crop.details["shrink"] == shrink
        targets = ffhq_geometry(face.landmarks68).eye_targets(size)
        # the pre-shrink rounds the image size, so the transform drifts a little from the
        # bare construction (NVlabs divides the quad by the integer factor)
        eyes = crop.map_points(eye_centres(face.landmarks68))
        assert np.abs(eyes - targets).max() < (0.3 if shrink > 1 else 1e-6)
    # A turned head skews eye line against eye-mouth line: FFHQ keeps half (3.6 degrees).
    assert 2.0 < crop.details["residual_tilt_deg"] < 5.0


# --- similarity and none ------------------------------------------------------------------


def test_similarity_uses_dlibs_chip_template(
    images: dict[str, np.ndarray], faces: dict[str, Face]
) -> None:
    image, face = images["astronaut"], faces["astronaut"]
    crop = align(image, face, "similarity", 150)
    assert (
        crop.describe() == "similarity 150 px from 5 landmarks (dlib chip template, padding 0.25)"
    )
    # A similarity: equal scales, orthogonal axes, no reflection.
    (a, b, _), (c, d, _) = crop.matrix
    assert a == pytest.approx(d) and b == pytest.approx(-c) and a * d - b * c > 0
    template = similarity_template(150)
    residual = np.abs(crop.map_points(face.landmarks5) - template).max()
    assert residual < 0.05 * 150
    # The same geometry as dlib.get_face_chip, within dlib's own half-pixel convention:
    # compare the pictures.
    chip = dlib.get_face_chip(image, face_shape(face, 5), size=150, padding=0.25)
    assert np.abs(crop.image.astype(np.int16) - chip).mean() < 8.0  # measured 4.5
    # Umeyama recovers a known similarity exactly.
    angle, scale, shift = np.radians(33.0), 1.7, np.array([12.0, -4.0])
    known = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    fitted = umeyama(template, template @ known.T + shift)
    np.testing.assert_allclose(fitted, np.hstack([known, shift[:, None]]), atol=1e-9)


def test_none_is_the_squared_box(images: dict[str, np.ndarray], faces: dict[str, Face]) -> None:
    image, face = images["grace_hopper"], faces["grace_hopper"]
    crop = align(image, face, "none", 112)
    assert crop.image.shape == (112, 112, 3)
    assert crop.describe() == "none 112 px from the detector box (squared, no rotation)"
    x, y, w, h = face.box
    assert crop.matrix[0, 1] == 0 and crop.matrix[1, 0] == 0
    assert crop.matrix[0, 0] == pytest.approx(112 / max(w, h), rel=0.01)
    np.testing.assert_allclose(crop.map_points([[x - 0.5, y - 0.5]]), [[-0.5, -0.5]], atol=0.5)
    # A box hanging off the frame repeats the edge pixels instead of going black.
    disgust = align(images["feat_disgust"], faces["feat_disgust"], "none", 112)
    left = disgust.map_points([[-0.5, 0.0]])[0, 0]
    assert left > 5
    np.testing.assert_array_equal(
        disgust.image[:, : int(left) - 1], np.repeat(disgust.image[:, :1], int(left) - 1, axis=1)
    )


# --- bad inputs ---------------------------------------------------------------------------


def test_bad_inputs_say_what_is_wrong(
    images: dict[str, np.ndarray], faces: dict[str, Face]
) -> None:
    image, face = images["grace_hopper"], faces["grace_hopper"]
    with pytest.raises(ValueError, match=r"mode must be one of none, similarity, ffhq; got 'dlib'"):
        align(image, face, "dlib", 256)  # type: ignore[arg-type]
    for size in (0, 7, 256.0, True, "256"):
        with pytest.raises(ValueError, match=r"align: size must be an integer >= 8"):
            align(image, face, "ffhq", size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"align: expected dtype uint8"):
        align(image.astype(np.float32), face, "ffhq", 256)
    with pytest.raises(ValueError, match=r"align: expected shape"):
        align(image[:, :, 0], face, "similarity", 256)
    with pytest.raises(ValueError, match=r"align: image is empty"):
        align(image[:0], face, "none", 256)
    with pytest.raises(ValueError, match="expected a Face"):
        align(image, face.landmarks68, "ffhq", 256)  # type: ignore[arg-type]

    def with_marks(marks5: np.ndarray, marks68: np.ndarray, box=face.box) -> Face:
        return Face(box=box, score=1.0, landmarks5=marks5, landmarks68=marks68)

    zeros = with_marks(np.zeros((5, 2)), np.zeros((68, 2)))
    with pytest.raises(ValueError, match=r"ffhq_geometry: the face is too small or degenerate"):
        align(image, zeros, "ffhq", 256)
    with pytest.raises(ValueError, match=r"align_similarity: the 5 landmarks span 0.00 px"):
        align(image, zeros, "similarity", 256)
    swapped = with_marks(face.landmarks68, face.landmarks5)
    with pytest.raises(ValueError, match=r"expected 68 landmarks of shape \(68, 2\), got \(5, 2\)"):
        align(image, swapped, "ffhq", 256)
    with pytest.raises(ValueError, match=r"expected 5 landmarks of shape \(5, 2\), got \(68, 2\)"):
        align(image, swapped, "similarity", 256)
    nan = face.landmarks68.astype(np.float64)
    nan[40] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        align(image, with_marks(face.landmarks5, nan), "ffhq", 256)
    upside_down = face.landmarks68 * np.array([1.0, -1.0]) + np.array([0.0, 600.0])
    with pytest.raises(ValueError, match="not arranged like a face"):
        align(image, with_marks(face.landmarks5, upside_down), "ffhq", 256)
    far = with_marks(face.landmarks5 + 5000, face.landmarks68 + 5000, box=(5000, 5000, 90, 90))
    with pytest.raises(ValueError, match=r"align_ffhq: the face's crop square lies outside"):
        align(image, far, "ffhq", 256)
    with pytest.raises(ValueError, match=r"align_box: box .* lies outside the 512 x 600 image"):
        align(image, far, "none", 256)
    with pytest.raises(ValueError, match=r"align_box: box must be finite"):
        align(image, with_marks(face.landmarks5, face.landmarks68, box=(0, 0, 0, 10)), "none", 64)
    with pytest.raises(ValueError, match=r"transform_size must be >= size \(256\), got 128"):
        align_ffhq(image, face.landmarks68, 256, transform_size=128)
