"""One Prefect flow per pipeline stage; each publishes a summary artifact to the UI.

A DVC stage runs exactly one of these (`exprbench stage NAME`); `exprbench run` and the
pipeline flow run them all in order.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from prefect import Flow, flow, tags
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from exprbench.config import Layout
from exprbench.settings import Settings
from tasks import STAGES as STAGE_ORDER
from tasks import STUDIES
from tasks.common import StageResult

MAX_VERSION_TAGS = 50


def run_tags(
    checkout: Path, layout: Layout | None = None, extensions: Sequence[str] = ()
) -> list[str]:
    """Tags of a flow run, to filter runs in the UI: the project, the checkout, and each
    generator/version evaluated (from the images table once ingest wrote one, else from
    the input folder's layout)."""
    found = ["exprbench", f"checkout:{checkout.resolve().name}"]
    if layout is None:
        return found
    if layout.images.is_file():
        import numpy as np
        import pyarrow.parquet as pq

        # ParquetFile, not read_table: that imports pyarrow.dataset (~0.2 s per stage);
        # the distinct pairs from dictionary codes, not a Python row per image
        table = pq.ParquetFile(layout.images).read(columns=["generator", "version"])
        generator_column, version_column = (
            table.column(name).combine_chunks().dictionary_encode()
            for name in ("generator", "version")
        )
        width = len(version_column.dictionary)
        codes = generator_column.indices.to_numpy().astype("int64") * width
        rows = [
            {
                "generator": generator_column.dictionary[code // width].as_py(),
                "version": version_column.dictionary[code % width].as_py(),
            }
            for code in np.unique(codes + version_column.indices.to_numpy()).tolist()
        ]
    else:
        from exprbench.ingest import InputConfigError, discover

        try:
            found_files = discover(layout.input_dir, extensions)
        except (InputConfigError, OSError):
            return found  # ingest will report the problem
        rows = [{"generator": c.generator, "version": c.version} for c in found_files.candidates]
    versions = sorted({f"{row['generator']}/{row['version']}" for row in rows})
    return found + versions[:MAX_VERSION_TAGS]


@contextmanager
def tagged(layout: Layout, extensions: Sequence[str]) -> Iterator[None]:
    """Flow runs started inside carry `run_tags` for this checkout and layout."""
    from flows.server import CHECKOUT

    with tags(*run_tags(CHECKOUT, layout, extensions)):
        yield


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


class StageFlow(Flow):
    """A stage's flow. Its run's parameters (layout, settings: dataclasses of paths,
    strings and numbers) are stored as the JSON Prefect's own `jsonable_encoder` gives, by
    pydantic (imported with Prefect) instead of FastAPI, whose import (~0.2 s) every stage
    process would otherwise pay for that call alone."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        from pydantic_core import to_jsonable_python

        return {key: to_jsonable_python(value) for key, value in parameters.items()}


def _build_stage_flow(name: str) -> StageFlow:
    # Each DVC stage is its own process: importing only this stage's task module keeps
    # torch, DuckDB and Great Expectations out of the stages that do not use them.
    task = getattr(importlib.import_module(f"tasks.{name}"), name)

    def run_stage(layout: Layout, settings: Settings) -> StageResult:
        result = publish(task(layout, settings))
        print(result.markdown())
        return result

    run_stage.__doc__ = task.__doc__ or f"The {name} stage."
    return StageFlow(
        run_stage, name=f"exprbench-{name}", log_prints=True, validate_parameters=False
    )


@cache
def stage_flow(name: str):
    """The Prefect flow of one stage (built on first use)."""
    if name not in STAGE_ORDER + STUDIES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_ORDER + STUDIES)}")
    return _build_stage_flow(name)


@flow(name="exprbench-pipeline", log_prints=True, validate_parameters=False)
def pipeline(layout: Layout, settings: Settings) -> list[StageResult]:
    """All stages in order, each as a sub-flow (the same flows DVC runs one by one)."""
    return [stage_flow(name)(layout, settings) for name in STAGE_ORDER]
