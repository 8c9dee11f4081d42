"""What every stage task shares: its result record and a terminal progress bar."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from exprbench.fileio import current_umask

T = TypeVar("T")


@dataclass
class StageResult:
    """A stage's headline counts and a small table, published as a Prefect artifact."""

    stage: str
    counts: dict[str, int | float | str] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # shown as a table in the UI

    def markdown(self) -> str:
        lines = [f"## {self.stage}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.counts.items()]
        return "\n".join(lines)


def progress_bar(desc: str, total: int | None, items: Iterable[T] | None = None) -> tqdm:
    """tqdm on an interactive terminal, silent in CI, logs and DVC's captured output.

    Without `items` it is updated by hand, for loops hidden inside domain functions.
    """
    return tqdm(
        items, desc=desc, total=total, unit="img", disable=not sys.stderr.isatty(), leave=False
    )


def table_rows(path: str | os.PathLike[str]) -> int | None:
    """Rows in a Parquet file (from its footer), None when it is missing."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows if Path(path).is_file() else None


DETAIL_ROWS = 500  # a stage's detail table in the Prefect UI shows this many rows


def keep_detail(details: list[dict], row: dict) -> None:
    """Add `row` to a stage's detail table unless it is full (memory stays bounded)."""
    if len(details) < DETAIL_ROWS:
        details.append(row)


def progress(items: Iterable[T], desc: str) -> Iterator[T]:
    """Iterate `items` behind a progress bar (see `progress_bar`)."""
    return iter(progress_bar(desc, len(items) if isinstance(items, Sized) else None, items))


def materialise(cache, blob_sha: str, suffix: str, target_dir) -> str:
    """Copy a cached content-addressed blob into a stage's output folder; return its name.

    DVC deletes a stage's outputs before rerunning it, so outputs are re-populated from
    the cache instead of being recomputed.
    """
    name = f"{blob_sha}.{suffix}"
    target = Path(target_dir) / name
    if not target.exists():
        # copied beside the target and renamed: a killed copy never leaves a partial file
        # under the final name (which would then be trusted by `exists` on every rerun)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
        )
        os.close(fd)
        try:
            shutil.copyfile(cache.blob_path(blob_sha, suffix), tmp)
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return name
