"""Image fidelity of an upscaled crop against the original: PSNR and SSIM.

Both on the BT.601 luminance Y = 0.299 R + 0.587 G + 0.114 B (float, range 0-255); SSIM
as Wang et al. 2004 (Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, mean over
the 'valid' window positions).
"""

from __future__ import annotations

import math

import numpy as np

from exprbench.imagecheck import check_rgb_image

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 255.0
BT601 = np.array([0.299, 0.587, 0.114])


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B of a uint8 RGB image, float64 0-255."""
    return np.asarray(rgb, dtype=np.float64) @ BT601


def _pair(a: np.ndarray, b: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    a = check_rgb_image(a, where)
    b = check_rgb_image(b, where)
    if a.shape != b.shape:
        raise ValueError(f"{where}: images differ in shape, {a.shape} vs {b.shape}")
    return luminance(a), luminance(b)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of `test` against `reference` on luminance Y,
    peak 255; inf when they are identical."""
    x, y = _pair(reference, test, "psnr")
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of `size` taps (MATLAB fspecial('gaussian') along one axis)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with taps along both axes."""
    n = len(taps)
    rows = np.lib.stride_tricks.sliding_window_view(image, n, axis=1) @ taps
    return np.lib.stride_tricks.sliding_window_view(rows, n, axis=0) @ taps


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) of two uint8 RGB images of the
    same shape, on BT.601 luminance: Gaussian window 11 x 11, sigma 1.5, K1 0.01,
    K2 0.03, L 255, population (weighted) variances, averaged over the window positions
    that lie wholly inside the image."""
    x, y = _pair(reference, test, "ssim")
    if min(x.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim: images must be at least {SSIM_WINDOW} px, got {x.shape}")
    g = gaussian_window()
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x**2
    var_y = _filter_valid(y * y, g) - mu_y**2
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())
