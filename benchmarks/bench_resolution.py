"""The resolution study on the demo set, as a markdown table for BENCHMARKS.md.

Run from the project root with the project's venv (after `exprbench fetch-models`):

    .venv/bin/python benchmarks/bench_resolution.py [--runs 3]

It builds the demo set (`exprbench fetch-demo`) in a temporary folder, runs ingest,
upscale and faces on it (this process, params.yaml), then runs the resolution study task
(`tasks.resolution`, what `dvc repro studies/dvc.yaml` runs, with params.yaml's
`resolution` section: by default 8 faces, crop 192 px, degraded to 48 and 24 px, every
upscale method, 4 recognizers) in a NEW Python process with an empty study cache, once
per `--runs`. Timed from outside: the whole process (interpreter start, imports, loading
every model, the study, its page) and, inside it, the study call alone.

The table is the study's own summary (summary.csv) of the first run, per degraded size
and method; only its "s" column (mean seconds per upscaling call, timed by the study
itself) changes from run to run and is the median over runs. Columns: fer top-1
agreement with the full-resolution crop and mean |delta target probability|; faceapi
share of faces its own detector still finds and share of full-resolution top-1s kept
(a lost face counts against it); dlib identity distance to the full-resolution crop;
age_gender mean |age delta|; PSNR and SSIM (BT.601 luminance) against the crop.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (
    ROOT,
    demo_through_faces,
    load,
    load_note,
    machine,
    now,
    run_child,
    spread,
)

sys.path.insert(0, str(ROOT))

# (header, scorer or None for a per-method value, summary column, format)
COLUMNS = (
    ("fer top-1 agree", "fer", "top1_agreement", ".2f"),
    ("fer mean abs d-target", "fer", "mean_abs_delta_target_prob", ".2f"),
    ("faceapi face found", "faceapi", "face_found_rate", ".2f"),
    ("faceapi top-1 kept", "faceapi", "top1_kept_rate", ".2f"),
    ("dlib identity dist", "dlib", "mean_identity_distance", ".2f"),
    ("age_gender mean abs age d", "age_gender", "mean_abs_age_delta", ".2f"),
    ("PSNR", None, "mean_psnr", ".2f"),
    ("SSIM", None, "mean_ssim", ".3f"),
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def study_child(raw: str, out: str, result_json: str) -> None:
    """In a fresh process: imports, the study task once, timestamps."""
    started = now()
    import flows  # noqa: F401 - offline settings, as in every exprbench process
    from exprbench.config import Layout
    from exprbench.settings import load_settings
    from tasks.resolution import resolution

    settings = load_settings(ROOT / "params.yaml")
    imported = now()
    result = resolution.fn(Layout.for_output(Path(raw), Path(out)), settings)
    done = now()
    Path(result_json).write_text(
        json.dumps({"started": started, "imported": imported, "done": done, **result.counts})
    )


def _number(text: str) -> float | None:
    return float(text) if text not in ("", "None", "null") else None


def table(summaries: list[list[dict]], settings) -> list[str]:
    first = summaries[0]
    by_key = {(r["method"], int(r["size"]), r["scorer"]): r for r in first}
    seconds: dict[tuple[str, int], list[float]] = {}
    for summary in summaries:
        for r in summary:
            value = _number(r["mean_seconds"])
            if value is not None:
                key = (r["method"], int(r["size"]))
                seconds.setdefault(key, []).append(value)
    any_scorer = settings.scorers[0]
    lines = [
        "| size | method | " + " | ".join(c[0] for c in COLUMNS) + " | s |",
        "|---|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for size in settings.sizes:
        for method in settings.methods:
            cells = []
            for _, scorer, column, fmt in COLUMNS:
                row = by_key.get((method, size, scorer or any_scorer))
                value = None if row is None else _number(row[column])
                cells.append("-" if value is None else format(value, fmt))
            s = seconds.get((method, size))
            cells.append("-" if not s else f"{statistics.median(s):.3f}")
            lines.append(f"| {size} | {method} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part")
    child = sub.add_parser("study-child", help="internal: one fresh-process study run")
    for arg in ("raw", "out", "result_json"):
        child.add_argument(arg)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.part == "study-child":
        study_child(args.raw, args.out, args.result_json)
        return

    import flows  # noqa: F401 - offline settings before Prefect is imported
    from exprbench.settings import load_settings

    study = load_settings(ROOT / "params.yaml").resolution
    assert study is not None, "params.yaml has no resolution section"
    with tempfile.TemporaryDirectory(prefix="bench-resolution-") as tmp_name:
        tmp = Path(tmp_name)
        load_at_start = load()
        raw, out = demo_through_faces(tmp, _log)
        summaries, whole, call, faces = [], [], [], 0
        for run in range(args.runs):
            _log(f"study run {run + 1}/{args.runs}")
            shutil.rmtree(out / "cache" / "resolution", ignore_errors=True)
            result_json = tmp / "child.json"
            child = run_child(
                [sys.executable, __file__, "study-child", str(raw), str(out), str(result_json)],
                cwd=ROOT,
                log=tmp / "children.log",
            )
            times = json.loads(result_json.read_text())
            if times["cache_hits"] != 0:
                raise RuntimeError(f"the study run was not cold: {times}")
            faces = times["faces"]
            whole.append(child.wall_s)
            call.append(times["done"] - times["imported"])
            with open(out / "report" / "resolution" / "summary.csv", newline="") as f:
                summaries.append(list(csv.DictReader(f)))
    sizes = ", ".join(map(str, study.sizes))
    print(
        f"Machine: {machine()}; {load_note(load_at_start)}. Settings: params.yaml "
        f"`resolution` ({faces} faces, crop {study.crop_px} px, sizes {sizes} px, "
        f"{len(study.methods)} methods, scorers {', '.join(study.scorers)}). "
        f"Cold study, new process, empty study cache, median (min-max) of {args.runs} "
        f"run(s): whole process {spread(whole, '.1f')} s, of which the study call "
        f"{spread(call, '.1f')} s.\n"
    )
    print("\n".join(table(summaries, study)))


if __name__ == "__main__":
    main()
