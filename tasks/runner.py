"""How the per-image stages map over their images: batches through a Prefect task runner.

`params.yaml` `runner` (exprbench.settings.RunnerSettings) chooses it: a thread pool, a
process pool, or Dask through `prefect-dask` (a LocalCluster of `workers` processes, or the
running cluster whose scheduler is at `address`). A stage reads its input table in batches
of `runner.batch_size` images, submits one task per batch and gathers the results in
order, at most two per worker in flight: the rows a stage holds stay bounded by the batch
size and the worker count, whatever the corpus size.

Run as plain functions (`stage.fn(...)`, outside any Prefect run: unit tests, the
benchmarks), the batches are computed in this process, in order, without a task runner or
a Prefect server.

Models are expensive to build: `worker_local` keeps one instance per worker thread (and so
per worker process), reused by every batch that worker runs.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
from prefect import Task
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import quote
from tqdm import tqdm

from exprbench.config import Layout
from exprbench.schema import ParquetRowWriter, iter_rows
from exprbench.settings import RunnerSettings

if TYPE_CHECKING:
    from exprbench.faces import FaceDetector

T = TypeVar("T")
R = TypeVar("R")

IN_FLIGHT_PER_WORKER = 2  # batches submitted ahead per worker (results held at most)


@dataclass
class BatchResult:
    """What a batch task returns: its rows, in input order, and its content-cache counts."""

    rows: list[dict]
    cache_hits: int = 0
    cache_misses: int = 0
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


@dataclass
class Tally:
    """What a stage's batches did: content-cache counts and the processes that ran them."""

    hits: int = 0
    misses: int = 0
    workers: set[str] = field(default_factory=set)  # host:pid

    def add(self, batch: BatchResult) -> list[dict]:
        """Count `batch`; return its rows."""
        self.hits += batch.cache_hits
        self.misses += batch.cache_misses
        self.workers.add(batch.worker)
        return batch.rows

    def counts(self) -> dict[str, int]:
        """For the stage's summary."""
        return {
            "cache_hits": self.hits,
            "cache_misses": self.misses,
            "worker_processes": len(self.workers),
        }


def task_runner(options: RunnerSettings) -> TaskRunner:
    """The Prefect task runner `options` describe (not started)."""
    if options.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=options.workers)
    if options.kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=options.workers)
    from prefect_dask import DaskTaskRunner  # imported only when asked for (distributed)

    if options.address:
        return DaskTaskRunner(address=options.address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": options.workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def absolute_layout(layout: Layout) -> Layout:
    """`layout` with absolute paths: workers (a Dask worker's working directory is its own)
    must find the same files."""
    return Layout(*(Path(getattr(layout, f.name)).absolute() for f in fields(Layout)))


def in_prefect_run() -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class BatchMap:
    """Maps a batch task over batches, results in the batches' order (a context manager:
    the workers, and the models they built, live until it exits).

    Inside a Prefect run each batch is a task run on the runner `options` describe; at
    most IN_FLIGHT_PER_WORKER x workers batches are submitted ahead of the one awaited.
    Outside one (`stage.fn(...)`), `task.fn` runs in this thread, batch after batch.
    """

    def __init__(self, options: RunnerSettings) -> None:
        self.options = options
        self._runner: TaskRunner | None = None
        self._saved: dict | None = None

    def __enter__(self) -> BatchMap:
        if in_prefect_run():
            self._runner = task_runner(self.options).__enter__()
        else:
            # this thread's models are this map's, as a fresh worker's would be: a later
            # one (another test, other weights) builds its own
            self._saved = _local.__dict__.pop("slots", None)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._runner is not None:
            self._runner.__exit__(*exc)
            self._runner = None
            return
        _local.__dict__.pop("slots", None)
        if self._saved is not None:
            _local.slots = self._saved

    def _parallelism(self) -> int:
        """Batches that run at once: `workers`, or a running cluster's worker threads."""
        if self.options.kind == "dask" and self.options.address:
            from prefect_dask import DaskTaskRunner

            assert isinstance(self._runner, DaskTaskRunner)
            return max(1, sum(self._runner.client.nthreads().values()))
        return self.options.workers

    def __call__(
        self, task: Task[..., R], calls: Iterable[dict[str, Any]], **shared: Any
    ) -> Iterator[R]:
        """`task(**call, **shared)` for each call (its batch and what only it needs), in order."""
        if self._runner is None:
            for call in calls:
                yield task.fn(**call, **shared)
            return
        window = IN_FLIGHT_PER_WORKER * self._parallelism()
        pending: deque[PrefectFuture[R]] = deque()
        # Quoted: Prefect would otherwise walk every value of every argument (each row, each
        # descriptor's float) looking for futures, twice per task run, and none is there.
        # Not on Dask: its client rebuilds tuples (a quote is one) as plain tuples.
        wrap = (lambda value: value) if self.options.kind == "dask" else quote
        quoted = {name: wrap(value) for name, value in shared.items()}
        for call in calls:
            arguments = {name: wrap(value) for name, value in call.items()}
            pending.append(self._runner.submit(task, {**arguments, **quoted}))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def map_table(
    task: Task[..., BatchResult],
    source: Path,
    schema: pa.Schema,
    out: ParquetRowWriter,
    runner: RunnerSettings,
    tally: Tally,
    bar: tqdm,
    **shared: Any,
) -> Iterator[list[dict]]:
    """`task` over the `source` table in batches on the `runner` params describe (with
    `shared` arguments); each batch's rows are written to `out`, counted and shown on
    `bar`, then yielded, in the table's order."""
    with BatchMap(runner) as mapper:
        batches = ({"batch": b} for b in iter_rows(source, schema, runner.batch_size))
        for batch in mapper(task, batches, **shared):
            rows = tally.add(batch)
            out.write(rows)
            bar.update(len(rows))
            yield rows


_local = threading.local()


def worker_local(slot: str, identity: Hashable, build: Callable[[], T]) -> T:
    """This worker thread's instance in `slot` built for `identity`, built on first use.

    A slot holds one instance: asking for another identity (other options or code) builds
    anew and drops the old one, so a long-lived Dask worker does not accumulate models.
    A build that raises is not kept (the next batch tries again).
    """
    slots: dict[str, tuple[Hashable, Any]] = _local.__dict__.setdefault("slots", {})
    held = slots.get(slot)
    if held is None or held[0] != identity:
        slots.pop(slot, None)
        slots[slot] = (identity, build())
    return slots[slot][1]


def face_detector() -> FaceDetector:
    """This worker's dlib face detector (imported and built on first use)."""

    def build() -> FaceDetector:
        from exprbench.faces import FaceDetector

        return FaceDetector()

    return worker_local("face-detector", None, build)
