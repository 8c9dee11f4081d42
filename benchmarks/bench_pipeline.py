"""Benchmarks for BENCHMARKS.md: score-stage cold/warm times and `dvc repro` wall times.

Run from the project root with the project's venv (after `exprbench fetch-models`):

    .venv/bin/python benchmarks/bench_pipeline.py score [--runs 5]
    .venv/bin/python benchmarks/bench_pipeline.py dvc [--runs 3]

Both build the demo set (`exprbench fetch-demo`: 20 images, 19 with a face) in a
temporary folder, so nothing under data/ is touched; model weights come from the user
cache (`~/.cache/exprbench`, never downloaded here). Each prints markdown on stdout;
progress goes to stderr.

`score`: ingest, upscale and faces run once, in this process. Then, for the six default
scorers together and for each scorer alone, a NEW Python process (this file,
`score-child`) runs the score task with the per-image score cache (and the impostor
gallery's descriptors) emptied first:

- images (results): images in the faces table; score results computed (cache misses:
  one per image with a face and per-image scorer, one per face/neutral pair for stlpips);
- cold, whole process: from spawning the process to the end of the first score call;
- of which start + imports: interpreter start, `import flows` (offline settings), the
  score task's module (Prefect and exprbench), every registered scorer's module
  (`available_scorers()`: torch, onnxruntime, dlib; the same for every row) and parsing
  params.yaml;
- cold stage: the first `score` call alone: each scorer's cache identity (hashing its
  code and weights), loading its models from the user cache, scoring every image,
  writing scores.parquet; images/s is images over this;
- warm stage: the same call again in that process, every result from the content cache
  (the score cache on disk; nothing is computed, so no model is loaded);
- process CPU: user + system seconds of the whole child (both calls), from the kernel's
  accounting (`os.wait4`); under load it rises too where threads spin while waiting
  (torch's OpenMP threads);
- peak RSS: the child's largest resident set, from the same accounting.

The task function is called directly (`score.fn`): no Prefect flow run, no server. The
OS file cache is not dropped, so weight files are likely read from memory. Runs are
interleaved (all rows, then all rows again) and each cell is the median (min-max) of
`--runs`.

`dvc`: a temporary git + DVC repository with a copy of dvc.yaml, params.yaml and the code
(bin/, exprbench/, tasks/, flows/; the stages run that copy), the demo set less one
held-out image: full `dvc repro` from empty caches, a second `dvc repro` with nothing
changed, and one after adding the held-out image; then each stage alone
(`bin/exprbench stage NAME`, dvc.yaml's stage command) with every per-image result
cached, its fixed cost. Every command is a whole process timed from outside. Stage runs
report to a running Prefect server, as with `make demo` (a server process beside the
stages, no temporary in-process one): the one at PREFECT_API_URL if
that is set, otherwise a private server started for this benchmark with an empty
database (Prefect's `prefect_test_harness`); the output says which. `--runs` repeats the
whole sequence in a fresh repository each time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- score


def score_child(raw: str, out: str, scorers: str, result_json: str) -> None:
    """In a fresh process: imports, one cold and one warm score call, timestamps."""
    imports_start = now()
    import flows  # noqa: F401 - offline settings, as in every exprbench process
    from exprbench.config import Layout
    from exprbench.scorers import available_scorers
    from exprbench.settings import Settings, load_params
    from tasks.score import score

    available_scorers()  # imports every scorer module, as the stage does
    params = load_params(ROOT / "params.yaml")
    params["score"] = {**params["score"], "scorers": scorers.split(",")}
    settings = Settings.from_params(params)
    layout = Layout.for_output(Path(raw), Path(out))
    imported = now()
    cold = score.fn(layout, settings)
    cold_done = now()
    warm = score.fn(layout, settings)
    warm_done = now()
    Path(result_json).write_text(
        json.dumps(
            {
                "main_started": imports_start,
                "imported": imported,
                "cold_done": cold_done,
                "warm_done": warm_done,
                "cold": cold.counts,
                "warm": warm.counts,
            }
        )
    )


def bench_score(tmp: Path, runs: int) -> list[str]:
    from exprbench.config import Layout
    from exprbench.gallery import descriptor_cache_dir
    from exprbench.settings import load_settings

    load_at_start = load()
    raw, out = demo_through_faces(tmp, _log)
    layout = Layout.for_output(raw, out)
    settings = load_settings(ROOT / "params.yaml")
    everything = tuple(settings.score.scorers)
    rows = [everything, *((name,) for name in everything)]
    figures: dict[tuple[str, ...], list[dict]] = {row: [] for row in rows}
    for run in range(runs):
        for scorers in rows:
            _log(f"run {run + 1}/{runs}: {', '.join(scorers)}")
            shutil.rmtree(layout.cache / "score", ignore_errors=True)
            shutil.rmtree(descriptor_cache_dir(), ignore_errors=True)  # impostor gallery
            result_json = tmp / "child.json"
            child_args = (",".join(scorers), str(result_json))
            child = run_child(
                [sys.executable, __file__, "score-child", str(raw), str(out), *child_args],
                cwd=ROOT,
                log=tmp / "children.log",
            )
            times = json.loads(result_json.read_text())
            cold, warm = times["cold"], times["warm"]
            if cold["cache_hits"] != 0 or warm["cache_misses"] != 0:
                raise RuntimeError(f"{scorers}: cold run was not cold or warm not warm: {times}")
            figures[scorers].append(
                {
                    "images": cold["images"],
                    "results": cold["cache_misses"],
                    "startup": times["main_started"] - child.started,
                    "imports": times["imported"] - child.started,
                    "cold_stage": times["cold_done"] - times["imported"],
                    "cold_process": times["cold_done"] - child.started,
                    "warm_stage": times["warm_done"] - times["cold_done"],
                    "cpu": child.cpu_s,
                    "rss": child.max_rss_mib,
                }
            )
    lines = [
        f"Machine: {machine()}; {load_note(load_at_start)}. Median (min-max) of {runs} "
        "runs, each in a new process.",
        "",
        "| scorers | images (results) | cold: whole process s | of which start + imports s "
        "| cold stage s | images/s (cold stage) | warm stage s | process CPU s "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scorers, runs_of in figures.items():
        images = runs_of[0]["images"]

        def cell(key: str, fmt: str = ".2f", runs_of: list[dict] = runs_of) -> str:
            return spread([r[key] for r in runs_of], fmt)

        rate = spread([images / r["cold_stage"] for r in runs_of], ".1f")
        lines.append(
            f"| {', '.join(scorers)} | {images} ({runs_of[0]['results']}) "
            f"| {cell('cold_process')} | {cell('imports')} | {cell('cold_stage')} | {rate} "
            f"| {cell('warm_stage')} | {cell('cpu', '.1f')} | {cell('rss', '.0f')} |"
        )
    startup = [r["startup"] for rs in figures.values() for r in rs]
    lines += [
        "",
        f"Interpreter start (spawn to the child's first timed line): {spread(startup)} s, "
        "part of start + imports. Process CPU: user + system seconds of the whole child "
        "(cold and warm stage).",
    ]
    return lines


# ------------------------------------------------------------------------------ dvc


def _prefect_api(stack: ExitStack) -> tuple[str, str]:
    # Not the server on 127.0.0.1:4200 even when one answers: on a shared machine it may
    # be someone else's, and a private one gives every run the same empty database.
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"], "the server at $PREFECT_API_URL"
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    _log("starting a private Prefect server")
    stack.enter_context(prefect_test_harness(server_startup_timeout=120))
    return str(PREFECT_API_URL.value()), (
        "a private Prefect server started for the benchmark (prefect_test_harness)"
    )


def _timed(cmd: list[str], repo: Path, env: dict) -> float:
    return run_child(cmd, cwd=repo, env=env, log=repo.parent / "commands.log").wall_s


def dvc_repo(repo: Path, api_url: str) -> dict[str, str]:
    """Make `repo` a git + DVC repository with copies of dvc.yaml, params.yaml and the code
    (the stages run that copy); the environment its commands run in."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for package in ("bin", "exprbench", "tasks", "flows"):
        shutil.copytree(
            ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(repo),  # the stages run the repository's copy of the code
        "PREFECT_API_URL": api_url,
        "DVC_NO_ANALYTICS": "1",
    }
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        _timed(cmd, repo, env)
    return env


def stages_alone(repo: Path, env: dict) -> dict[str, float]:
    """Each stage alone (dvc.yaml's command, `bin/exprbench stage NAME`), wall s."""
    from tasks import STAGES

    times = {}
    for name in STAGES:
        _log(f"bin/exprbench stage {name}")
        times[f"stage:{name}"] = _timed(["bin/exprbench", "stage", name], repo, env)
    return times


def dvc_once(repo: Path, api_url: str) -> dict[str, float]:
    from exprbench.demo import build_demo

    written = [p for p in build_demo(repo / "data" / "raw") if p.suffix != ".csv"]
    held_out = next(p for p in written if p.stem == "happy-6")
    kept = held_out.with_name("held-out.bin")  # not an image extension: ingest skips it
    held_out.rename(kept)
    env = dvc_repo(repo, api_url)
    times = {"images": float(len(written) - 1)}
    _log("dvc repro (full)")
    times["full"] = _timed(["dvc", "repro"], repo, env)
    _log("dvc repro (nothing changed)")
    times["noop"] = _timed(["dvc", "repro"], repo, env)
    kept.rename(held_out)
    score_cache = repo / "data" / "cache" / "score"
    before = len(list(score_cache.rglob("*.json")))
    _log("dvc repro (one image added)")
    times["added"] = _timed(["dvc", "repro"], repo, env)
    times["new_results"] = float(len(list(score_cache.rglob("*.json"))) - before)
    times.update(stages_alone(repo, env))
    return times


def bench_dvc(tmp: Path, runs: int) -> list[str]:
    from tasks import STAGES

    results = []
    load_at_start = load()
    with ExitStack() as stack:
        api_url, using = _prefect_api(stack)
        for run in range(runs):
            _log(f"dvc run {run + 1}/{runs}")
            results.append(dvc_once(tmp / f"run{run}" / "repo", api_url))

    def cell(key: str) -> str:
        return spread([r[key] for r in results], ".1f")

    share = [100 * r["added"] / r["full"] for r in results]
    stage_sums = [sum(r[f"stage:{name}"] for name in STAGES) for r in results]
    images, new = int(results[0]["images"]), int(results[0]["new_results"])
    return [
        f"Machine: {machine()}; {load_note(load_at_start)}. Median (min-max) of {runs} "
        f"runs, each in a fresh repository; Prefect: {using}.",
        "",
        "| run | wall s |",
        "|---|---|",
        f"| full `dvc repro`, demo set less one held-out image ({images} images), "
        f"empty per-image caches | {cell('full')} |",
        f"| second `dvc repro`, nothing changed | {cell('noop')} |",
        f"| `dvc repro` after adding one image ({new} new score results, one per scorer) "
        f"| {cell('added')}; {spread(share, '.0f')} % of full |",
        "",
        "| stage alone, nothing to compute (`bin/exprbench stage NAME`) | wall s |",
        "|---|---|",
        *(f"| {name} | {cell(f'stage:{name}')} |" for name in STAGES),
        f"| sum of the seven | {spread(stage_sums, '.1f')} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    for name, default in (("score", 5), ("dvc", 3)):
        part = sub.add_parser(name)
        part.add_argument("--runs", type=int, default=default)
    child = sub.add_parser("score-child", help="internal: one fresh-process score run")
    for arg in ("raw", "out", "scorers", "result_json"):
        child.add_argument(arg)
    args = parser.parse_args()
    if args.part == "score-child":
        score_child(args.raw, args.out, args.scorers, args.result_json)
        return
    import flows  # noqa: F401 - offline settings before Prefect is imported

    with tempfile.TemporaryDirectory(prefix=f"bench-{args.part}-") as tmp:
        bench = bench_score if args.part == "score" else bench_dvc
        print("\n".join(bench(Path(tmp), args.runs)))


if __name__ == "__main__":
    main()
