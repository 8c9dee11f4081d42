"""The DVC pipeline in a real temporary git + DVC repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from exprbench.scorers import PairScorer, get_scorer_class
from exprbench.settings import load_params
from tests.conftest import SMALL_SET, build_raw

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory, photos, models, prefect_server):
    repo = tmp_path_factory.mktemp("dvcrepo")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for package in ("exprbench", "tasks", "flows"):
        shutil.copytree(
            ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    subset = dict(list(SMALL_SET.items())[:5])
    build_raw(repo / "data" / "raw", photos, subset)
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        # the stages run the repo's copy of the code (which DVC tracks), not the install
        "PYTHONPATH": str(repo),
    }
    _run(["git", "init", "-q"], repo, env)
    _run(["dvc", "init", "-q"], repo, env)
    return repo, env


def _repro(repo: Path, env: dict) -> str:
    result = _run(["dvc", "repro"], repo, env)
    return result.stdout + result.stderr  # stage summaries arrive through Prefect's logger


def _counts(output: str, stage: str) -> dict[str, str]:
    block = output.split(f"## {stage}", 1)[1].split("##", 1)[0]
    return dict(re.findall(r"\| (\w+) \| ([^|]+?) \|", block))


def test_repro_builds_tables_then_skips_then_adds_one_image(repo, photos):
    repo, env = repo
    first = _repro(repo, env)
    names = load_params(repo / "params.yaml")["score"]["scorers"]
    n_scorers = len(names)
    n_pair = sum(issubclass(get_scorer_class(n), PairScorer) for n in names)
    # 4 images with a face, each scored by every per-image scorer; pair scorers compare the
    # one non-neutral face that has a neutral (obama happy) with it
    assert _counts(first, "score")["cache_misses"] == str(4 * (n_scorers - n_pair) + n_pair)
    scores = pq.read_table(repo / "data" / "scores" / "scores.parquet")
    assert scores.num_rows == 5 * n_scorers
    assert (repo / "data" / "reports" / "index.html").is_file()
    assert list((repo / "data" / "tables").glob("*.csv"))
    metrics = json.loads((repo / "data" / "reports" / "metrics.json").read_text())
    assert metrics
    assert (repo / "dvc.lock").is_file()

    second = _repro(repo, env)
    assert "Running stage" not in second
    for stage in ("ingest", "upscale", "faces", "score", "validate", "aggregate", "report"):
        assert f"'{stage}' didn't change" in second

    build_raw(repo / "data" / "raw", photos, {"toolB/2/franck/happy-2.jpg": "franck_02888"})
    third = _repro(repo, env)
    assert _counts(third, "ingest")["cache_misses"] == "1"
    # only the new image: every per-image scorer, and every pair scorer against its neutral
    assert _counts(third, "score")["cache_misses"] == str(n_scorers)
    assert pq.read_table(repo / "data" / "scores" / "scores.parquet").num_rows == 6 * n_scorers


def test_editing_one_scorer_reruns_score_and_recomputes_only_its_results(repo):
    """Invalidation by construction: no version to bump. Editing fer's code reruns the
    score stage (its dvc deps are derived from the imports), and the content cache
    recomputes only fer's results (its identity is derived from its code); the other
    scorers' results come from the cache. Nothing else reruns."""
    repo, env = repo
    _repro(repo, env)
    assert "Running stage" not in _repro(repo, env)  # edit nothing -> nothing reruns
    scores = pq.read_table(repo / "data" / "scores" / "scores.parquet").to_pylist()
    fer_faces = sum(1 for r in scores if r["scorer"] == "fer" and r["face_found"])
    source = repo / "exprbench" / "scorers" / "fer_expression.py"
    original = source.read_text()
    source.write_text(original + "\n# an edit: the scorer's derived identity changes\n")
    try:
        edited = _repro(repo, env)
    finally:
        source.write_text(original)
    assert "Running stage 'score'" in edited
    for stage in ("ingest", "upscale", "faces"):
        assert f"Running stage '{stage}'" not in edited
    assert fer_faces > 0 and _counts(edited, "score")["cache_misses"] == str(fer_faces)
    after = pq.read_table(repo / "data" / "scores" / "scores.parquet").to_pylist()
    assert {r["scorer_version"] for r in after if r["scorer"] == "fer"} != {
        r["scorer_version"] for r in scores if r["scorer"] == "fer"
    }
    # back to the original code: the earlier results come back, nothing is recomputed
    # (DVC's run cache restores the stage's outputs, or the content cache has them all)
    restored = _repro(repo, env)
    assert "## score" not in restored or _counts(restored, "score")["cache_misses"] == "0"
    final = pq.read_table(repo / "data" / "scores" / "scores.parquet").to_pylist()
    assert {r["scorer_version"] for r in final if r["scorer"] == "fer"} == {
        r["scorer_version"] for r in scores if r["scorer"] == "fer"
    }


def test_changing_one_param_reruns_only_dependants(repo):
    repo, env = repo
    _repro(repo, env)
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("thumb_px: 128", "thumb_px: 96"))
    out = _repro(repo, env)
    assert "Running stage 'report'" in out
    for stage in ("ingest", "upscale", "faces", "score", "validate", "aggregate"):
        assert f"Running stage '{stage}'" not in out


def test_metrics_and_plots_render_offline(repo):
    repo, env = repo
    _repro(repo, env)
    assert (repo / "data" / "reports" / "plots" / "target_prob_faceapi.csv").is_file()
    shown = _run(["dvc", "metrics", "show"], repo, env).stdout
    assert "mean_target_prob" in shown
    _run([str(Path(sys.executable).parent / "exprbench"), "plots-template"], repo, env)
    _run(["dvc", "plots", "show", "-o", "plots_html"], repo, env)
    page = (repo / "plots_html" / "index.html").read_text()
    assert "target_prob_faceapi.csv" in page
    assert not re.search(r"<script[^>]+src=\"https?://", page)


def test_experiment_sweep_and_resolution_study(repo):
    """`dvc exp run -S upscale.method=...` sweeps, `dvc exp show` compares, and the
    resolution study runs as its own DVC pipeline (studies/dvc.yaml)."""
    repo, env = repo
    shutil.copytree(ROOT / "studies", repo / "studies", dirs_exist_ok=True)
    params = load_params(repo / "params.yaml")
    params["resolution"] = {
        "sizes": [48],
        "crop_px": 192,
        "max_faces": 2,
        "methods": ["bicubic", "esrgan-slim"],
        "scorers": ["fer"],
    }

    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _repro(repo, env)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    _run(["git", "add", "-A"], repo, env)
    _run([*git, "commit", "-qm", "baseline"], repo, env)
    _run(["dvc", "exp", "run", "-n", "lanczos", "-S", "upscale.method=lanczos"], repo, env)
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], repo, env).stdout)
    experiments = _find(shown, lambda d: d.get("name") == "lanczos")
    assert experiments, json.dumps(shown)[:2000]
    methods = {
        found["upscale"]["method"]
        for experiment in experiments
        for found in _find(experiment, lambda d: isinstance(d.get("upscale"), dict))
    }
    assert methods == {"lanczos"}
    out = _run(["dvc", "repro", "studies/dvc.yaml"], repo, env).stdout
    assert "Running stage 'studies/dvc.yaml:resolution'" in out
    page = repo / "data" / "reports" / "resolution" / "index.html"
    assert page.is_file() and "esrgan-slim" in page.read_text()


def _find(node, match) -> list[dict]:
    """Every dict inside a JSON document for which match(dict) holds."""
    found = []
    if isinstance(node, dict):
        if match(node):
            found.append(node)
        for value in node.values():
            found += _find(value, match)
    elif isinstance(node, list):
        for value in node:
            found += _find(value, match)
    return found


def test_scheduled_rerun_flow_runs_dvc_repro(repo, prefect_server):
    from flows.schedule import scheduled_repro

    repo, _ = repo
    output = scheduled_repro(str(repo))  # a real flow run on the test server
    assert "didn't change" in output or "Running stage" in output
