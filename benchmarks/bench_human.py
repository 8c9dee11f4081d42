"""Time per face of Human's faceres: exprbench (onnxruntime) against tfjs in Node (wasm).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_human.py [--repeat 20] [--cold 3]

- cold: a fresh process that loads the model and scores one face (Python: import, build
  the ONNX graph, crop + run; Node: tfjs + wasm start, loadGraphModel, Human's crop + run),
  wall time of the whole process, median (min-max) of --cold runs;
- warm: one face again in the same process (crop + model), median (min-max) of --repeat.
Faces: the largest face of the demo photos below, boxes from exprbench's detector; JPEGs
handed to Node as lossless PNGs of the same pixels.

It also runs Human's whole chain (tests/parity/human_chain.mjs: BlazeFace, FaceMesh,
faceres) on the same photos and prints, per photo, Human's own box side, age and gender
against the scorer's (crop side = 1.55 x the dlib box side, exprbench.human.DLIB_BOX_SCALE)
and the distance between the two unit descriptors: how close the scorer's crop comes to
Human's own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import ROOT, load, load_note, machine, run_child, spread

PHOTOS = ("obama", "grace_hopper", "biden", "obama3", "astronaut")
_COLD = """
import sys, time
t0 = time.perf_counter()
from exprbench.imageio import load_rgb
from exprbench.geometry import Face
from exprbench.scorers.human import HumanFaceResScorer
import numpy as np
scorer = HumanFaceResScorer()
image = load_rgb(sys.argv[1])
box = tuple(float(v) for v in sys.argv[2].split(','))
scorer.score(image, Face(box, 1.0, np.zeros((5, 2), np.float32), np.zeros((68, 2), np.float32)))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--cold", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import PARITY_DIR, npm_harness

    from exprbench.demo_sources import fetch_photos
    from exprbench.faces import FaceDetector
    from exprbench.human import human_box
    from exprbench.imageio import encode_png, load_rgb
    from exprbench.scorers.human import HumanFaceResScorer, unit

    start_load = load()
    photos = fetch_photos(list(PHOTOS))
    detector = FaceDetector()
    scorer = HumanFaceResScorer()
    npm_harness(PARITY_DIR)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "log.txt"
        cases, warm_py, mine = [], [], []
        for name in PHOTOS:
            image = load_rgb(photos[name])
            face = max(detector.detect(image), key=lambda f: f.box[2] * f.box[3])
            png = tmp / f"{name}.png"
            png.write_bytes(encode_png(image))
            cases.append({"image": str(png), "box": [float(v) for v in face.box]})
            mine.append((face, scorer.score(image, face)))  # also the warm-up
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                scorer.score(image, face)
                warm_py.append(1000 * (time.perf_counter() - t0))
        job = tmp / "job.json"
        job.write_text(json.dumps({"model": "faceres", "cases": cases, "repeat": args.repeat}))
        node = ["node", str(PARITY_DIR / "human_harness.mjs"), str(job)]
        run_child(node, log=tmp / "node.json")
        out = json.loads((tmp / "node.json").read_text().splitlines()[-1])
        # model runs after the first, plus the case's crop (cut once per case, so its
        # time includes the first use of the crop kernels: an upper bound)
        warm_node = [ms + case["cropMs"] for case in out["cases"] for ms in case["ms"][1:]]
        one = tmp / "one.json"
        one.write_text(json.dumps({"model": "faceres", "cases": cases[:1]}))
        cold_node = [
            run_child(["node", str(PARITY_DIR / "human_harness.mjs"), str(one)], log=log).wall_s
            for _ in range(args.cold)
        ]
        box = ",".join(str(v) for v in cases[0]["box"])
        cmd = [sys.executable, "-c", _COLD, str(photos[PHOTOS[0]]), box]
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        cold_py = [run_child(cmd, env=env, log=log).wall_s for _ in range(args.cold)]
        chain = ["node", str(PARITY_DIR / "human_chain.mjs"), *(c["image"] for c in cases)]
        run_child(chain, log=tmp / "chain.jsonl")
        human = [json.loads(line) for line in (tmp / "chain.jsonl").read_text().splitlines()]
    print(f"machine: {machine()}; {load_note(start_load)}")
    print("| faceres, one face | exprbench (onnxruntime) | Human's model in Node (tfjs wasm) |")
    print("|---|---|---|")
    print(f"| cold: fresh process, load + 1 face (s) | {spread(cold_py)} | {spread(cold_node)} |")
    print(
        f"| warm: crop + model (ms), {len(warm_py)} runs | {spread(warm_py, '.1f')} | "
        f"{spread(warm_node, '.1f')} |"
    )
    means = statistics.mean(warm_py), statistics.mean(warm_node)
    print(f"warm means: exprbench {means[0]:.1f} ms, Node {means[1]:.1f} ms")
    print()
    print(
        "| photo | crop side: scorer / Human | age: scorer / Human | gender p(male): "
        "scorer / Human | descriptor distance (unit L2) |"
    )
    print("|---|---|---|---|---|")
    for name, (face, out), ref in zip(PHOTOS, mine, human, strict=True):
        if not ref["faces"]:
            print(f"| {name} | Human found no face | | | |")
            continue
        h = ref["faces"][0]
        x1, _, x2, _ = human_box(face.box, scorer.scale)
        p_male = out.gender_prob if out.gender == "male" else 1 - out.gender_prob
        h_male = 0.5 + h["genderScore"] / 2 if h["gender"] == "male" else 0.5 - h["genderScore"] / 2
        distance = float(np.linalg.norm(out.descriptor - unit(np.asarray(h["descriptor"]))))
        print(
            f"| {name} | {x2 - x1:.0f} / {h['box'][2]} | {out.age:.1f} / {h['age']} | "
            f"{p_male:.2f} / ~{h_male:.2f} | {distance:.2f} |"
        )


if __name__ == "__main__":
    main()
