"""What the benchmark scripts share: the machine line, median (min-max) cells, timing a
child process as a whole, the demo set prepared up to the faces stage.

Timing uses the standard library only: `time.clock_gettime(CLOCK_MONOTONIC)` (one clock
for the whole machine on Linux, so a parent and its child can compare timestamps) and the
kernel's own accounting of a finished child (`os.wait4`).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def now() -> float:
    """Seconds on CLOCK_MONOTONIC: comparable between processes on the same Linux machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def machine() -> str:
    """The machine in a few words: CPU kind, cores, memory, Python."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def load() -> float:
    """The 1-minute load average (other processes on the machine count too)."""
    return os.getloadavg()[0]


def load_note(at_start: float) -> str:
    """The load before the benchmark's work and now (its own processes count too)."""
    return (
        f"1-min load average {at_start:.1f} before the benchmark, {load():.1f} at its end "
        "(its own processes included)"
    )


def spread(values: Sequence[float], fmt: str = ".2f") -> str:
    """'median (min-max)' of several runs, or the one value."""
    if len(values) == 1:
        return format(values[0], fmt)
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:{fmt}} ({low:{fmt}}-{high:{fmt}})"


@dataclass(frozen=True)
class ChildRun:
    started: float  # CLOCK_MONOTONIC just before the process was spawned
    wall_s: float  # spawn to exit, as this process saw it
    cpu_s: float  # user + system CPU of the child and its waited-for children
    max_rss_mib: float  # peak resident memory of the largest of those processes
    returncode: int


def run_child(
    cmd: Sequence[str], *, cwd: Path | None = None, env: dict | None = None, log: Path
) -> ChildRun:
    """Run `cmd` as a new process (output appended to `log`), timed as a whole.

    Raises with the end of the log when the command fails.
    """
    with open(log, "ab") as out:
        started = now()
        process = subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = now() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited with {process.returncode}:\n{tail}")
    return ChildRun(
        started=started,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        returncode=process.returncode,
    )


def demo_through_faces(tmp: Path, log=None) -> tuple[Path, Path]:
    """Build the demo set under tmp/raw and run ingest, upscale and faces (this process,
    params.yaml's settings) into tmp/out, the `exprbench run` layout; (raw, out)."""
    from exprbench.config import Layout
    from exprbench.demo import build_demo
    from exprbench.settings import load_settings
    from tasks.faces import faces
    from tasks.ingest import ingest
    from tasks.upscale import upscale

    raw, out = tmp / "raw", tmp / "out"
    build_demo(raw)
    settings = load_settings(ROOT / "params.yaml")
    layout = Layout.for_output(raw, out)
    for stage in (ingest, upscale, faces):
        if log:
            log(f"setup: {stage.name}")
        stage.fn(layout, settings)
    return raw, out
