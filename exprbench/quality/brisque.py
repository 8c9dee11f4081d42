"""BRISQUE: Blind/Referenceless Image Spatial Quality Evaluator (no reference; lower is better).

Mittal, Moorthy and Bovik, "No-reference image quality assessment in the spatial domain",
IEEE TIP 21(12), 2012. This reimplements the feature extraction of the `brisque` 0.2.0
package (Apache-2.0) and evaluates its shipped epsilon-SVR (`models/svm.txt`, RBF kernel)
with its feature ranges (`models/normalize.pickle`) in numpy; no libsvm is needed. The
package itself fails on numpy 2 (its `scale_features` calls `float()` on 1-element arrays).

Pipeline, as in the package:

- grey = 0.2125 R + 0.7154 G + 0.0721 B on RGB / 255 (scikit-image's `rgb2gray`);
- MSCN coefficients: 7x7 Gaussian window (sigma 7/6, normalised), zero padding outside the
  image, C = 1/255;
- for the MSCN map and its 4 neighbour products (horizontal, vertical, main and secondary
  diagonal) an asymmetric generalised Gaussian fit by moment matching: 2 features for the
  MSCN map (shape, mean variance), 4 for each product (shape, mean, left and right
  variances); 18 features at full size and 18 after a bicubic half-size resize (OpenCV);
- min/max scaling to [-1, 1], then the SVR: sum_i coef_i exp(-gamma |x - sv_i|^2) - rho.

One deliberate difference: MSCN values below FLAT_ZERO (1e-9) are set to exactly 0. In a
perfectly flat region the MSCN value is 0 in exact arithmetic, but floating point leaves
+-1e-16 residue whose random signs decide which side of the asymmetric fit those pixels
land on; in the package this moves the score by up to 0.4 on images with flat areas
(feat_no_face), and by a different amount for every equivalent way of filtering.

The shape parameter is found with a bracketing root finder (the package uses scipy's
`root` from 0.2; both converge to the same unique root, since the moment ratio is monotone
in the shape). A ratio outside what the shape range [0.05, 50] can reach clamps to that
range. Images whose MSCN map or a product has no negative or no positive values (e.g. an
all-black image) have no defined fit: the score is NaN.

The score is the SVR output: roughly 0 (pristine) to 100 (heavily distorted) on the
LIVE DMOS scale it was trained on, but not bounded: very clean images can go below 0, and
inputs far from every support vector tend to -rho = 155.8 (exprbench.quality.specs has the
declared range).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import brentq
from scipy.special import gamma as gamma_fn

from exprbench.imagecheck import check_rgb_image
from exprbench.quality.specs import BRISQUE
from exprbench.quality.specs import WEIGHT_KEYS as WEIGHT_KEYS_BY_COLUMN

SPEC = BRISQUE  # score column, range and direction (see exprbench.quality.specs)
WEIGHT_KEYS = WEIGHT_KEYS_BY_COLUMN["brisque"]
MIN_SIDE = 16
_RGB_TO_GREY = np.array([0.2125, 0.7154, 0.0721])
_WINDOW = 7
_SIGMA = 7 / 6
_C = 1 / 255
_ALPHA_RANGE = (0.05, 50.0)
# |MSCN| below this is floating-point residue of a flat region. On the demo photos such
# residue is < 1e-12 and genuine coefficients are > 1e-6.
FLAT_ZERO = 1e-9


@dataclass(frozen=True)
class BrisqueModel:
    """The epsilon-SVR and feature ranges of the brisque package."""

    gamma: float
    rho: float
    coef: np.ndarray  # (n_sv,)
    support_vectors: np.ndarray  # (n_sv, 36)
    feature_min: np.ndarray  # (36,)
    feature_max: np.ndarray  # (36,)

    def predict(self, features: np.ndarray) -> float:
        scaled = -1.0 + (2.0 / (self.feature_max - self.feature_min)) * (
            features - self.feature_min
        )
        sq = np.sum((self.support_vectors - scaled) ** 2, axis=1)
        return float(np.dot(self.coef, np.exp(-self.gamma * sq)) - self.rho)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # pragma: no cover - only on a bad file
        raise pickle.UnpicklingError(f"normalize.pickle refers to {module}.{name}")


def load_model(svm_path: str | Path, normalize_path: str | Path) -> BrisqueModel:
    """Parse a libsvm epsilon-SVR text model (RBF kernel) and the min/max pickle."""
    header: dict[str, str] = {}
    coef: list[float] = []
    rows: list[dict[int, float]] = []
    with open(svm_path) as handle:
        for line in handle:
            if line.strip() == "SV":
                break
            key, _, value = line.strip().partition(" ")
            header[key] = value
        for line in handle:
            parts = line.split()
            if not parts:
                continue
            coef.append(float(parts[0]))
            rows.append({int(i): float(v) for i, v in (p.split(":") for p in parts[1:])})
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{svm_path}: expected an epsilon_svr model with an rbf kernel")
    with open(normalize_path, "rb") as handle:
        ranges = _NoGlobals(handle).load()
    lo = np.asarray(ranges["min_"], dtype=np.float64)
    hi = np.asarray(ranges["max_"], dtype=np.float64)
    sv = np.zeros((len(rows), len(lo)))
    for r, row in enumerate(rows):
        for index, coordinate in row.items():
            sv[r, index - 1] = coordinate  # libsvm indices are 1-based; absent entries are 0
    return BrisqueModel(
        gamma=float(header["gamma"]),
        rho=float(header["rho"]),
        coef=np.asarray(coef),
        support_vectors=sv,
        feature_min=lo,
        feature_max=hi,
    )


@lru_cache(maxsize=1)
def default_model() -> BrisqueModel:
    """The brisque 0.2.0 model from the weight cache (`exprbench fetch-models`)."""
    from exprbench.weights import weight_path

    return load_model(*(weight_path(key) for key in WEIGHT_KEYS))


def _window() -> np.ndarray:
    x = np.arange(_WINDOW) - _WINDOW // 2
    g = np.exp(-(x**2) / (2 * _SIGMA**2))
    return g / g.sum()


def _blur(image: np.ndarray) -> np.ndarray:
    g = _window()
    return cv2.sepFilter2D(image, cv2.CV_64F, g, g, borderType=cv2.BORDER_CONSTANT)


def mscn(grey: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (brisque 0.2.0 conventions).

    Values below FLAT_ZERO in magnitude are set to exactly 0: they are floating-point
    residue of perfectly flat regions (0 in exact arithmetic), and their random signs would
    otherwise decide which side of the asymmetric fit they fall on.
    """
    mu = _blur(grey)
    sigma = np.sqrt(np.abs(mu**2 - _blur(grey * grey)))
    coefficients = (grey - mu) / (sigma + _C)
    coefficients[np.abs(coefficients) < FLAT_ZERO] = 0.0
    return coefficients


def _phi(alpha: float) -> float:
    return gamma_fn(2 / alpha) ** 2 / (gamma_fn(1 / alpha) * gamma_fn(3 / alpha))


def _solve_alpha(target: float) -> float:
    lo, hi = _ALPHA_RANGE
    f_lo, f_hi = _phi(lo) - target, _phi(hi) - target
    if f_lo >= 0:
        return lo
    if f_hi <= 0:
        return hi
    return float(brentq(lambda a: _phi(a) - target, lo, hi, xtol=1e-14, rtol=1e-14))


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit: (shape, mean, left sigma, right sigma)."""
    x = x.ravel()
    neg, pos = x[x < 0], x[x >= 0]
    if neg.size == 0 or pos.size == 0:
        return (math.nan,) * 4
    sigma_l = math.sqrt(float(np.mean(neg * neg)))
    sigma_r = math.sqrt(float(np.mean(pos * pos)))
    if sigma_r == 0.0:
        return (math.nan,) * 4
    r_hat = float(np.mean(np.abs(x))) ** 2 / float(np.mean(x * x))
    g = sigma_l / sigma_r
    big_r = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = _solve_alpha(big_r)
    constant = math.sqrt(gamma_fn(1 / alpha) / gamma_fn(3 / alpha))
    mean = (sigma_r - sigma_l) * constant * (gamma_fn(2 / alpha) / gamma_fn(1 / alpha))
    return alpha, mean, sigma_l, sigma_r


def _scale_features(grey: np.ndarray) -> list[float]:
    m = mscn(grey)
    alpha, _, sl, sr = aggd_fit(m)
    features = [alpha, (sl**2 + sr**2) / 2]
    products = (
        m[:, :-1] * m[:, 1:],  # horizontal
        m[:-1, :] * m[1:, :],  # vertical
        m[:-1, :-1] * m[1:, 1:],  # main diagonal
        m[1:, :-1] * m[:-1, 1:],  # secondary diagonal
    )
    for product in products:
        alpha, mean, sl, sr = aggd_fit(product)
        features += [alpha, mean, sl**2, sr**2]
    return features


def brisque_features(rgb: np.ndarray) -> np.ndarray:
    """The 36 unscaled BRISQUE features (18 at full size, 18 at half size)."""
    image = check_rgb_image(rgb, "BRISQUE", min_side=MIN_SIDE)
    grey = np.multiply(image, 1.0 / 255, dtype=np.float64) @ _RGB_TO_GREY
    half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.array(_scale_features(grey) + _scale_features(half))


def brisque(rgb: np.ndarray, model: BrisqueModel | None = None) -> float:
    """BRISQUE score of an H x W x 3 uint8 RGB image, at least 16 px a side (lower is better).

    NaN where the statistics are undefined (see the module notes). Raises
    ModelUnavailableError when the model files have not been fetched.
    """
    features = brisque_features(rgb)
    if not np.all(np.isfinite(features)):
        return math.nan
    return (model or default_model()).predict(features)
