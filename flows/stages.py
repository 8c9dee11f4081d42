"""One Prefect flow per pipeline stage; each publishes a summary artifact to the UI.

A DVC stage runs exactly one of these (`exprbench stage NAME`); `exprbench run` and the
pipeline flow run them all in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from exprbench.config import Layout
from tasks.aggregate import aggregate as aggregate_task
from tasks.common import StageResult
from tasks.faces import faces as faces_task
from tasks.ingest import ingest as ingest_task
from tasks.report import report as report_task
from tasks.score import score as score_task
from tasks.upscale import upscale as upscale_task
from tasks.validate import validate as validate_task

STAGE_ORDER = ("ingest", "upscale", "faces", "score", "validate", "aggregate", "report")


def publish(result: StageResult) -> StageResult:
    """Summary artifact (markdown + table) for the Prefect UI."""
    key = re.sub(r"[^a-z0-9-]", "-", f"exprbench-{result.stage}".lower())
    create_markdown_artifact(
        markdown=result.markdown(), key=key, description=f"exprbench {result.stage} summary"
    )
    if result.rows:
        create_table_artifact(
            table=result.rows[:500],
            key=f"{key}-rows",
            description=f"exprbench {result.stage} details",
        )
    return result


def _stage_flow(name: str, task: Callable[[Layout, dict[str, Any]], StageResult]):
    @flow(name=f"exprbench-{name}", log_prints=True, validate_parameters=False)
    def stage_flow(layout: Layout, params: dict[str, Any]) -> StageResult:
        result = publish(task(layout, params))
        print(result.markdown())
        return result

    stage_flow.__doc__ = task.__doc__ or f"The {name} stage."
    return stage_flow


STAGE_FLOWS = {
    "ingest": _stage_flow("ingest", ingest_task),
    "upscale": _stage_flow("upscale", upscale_task),
    "faces": _stage_flow("faces", faces_task),
    "score": _stage_flow("score", score_task),
    "validate": _stage_flow("validate", validate_task),
    "aggregate": _stage_flow("aggregate", aggregate_task),
    "report": _stage_flow("report", report_task),
}


@flow(name="exprbench-pipeline", log_prints=True, validate_parameters=False)
def pipeline(layout: Layout, params: dict[str, Any]) -> list[StageResult]:
    """All stages in order, each as a sub-flow (the same flows DVC runs one by one)."""
    return [STAGE_FLOWS[name](layout, params) for name in STAGE_ORDER]
