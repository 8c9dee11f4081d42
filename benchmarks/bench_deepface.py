"""Time per face of the `deepface` scorer, cold (a fresh process) and warm, beside `dlib`.

Run from the project root with the project's venv (models fetched, deepface installed):

    .venv/bin/python benchmarks/bench_deepface.py [--repeat 5] [--runs 3]

The parent detects the faces once (the faces stage's job, not timed) and hands them to
each child as JSON. Per scorer, a fresh child process reports:
- cold: from spawning the process to the end of its first face (Python start, imports,
  building the scorer, the first face), and the first face alone;
- warm: the median time per face over every face, `--repeat` times each, after that.
Only identity runs offline (analyze needs the user's weights), so this times
`DeepFace.represent(model_name="Dlib")` with deepface's crop; `dlib` is our scorer on the
same network. Prints a markdown table; the CPU is shared, so the load average is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import load, machine, now, spread  # noqa: E402

PHOTOS = ["astronaut", "feat_happy", "grace_hopper", "franck_02045", "obama", "biden"]
SCORERS = ["deepface", "dlib"]

CHILD = """
import json, statistics, sys, time
start = float(sys.argv[1])
from exprbench.geometry import Face
from exprbench.imageio import load_rgb
from exprbench.scorers import get_scorer_class
import numpy as np
items = json.loads(open(sys.argv[3]).read())
images = {p: load_rgb(p) for p in {i["path"] for i in items}}
faces = [
    (images[i["path"]], Face(tuple(i["box"]), i["score"], np.asarray(i["l5"], np.float32),
     np.asarray(i["l68"], np.float32)))
    for i in items
]
loaded = time.clock_gettime(time.CLOCK_MONOTONIC)
scorer = get_scorer_class(sys.argv[2])()
built = time.clock_gettime(time.CLOCK_MONOTONIC)
scorer.score(*faces[0])
first = time.clock_gettime(time.CLOCK_MONOTONIC)
repeat = int(sys.argv[4])
per_face = []
for image, face in faces:
    for _ in range(repeat):
        t = time.clock_gettime(time.CLOCK_MONOTONIC)
        scorer.score(image, face)
        per_face.append(time.clock_gettime(time.CLOCK_MONOTONIC) - t)
print(json.dumps({"cold_s": first - start, "build_s": built - loaded,
                  "first_face_s": first - built, "warm_ms": 1000 * statistics.median(per_face)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per face")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per scorer")
    args = parser.parse_args()

    from exprbench.demo_sources import fetch_photos
    from exprbench.faces import FaceDetector
    from exprbench.imageio import load_rgb

    photos = fetch_photos(PHOTOS)
    detector = FaceDetector()
    items = []
    for name in PHOTOS:
        found = detector.detect(load_rgb(photos[name]), min_score=0.5)
        face = found[0]
        items.append(
            {
                "path": str(photos[name]),
                "box": list(face.box),
                "score": face.score,
                "l5": face.landmarks5.tolist(),
                "l68": face.landmarks68.tolist(),
            }
        )
    load_before = load()
    results: dict[str, list[dict]] = {name: [] for name in SCORERS}
    with tempfile.TemporaryDirectory() as tmp:
        faces_json = Path(tmp) / "faces.json"
        faces_json.write_text(json.dumps(items))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for _ in range(args.runs):
            for name in SCORERS:
                start = now()
                cmd = [sys.executable, "-c", CHILD, repr(start), name, str(faces_json)]
                out = subprocess.run(
                    [*cmd, str(args.repeat)],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                    cwd=ROOT,
                )
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"deepface scorer vs dlib, {len(items)} faces ({', '.join(PHOTOS)}); {machine()}; "
        f"{args.runs} fresh processes each, warm = median of {args.repeat} runs per face; "
        f"1-min load {load_before:.1f} -> {load():.1f}; {time.strftime('%Y-%m-%d')}\n"
    )
    print(
        "| scorer | cold: spawn to first face (s) | build (s) | first face (ms) | warm (ms/face) |"
    )
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        cold = [r["cold_s"] for r in runs]
        build = [r["build_s"] for r in runs]
        first = [1000 * r["first_face_s"] for r in runs]
        warm = [r["warm_ms"] for r in runs]
        print(
            f"| `{name}` | {spread(cold)} | {spread(build)} | {spread(first, '.0f')} | "
            f"{spread(warm, '.0f')} |"
        )
    print("\n(median over the fresh processes, min-max in brackets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
