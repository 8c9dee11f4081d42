"""face-api.js parity as it is tested: the cases of tests/test_faceapi_parity.py and the
largest differences that test measured, as a markdown table for BENCHMARKS.md.

Run from the project root with the project's venv (needs Node.js; the test installs the
harness's packages with `npm ci` in tests/parity when they are missing):

    .venv/bin/python benchmarks/bench_parity.py

It runs `python -m pytest -s tests/test_faceapi_parity.py` in a new process and reads the
"max differences" line each of its two tests prints (SSD MobileNetV1, then
TinyFaceDetector: the worst case over every face of every case of that test). The cases
and tolerances are read from the test module itself, and the faces per case are counted
by running exprbench.faceapi on the same pixels the test prepares (the test requires the
same count from face-api.js, so these are the faces compared).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT

sys.path.insert(0, str(ROOT))

PARITY_TEST = "tests/test_faceapi_parity.py"
KEYS = ("box", "landmarks", "expressions", "age", "gender_probability", "descriptor")
HEADERS = ("box px", "landmarks px", "expression prob", "age years", "gender prob", "descr. L2")


def measured() -> tuple[list[dict[str, float]], str]:
    """The test's printed worst differences per test, and its summary line."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", PARITY_TEST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the parity test failed:\n{result.stdout[-4000:]}{result.stderr}")
    found = re.findall(r"max differences: (\{[^}]*\})", result.stdout)
    worst = [{k: float(v) for k, v in ast.literal_eval(text).items()} for text in found]
    summary = result.stdout.strip().splitlines()[-1].strip("= ")
    return worst, summary


def coverage(cases: list[tuple[str, float]], detector: str, root: Path) -> tuple[str, int]:
    """'photo@scale (faces), ...' and the number of faces compared."""
    from exprbench.demo_sources import fetch_photos
    from exprbench.faceapi import FaceApi, FaceApiOptions
    from tests.test_faceapi_parity import prepare

    prepared = prepare(fetch_photos(sorted({n for n, _ in cases})), cases, root)
    api = FaceApi(FaceApiOptions(detector=detector))
    counts = {label: len(api.detect_all(rgb)) for _, rgb, label in prepared}
    return ", ".join(f"{label} ({n})" for label, n in counts.items()), sum(counts.values())


def main() -> None:
    from tests.test_faceapi_parity import SSD_CASES, TINY_CASES, TOLERANCE

    worst, summary = measured()
    if len(worst) != 2:
        raise SystemExit(f"expected two 'max differences' lines from the test, got {worst}")
    lines = [
        "| detector | cases | photos (faces found) | faces | " + " | ".join(HEADERS) + " |",
        "|---|---|---|---|" + "---|" * len(KEYS),
    ]
    totals = Counter()
    with tempfile.TemporaryDirectory(prefix="bench-parity-") as tmp:
        for (name, detector, cases), diffs in zip(
            (
                ("SSD MobileNetV1", "ssd", SSD_CASES),
                ("TinyFaceDetector", "tiny", TINY_CASES),
            ),
            worst,
            strict=True,
        ):
            photos, faces = coverage(cases, detector, Path(tmp))
            totals["cases"] += len(cases)
            totals["faces"] += faces
            cells = " | ".join(f"{diffs[k]:.2g}" for k in KEYS)
            lines.append(f"| {name} | {len(cases)} | {photos} | {faces} | {cells} |")
    tolerances = " | ".join(f"{TOLERANCE[k]:g}" for k in KEYS)
    lines.append(f"| tolerance | | | | {tolerances} |")
    distinct = len({n for n, _ in SSD_CASES + TINY_CASES})
    print(
        f"`tests/test_faceapi_parity.py`: {totals['cases']} cases ({len(SSD_CASES)} SSD, "
        f"{len(TINY_CASES)} Tiny) from {distinct} distinct photos, {totals['faces']} faces "
        f"compared; pytest: {summary}. A photo@scale below 1 is a downscaled copy. Each "
        "cell is the largest difference over every face of that detector's cases.\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
