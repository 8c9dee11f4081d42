"""The resolution study: degrade, upscale back, rescore; fidelity measures; montage; page."""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
import pytest

from exprbench import resolution as res
from exprbench.geometry import Face
from exprbench.labels import EXPRESSIONS
from exprbench.resolution.page import _table as study_table
from exprbench.scorers.base import Output, ScoreOutput, Scorer, ScorerFoundNoFaceError
from tests.conftest import import_or_missing, load_rgb_array

FAST_METHODS = ("nearest", "bilinear", "bicubic", "lanczos", "lanczos+unsharp", "esrgan-slim")
SIZES = (48, 24)
SCORERS = ("fer", "age_gender", "dlib", "faceapi")
# photo -> requested expression (None: each scorer's full-resolution top-1 is the target)
FACES = {"feat_happy": "happy", "obama": None}


@pytest.fixture(scope="module")
def scorers(models) -> dict[str, Scorer]:
    from exprbench.scorers import get_scorer_class

    return {name: get_scorer_class(name)() for name in SCORERS}


@pytest.fixture(scope="module")
def faces(photos) -> dict[str, tuple[np.ndarray, Face]]:
    from exprbench.faces import FaceDetector

    detector = FaceDetector()
    found = {}
    for name in FACES:
        rgb = load_rgb_array(photos[name])
        found[name] = (rgb, detector.detect(rgb)[0])
    return found


@pytest.fixture(scope="module")
def studies(faces, scorers) -> dict[str, res.FaceStudy]:
    return {
        name: res.analyse_face(rgb, face, scorers, FAST_METHODS, SIZES, expression=FACES[name])
        for name, (rgb, face) in faces.items()
    }


def _by(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


# --------------------------------------------------------------------------- rows


def test_one_row_per_method_size_scorer(studies):
    for study in studies.values():
        rows = study.rows
        assert len(rows) == len(FAST_METHODS) * len(SIZES) * len(SCORERS)
        assert all(tuple(r) == res.ROW_COLUMNS for r in rows)
        keys = {(r["method"], r["size"], r["scorer"]) for r in rows}
        assert len(keys) == len(rows)
        for r in rows:
            assert r["factor"] == 192 // r["size"]
            assert r["method_description"].startswith(r["method"])
            assert r["upscale_seconds"] >= 0
            assert r["ref_face_found"], r  # every scorer finds the full-resolution face
            assert 0 < r["ssim"] <= 1 and 10 < r["psnr"] < 60
            assert abs(r["face_px"] - r["size"] / res.DEFAULT_MARGIN) < 1.5
    happy = studies["feat_happy"].rows
    assert {r["target"] for r in _by(happy, scorer="fer")} == {"happy"}
    assert {r["target_source"] for r in _by(happy, scorer="fer")} == {"requested"}
    for scorer in ("fer", "faceapi"):  # no expression requested: the reference's top-1
        rows = _by(studies["obama"].rows, scorer=scorer)
        assert {r["target"] for r in rows} == {rows[0]["ref_top1"]}
        assert {r["target_source"] for r in rows} == {"reference top-1"}
    for r in _by(happy, scorer="dlib"):
        assert r["target"] is None and r["top1"] is None and r["age"] is None
        if r["face_found"]:
            assert len(r["descriptor"]) == 128 and r["identity_distance"] > 0


def test_the_face_is_carried_into_the_crop(studies, faces):
    for name, study in studies.items():
        box = study.crop_face.box
        assert study.original.shape == (192, 192, 3)
        # the grown square is 1.6x the (square) dlib box, centred on it
        assert box[2] == pytest.approx(192 / 1.6, abs=0.5)
        assert box[0] + box[2] / 2 == pytest.approx(96, abs=1)
        assert box[1] + box[3] / 2 == pytest.approx(96, abs=1)
        marks = study.crop_face.landmarks68
        assert marks.min() > 0 and marks.max() < 192
        # the nose tip (iBUG 30) keeps its place relative to the box
        face = faces[name][1]
        rel_image = (face.landmarks68[30] - face.box[:2]) / face.box[2]
        rel_crop = (marks[30] - np.array(box[:2])) / box[2]
        np.testing.assert_allclose(rel_crop, rel_image, atol=0.01)


def test_summary_per_method_size_scorer(studies):
    rows = [r for study in studies.values() for r in study.rows]
    summary = res.summarise(rows)
    assert len(summary) == len(FAST_METHODS) * len(SIZES) * len(SCORERS)
    for s in summary:
        assert s["n"] == len(FACES)
        for key in ("face_found_rate", "top1_agreement", "top1_kept_rate", "gender_agreement"):
            assert s[key] is None or 0.0 <= s[key] <= 1.0
        if s["top1_kept_rate"] is not None:  # a lost face counts against "kept"
            assert s["top1_kept_rate"] <= (s["top1_agreement"] or 0.0) + 1e-12
        members = _by(rows, method=s["method"], size=s["size"], scorer=s["scorer"])
        assert s["mean_psnr"] == pytest.approx(np.mean([r["psnr"] for r in members]))
        deltas = [
            abs(r["delta_target_prob"]) for r in members if r["delta_target_prob"] is not None
        ]
        if deltas:
            assert s["mean_abs_delta_target_prob"] == pytest.approx(np.mean(deltas))
    fer = [s for s in summary if s["scorer"] == "fer"]
    assert all(s["top1_agreement"] is not None and s["face_found_rate"] == 1.0 for s in fer)
    assert all(s["mean_identity_distance"] is None for s in fer)
    dlib = [s for s in summary if s["scorer"] == "dlib"]
    assert all(s["mean_identity_distance"] > 0 and s["top1_agreement"] is None for s in dlib)
    ages = [s for s in summary if s["scorer"] == "age_gender"]
    assert all(s["mean_abs_age_delta"] >= abs(s["mean_age_delta"]) for s in ages)


def test_nearest_loses_to_lanczos_and_24_px_to_48(studies):
    for name, study in studies.items():
        fer = _by(study.rows, scorer="fer")
        psnr = {(r["method"], r["size"]): r["psnr"] for r in fer}
        ssim = {(r["method"], r["size"]): r["ssim"] for r in fer}
        for size in SIZES:
            assert psnr[("nearest", size)] < psnr[("lanczos", size)] - 1.0, name
            assert ssim[("nearest", size)] < ssim[("lanczos", size)], name
        for method in FAST_METHODS:
            assert psnr[(method, 48)] > psnr[(method, 24)] + 2.0, (name, method)
            assert ssim[(method, 48)] > ssim[(method, 24)], (name, method)


def test_identity_round_trip_agrees_exactly(faces, scorers):
    """An 'upscaler' that returns the original crop must reproduce the reference exactly:
    this fails if the reference and the upscaled crops are scored differently."""
    rgb, face = faces["feat_happy"]
    original, _, _ = res.context_crop(rgb, face)

    def oracle(small: np.ndarray, factor: int) -> np.ndarray:
        assert small.shape[0] * factor == original.shape[0]
        return original.copy()

    def mirror(small: np.ndarray, factor: int) -> np.ndarray:
        return original[:, ::-1].copy()

    rows = res.analyse_face(rgb, face, scorers, {"oracle": oracle, "mirror": mirror}, (48,)).rows
    summary = {(s["method"], s["scorer"]): s for s in res.summarise(rows)}
    for scorer in SCORERS:
        s = summary[("oracle", scorer)]
        assert s["face_found_rate"] == 1.0
        assert s["mean_psnr"] == np.inf and s["mean_ssim"] == pytest.approx(1.0)
        for key in ("top1_agreement", "top1_kept_rate", "gender_agreement"):
            assert s[key] in (None, 1.0)
        for key in ("mean_abs_delta_target_prob", "mean_identity_distance", "mean_abs_age_delta"):
            assert s[key] is None or s[key] < 1e-6
    assert summary[("oracle", "fer")]["top1_agreement"] == 1.0
    assert summary[("oracle", "faceapi")]["mean_identity_distance"] == pytest.approx(0, abs=1e-6)
    # a mirrored face is a different picture: finite PSNR, a real identity distance
    assert np.isfinite(summary[("mirror", "fer")]["mean_psnr"])
    assert summary[("mirror", "dlib")]["mean_identity_distance"] > 0.01
    assert rows[0]["method_description"] == "oracle x4 (custom function)"


class _Picky(Scorer):
    """A test double: finds the face only in the one image it was told about."""

    name: ClassVar[str] = "picky"
    version: ClassVar[str] = "0"
    outputs: ClassVar[frozenset[Output]] = frozenset({"expression"})
    description: ClassVar[str] = "test double"
    crop: ClassVar[str] = "none"

    def __init__(self, sees: np.ndarray | None) -> None:
        super().__init__()
        self.sees = sees

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        if self.sees is None or not np.array_equal(image, self.sees):
            raise ScorerFoundNoFaceError("picky found no face here")
        return ScoreOutput(probabilities={e: 1.0 / len(EXPRESSIONS) for e in EXPRESSIONS})


def test_no_face_is_recorded_not_raised(faces):
    rgb, face = faces["obama"]
    original, _, _ = res.context_crop(rgb, face)
    scorers = {"picky": _Picky(original), "blind": _Picky(None)}
    rows = res.analyse_face(rgb, face, scorers, ("nearest", "bilinear"), SIZES).rows
    assert len(rows) == 2 * len(SIZES) * 2
    for r in _by(rows, scorer="picky"):  # reference scored, upscaled crops not
        assert r["ref_face_found"] and not r["face_found"]
        assert r["note"] == "no face: picky found no face here"
        assert r["ref_top1"] == "neutral" and r["top1"] is None and r["top1_agrees"] is None
    for r in _by(rows, scorer="blind"):  # no reference either
        assert not r["ref_face_found"] and not r["face_found"]
        assert "reference no face" in r["note"] and r["target"] is None
    for s in res.summarise(rows):
        assert s["n"] == 1 and s["n_scored"] == 0 and s["top1_agreement"] is None
        assert s["face_found_rate"] == (0.0 if s["scorer"] == "picky" else None)
        assert s["top1_kept_rate"] == (0.0 if s["scorer"] == "picky" else None)


def test_rows_are_deterministic(faces, scorers):
    rgb, face = faces["obama"]
    chosen = {"fer": scorers["fer"], "dlib": scorers["dlib"]}
    first = res.analyse_face(rgb, face, chosen, ("bicubic", "esrgan-slim"), SIZES).rows
    second = res.analyse_face(rgb, face, chosen, ("bicubic", "esrgan-slim"), SIZES).rows
    for a, b in zip(first, second, strict=True):
        assert {k: v for k, v in a.items() if k != "upscale_seconds"} == {
            k: v for k, v in b.items() if k != "upscale_seconds"
        }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": (64,)}, r"degraded size 64 must be crop_px \(192\) / 2, 4 or 8"),
        ({"sizes": (50,)}, r"degraded size 50"),
        ({"sizes": (192,)}, r"degraded size 192"),
        ({"sizes": (48, 48)}, r"listed twice"),
        ({"sizes": ()}, r"no degraded sizes"),
        ({"crop_px": 8}, r"crop_px must be an integer"),
        ({"methods": ("esrgan",)}, r"unknown upscaling methods \['esrgan'\]"),
        ({"methods": ("bicubic", "bicubic")}, r"listed twice"),
        ({"scorers": {}}, r"no scorers"),
        ({"expression": "joy"}, r"expression must be one of"),
        ({"margin": 0.5}, r"margin must be a number >= 1"),
    ],
)
def test_bad_arguments_are_named(faces, kwargs, message):
    rgb, face = faces["obama"]
    args = {"scorers": {"picky": _Picky(None)}, "methods": ("nearest",), "sizes": (48,)}
    with pytest.raises(ValueError, match=message):
        res.analyse_face(rgb, face, **{**args, **kwargs})


# --------------------------------------------------------------------------- PSNR / SSIM


def test_psnr_and_ssim_match_scikit_image(studies):
    metrics = import_or_missing(
        "skimage.metrics", "scikit-image is a dev dependency: pip install -e '.[dev]'"
    )
    rng = np.random.default_rng(7)
    study = studies["obama"]
    noise = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    pairs = [
        (study.original, study.upscaled[("bilinear", 24)]),
        (study.original, study.upscaled[("esrgan-slim", 48)]),
        (noise, np.clip(noise + rng.normal(0, 20, noise.shape), 0, 255).astype(np.uint8)),
    ]
    for a, b in pairs:
        ya, yb = res.luminance(a), res.luminance(b)
        expected = metrics.structural_similarity(
            ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert res.ssim(a, b) == pytest.approx(expected, abs=1e-3)
        assert res.ssim(a, b) == pytest.approx(expected, abs=1e-9)  # same formula exactly
        psnr = metrics.peak_signal_noise_ratio(ya, yb, data_range=255)
        assert res.psnr(a, b) == pytest.approx(psnr, abs=1e-9)


def test_psnr_and_ssim_basics():
    a = np.zeros((32, 32, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    assert res.psnr(a, a) == np.inf and res.ssim(a, a) == 1.0
    # one pixel off by 255 in 1024: MSE = 255^2 / 1024 -> PSNR = 10 log10(1024)
    assert res.psnr(a, b) == pytest.approx(10 * np.log10(1024))
    assert res.ssim(a, b) < 1.0
    assert res.gaussian_window().sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        res.ssim(a, b[:16])
    with pytest.raises(ValueError, match="at least 11 px"):
        res.ssim(a[:8, :8], b[:8, :8])


# --------------------------------------------------------------------------- montage, page


def test_montage_layout(studies):
    study = studies["feat_happy"]
    cell, gap = 192, res.MONTAGE_GAP
    columns = 2 + len(FAST_METHODS)
    bare = res.montage(study.original, study.degraded, study.upscaled, labels=False)
    assert bare.shape == (2 * cell + gap, columns * cell + (columns - 1) * gap, 3)
    assert bare.dtype == np.uint8
    step = cell + gap
    np.testing.assert_array_equal(bare[:cell, :cell], study.original)
    np.testing.assert_array_equal(bare[step : step + cell, :cell], study.original)
    # degraded column: the 24 px crop, each pixel an 8 x 8 block
    np.testing.assert_array_equal(
        bare[step : step + cell, step : step + cell],
        np.repeat(np.repeat(study.degraded[24], 8, axis=0), 8, axis=1),
    )
    last = FAST_METHODS[-1]
    np.testing.assert_array_equal(bare[:cell, -cell:], study.upscaled[(last, 48)])
    labelled = study.montage()
    assert labelled.shape == (
        bare.shape[0] + res.MONTAGE_HEADER,
        bare.shape[1] + res.MONTAGE_ROW_LABEL,
        3,
    )
    assert (labelled[: res.MONTAGE_HEADER] < 128).any()  # headings drawn
    partial = {k: v for k, v in study.upscaled.items() if k != ("bilinear", 24)}
    grey = res.montage(study.original, study.degraded, partial, labels=False)
    assert (grey[step : step + cell, 3 * step : 3 * step + cell] == 200).all()
    with pytest.raises(ValueError, match="labels for"):
        res.montage(study.original, study.degraded, study.upscaled, ["a", "b"])


def test_best_value_per_size_is_marked():
    rows = [
        {"method": m, "method_description": m, "factor": 4, "size": size, **values}
        for m, size, values in (
            ("a", 48, {"mean_psnr": 30.0, "mean_ssim": 0.9, "mean_seconds": 0.5}),
            ("b", 48, {"mean_psnr": 31.0, "mean_ssim": 0.8, "mean_seconds": 0.1}),
            ("a", 24, {"mean_psnr": 25.0, "mean_ssim": 0.7, "mean_seconds": 0.5}),
            ("b", 24, {"mean_psnr": 25.0, "mean_ssim": None, "mean_seconds": 0.1}),
        )
    ]
    table = study_table(rows, res.FIDELITY_COLUMNS)
    marks = {
        (group["size"], line["method"]): [c["best"] for c in line["cells"]]
        for group in table["groups"]
        for line in group["rows"]
    }
    # psnr higher, ssim higher, seconds lower; ties and lone values are not marked
    assert marks[(48, "a")] == [False, True, False]
    assert marks[(48, "b")] == [True, False, True]
    assert marks[(24, "a")] == [False, False, False]
    assert marks[(24, "b")] == [False, False, True]


def test_study_page_is_self_contained(studies, tmp_path):
    rows = [r for study in studies.values() for r in study.rows]
    montages = {f"{name} <b>": study.montage() for name, study in studies.items()}
    out = res.render_study_page(
        res.summarise(rows), montages, {"faces": 2, "crop_px": 192}, tmp_path / "study.html"
    )
    html = out.read_text()
    assert not re.search(r"https?:", html, re.IGNORECASE)
    assert all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', html)
    )
    assert html.count("<img") == len(FACES)
    assert "feat_happy &lt;b&gt;" in html and "feat_happy <b>" not in html
    assert html.count("<table") == 1 + 1 + len(SCORERS)  # info, fidelity, one per scorer
    for text in (
        "Scorer <code>faceapi</code>",
        "top-1 agreement",
        "PSNR (dB)",
        "degraded to 24 px",
    ):
        assert text in html
    for method in FAST_METHODS:
        assert f">{method}</td>" in html
    assert 'class="best"' in html


# --------------------------------------------------------------------------- Real-ESRGAN


def test_realesrgan_on_one_face_at_48_px(faces, scorers):
    rgb, face = faces["feat_happy"]
    chosen = {"fer": scorers["fer"], "faceapi": scorers["faceapi"]}
    study = res.analyse_face(rgb, face, chosen, ("realesrgan-x4plus",), (48,))
    assert [(r["method"], r["size"], r["scorer"]) for r in study.rows] == [
        ("realesrgan-x4plus", 48, "fer"),
        ("realesrgan-x4plus", 48, "faceapi"),
    ]
    row = study.rows[0]
    assert row["method_description"] == "realesrgan-x4plus x4: model's own x4"
    assert study.upscaled[("realesrgan-x4plus", 48)].shape == (192, 192, 3)
    assert 20 < row["psnr"] < 40 and 0.6 < row["ssim"] < 1
    assert row["upscale_seconds"] > 0.01  # a real network ran
    assert row["top1_agrees"] is True  # a broad smile survives 48 px and Real-ESRGAN
