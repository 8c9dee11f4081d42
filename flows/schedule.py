"""Scheduled reruns: a served flow that runs `dvc repro` in the project on a cron."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow

from flows.stages import run_tags


@flow(name="exprbench-scheduled-repro", log_prints=True)
def scheduled_repro(project: str) -> str:
    """Run `dvc repro` (only changed stages rerun) and return its output tail."""
    # The stage commands (`exprbench stage ...`) must resolve to this environment's scripts.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print(result.stdout[-4000:])
    if result.returncode != 0:
        raise RuntimeError(f"dvc repro failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout[-4000:]


DEPLOYMENT = "exprbench-scheduled-repro/exprbench-nightly"


def serve_repro(cron: str, project: Path, timezone: str = "UTC") -> None:
    """Serve the flow as deployment DEPLOYMENT on `cron` (in `timezone`) until interrupted.

    The deployment shows in the Prefect UI under Deployments; runs happen only while this
    process is up (it is the worker).
    """
    from prefect.schedules import Cron

    scheduled_repro.serve(
        name=DEPLOYMENT.split("/", 1)[1],
        schedules=[Cron(cron, timezone=timezone)],
        parameters={"project": str(project)},
        tags=run_tags(project),  # the versions are tagged on each stage's own runs
    )


def trigger() -> str:
    """Ask the served deployment for one run now; returns the flow run's id."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = run_deployment(DEPLOYMENT, timeout=0, as_subflow=False)
    assert isinstance(run, FlowRun)  # called outside an event loop: the sync variant
    return str(run.id)
