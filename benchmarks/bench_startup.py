"""Whole-process start-up: `exprbench score --scorer faceapi --json` against face-api.js in
Node, side by side, on 1 image and on 57 images.

Run from the project root with the project's venv (needs Node.js; the harness's packages
are installed with `npm ci` in tests/parity when missing):

    .venv/bin/python benchmarks/bench_startup.py [--repeat 3]

Each run is a fresh process timed as a whole by this script (spawn to exit, wall clock;
peak resident memory from the kernel's accounting of the finished child, `os.wait4`), so
interpreter start, imports, model loading, image decoding, the chain and printing the
JSON all count. Both sides compute the same outputs for every face: detection, 68
landmarks, expressions, age/gender and the 128-d descriptor (Node: tests/parity/
harness.mjs, face-api.js 1.7.15 on tfjs 4.22 wasm, one thread, `--repeat 1 --warmup 0`;
Python: onnxruntime, one image with one thread per core, several images one per core at
once with one thread each, as `exprbench score` does by default). Python and Node runs
alternate (A, B, B, A, ...) so a change in the machine's load hits both. "Warm" is the
usual case: exprbench's built ONNX models are already in the user cache (one untimed run
first); "empty cache" is the first run ever, with an empty ONNX cache (a fresh
EXPRBENCH_HOME that links to the fetched weights and photos), which builds and stores
the five models. Files are in the page cache in every run (the machine is shared:
caches are not dropped).

Images: 1 = astronaut (scikit-image, 512 x 512, one face). 57 = the 25 real photos that
ship in packages (exprbench.demo_sources.PHOTOS: every photo of the demo set and the
tests) plus the first 32 StyleGAN2 faces of npm fake-avatars 1.1.0 (exprbench.gallery,
256 px PNGs), each decoded by its own side from the file (JPEG or PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.benchlib import ChildRun, load, machine, run_child, spread  # noqa: E402
from exprbench.demo_sources import PHOTOS, fetch_photos  # noqa: E402
from exprbench.gallery import fetch_gallery  # noqa: E402
from exprbench.packaged import cache_home  # noqa: E402
from exprbench.weights import WEIGHTS, fetch_models  # noqa: E402

PARITY = ROOT / "tests" / "parity"
AVATARS = 32  # with the 25 package photos: 57 images
ONE = "astronaut"


def python_cmd(images: list[Path]) -> list[str]:
    return [str(ROOT / "bin" / "exprbench"), "score", "--scorer", "faceapi", "--json"] + [
        str(p) for p in images
    ]


def node_cmd(images: list[Path]) -> list[str]:
    return ["node", str(PARITY / "harness.mjs"), "--repeat", "1", "--warmup", "0"] + [
        str(p) for p in images
    ]


def faces_found(kind: str, log: Path) -> list[int]:
    """Faces per image, from a run's JSON output."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    if kind == "python":
        return [len(json.loads(line).get("faces", [])) for line in lines]
    return [len(image["faces"]) for image in json.loads(lines[-1])["images"]]


def timed(kind: str, images: list[Path], tmp: Path, env: dict[str, str]) -> tuple[ChildRun, list]:
    log = Path(tempfile.mkstemp(dir=tmp, prefix=f"{kind}-", suffix=".log")[1])
    cmd = python_cmd(images) if kind == "python" else node_cmd(images)
    run = run_child(cmd, cwd=ROOT, env=env, log=log)
    return run, faces_found(kind, log)


def empty_cache_home(tmp: Path) -> Path:
    """A fresh EXPRBENCH_HOME with no built models: it links to the fetched packages."""
    home = Path(tempfile.mkdtemp(dir=tmp, prefix="home-"))
    (home / "packages").symlink_to(cache_home() / "packages")
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median shown)")
    args = parser.parse_args()
    if shutil.which("node") is None:
        raise SystemExit("Node.js is needed for the face-api.js side of the benchmark")
    if not (PARITY / "node_modules" / "@vladmandic" / "face-api").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PARITY, check=True)
    fetch_models([k for k in WEIGHTS if k.startswith("faceapi-")])
    photos = fetch_photos()
    avatars = fetch_gallery(AVATARS)
    sets = {1: [photos[ONE]], 57: [*photos.values(), *avatars]}
    assert len(sets[57]) == 57, len(sets[57])

    env = dict(os.environ)
    start_load = load()
    results: dict[tuple[str, int], list[ChildRun]] = {}
    faces: dict[tuple[str, int], list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as name:
        tmp = Path(name)
        timed("python", sets[1], tmp, env)  # untimed: fills the user ONNX cache
        for count, images in sets.items():
            for i in range(args.repeat):
                order = ("python", "node") if i % 2 == 0 else ("node", "python")
                for kind in order:
                    print(f"{count} image(s), run {i + 1}: {kind}", file=sys.stderr, flush=True)
                    run, found = timed(kind, images, tmp, env)
                    results.setdefault((kind, count), []).append(run)
                    faces[(kind, count)] = found
            for i in range(args.repeat):
                print(f"{count} image(s), empty cache {i + 1}", file=sys.stderr, flush=True)
                cold_env = {**env, "EXPRBENCH_HOME": str(empty_cache_home(tmp))}
                run, _ = timed("python", images, tmp, cold_env)
                results.setdefault(("python-empty", count), []).append(run)
    end_load = load()

    def wall(key: tuple[str, int]) -> list[float]:
        return [r.wall_s for r in results[key]]

    def rss(key: tuple[str, int]) -> list[float]:
        return [r.max_rss_mib for r in results[key]]

    print(
        f"Machine: {machine()}; 1-min load average {start_load:.1f} before, {end_load:.1f} "
        f"after (this benchmark's processes included; other work on the machine too). "
        f"Median (min-max) of {args.repeat} fresh processes per cell, Python and Node "
        "alternating.\n"
    )
    print(
        "| images | exprbench, warm ONNX cache: wall s | peak RSS MiB "
        "| face-api.js in Node: wall s | peak RSS MiB | Node / Python (wall) |"
    )
    print("|---|---|---|---|---|---|")
    for count in sets:
        py, node = ("python", count), ("node", count)
        ratio = statistics.median(wall(node)) / statistics.median(wall(py))
        print(
            f"| {count} | {spread(wall(py))} | {spread(rss(py), '.0f')} "
            f"| {spread(wall(node))} | {spread(rss(node), '.0f')} | {ratio:.2f}x |"
        )
    print(
        "\n| images | exprbench, first run, empty ONNX cache: wall s | peak RSS MiB "
        "| Node / Python (wall) |"
    )
    print("|---|---|---|---|")
    for count in sets:
        cold, node = ("python-empty", count), ("node", count)
        ratio = statistics.median(wall(node)) / statistics.median(wall(cold))
        print(f"| {count} | {spread(wall(cold))} | {spread(rss(cold), '.0f')} | {ratio:.2f}x |")
    for count in sets:
        py, node = faces[("python", count)], faces[("node", count)]
        differ = sum(a != b for a, b in zip(py, node, strict=True))
        print(
            f"\n{count} image(s): faces found, Python {sum(py)}, Node {sum(node)} "
            f"({differ} image(s) with a different count)."
        )
    print(
        f"\nThe 57 images: the {len(PHOTOS)} package photos of exprbench.demo_sources "
        f"({', '.join(PHOTOS)}) and fake-avatars 0-{AVATARS - 1}.png."
    )


if __name__ == "__main__":
    main()
