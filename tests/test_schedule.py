"""Scheduled evaluation of new generator versions: what counts as new, and a real cron run
of the served deployment against the checkout's own Prefect server (README "Schedules")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from exprbench.compare import CellDelta, Comparison, RegressionRule
from exprbench.new_versions import SeenFile, detect, fingerprints, regression_message, steps
from exprbench.versions import VersionOrder
from tests.conftest import build_raw, stop_process_group

ROOT = Path(__file__).resolve().parent.parent


def _seen(version: str, path: str, size: int = 10, mtime: int = 1, labels: str = "s/happy/1"):
    return SeenFile(version, path, size, mtime, labels)


def test_new_changed_and_removed_versions_are_told_apart() -> None:
    before = fingerprints(
        [_seen("a/v1", "a/v1/s/happy.jpg"), _seen("a/v1", "a/v1/s/sad.jpg"), _seen("b/1", "x")]
    )
    # same files in another order: nothing new
    again = fingerprints(
        [_seen("b/1", "x"), _seen("a/v1", "a/v1/s/sad.jpg"), _seen("a/v1", "a/v1/s/happy.jpg")]
    )
    nothing = detect(again, before)
    assert not nothing and nothing.summary().startswith("nothing new: 2 generator/version")
    for edit in (
        _seen("a/v1", "a/v1/s/sad.jpg", size=11),  # replaced
        _seen("a/v1", "a/v1/s/sad.jpg", mtime=2),  # rewritten
        _seen("a/v1", "a/v1/s/sad.jpg", labels="s/angry/1"),  # relabelled in the manifest
    ):
        edited = fingerprints([_seen("a/v1", "a/v1/s/happy.jpg"), edit, _seen("c/2", "y")])
        changes = detect(edited, before)
        assert (changes.new, changes.changed, changes.removed) == (("c/2",), ("a/v1",), ("b/1",))
        assert changes.to_evaluate == ("a/v1", "c/2")
        assert changes.summary() == "new: c/2; changed: a/v1; removed: b/1"


def test_each_generator_compares_its_latest_new_version_with_the_one_before() -> None:
    orders = {"a": ["v1", "v2", "v3", "v4"], "b": ["1"], "c": ["x", "y"]}
    found = steps([("a", "v3"), ("a", "v2"), ("b", "1"), ("c", "y")], orders)
    assert [(s.generator, s.base, s.head) for s in found] == [
        ("a", "v2", "v3"),
        ("b", None, "1"),  # a generator's first version: nothing to compare
        ("c", "x", "y"),
    ]
    with pytest.raises(ValueError, match="not in its version order"):
        steps([("a", "v9")], orders)


def _delta(subject: str | None, expression: str | None, delta: float, regressed: bool):
    return CellDelta(
        "fer",
        "target_prob",
        subject,
        expression,
        0.9,
        0.9 + delta,
        delta,
        delta - 0.1,
        delta + 0.1,
        4,
        0,
        0,
        "higher",
        regressed,
    )


def test_the_failure_message_names_every_regressed_cell() -> None:
    order = VersionOrder("toolA", ("v1", "v2"), "versions.csv", None)
    rule = RegressionRule(("target_prob",), 0.05, True)
    regressed = Comparison(
        "toolA",
        "v1",
        "v2",
        order,
        (
            _delta(None, None, -0.5, True),
            _delta(None, "happy", -0.5, True),
            _delta(None, "sad", 0.2, False),
        ),
        {"base_only": [], "head_only": []},
        rule,
    )
    clean = Comparison("toolB", "1", "2", order, (_delta(None, None, 0.0, False),), {}, rule)
    message = regression_message([regressed, clean])
    assert message == (
        "regression in 2 cell(s): toolA v2 vs v1: fer/target_prob/*/* (-0.500), "
        "fer/target_prob/*/happy (-0.500)"
    )
    assert regression_message([clean]) is None
    many = Comparison(
        "toolA",
        "v1",
        "v2",
        order,
        tuple(_delta(f"s{i}", "happy", -0.5, True) for i in range(15)),
        {},
        rule,
    )
    assert regression_message([many], limit=12).endswith(
        "fer/target_prob/s11/happy (-0.500) and 3 more"
    )


# --------------------------------------------------------------- a real scheduled run

# toolA v2 asks for "happy" and gets neutral faces (the same subject names): a regression
# the data makes; toolB v2 is the same image as v1: no change.
BASE_HAPPY = {
    "obama": "obama",
    "franck": "franck_04117",
    "s3": "feat_happy",
    "s4": "feat_single_face",
}
HEAD_NEUTRAL = {"obama": "obama3", "franck": "franck_01829", "s3": "biden", "s4": "grace_hopper"}
VERSIONS_CSV = (
    "generator,version,release_date\n"
    "toolA,v1,2026-01-01\ntoolA,v2,2026-06-01\ntoolB,v1,2026-01-01\ntoolB,v2,2026-06-01\n"
)
EVERY_10_S = "* * * * * */10"  # cron with a sixth field (croniter): seconds


def _project(root: Path, photos: dict[str, Path]) -> tuple[Path, dict[str, str]]:
    """A fresh checkout of the project (code, dvc.yaml, params with one scorer), a git +
    DVC repository, with this interpreter's environment as its .venv."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    for package in ("bin", "exprbench", "tasks", "flows"):
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (root / ".venv").symlink_to(sys.prefix)  # this virtual environment
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["score"].update(scorers=["fer"], impostor_gallery=0)
    params["uncertainty"]["resamples"] = 200
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    layout = {f"toolA/v1/{s}/happy.jpg": p for s, p in BASE_HAPPY.items()}
    layout |= {f"toolA/v2/{s}/happy.jpg": p for s, p in HEAD_NEUTRAL.items()}
    layout |= {
        "toolB/v1/franck/happy.jpg": "franck_03909",
        "toolB/v2/franck/happy.jpg": "franck_03909",
    }
    build_raw(root / "data" / "raw", photos, layout)
    (root / "data" / "raw" / "versions.csv").write_text(VERSIONS_CSV)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "PYTHONPATH": str(root),  # the checkout's code, as bin/exprbench runs it
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",  # the serving process looks every 2 s, not 10
    }
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    return root, env


def _finished_runs(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
    )
    return [run for run in runs if run.state is not None and run.state.is_final()]


def _wait_for_run(client, deployment_id, after: set, timeout: float, serving, log: Path) -> Any:
    """The first finished run of the deployment, not in `after`, that was not cancelled
    (a tick that came while another run was going is cancelled: concurrency 1)."""
    deadline = time.monotonic() + timeout
    while True:
        for run in _finished_runs(client, deployment_id):
            if run.id not in after and not run.state.is_cancelled():
                return run
        assert serving.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no scheduled run finished in time: {log.read_text()}"
        time.sleep(2)


@pytest.mark.slow
def test_a_cron_run_evaluates_new_versions_and_fails_naming_the_regressed_cells(
    tmp_path: Path, photos, models
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.schedule import DEPLOYMENT, LEADERBOARD_KEY, RECORD, WHAT_CHANGED_KEY

    (tmp_path / "checkout").mkdir()
    project, env = _project(tmp_path / "checkout", photos)
    exprbench = [str(project / "bin" / "exprbench")]
    started = subprocess.run(
        [*exprbench, "server", "start"], cwd=project, env=env, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stdout + started.stderr
    port = json.loads((project / ".exprbench" / "prefect" / "server.json").read_text())["port"]
    log = tmp_path / "schedule.log"  # a file: a pipe nobody reads would block the server
    log_file = log.open("w")
    serving = subprocess.Popen(
        [*exprbench, "schedule", "--cron", EVERY_10_S],
        cwd=project,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with (
            temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}),
            get_client(sync_client=True) as client,
        ):
            deadline = time.monotonic() + 180
            while True:
                try:
                    deployment = client.read_deployment_by_name(DEPLOYMENT)
                    break
                except Exception:
                    assert serving.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the deployment never appeared"
                    time.sleep(2)
            assert [s.schedule.cron for s in deployment.schedules] == [EVERY_10_S]

            # the scheduler creates the runs; the serving process runs them on time
            run = _wait_for_run(client, deployment.id, set(), 1200, serving, log)
            assert run.auto_scheduled, "the run was not created by the schedule"
            state = run.state
            assert state.is_failed(), (state, log.read_text())
            assert state.message.startswith("regression in ")
            assert "toolA v2 vs v1: " in state.message
            for cell in ("fer/target_prob/*/happy", "fer/target_prob/*/*", "fer/top1_correct/*/*"):
                assert cell in state.message
            assert "toolB" not in state.message  # same image in both versions
            assert {
                "toolA/v1",
                "toolA/v2",
                "toolB/v1",
                "toolB/v2",
                "evaluated",
                "regression",
            } <= set(run.tags)

            artifacts = {
                a.key: a
                for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
                    )
                )
            }
            changed = artifacts[WHAT_CHANGED_KEY].data
            assert "new: toolA/v1, toolA/v2, toolB/v1, toolB/v2" in changed
            assert "What changed in toolA v2 vs v1" in changed
            assert "What changed in toolB v2 vs v1" in changed
            assert "**fer/target_prob/*/happy: " in changed  # the regression, in bold
            assert state.message in changed
            board = artifacts[LEADERBOARD_KEY].data
            rows = json.loads(board) if isinstance(board, str) else board
            by_version = {(r["version"], r["scorer"]): r for r in rows}
            assert set(by_version) == {
                (f"{v}", "fer") for v in ("toolA/v1", "toolA/v2", "toolB/v1", "toolB/v2")
            }
            assert (
                by_version[("toolA/v2", "fer")]["mean_target_prob"]
                < 0.5
                < by_version[("toolA/v1", "fer")]["mean_target_prob"]
            )

            record = json.loads((project / RECORD).read_text())
            assert (
                set(record["inputs"])
                == set(record["versions"])
                == {"toolA/v1", "toolA/v2", "toolB/v1", "toolB/v2"}
            )
            assert record["versions"]["toolA/v2"]["flow_run"] == str(run.id)
            assert record["versions"]["toolA/v2"]["images"] == 4
            assert "fer/target_prob/*/happy" in record["versions"]["toolA/v2"]["regressed_cells"]
            assert record["versions"]["toolB/v2"]["regressed_cells"] == []
            assert (project / "dvc.lock").is_file()  # DVC recorded the pipeline run

            # the next tick finds nothing new: Completed, without running the pipeline
            lock = (project / "dvc.lock").stat().st_mtime_ns
            later = _wait_for_run(client, deployment.id, {run.id}, 300, serving, log)
            assert later.auto_scheduled and later.state.is_completed(), later.state
            assert later.state.message.startswith("nothing new: 4 generator/version(s)")
            assert (project / "dvc.lock").stat().st_mtime_ns == lock
            # ticks that came while the evaluation ran were cancelled, not run beside it
            for other in _finished_runs(client, deployment.id):
                if (
                    other.id not in (run.id, later.id)
                    and other.state.timestamp < later.state.timestamp
                ):
                    assert other.state.is_cancelled() or other.state.message.startswith(
                        "nothing new"
                    )
    finally:
        stop_process_group(serving, 10)
        log_file.close()
        subprocess.run([*exprbench, "server", "stop"], cwd=project, env=env, check=False)


def test_a_restart_drops_missed_ticks_and_frees_the_slot_of_an_ended_run(prefect_server) -> None:
    """At start, `exprbench schedule` deletes the runs the scheduler made while no process
    served the deployment (not replayed one after the other) and marks Crashed a run an
    ended serving process left pending, which frees the deployment's concurrency slot:
    without that, every later tick would be cancelled. Later runs stay."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Pending, Scheduled

    from flows.schedule import DEPLOYMENT, clear_left_runs, evaluate_new_versions

    deployment_id = evaluate_new_versions.to_deployment(
        name=DEPLOYMENT.split("/", 1)[1],
        parameters={"project": str(ROOT)},
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
    ).apply()
    at = datetime.now(UTC)
    with get_client(sync_client=True) as client:

        def scheduled(delta: timedelta):
            return client.create_flow_run_from_deployment(
                deployment_id, state=Scheduled(scheduled_time=at + delta)
            ).id

        missed = [scheduled(-timedelta(minutes=m)) for m in (1, 30, 600)]
        later = scheduled(timedelta(hours=1))
        orphan = scheduled(-timedelta(seconds=5))
        assert client.set_flow_run_state(orphan, Pending()).state.is_pending()  # takes the slot
        blocked = scheduled(-timedelta(seconds=1))
        assert client.set_flow_run_state(blocked, Pending()).state.is_cancelled()  # no slot

        assert clear_left_runs() == (3, 1)
        for run_id in missed:
            with pytest.raises(ObjectNotFound):
                client.read_flow_run(run_id)
        state = client.read_flow_run(orphan).state
        assert state.is_crashed() and "serving the deployment ended" in state.message
        assert client.read_flow_run(later).state.is_scheduled()
        fresh = scheduled(-timedelta(seconds=1))
        assert client.set_flow_run_state(fresh, Pending()).state.is_pending()  # slot is free
        assert clear_left_runs() == (0, 1)  # frees it again for the other tests
        for run_id in (later, fresh, orphan, blocked):
            client.delete_flow_run(run_id)
