"""A run killed (SIGKILL) inside any stage reruns to a complete, uncorrupted result that
reuses the work finished before the kill.

For each stage, `exprbench run` is started on a small real set, killed with SIGKILL (the
whole process group: no cleanup handler runs) as soon as Prefect logs that the stage's
flow began, then run again into the same output folder. The rerun must exit 0, write
every table and the report, give exactly the scores of an uninterrupted run, and take
from the content cache what the killed run had finished.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from exprbench.settings import load_params
from tasks import STAGES
from tests.conftest import build_raw

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
SET = {
    "g/v1/obama/neutral.jpg": "obama3",
    "g/v1/obama/happy.jpg": "obama",
    "g/v1/hopper/neutral.jpg": "grace_hopper",
}
COMPARED = ("path", "scorer", "face_found", "target_prob", "top1", "identity_distance", "note")


def _command(raw: Path, out: Path, params: Path) -> list[str]:
    run = [sys.executable, "-m", "flows.cli", "run", "--input", str(raw)]
    return [*run, "--output", str(out), "--params", str(params)]


def _env(api_url: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT)}


def _run(command: list[str], api_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=ROOT,
        env=_env(api_url),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _scores(out: Path) -> list[tuple]:
    table = pq.read_table(out / "scores" / "scores.parquet", columns=list(COMPARED))
    return sorted(tuple(row.values()) for row in table.to_pylist())


@pytest.fixture(scope="module")
def setup(tmp_path_factory, photos, models, prefect_server):
    root = tmp_path_factory.mktemp("killrerun")
    raw = build_raw(root / "raw", photos, SET)
    params = load_params(ROOT / "params.yaml")
    params["score"]["scorers"] = ["fer", "dlib"]  # cheap, and one needs the neutral
    params["score"]["impostor_gallery"] = 4  # impostors are not what this test is about
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    reference = root / "reference"
    done = _run(_command(raw, reference, params_file), prefect_server)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, raw, params_file, _scores(reference)


@pytest.mark.parametrize("stage", STAGES)
def test_killed_inside_a_stage_the_rerun_completes_and_reuses_finished_work(
    setup, prefect_server, stage
):
    root, raw, params_file, expected = setup
    out = root / f"killed-in-{stage}"
    command = _command(raw, out, params_file)
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_env(prefect_server),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    began = re.compile(rf"for flow 'exprbench-{stage}'")
    deadline = time.monotonic() + 600
    assert process.stderr is not None
    for line in process.stderr:
        if began.search(line):
            os.killpg(process.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, f"stage {stage} never began"
    else:
        pytest.fail(f"the run ended before stage {stage} began (exit {process.wait()})")
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    rerun = _run(command, prefect_server)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for name in ("interim/images.parquet", "interim/faces.parquet", "exprbench.duckdb"):
        assert (out / name).is_file(), name
    assert (out / "report" / "index.html").is_file()
    assert _scores(out) == expected  # uncorrupted: what an uninterrupted run gives
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".part" in p.name]
    assert not leftovers, leftovers
    # work finished before the kill comes from the cache: every image was ingested
    # before any later stage began
    if stage != "ingest":
        hits = re.search(r"## ingest.*?\| cache_hits \| (\d+) \|", rerun.stderr, re.S)
        assert hits and int(hits.group(1)) == len(SET), rerun.stderr[-3000:]
