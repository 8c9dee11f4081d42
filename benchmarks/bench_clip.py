"""CLIP scorer: architecture cost per face with a ViT-B/32-sized model of RANDOM weights.

Run from the project root with the project's venv (after `exprbench fetch-models`):

    .venv/bin/python benchmarks/bench_clip.py [--runs 3] [--repeats 10]

No package reachable here ships CLIP weights, so the model is transformers' CLIPConfig
default (the shape of OpenAI's ViT-B/32: 88M vision + 63M text parameters) initialised
randomly and saved as a Hugging Face folder (tests/random_clip.py). Its outputs are never
results; the timing is the architecture's cost, which real ViT-B/32 weights share. The
random model's tokenizer splits prompts into characters (~3x the tokens of CLIP's real
vocabulary), so the one-off text encoding in "load" is an upper bound.

Each run is a fresh process on one real face (obama, face_recognition's test photo):
import (the scorer module and transformers), hash (the first cache_identity: sha256 of
the ~600 MB folder), load (scorer construction: model, tokenizer, the 42 prompt
embeddings), first face (cold), then per face warm: median of `--repeats` single-face
calls, and a batch of 8 faces divided by 8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import load, load_note, machine, spread  # noqa: E402

CHILD = textwrap.dedent(
    """
    import json, statistics, sys, time
    t0 = time.perf_counter()
    import numpy as np
    from PIL import Image
    from exprbench.demo_sources import fetch_photos
    from exprbench.faces import FaceDetector
    image = np.asarray(Image.open(fetch_photos()["obama"]).convert("RGB"))
    face = FaceDetector().detect(image, upsample=1)[0]
    t1 = time.perf_counter()
    from exprbench.scorers.clip_zero_shot import ClipScorer
    import torch, transformers
    if sys.argv[3] != "default":
        torch.set_num_threads(int(sys.argv[3]))
    t2 = time.perf_counter()
    ClipScorer.cache_identity({"weights": sys.argv[1]})
    t3 = time.perf_counter()
    scorer = ClipScorer({"weights": sys.argv[1]})
    t4 = time.perf_counter()
    scorer.score(image, face)
    t5 = time.perf_counter()
    warm = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        scorer.score(image, face)
        warm.append(time.perf_counter() - start)
    start = time.perf_counter()
    scorer.score_batch([(image, face)] * 8)
    batch = (time.perf_counter() - start) / 8
    print(json.dumps({
        "import": t2 - t1, "hash": t3 - t2, "load": t4 - t3, "first": t5 - t4,
        "warm": statistics.median(warm), "batch8": batch, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }))
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes (default 3)")
    parser.add_argument("--repeats", type=int, default=10, help="warm calls per run")
    parser.add_argument(
        "--threads",
        nargs="+",
        default=["default", "1"],
        help="torch intra-op threads to compare (default: torch's default, then 1)",
    )
    args = parser.parse_args()
    from tests.random_clip import write_random_clip

    at_start = load()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_random_clip(Path(tmp) / "vit-b-32-random", seed=0, size="vit-b-32")
        size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        runs: dict[str, list[dict]] = {threads: [] for threads in args.threads}
        for _ in range(args.runs):
            for threads in args.threads:  # interleaved: the machine's load hits both alike
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(folder), str(args.repeats), threads],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=ROOT,
                )
                runs[threads].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = runs[args.threads[0]][0]
    print(
        "CLIP ViT-B/32 architecture cost, RANDOM weights (never results); "
        f"folder {size_mb:.0f} MB\n"
        f"CPU: {machine()}; torch {first['torch']}, transformers {first['transformers']}; "
        f"{args.runs} fresh processes per row, median (min-max)\n"
    )
    print(
        "| torch threads | import s | hash s | load s | first face (cold) s "
        "| per face warm ms | per face, batch of 8 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for threads, rows in runs.items():

        def cell(key: str, scale: float = 1.0, fmt: str = ".2f", rows: list = rows) -> str:
            return spread([r[key] * scale for r in rows], fmt)

        name = f"{rows[0]['threads']} (torch default)" if threads == "default" else threads
        print(
            f"| {name} | {cell('import')} | {cell('hash')} | {cell('load')} | {cell('first')} "
            f"| {cell('warm', 1000, '.0f')} | {cell('batch8', 1000, '.0f')} |"
        )
    print(f"\n{load_note(at_start)}")


if __name__ == "__main__":
    main()
