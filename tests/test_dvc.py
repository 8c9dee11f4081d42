"""The DVC pipeline in a real temporary git + DVC repository."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from exprbench.scorers import PairScorer, get_scorer_class
from exprbench.settings import load_params
from tests.conftest import SMALL_SET, build_raw, stop_process_group

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


# DVC's bookkeeping is what these tests are about: a few scorers (the study's instrument,
# a pair scorer, an identity model besides faceapi's) and a small impostor gallery keep each
# repro short; tests/test_pipeline.py runs every default scorer.
SCORERS = ("faceapi", "fer", "dlib", "geometry")
IMPOSTOR_GALLERY = 4


def _project_params() -> str:
    """The project's params.yaml, its layout and comments kept, with SCORERS and
    IMPOSTOR_GALLERY."""
    text = (ROOT / "params.yaml").read_text()
    listed = "".join(f"  - {name}\n" for name in SCORERS)
    # score.scorers is the first list of that name (resolution.scorers comes later)
    text = re.sub(r"(?m)^(  scorers:\n)(?:  - \w+\n)+", rf"\g<1>{listed}", text, count=1)
    text = re.sub(r"(?m)^(  impostor_gallery: )\d+", rf"\g<1>{IMPOSTOR_GALLERY}", text)
    score = yaml.safe_load(text)["score"]
    assert (score["scorers"], score["impostor_gallery"]) == (list(SCORERS), IMPOSTOR_GALLERY)
    return text


@pytest.fixture(scope="module")
def repo(tmp_path_factory, photos, models, prefect_server):
    repo = tmp_path_factory.mktemp("dvcrepo")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(_project_params())
    for package in ("bin", "exprbench", "tasks", "flows"):
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


def _metrics(entry: dict) -> dict:
    found = _find(entry, lambda d: "data/reports/metrics.json" in d)
    assert found, json.dumps(entry)[:2000]
    return found[0]["data/reports/metrics.json"]["data"]


def test_experiment_records_metrics_that_differ_and_keeps_params_readable(repo):
    """`dvc exp run -S` on the project's params.yaml: the experiment's headline metrics are
    in `dvc exp show --json` beside the committed baseline's, they differ where the change
    matters, and params.yaml keeps its layout and comments (one line changes)."""
    repo, env = repo
    (repo / "params.yaml").write_text(_project_params())
    _repro(repo, env)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    _run(["git", "add", "-A"], repo, env)
    _run([*git, "commit", "-qm", "baseline with metrics"], repo, env)
    head = _run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    before = (repo / "params.yaml").read_text().splitlines()
    _run(
        ["dvc", "exp", "run", "-n", "strict", "-S", "score.same_identity_threshold=0.1"], repo, env
    )
    after = (repo / "params.yaml").read_text().splitlines()
    changed = [line for line in difflib.unified_diff(before, after, n=0, lineterm="")][2:]
    changed = [line for line in changed if not line.startswith("@@")]
    assert len(changed) == 2 and "same_identity_threshold: 0.1" in changed[1], changed
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], repo, env).stdout)
    baseline = _find(shown, lambda d: d.get("rev") == head and "data" in d)
    strict = _find(shown, lambda d: d.get("name") == "strict")
    assert baseline and strict, json.dumps(shown)[:2000]
    base_metrics, strict_metrics = _metrics(baseline[0]), _metrics(strict[0])
    # identity distances of ~0.4 are "the same person" at 0.6, not at 0.1
    assert base_metrics["faceapi"]["share_same_identity"] > 0
    assert strict_metrics["faceapi"]["share_same_identity"] == 0
    # what the threshold does not touch stays put
    assert (
        strict_metrics["faceapi"]["mean_target_prob"] == base_metrics["faceapi"]["mean_target_prob"]
    )
    assert strict_metrics["images"] == base_metrics["images"]
    wide = _run(["dvc", "exp", "show", "--only-changed", "--no-pager"], repo, env).stdout
    assert max(map(len, wide.splitlines())) <= 200, wide
    # the workspace now holds the experiment: the diffs against the committed baseline
    metrics_diff = _run(["dvc", "metrics", "diff"], repo, env).stdout
    assert "share_same_identity" in metrics_diff and "mean_target_prob" not in metrics_diff
    assert "same_identity_threshold" in _run(["dvc", "params", "diff"], repo, env).stdout
    _run(["dvc", "plots", "diff", "-o", "plots_diff"], repo, env)
    assert (repo / "plots_diff" / "index.html").is_file()
    (repo / "params.yaml").write_text("\n".join(before) + "\n")


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


def test_scheduled_flow_evaluates_new_versions_once(repo, prefect_server):
    """The scheduled flow, called directly (a real flow run on the test server): the
    first call evaluates every version (one version per generator: nothing to compare),
    the second finds nothing new. tests/test_schedule.py runs it on a real cron."""
    from flows.schedule import RECORD, evaluate_new_versions

    repo, _ = repo
    (repo / RECORD).unlink(missing_ok=True)
    first = evaluate_new_versions(str(repo), return_state=True)
    assert first.is_completed(), first
    assert first.message == "evaluated toolA/v1, toolB/2; no regression"
    assert set(json.loads((repo / RECORD).read_text())["versions"]) == {"toolA/v1", "toolB/2"}
    again = evaluate_new_versions(str(repo), return_state=True)
    assert again.is_completed() and again.message.startswith("nothing new: 2 generator/version")


def test_served_deployment_runs_dvc_repro_when_triggered(repo, prefect_server):
    """README's schedule commands: `exprbench schedule` serves the deployment (and must stay
    up: it runs the flow runs), `exprbench schedule --trigger` asks it for a run now (the
    test server has no scheduler: tests/test_schedule.py checks the cron runs)."""
    from prefect.client.orchestration import get_client

    from flows.schedule import DEPLOYMENT

    repo, env = repo
    cli = [sys.executable, "-m", "flows.cli"]
    serving = subprocess.Popen(
        [*cli, "schedule", "--project", str(repo), "--timezone", "Europe/Madrid"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    deployment = client.read_deployment_by_name(DEPLOYMENT)
                    break
                except Exception:
                    assert serving.poll() is None, serving.stdout.read() if serving.stdout else ""
                    assert time.monotonic() < deadline, "the deployment never appeared"
                    time.sleep(2)
            assert "exprbench" in deployment.tags
            assert [s.schedule.timezone for s in deployment.schedules] == ["Europe/Madrid"]
            triggered = _run([*cli, "schedule", "--trigger"], repo, env).stdout
            run_id = re.search(r"flow run (\S+) of deployment", triggered).group(1)
            deadline = time.monotonic() + 300
            state = client.read_flow_run(run_id).state
            while state is None or not state.is_final():
                assert time.monotonic() < deadline, f"the triggered run stayed {state}"
                time.sleep(2)
                state = client.read_flow_run(run_id).state
            assert state.is_completed(), state
    finally:
        stop_process_group(serving, 30)
