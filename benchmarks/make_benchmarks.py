"""Regenerate the tables of BENCHMARKS.md: run each benchmark script, print or write its
markdown.

Run from the project root with the project's venv (after `exprbench fetch-models`; the
face-api.js blocks need Node.js):

    .venv/bin/python benchmarks/make_benchmarks.py                 # every block, printed
    .venv/bin/python benchmarks/make_benchmarks.py score parity    # a subset
    .venv/bin/python benchmarks/make_benchmarks.py --write         # replace them in BENCHMARKS.md
    .venv/bin/python benchmarks/make_benchmarks.py --list

Every table in BENCHMARKS.md sits between `<!-- generated: NAME -->` and
`<!-- end: NAME -->`; with --write, the text between those markers is replaced by a
"Command:" line (the exact command, the date it ran) and what that command printed. The
prose around the blocks is written by hand: reread it after regenerating. Each script runs
as its own process, one after another (they would slow each other down on a small
machine); progress goes to stderr. All of them take about 20-40 minutes on 2 cores, most
of it `dvc` and `resolution`. `--quiet-load L` waits (up to `--max-wait` seconds) before
each block until the 1-minute load average is below L, for a shared machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "BENCHMARKS.md"

# block name -> the command that produces it (run with this Python, from the project root)
BLOCKS: dict[str, list[str]] = {
    "score": ["benchmarks/bench_pipeline.py", "score"],
    "dvc": ["benchmarks/bench_pipeline.py", "dvc"],
    "incremental": ["benchmarks/bench_incremental.py"],
    "faceapi": ["benchmarks/bench_faceapi.py"],
    "parity": ["benchmarks/bench_parity.py"],
    "sr": ["benchmarks/bench_sr.py"],
    "resolution": ["benchmarks/bench_resolution.py"],
    "quality": ["benchmarks/bench_quality.py"],
    "human": ["benchmarks/bench_human.py"],
    "deepface": ["benchmarks/bench_deepface.py"],
    "clip": ["benchmarks/bench_clip.py"],
    "agreement": ["benchmarks/bench_agreement.py"],
    "identity": ["benchmarks/bench_identity.py"],
    "startup": ["benchmarks/bench_startup.py"],
    "scale": ["benchmarks/bench_scale.py"],
}


def marker(kind: str, name: str) -> str:
    return f"<!-- {kind}: {name} -->"


def wait_for_quiet(limit: float, max_wait: float) -> None:
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        print(f"load average {os.getloadavg()[0]:.1f} >= {limit}: waiting", file=sys.stderr)
        time.sleep(30)


def run_block(name: str) -> str:
    args = BLOCKS[name]
    shown = shlex.join([".venv/bin/python", *args])
    print(f"== {name}: {shown}", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{shown} exited with {result.returncode}")
    minutes = (time.monotonic() - started) / 60
    print(f"== {name}: {minutes:.1f} min", file=sys.stderr, flush=True)
    today = datetime.now(UTC).date().isoformat()
    return f"Command: `{shown}` (run {today}).\n\n{result.stdout.strip()}\n"


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(
        re.escape(marker("generated", name)) + r"\n.*?" + re.escape(marker("end", name)),
        re.DOTALL,
    )
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{DOC.name}: expected one block {name!r} between its markers")
    replacement = f"{marker('generated', name)}\n{body}{marker('end', name)}"
    return pattern.sub(lambda _: replacement, text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("blocks", nargs="*", metavar="BLOCK", help=", ".join(BLOCKS))
    parser.add_argument("--write", action="store_true", help=f"update {DOC.name} in place")
    parser.add_argument("--list", action="store_true", help="list the blocks and commands")
    parser.add_argument("--quiet-load", type=float, help="wait for a load average below this")
    parser.add_argument("--max-wait", type=float, default=900, help="seconds (default 900)")
    args = parser.parse_args()
    if args.list:
        for name, cmd in BLOCKS.items():
            print(f"{name:12s} {shlex.join(['.venv/bin/python', *cmd])}")
        return
    unknown = [name for name in args.blocks if name not in BLOCKS]
    if unknown:
        parser.error(f"unknown block(s) {', '.join(unknown)}; blocks: {', '.join(BLOCKS)}")
    names = args.blocks or list(BLOCKS)
    text = DOC.read_text()
    for name in names:  # fail before hours of work if a marker is missing
        replace_block(text, name, "")
    for name in names:
        if args.quiet_load:
            wait_for_quiet(args.quiet_load, args.max_wait)
        body = run_block(name)
        if args.write:
            text = replace_block(DOC.read_text(), name, body)
            DOC.write_text(text)
            print(f"== {name}: written to {DOC.name}", file=sys.stderr)
        else:
            print(f"{marker('generated', name)}\n{body}{marker('end', name)}\n", flush=True)


if __name__ == "__main__":
    main()
