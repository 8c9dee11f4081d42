"""Guards that keep runs apart: one run per output folder, outputs never inside inputs,
and no stage building on a failed validation.

Each refusal is a `RunRefused` whose message says what was refused and what to do; the
command line reports it as a known error (exit 2), not a traceback.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".exprbench.lock"


class RunRefused(RuntimeError):
    """A run or stage was refused before it could mix, lose or let in anything."""


class RunLocked(RunRefused):
    """Another exprbench process holds the folder's lock."""


@contextmanager
def run_lock(folder: Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (an flock on folder/.exprbench.lock) while the
    block runs; raise RunLocked at once if another process holds it.

    The lock is the open file itself, so it is released when the process ends, however it
    ends (a killed run leaves no stale lock); the file stays and records the last holder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise RunLocked(
                f"{folder} is in use by another exprbench run ({holder}); wait for it to "
                f"finish, or use another {what}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": what}).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_separate(
    input_dir: Path, outputs: dict[str, Path], may_contain_input: Collection[str] = ()
) -> None:
    """Refuse outputs equal to or inside the input folder, and an input inside an output
    folder (except those named in `may_contain_input`, e.g. --output, whose sub-folders are
    the ones written): a later run would read its own outputs as inputs, or write over
    the inputs."""
    source = input_dir.resolve()
    for name, path in outputs.items():
        target = path.resolve()
        if _within(target, source):
            raise RunRefused(
                f"{name} {path} is inside the input folder {input_dir}: a later run would "
                "take its own outputs for input images; choose a folder outside the input"
            )
        if name not in may_contain_input and _within(source, target):
            raise RunRefused(
                f"the input folder {input_dir} is inside {name} {path}, which the run "
                "writes; keep the input folder outside every output folder"
            )


def require_validation_passed(validation_json: Path, stage: str) -> None:
    """Refuse to build `stage` on scores whose last validation failed."""
    if not validation_json.is_file():
        return
    try:
        success = json.loads(validation_json.read_text()).get("success")
    except (OSError, ValueError):
        success = None
    if success is not True:
        raise RunRefused(
            f"{validation_json} records a failed (or unreadable) validation of the scores; "
            f"the {stage} stage does not build on them. Fix the inputs or scorers, rerun "
            "score and validate, then this stage"
        )
