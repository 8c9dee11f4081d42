"""Learned super-resolution (Real-ESRGAN x4plus, UpscalerJS ESRGAN slim/medium/thick) and
Lanczos + unsharp mask, for upscaling small faces before scoring.

    from exprbench.sr import SR_METHODS, describe
    big = SR_METHODS["esrgan-thick"].upscale(rgb, 4)      # uint8 (H, W, 3) -> (4H, 4W, 3)
    describe("realesrgan-x4plus", 8)  # '... x8: model x4, then Lanczos upscale by 2 (Pillow)'

Each port is checked against an independent reference in tests/test_sr.py (the `ncnn`
runtime for Real-ESRGAN, the UpscalerJS packages' own sample outputs for ESRGAN).
"""

from exprbench.sr.methods import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    SR_METHODS,
    SUPPORTED_FACTORS,
    SrMethod,
    check_input,
    clear_model_cache,
    describe,
    get_method,
    upscale,
)

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "SR_METHODS",
    "SUPPORTED_FACTORS",
    "SrMethod",
    "check_input",
    "clear_model_cache",
    "describe",
    "get_method",
    "upscale",
]
