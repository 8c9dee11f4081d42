"""Upscaling small faces before scoring: when to do it, by how much, and how.

Classical methods are Pillow's resamplers; learned super-resolution (Real-ESRGAN, ESRGAN)
and Lanczos + unsharp come from `exprbench.sr`, which says how each factor is produced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

import numpy as np
from PIL import Image

from exprbench.imagecheck import check_rgb_image
from exprbench.settings import UpscaleMethod

if TYPE_CHECKING:
    from exprbench.faces import FaceDetector

_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
ALLOWED_FACTORS = (2, 4, 8)


def _pil_resizer(method: str) -> Callable[[np.ndarray, int], np.ndarray]:
    def resize(rgb: np.ndarray, factor: int) -> np.ndarray:
        rgb = check_rgb_image(rgb, f"upscale {method}")
        height, width = rgb.shape[:2]
        image = Image.fromarray(rgb, "RGB")
        return np.asarray(image.resize((width * factor, height * factor), _PIL_FILTERS[method]))

    return resize


# Methods implemented in exprbench.sr; listed here so that choosing a classical method
# never imports torch (a test checks this list against exprbench.sr.SR_METHODS).
SR_METHOD_NAMES = (
    "lanczos+unsharp",
    "realesrgan-x4plus",
    "esrgan-slim",
    "esrgan-medium",
    "esrgan-thick",
)


def _sr_resizer(method: str) -> Callable[[np.ndarray, int], np.ndarray]:
    def resize(rgb: np.ndarray, factor: int) -> np.ndarray:
        from exprbench import sr

        return sr.upscale(rgb, method, factor)

    return resize


METHODS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    **{name: _pil_resizer(name) for name in _PIL_FILTERS},
    **{name: _sr_resizer(name) for name in SR_METHOD_NAMES},
}
# The upscale.method param's vocabulary is declared once, in exprbench.settings.
if set(get_args(UpscaleMethod)) != {"none", *METHODS}:
    raise ImportError(
        f"exprbench.settings.UpscaleMethod {get_args(UpscaleMethod)} and the methods "
        f"implemented here {sorted(METHODS)} disagree"
    )


def describe(method: str, factor: int, capped_from: int | None = None) -> str:
    """How the upscaled pixels were made, for tables and the report."""
    cap = (
        f"; capped from x{capped_from}: larger would exceed ingest.max_pixels"
        if capped_from
        else ""
    )
    if method == "none" or factor == 1:
        return f"not upscaled{cap}"
    if method in SR_METHOD_NAMES:
        from exprbench import sr

        return sr.describe(method, factor) + cap
    return f"{method} x{factor} (Pillow {method} resampling){cap}"


@dataclass(frozen=True)
class UpscaleDecision:
    method: str  # 'none' when not applied
    factor: int  # 1 when not applied
    measured_px: int
    measured_on: str  # 'face' | 'image'
    capped_from: int | None = None  # the factor wanted, when max_pixels forced a smaller one


def decide(
    measured_px: int,
    measured_on: str,
    *,
    method: str,
    min_face_px: int,
    max_factor: int,
    factor: int | str = "auto",
) -> UpscaleDecision:
    """Whether and by how much to upscale an image whose face measures `measured_px`.

    Faces already large enough, or method 'none', give factor 1. Otherwise `factor` 'auto'
    picks the smallest allowed factor (2, 4, 8) reaching `min_face_px`, capped at
    `max_factor` (a 10-px face is upscaled x8 and scored anyway, and the report shows it);
    a fixed `factor` is used as given.
    """
    if factor != "auto" and factor not in ALLOWED_FACTORS:
        raise ValueError(f"upscale.factor must be auto or one of {ALLOWED_FACTORS}, got {factor!r}")
    if method != "none" and method not in METHODS:
        raise ValueError(
            f"upscale.method {method!r} is not one of: none, {', '.join(sorted(METHODS))}"
        )
    if max_factor not in ALLOWED_FACTORS:
        raise ValueError(f"upscale.max_factor must be one of {ALLOWED_FACTORS}, got {max_factor}")
    if measured_px < 1:
        raise ValueError(f"measured size must be positive, got {measured_px}")
    if method == "none" or measured_px >= min_face_px:
        return UpscaleDecision("none", 1, measured_px, measured_on)
    if factor != "auto":
        return UpscaleDecision(method, int(factor), measured_px, measured_on)
    chosen = next((f for f in ALLOWED_FACTORS if measured_px * f >= min_face_px), max_factor)
    return UpscaleDecision(method, min(chosen, max_factor), measured_px, measured_on)


def cap(decision: UpscaleDecision, height: int, width: int, max_pixels: int) -> UpscaleDecision:
    """The decision with its factor lowered (to the largest allowed factor, or 1) so that the
    upscaled image has at most `max_pixels` pixels, the same limit every stage reads
    images under (ingest.max_pixels); `capped_from` records the factor wanted."""
    factor = decision.factor
    if factor == 1 or height * width * factor * factor <= max_pixels:
        return decision
    fits = [f for f in (1, *ALLOWED_FACTORS) if f < factor and height * width * f * f <= max_pixels]
    allowed = max(fits, default=1)
    return UpscaleDecision(
        decision.method if allowed > 1 else "none",
        allowed,
        decision.measured_px,
        decision.measured_on,
        capped_from=factor,
    )


def measure(detector: FaceDetector, rgb: np.ndarray, detect_upsample: int) -> tuple[int, str]:
    """The primary face's size in px ('face'), or the image's short side ('image')."""
    from exprbench.faces import choose_primary

    face = choose_primary(detector.detect(rgb, upsample=detect_upsample))
    if face is not None:
        return max(1, round(face.size_px)), "face"
    return int(min(rgb.shape[:2])), "image"


def apply(rgb: np.ndarray, decision: UpscaleDecision) -> np.ndarray:
    """Return the upscaled pixels (the input itself when the decision is 'none')."""
    if decision.method == "none" or decision.factor == 1:
        return rgb
    return METHODS[decision.method](rgb, decision.factor)
