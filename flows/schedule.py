"""Scheduled evaluation of new generator versions: a served Prefect deployment that, on a
cron schedule, looks for generator/version folders (or manifest rows) not evaluated yet,
runs the pipeline with `dvc repro` when there are any, records what it evaluated, posts
"what changed" and the leaderboard as artifacts, and ends Failed naming the cells when the
comparison finds a regression.

The detection and the messages are pure (`exprbench.new_versions`, `exprbench.compare`);
this module reads the input folder and the record, runs DVC and talks to Prefect.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from exprbench.compare import Comparison, RegressionRule, compare_versions
from exprbench.config import Layout
from exprbench.new_versions import (
    UNLABELLED,
    SeenFile,
    Step,
    detect,
    fingerprints,
    regression_message,
    steps,
    version_key,
)
from exprbench.settings import Settings, load_settings
from exprbench.versions import version_orders
from flows.stages import MAX_VERSION_TAGS, run_tags

FLOW_NAME = "exprbench-new-versions"
DEPLOYMENT = f"{FLOW_NAME}/exprbench-schedule"
RECORD = Path(".exprbench") / "schedule" / "evaluated.json"  # in the project
WHAT_CHANGED_KEY = "exprbench-what-changed"
LEADERBOARD_KEY = "exprbench-leaderboard"


def seen_files(raw: Path, extensions: tuple[str, ...] | list[str]) -> list[SeenFile]:
    """Every input image and declared sheet, with its declared generator/version, as the
    ingest stage will find them (by manifest.csv / sheets.csv or the folder layout)."""
    from exprbench.ingest import discover

    found = discover(raw, extensions)
    seen = []
    for cand in found.candidates:
        labels = f"{cand.subject}/{cand.label}/{cand.replicate}"
        key = version_key(cand.generator, cand.version)
        seen.append(SeenFile(key, cand.path, *_size_mtime(cand.abs_path), labels))
    for decl in found.sheets:
        labels = f"{decl.subject}/{decl.rows}x{decl.columns}/{'|'.join(decl.labels)}"
        key = version_key(decl.generator, decl.version)
        seen.append(SeenFile(key, decl.path, *_size_mtime(decl.abs_path), labels))
    return seen


def _size_mtime(path: Path) -> tuple[int, int]:
    """(size, modification time in ns); (-1, 0) for a file that cannot be read (ingest
    quarantines it, saying why)."""
    try:
        stat = path.stat()
    except OSError:
        return -1, 0
    return stat.st_size, stat.st_mtime_ns


def read_record(project: Path) -> dict[str, Any]:
    """The record of evaluated versions: {"inputs": {generator/version: fingerprint},
    "versions": {generator/version: {evaluated_at, flow_run, images, regressed_cells}}}."""
    path = project / RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {"inputs": {}, "versions": {}}
    except ValueError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); delete it to evaluate every version again"
        ) from error
    return {"inputs": record.get("inputs", {}), "versions": record.get("versions", {})}


def write_record(project: Path, record: dict[str, Any]) -> Path:
    path = project / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def dvc_repro(project: Path) -> str:
    """`dvc repro` in the project with its interpreter (the checkout's .venv, as
    bin/exprbench picks it for the stage commands; else this one); returns the output."""
    venv_python = project / ".venv" / "bin" / "python"
    python = str(venv_python) if os.access(venv_python, os.X_OK) else sys.executable
    bin_dir = str(Path(python).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():  # the stage runs report to the server this run reports to
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    result = subprocess.run(
        [python, "-m", "dvc", "repro"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"dvc repro failed (exit {result.returncode}): {output[-2000:]}")
    return output


def _evaluated_versions(layout: Layout) -> dict[tuple[str, str], int]:
    """(generator, version) -> images in the images table the pipeline just wrote."""
    import pyarrow.parquet as pq

    table = pq.read_table(layout.images, columns=["generator", "version"])
    counts = table.group_by(["generator", "version"]).aggregate([([], "count_all")])
    return {(row["generator"], row["version"]): row["count_all"] for row in counts.to_pylist()}


def leaderboard_rows(layout: Layout) -> list[dict[str, Any]]:
    """The leaderboard (data/reports/leaderboard.json) as one row per version x scorer."""
    board = json.loads(layout.leaderboard_json.read_text())
    return [
        {"version": version, "scorer": scorer, **values}
        for version, scorers in sorted(board.items())
        for scorer, values in sorted(scorers.items())
    ]


def _compare(
    settings: Settings, layout: Layout, found: list[Step]
) -> tuple[list[Comparison], list[str]]:
    """Each step's Comparison, and a line for each generator evaluated for the first time."""
    comparisons: list[Comparison] = []
    firsts: list[str] = []
    for step in found:
        if step.base is None:
            firsts.append(f"{step.generator} {step.head}: its first version, nothing to compare")
            continue
        comparisons += compare_versions(
            layout.scores,
            layout.images,
            layout.input_dir,
            RegressionRule.from_settings(settings.compare),
            seed=settings.uncertainty.seed,
            resamples=settings.uncertainty.resamples,
            bounds=settings.duckdb,
            generator=step.generator,
            base=step.base,
            head=step.head,
        )
    return comparisons, firsts


def _tag_run(versions: list[str], regressed: bool) -> None:
    """Add the evaluated versions (and `regression`) to this flow run's tags."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run.id).tags
        extra = ["evaluated", *versions[:MAX_VERSION_TAGS]] + (["regression"] if regressed else [])
        client.update_flow_run(flow_run.id, tags=list(dict.fromkeys([*current, *extra])))


@flow(name=FLOW_NAME, log_prints=True)
def evaluate_new_versions(project: str) -> State:
    """Evaluate the generator versions added or changed since the last evaluation.

    Nothing new: ends Completed saying so, without running the pipeline. Otherwise runs
    `dvc repro`, records the evaluated versions (in PROJECT/.exprbench/schedule/
    evaluated.json and as this run's tags), posts the artifacts "exprbench-what-changed"
    (each generator's new version against the previous one) and "exprbench-leaderboard",
    and ends Failed naming the regressed cells when the regression rule (params
    `compare:`) flags any.
    """
    from prefect.runtime import flow_run

    root = Path(project).resolve()
    settings = load_settings(root / "params.yaml")
    layout = Layout.from_paths(settings.paths, root)
    record = read_record(root)
    current = fingerprints(seen_files(layout.input_dir, settings.ingest.extensions))
    changes = detect(current, record["inputs"])
    print(changes.summary())
    if not changes:
        return Completed(message=changes.summary())

    output = dvc_repro(root)
    ran = re.findall(r"^Running stage '([^']+)'", output, flags=re.MULTILINE)
    print(f"dvc repro ran: {', '.join(ran)}" if ran else "dvc repro: every stage was up to date")

    counts = _evaluated_versions(layout)
    before = set(record["versions"])
    wanted = {key for key in changes.to_evaluate if UNLABELLED not in key.split("/")}
    # manifest rows labelled by metadata: their versions are known only after ingest
    evaluated = sorted(
        (g, v) for g, v in counts if f"{g}/{v}" in wanted or f"{g}/{v}" not in before
    )
    orders = version_orders(layout.input_dir, counts)
    found = steps(evaluated, {g: order.versions for g, order in orders.items()})
    comparisons, firsts = _compare(settings, layout, found)
    failure = regression_message(comparisons)

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    regressed = {f"{c.generator}/{c.head}": c.regressions() for c in comparisons}
    images = {f"{g}/{v}": n for (g, v), n in counts.items()}
    keys = [f"{g}/{v}" for g, v in evaluated]
    for key in keys:
        record["versions"][key] = {
            "evaluated_at": stamp,
            "flow_run": str(flow_run.id or ""),
            "images": images[key],
            "regressed_cells": [cell.where for cell in regressed.get(key, [])],
        }
    for key in changes.removed:
        record["versions"].pop(key, None)
    record["inputs"] = current
    write_record(root, record)
    _tag_run(keys, failure is not None)

    lines = [
        "# exprbench: what changed",
        "",
        f"**Inputs:** {changes.summary()}.",
        "",
        f"**Evaluated:** {', '.join(f'{k} ({images[k]} image(s))' for k in keys) or 'none'}",
        "",
        f"**dvc repro:** {len(ran)} stage(s) ran" + (f": {', '.join(ran)}" if ran else ""),
        "",
        f"**Verdict:** {failure or 'no regression by the rule (params `compare:`)'}",
        "",
        *[f"- {first}" for first in firsts],
        *[f"\n{comparison.markdown()}" for comparison in comparisons],
        "",
        f"Report: `{layout.report_html.resolve()}`; leaderboard: artifact `{LEADERBOARD_KEY}`.",
    ]
    create_markdown_artifact(
        markdown="\n".join(lines) + "\n",
        key=WHAT_CHANGED_KEY,
        description="exprbench: the versions this scheduled run evaluated and what changed",
    )
    rows = leaderboard_rows(layout)
    if rows:
        create_table_artifact(
            table=rows, key=LEADERBOARD_KEY, description="exprbench leaderboard after this run"
        )
    if failure is not None:
        return Failed(message=failure)
    return Completed(message=f"evaluated {', '.join(keys) or 'no version'}; no regression")


def serve(cron: str, project: Path, timezone: str = "UTC") -> None:
    """Serve the flow as deployment DEPLOYMENT on `cron` (in `timezone`) until interrupted.

    The deployment shows in the Prefect UI under Deployments; runs happen only while this
    process is up (it is the worker). One serving process per project (a second one is
    refused: RunLocked); a tick that comes while a run is still going is cancelled
    (deployment concurrency 1, cancel-new), never run twice at once.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from exprbench.runlock import run_lock

    with run_lock(project / RECORD.parent, "project"):  # one `exprbench schedule` each
        deleted, crashed = clear_left_runs()
        if deleted or crashed:
            print(
                f"{DEPLOYMENT}: deleted {deleted} tick(s) missed while no process served "
                f"it, marked {crashed} run(s) of an ended serving process crashed"
            )
        evaluate_new_versions.serve(
            name=DEPLOYMENT.split("/", 1)[1],
            schedules=[Cron(cron, timezone=timezone)],
            parameters={"project": str(project)},
            tags=run_tags(project),
            global_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        )


def clear_left_runs() -> tuple[int, int]:
    """Before serving (one serving process per checkout, see `serve`): delete the
    deployment's runs still waiting for a start time that has passed (ticks missed while no
    process served it, or left by an earlier schedule), so a restart evaluates once at the
    next tick instead of replaying each; and mark Crashed the runs an ended serving process
    left pending or running, which frees the deployment's concurrency slot they held (else
    every later tick would be cancelled). Returns (deleted, crashed)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    def runs(client: Any, deployment_id: Any, *types: StateType, **where: Any) -> list[Any]:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(types))), **where
            ),
        )

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            return 0, 0
        started = FlowRunFilterExpectedStartTime.model_validate({"before_": datetime.now(UTC)})
        missed = runs(client, deployment.id, StateType.SCHEDULED, expected_start_time=started)
        for run in missed:
            client.delete_flow_run(run.id)
        left = runs(
            client, deployment.id, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING
        )
        for run in left:
            message = "the process serving the deployment ended during this run"
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    return len(missed), len(left)


def trigger() -> str:
    """Ask the served deployment for one run now; returns the flow run's id."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = run_deployment(DEPLOYMENT, timeout=0, as_subflow=False)
    assert isinstance(run, FlowRun)  # called outside an event loop: the sync variant
    return str(run.id)
