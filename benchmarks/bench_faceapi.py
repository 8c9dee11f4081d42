"""exprbench.faceapi against face-api.js in Node (tfjs wasm backend), side by side.

Run from the project root with the project's venv (needs Node.js; the harness's packages
are installed with `npm ci` in tests/parity when missing):

    .venv/bin/python benchmarks/bench_faceapi.py [--repeat 10] [--warmup 2] [--threads 1 2]

Both sides run the full chain (detection, 68 landmarks, expressions, age/gender,
descriptors) on the same decoded pixels (photos written once as lossless PNGs). Models
load once per process and every image is warmed up first; only the chain is timed, not
decoding, process start-up or model loading (the Node harness times its own loop). Prints
a markdown table of median ms per image; the CPU is shared, so the load average is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402

from exprbench.demo_sources import fetch_photos  # noqa: E402
from exprbench.faceapi import FaceApi, FaceApiOptions  # noqa: E402
from exprbench.imageio import encode_png, load_rgb  # noqa: E402
from exprbench.weights import WEIGHTS, fetch_models  # noqa: E402

PARITY = ROOT / "tests" / "parity"
PHOTOS = [
    "astronaut",  # 512 x 512, one face: the reference case of the speed target
    "feat_happy",  # 512 x 512
    "grace_hopper",  # 512 x 600
    "franck_02045",  # 720 x 576
    "obama",  # 910 x 1137
    "feat_multi_face",  # 1000 x 667, 5 faces
    "biden",  # 970 x 2204
]


def python_ms(
    images: dict[str, np.ndarray], repeat: int, warmup: int, threads: int
) -> dict[str, list[float]]:
    api = FaceApi(FaceApiOptions(threads=threads))
    times: dict[str, list[float]] = {}
    for name, rgb in images.items():
        for _ in range(warmup):
            api.detect_all(rgb)
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            api.detect_all(rgb)
            runs.append((time.perf_counter() - start) * 1000)
        times[name] = runs
    return times


def node_ms(paths: dict[str, Path], repeat: int, warmup: int) -> tuple[dict, dict]:
    if shutil.which("node") is None:
        raise SystemExit("Node.js is needed for the face-api.js side of the benchmark")
    if not (PARITY / "node_modules" / "@vladmandic" / "face-api").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PARITY, check=True)
    cmd = ["node", str(PARITY / "harness.mjs"), "--repeat", str(repeat), "--warmup", str(warmup)]
    result = subprocess.run(
        [*cmd, *map(str, paths.values())], capture_output=True, text=True, check=True
    )
    out = json.loads(result.stdout)
    by_path = {image["path"]: image for image in out["images"]}
    return {name: by_path[str(path)]["ms"] for name, path in paths.items()}, {
        "faces": {name: len(by_path[str(path)]["faces"]) for name, path in paths.items()},
        "wasm": out["wasm"],
        "versions": out["versions"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, os.cpu_count() or 1],
        help="onnxruntime intra-op threads to measure (default: 1 and one per core)",
    )
    args = parser.parse_args()

    fetch_models([k for k in WEIGHTS if k.startswith("faceapi-")])
    photos = fetch_photos(PHOTOS)
    with tempfile.TemporaryDirectory(prefix="bench-faceapi-") as tmp:
        images, paths = {}, {}
        for name in PHOTOS:
            images[name] = load_rgb(photos[name])
            paths[name] = Path(tmp) / f"{name}.png"
            paths[name].write_bytes(encode_png(images[name]))
        load_before = os.getloadavg()[0]
        py = {}
        for threads in args.threads:
            py[threads] = python_ms(images, args.repeat, args.warmup, threads)
        node, info = node_ms(paths, args.repeat, args.warmup)
        load_after = os.getloadavg()[0]

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"onnxruntime {onnxruntime.__version__}; face-api {info['versions']['faceapi']}, "
        f"tfjs {info['versions']['tfjs']} wasm (threads {info['wasm']['threads']}, "
        f"SIMD {info['wasm']['simd']}); median of {args.repeat} runs after {args.warmup} "
        f"warm-up; load average {load_before:.2f} -> {load_after:.2f}\n"
    )
    py_cols = " | ".join(f"Python, {t} thread{'s' if t > 1 else ''} ms" for t in args.threads)
    print(f"| image | size | faces | {py_cols} | face-api.js Node ms | speed-up |")
    print("|---|---|---|" + "---|" * len(args.threads) + "---|---|")
    totals = {t: 0.0 for t in args.threads}
    node_total = 0.0
    for name in PHOTOS:
        h, w = images[name].shape[:2]
        cells = " | ".join(f"{med(py[t][name]):.1f}" for t in args.threads)
        best = min(med(py[t][name]) for t in args.threads)
        for t in args.threads:
            totals[t] += med(py[t][name])
        node_total += med(node[name])
        print(
            f"| {name} | {w}x{h} | {info['faces'][name]} | {cells} | {med(node[name]):.1f} "
            f"| {med(node[name]) / best:.1f}x |"
        )
    n = len(PHOTOS)
    cells = " | ".join(f"{totals[t] / n:.1f}" for t in args.threads)
    best = min(totals.values()) / n
    print(f"| mean | | | {cells} | {node_total / n:.1f} | {node_total / n / best:.1f}x |")


if __name__ == "__main__":
    main()
