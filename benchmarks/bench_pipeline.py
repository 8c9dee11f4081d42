"""Benchmarks for BENCHMARKS.md: score-stage throughput and `dvc repro` wall times.

Run from the project root with the project's venv:

    .venv/bin/python benchmarks/bench_pipeline.py [--skip-dvc]

It builds the demo set in a temporary folder, so nothing under data/ is touched. The DVC
part uses a running local Prefect server if there is one (`exprbench server start`), as
`make demo` does, and says which it used.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import flows  # noqa: E402,F401 - offline settings
from exprbench.config import Layout  # noqa: E402
from exprbench.demo import build_demo  # noqa: E402
from exprbench.settings import Settings, load_params  # noqa: E402


def bench_score(tmp: Path) -> list[str]:
    from tasks.faces import faces
    from tasks.ingest import ingest
    from tasks.score import score
    from tasks.upscale import upscale

    raw = tmp / "raw"
    build_demo(raw)
    params = load_params(ROOT / "params.yaml")
    layout = Layout.for_output(raw, tmp / "out")
    for stage in (ingest, upscale, faces):
        stage.fn(layout, Settings.from_params(params))
    lines = []
    for scorers in (params["score"]["scorers"], *([s] for s in params["score"]["scorers"])):
        shutil.rmtree(layout.cache / "score", ignore_errors=True)
        p = {**params, "score": {**params["score"], "scorers": list(scorers)}}
        start = time.perf_counter()
        result = score.fn(layout, Settings.from_params(p))
        cold = time.perf_counter() - start
        start = time.perf_counter()
        score.fn(layout, Settings.from_params(p))
        warm = time.perf_counter() - start
        n = result.counts["images"]
        lines.append(f"| {', '.join(scorers)} | {n} | {cold:.2f} | {n / cold:.1f} | {warm:.2f} |")
    return lines


def _dvc(repo: Path, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(
        ["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    return elapsed, result.stdout


def bench_dvc(tmp: Path) -> list[str]:
    from flows import server

    repo = tmp / "repo"
    repo.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for package in ("exprbench", "tasks", "flows"):
        shutil.copytree(
            ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    written = [p for p in build_demo(repo / "data" / "raw") if p.suffix != ".csv"]
    held_out = next(p for p in written if p.name == "happy-6.jpg")
    kept = held_out.with_name("held-out.bin")
    held_out.rename(kept)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    using = "local server" if server.use_local_server_if_running() else "temporary server"
    env.update({k: v for k, v in os.environ.items() if k == "PREFECT_API_URL"})
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    full, _ = _dvc(repo, env)
    noop, _ = _dvc(repo, env)
    kept.rename(held_out)
    score_cache = repo / "data" / "cache" / "score"
    before = len(list(score_cache.rglob("*.json")))
    added, _ = _dvc(repo, env)
    new_results = len(list(score_cache.rglob("*.json"))) - before
    stage_times = _stage_seconds(repo, env)
    return [
        f"| full `dvc repro`, demo set less one held-out image ({len(written) - 1} images), "
        f"cold caches | {full:.1f} |",
        f"| second `dvc repro`, nothing changed | {noop:.1f} |",
        f"| `dvc repro` after adding one image ({new_results} new score results, one per "
        f"scorer) | {added:.1f} ({100 * added / full:.0f}% of full) |",
        f"\n(Prefect: {using})",
        "\n| stage alone, nothing to compute (`exprbench stage NAME`) | wall s |\n|---|---|",
        *(f"| {name} | {seconds:.1f} |" for name, seconds in stage_times.items()),
    ]


def _stage_seconds(repo: Path, env: dict) -> dict[str, float]:
    """Fixed cost of each stage process: every per-image result is already cached."""
    from tasks import STAGES

    times = {}
    for name in STAGES:
        start = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "exprbench"), "stage", name],
            cwd=repo,
            env=env,
            capture_output=True,
            check=True,
        )
        times[name] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-dvc", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        # model weights come from the user cache; per-image caches start empty
        print("\n| scorers | images | cold s | images/s | warm (cached) s |\n|---|---|---|---|---|")
        print("\n".join(bench_score(Path(tmp) / "score")))
        if not args.skip_dvc:
            print("\n| run | wall s |\n|---|---|")
            print("\n".join(bench_dvc(Path(tmp) / "dvc")))


if __name__ == "__main__":
    main()
