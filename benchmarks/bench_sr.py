"""Super-resolution benchmark for BENCHMARKS.md: wall time and fidelity per upscale method.

Run from the project root with the project's venv (after `exprbench fetch-models`):

    .venv/bin/python benchmarks/bench_sr.py [--repeats 3]

Inputs come from a real photo (grace_hopper, US Navy, public domain, shipped in matplotlib):

- x4: the 192x192 face region, downscaled to 48x48 (Pillow bicubic, antialiased), upscaled
  48 -> 192 and compared with the original 192x192 face.
- x8: the 384x384 head-and-shoulders region around that face, downscaled to 48x48 the same
  way, upscaled 48 -> 384 and compared with the original 384x384 crop.

PSNR is over RGB (peak 255); SSIM is Wang et al. 2004 on the BT.601 luma (Gaussian window
11x11, sigma 1.5). Time is the median wall time of `--repeats` calls after one warm-up call
that loads the model (load time is listed separately). Fidelity to the original rewards
smooth guesses; GAN models (Real-ESRGAN) score lower on it while looking sharper.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exprbench.demo_sources import fetch_photos  # noqa: E402
from exprbench.sr import SR_METHODS, describe  # noqa: E402
from exprbench.upscale import METHODS as CLASSICAL  # noqa: E402

FACE_BOX = (160, 148, 192)  # left, top, side: the face in grace_hopper.jpg (512x600)
HEAD_BOX = (64, 56, 384)  # the 384x384 region around it, for x8
LR_SIDE = 48
CLASSICAL_ORDER = ("nearest", "bilinear", "bicubic", "lanczos")


def crop(rgb: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    left, top, side = box
    return np.ascontiguousarray(rgb[top : top + side, left : left + side])


def downscale(rgb: np.ndarray, side: int) -> np.ndarray:
    image = Image.fromarray(rgb, "RGB")
    return np.asarray(image.resize((side, side), Image.Resampling.BICUBIC))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    def luma(rgb: np.ndarray) -> np.ndarray:
        return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    x, y = luma(a), luma(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def time_call(fn, repeats: int) -> tuple[float, float]:
    """(first call seconds, median of `repeats` further calls)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", help="subset of method names")
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    photo = fetch_photos(["grace_hopper"])["grace_hopper"]
    with Image.open(photo) as image:
        rgb = np.asarray(image.convert("RGB"))
    cases = {4: crop(rgb, FACE_BOX), 8: crop(rgb, HEAD_BOX)}
    names = [*CLASSICAL_ORDER, *SR_METHODS]
    if args.methods:
        names = [n for n in names if n in args.methods]

    print(
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.repeats} after a warm-up call"
    )
    print()
    print("| method | factor | how | 1st call s | time s | PSNR dB | SSIM (Y) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        for factor, original in cases.items():
            small = downscale(original, LR_SIDE)
            if name in SR_METHODS:
                fn = SR_METHODS[name].upscale
                how = describe(name, factor).split(": ", 1)[1]
            else:
                fn = CLASSICAL[name]
                how = f"Pillow {name}"
            first, median = time_call(
                lambda fn=fn, small=small, f=factor: fn(small, f), args.repeats
            )
            out = fn(small, factor)
            print(
                f"| {name} | {LR_SIDE}->{LR_SIDE * factor} (x{factor}) | {how} | "
                f"{first:.3f} | {median:.3f} | {psnr(out, original):.2f} | "
                f"{ssim(out, original):.3f} |"
            )
            sys.stdout.flush()
    print(
        f"\n1-min load average {load_at_start:.1f} before the benchmark, "
        f"{os.getloadavg()[0]:.1f} at its end (its own process included)."
    )


if __name__ == "__main__":
    main()
