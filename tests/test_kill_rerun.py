"""A run killed (SIGKILL) inside any stage reruns to a complete, uncorrupted result that
reuses the work finished before the kill.

`exprbench run` is started on a small real set and killed with SIGKILL (the whole process
group: no cleanup handler runs) as soon as Prefect logs that a stage's flow began; then run
again into the same output folder, and killed inside the next stage, and so on through
every stage; the last run is left to finish. So each run after a kill got past the stage
it was killed in (it reached the next one), and the kills pile up in one output folder,
as they would for a user whose machine keeps going down. The last run must exit 0,
write every table and the report, give exactly the scores of an uninterrupted run and
leave no temporary file; every run after a kill past ingest takes every image's ingest
from the content cache (work finished before the kill is not redone).
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


def _run_until_stage_began(command: list[str], api_url: str, stage: str) -> str:
    """Start `command`, kill its process group once `stage`'s flow began; its stderr so far."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_env(api_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    began = re.compile(rf"for flow 'exprbench-{stage}'")
    deadline = time.monotonic() + 600
    seen: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if began.search(line):
            os.killpg(process.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, f"stage {stage} never began"
    else:
        pytest.fail(f"the run ended before stage {stage} began (exit {process.wait()})")
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return "".join(seen)


def _ingest_cache_hits(log: str) -> int | None:
    hits = re.search(r"## ingest.*?\| cache_hits \| (\d+) \|", log, re.S)
    return int(hits.group(1)) if hits else None


def test_killed_inside_each_stage_in_turn_the_rerun_completes_and_reuses_finished_work(
    setup, prefect_server
):
    root, raw, params_file, expected = setup
    out = root / "killed"
    command = _command(raw, out, params_file)
    killed_in: list[str] = []
    for stage in STAGES:
        log = _run_until_stage_began(command, prefect_server, stage)
        if killed_in[-1:] not in ([], ["ingest"]):  # every image was ingested before
            assert _ingest_cache_hits(log) == len(SET), (killed_in, stage, log[-3000:])
        killed_in.append(stage)

    rerun = _run(command, prefect_server)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for name in ("interim/images.parquet", "interim/faces.parquet", "exprbench.duckdb"):
        assert (out / name).is_file(), name
    assert (out / "report" / "index.html").is_file()
    assert _scores(out) == expected  # uncorrupted: what an uninterrupted run gives
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".part" in p.name]
    assert not leftovers, leftovers
    assert _ingest_cache_hits(rerun.stderr) == len(SET), rerun.stderr[-3000:]
