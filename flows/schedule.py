"""Scheduled reruns: a served flow that runs `dvc repro` in the project on a cron."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow


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


def serve_repro(cron: str, project: Path) -> None:
    """Serve the flow as deployment 'exprbench-nightly' on `cron` until interrupted."""
    scheduled_repro.serve(name="exprbench-nightly", cron=cron, parameters={"project": str(project)})
