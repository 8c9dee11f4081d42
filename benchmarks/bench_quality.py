"""Quality-metric benchmark: wall time per image for each metric in exprbench.quality.

Run from the project root with the project's venv (after `exprbench fetch-models`):

    .venv/bin/python benchmarks/bench_quality.py [--repeats 5]

Inputs: grace_hopper (US Navy, public domain, shipped in matplotlib), the whole 512x600
photo and the 192x192 face crop. No-reference metrics time one call on the image;
ST-LPIPS times one `distance(image, blurred image)` call (two forward passes), both at the
default working size (256x256) and at the image's own size (size=None). Each time is the
median of `--repeats` calls after one warm-up call; loading the parameters is listed
separately. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exprbench.demo_sources import fetch_photos  # noqa: E402
from exprbench.quality.brisque import brisque  # noqa: E402
from exprbench.quality.brisque import default_model as brisque_model  # noqa: E402
from exprbench.quality.niqe import default_model as niqe_model  # noqa: E402
from exprbench.quality.niqe import niqe, niqe_reliable  # noqa: E402
from exprbench.quality.piqe import piqe  # noqa: E402
from exprbench.quality.stlpips import STLPIPS  # noqa: E402

FACE_BOX = (160, 148, 192)  # left, top, side: the face in grace_hopper.jpg (512x600)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    value = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, value


def load_time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    with Image.open(fetch_photos()["grace_hopper"]) as image:
        photo = np.asarray(image.convert("RGB"))
    left, top, side = FACE_BOX
    face = np.ascontiguousarray(photo[top : top + side, left : left + side])
    inputs = {f"photo {photo.shape[1]}x{photo.shape[0]}": photo, f"face {side}x{side}": face}

    loads = {
        "BRISQUE model": load_time(brisque_model),
        "NIQE model": load_time(niqe_model),
    }
    metrics: dict[str, STLPIPS] = {}
    for net in ("vgg", "alex"):
        for size, tag in ((256, "256"), (None, "native")):
            start = time.perf_counter()
            metrics[f"ST-LPIPS {net} ({tag})"] = STLPIPS(net, size=size)
            if size:
                loads[f"ST-LPIPS {net} weights"] = (time.perf_counter() - start) * 1000

    rows: list[tuple[str, list[str]]] = []
    no_ref = {"BRISQUE": brisque, "NIQE": niqe, "PIQE": piqe}
    for name, fn in no_ref.items():
        cells = []
        for image in inputs.values():
            ms, value = timed(lambda fn=fn, image=image: fn(image), args.repeats)
            flag = "" if name != "NIQE" or niqe_reliable(image) else " (unreliable)"
            cells.append(f"{ms:.1f} ms (= {value:.2f}{flag})")
        rows.append((name, cells))
    for name, metric in metrics.items():
        cells = []
        for image in inputs.values():
            blurred = cv2.GaussianBlur(image, (0, 0), 2)
            ms, value = timed(lambda m=metric, a=image, b=blurred: m.distance(a, b), args.repeats)
            cells.append(f"{ms:.1f} ms (= {value:.4f})")
        rows.append((name, cells))

    cpu = platform.processor() or platform.machine()
    print(
        f"Quality metrics, median of {args.repeats} after a warm-up; {cpu}, {os.cpu_count()} "
        f"CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)\n"
    )
    print("| metric | " + " | ".join(inputs) + " |")
    print("|---|" + "---|" * len(inputs))
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nST-LPIPS: distance(image, Gaussian-blurred image, sigma 2); '256' resizes both to")
    print("256x256 (the default), 'native' keeps the image's size.\n")
    print("| one-off load | ms |\n|---|---|")
    for name, ms in loads.items():
        print(f"| {name} | {ms:.0f} |")
    print(
        f"\n1-min load average {load_at_start:.1f} before the benchmark, "
        f"{os.getloadavg()[0]:.1f} at its end (its own process included)."
    )


if __name__ == "__main__":
    main()
