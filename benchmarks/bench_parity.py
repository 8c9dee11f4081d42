"""face-api.js parity as it is tested: the cases of tests/test_faceapi_parity.py and the
largest differences that test measured, as a markdown table for BENCHMARKS.md.

Run from the project root with the project's venv (needs Node.js and npm; the test
installs the harness's packages with `npm ci` in tests/parity when they are missing):

    .venv/bin/python benchmarks/bench_parity.py

It runs `python -m pytest tests/test_faceapi_parity.py` in a new process with
EXPRBENCH_TEST_ARTIFACTS pointing at a temporary folder, and reads the record the test
writes there (`faceapi_parity.json`: per detector chain, the cases, the faces compared and
the worst difference per quantity with the face it occurred on). Nothing is counted or
measured here: the table is the test's own record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARITY_TEST = "tests/test_faceapi_parity.py"
CHAINS = {"ssd": "SSD MobileNetV1", "tiny": "TinyFaceDetector"}
COLUMNS = {
    "box": "box px",
    "landmarks": "landmarks px",
    "expressions": "expression prob",
    "age": "age years",
    "gender_probability": "gender prob",
    "descriptor": "descriptor L2",
}


def run_test(artifacts: Path) -> tuple[dict, str]:
    """The test's record per chain, and pytest's summary line."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", PARITY_TEST],
        cwd=ROOT,
        env={**os.environ, "EXPRBENCH_TEST_ARTIFACTS": str(artifacts)},
        capture_output=True,
        text=True,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1].strip("= ") if result.stdout else ""
    if result.returncode != 0 or "skipped" in summary:
        raise SystemExit(f"the parity test did not pass:\n{result.stdout[-4000:]}{result.stderr}")
    record = json.loads((artifacts / "faceapi_parity.json").read_text())
    return record, summary


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-parity-") as tmp:
        record, summary = run_test(Path(tmp))
    missing = [chain for chain in CHAINS if chain not in record]
    if missing:
        raise SystemExit(f"the test recorded no result for {missing}: {sorted(record)}")
    lines = [
        "| detector | cases | faces compared | " + " | ".join(COLUMNS.values()) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for chain, name in CHAINS.items():
        entry = record[chain]
        cells = " | ".join(
            f"{entry['worst'][k]['value']:.2g} ({entry['worst'][k]['case']})" for k in COLUMNS
        )
        lines.append(f"| {name} | {len(entry['cases'])} | {entry['faces_compared']} | {cells} |")
    tolerance = record["ssd"]["worst"]
    lines.append(
        "| tolerance | | | " + " | ".join(f"{tolerance[k]['tolerance']:g}" for k in COLUMNS) + " |"
    )
    cases = sum(len(record[chain]["cases"]) for chain in CHAINS)
    photos = {label.split("@")[0] for chain in CHAINS for label in record[chain]["cases"]}
    print(
        f"`{PARITY_TEST}` ({summary}): {cases} cases, "
        + ", ".join(f"{len(record[c]['cases'])} {CHAINS[c]}" for c in CHAINS)
        + f", from {len(photos)} distinct photos; "
        + f"{sum(record[c]['faces_compared'] for c in CHAINS)} faces compared. "
        "Each cell: the largest difference over every face of that detector's cases, and "
        "where it occurred (photo@scale, face index).\n"
    )
    for chain, name in CHAINS.items():
        print(f"- {name} cases: {', '.join(record[chain]['cases'])}")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
