"""Scheduled reruns: a served flow that runs `dvc repro` in the project on a cron."""

from __future__ import annotations

import subprocess
from pathlib import Path

from prefect import flow


@flow(name="exprbench-scheduled-repro", log_prints=True)
def scheduled_repro(project: str) -> str:
    """Run `dvc repro` (only changed stages rerun) and return its output tail."""
    result = subprocess.run(
        ["dvc", "repro"], cwd=project, capture_output=True, text=True, check=False
    )
    print(result.stdout[-4000:])
    if result.returncode != 0:
        raise RuntimeError(f"dvc repro failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout[-4000:]


def serve_repro(cron: str, project: Path) -> None:
    scheduled_repro.serve(name="exprbench-nightly", cron=cron, parameters={"project": str(project)})
