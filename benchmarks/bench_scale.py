"""Scale: the aggregate and report stages on 10k, 100k, 1M and 3M synthetic score rows.

Each size gets a fresh temporary layout: a schema-valid scores.parquet from the real
metric specs with seeded random values (benchmarks/synthetic_scores.py: 4 generators x 5
versions x subjects x 7 expressions x 2 replicates x 4 scorers; the corpus grows by
subjects), the images/faces/quarantine tables the report reads, and 16 small placeholder
thumbnails shared by every image (this measures scale, not models). Then the real stage
commands `bin/exprbench stage aggregate` and `bin/exprbench stage report` run, each in a
fresh process under `/usr/bin/time -v` (wall s and peak RSS of the whole process), with
the repository's params.yaml but paths under the layout (bootstrap: 1000 resamples;
duckdb.memory_limit; report.sheet_page_size). Validation is not run (a passing
validation.json saying so is written). Usage:
python benchmarks/bench_scale.py [--resamples N] [--memory-limit M] [ROWS...] (N overrides params
uncertainty.resamples: 0 leaves out the bootstrap, whose cost is resamples x rows by
design, to show the rest alone; M overrides duckdb.memory_limit).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.benchlib import load, load_note, machine  # noqa: E402
from benchmarks.synthetic_scores import shape_for, write_corpus  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000, 3_000_000)


def _timed(command: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB, output tail) of a fresh process, from /usr/bin/time -v."""
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1]) / 1024
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr)[1]
    wall = 0.0
    for part in clock.split(":"):
        wall = wall * 60 + float(part)
    return wall, rss, done.stderr[-300:]


def _layout(root: Path, resamples: int | None, memory: str | None) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if memory is not None:
        params["duckdb"] = {**params.get("duckdb", {}), "memory_limit": memory}
    if resamples is not None:
        params["uncertainty"]["resamples"] = resamples
    params["paths"] = {
        "raw": str(root / "raw"),
        "interim": str(root / "interim"),
        "scores": str(root / "scores"),
        "reports": str(root / "reports"),
        "tables": str(root / "tables"),
        "database": str(root / "exprbench.duckdb"),
        "cache": str(root / "cache"),
    }
    (root / "reports").mkdir(parents=True)
    (root / "reports" / "validation.json").write_text(
        json.dumps(
            {
                "success": True,
                "n_rows": 0,
                "checks": [],
                "failures": [],
                "validated_at": "not run",
                "note": "scale benchmark: validation not run on synthetic rows",
            }
        )
    )
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _size(rows: int, resamples: int | None, memory: str | None) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"exprbench-scale-{rows}-"))
    try:
        started = time.perf_counter()
        written = write_corpus(root, rows, stage_inputs=True)
        made = time.perf_counter() - started
        params = _layout(root, resamples, memory)
        stage = [str(ROOT / "bin" / "exprbench"), "stage"]
        agg = _timed([*stage, "aggregate", "--params", str(params)])
        rep = _timed([*stage, "report", "--params", str(params)])
        pages = len(list((root / "reports" / "index_sheets").glob("page-*.html")))
        index_kb = (root / "reports" / "index.html").stat().st_size / 1024
        parquet_mb = (root / "scores" / "scores.parquet").stat().st_size / 2**20
        return {
            "rows": written,
            "shape": shape_for(rows),
            "parquet_mb": parquet_mb,
            "made_s": made,
            "aggregate": agg[:2],
            "report": rep[:2],
            "pages": pages,
            "index_kb": index_kb,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> None:
    resamples = memory = None
    if argv[:1] == ["--resamples"]:
        resamples, argv = int(argv[1]), argv[2:]
    if argv[:1] == ["--memory-limit"]:
        memory, argv = argv[1], argv[2:]
    sizes = [int(a) for a in argv] or list(SIZES)
    at_start = load()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    used = params["uncertainty"]["resamples"] if resamples is None else resamples
    print(f"machine: {machine()}")
    print(
        f"command: `.venv/bin/python benchmarks/bench_scale.py {' '.join(sys.argv[1:])}`"
        " (each stage a fresh `bin/exprbench stage NAME` process under /usr/bin/time -v); "
        f"bootstrap resamples {used}, "
        f"duckdb.memory_limit {memory or params.get('duckdb', {}).get('memory_limit')}, "
        f"duckdb.threads {params.get('duckdb', {}).get('threads')}, "
        f"report.sheet_page_size {params['report'].get('sheet_page_size')}"
    )
    print()
    print(
        "| score rows | subjects/run | scores.parquet MB | aggregate wall s | aggregate peak "
        "RSS MiB | report wall s | report peak RSS MiB | sheet pages | index.html KiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for rows in sizes:
        r = _size(rows, resamples, memory)
        results.append(r)
        print(
            f"| {r['rows']:,} | {r['shape'][0]} | {r['parquet_mb']:.1f} | "
            f"{r['aggregate'][0]:.1f} | {r['aggregate'][1]:.0f} | {r['report'][0]:.1f} | "
            f"{r['report'][1]:.0f} | {r['pages']} | {r['index_kb']:.0f} |",
            flush=True,
        )
    print()
    for before, r in pairwise(results):
        print(
            f"- {r['rows']:,} vs {before['rows']:,} rows ({r['rows'] / before['rows']:.0f}x): "
            f"peak RSS aggregate {r['aggregate'][1] / before['aggregate'][1]:.2f}x, "
            f"report {r['report'][1] / before['report'][1]:.2f}x; wall aggregate "
            f"{r['aggregate'][0] / before['aggregate'][0]:.1f}x, "
            f"report {r['report'][0] / before['report'][0]:.1f}x"
        )
    print()
    print(load_note(at_start))


if __name__ == "__main__":
    main(sys.argv[1:])
