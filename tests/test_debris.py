"""Nothing left behind, nothing locked away: killed writers' temporaries are swept, the
tables folder gets the usual permissions, and an unwritable output folder is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
from conftest import missing_prerequisite

from exprbench.aggregate import write_csvs
from exprbench.fileio import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _temps(folder: Path, name: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_a_writer_killed_mid_write_leaves_nothing_after_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    killed = _python(
        """
        import os, signal, sys
        from exprbench.fileio import atomic_target
        with atomic_target(sys.argv[1]) as tmp:
            tmp.write_text("<html>half")
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(target),
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not target.exists() and len(_temps(tmp_path, "index.html")) == 1
    # a live writer's temporary (another process, mid-write) must survive the sweep
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            busy = tmp_path / f".index.html.{live.pid}.inflight.tmp"
            busy.write_text("in progress")
            atomic_write_text(target, "<html>whole</html>")
            assert target.read_text() == "<html>whole</html>"
            assert _temps(tmp_path, "index.html") == [busy]
        finally:
            live.kill()
    live.wait()
    atomic_write_text(target, "<html>again</html>")
    assert _temps(tmp_path, "index.html") == []


def test_tables_folder_has_the_umask_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        out = write_csvs({"leaderboard": pa.table({"a": [1, 2]})}, tmp_path / "tables")
        rewritten = write_csvs({"leaderboard": pa.table({"a": [3]})}, tmp_path / "tables")
    finally:
        os.umask(previous)
    assert out == rewritten
    assert (tmp_path / "tables").stat().st_mode & 0o777 == 0o755
    assert out[0].stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["tables"]


def test_read_only_output_folder_is_one_line_naming_it(tmp_path: Path) -> None:
    """`exprbench fetch-demo --dest` into a read-only mount (EROFS): a one-line error."""
    ro = tmp_path / "ro"
    ro.mkdir()
    dest = ro / "raw"
    script = (
        f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && "
        f"exec {sys.executable} -c 'import sys; from flows.cli import main; sys.exit(main())' "
        f"fetch-demo --dest {dest}"
    )
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount --bind {ro} {ro}"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        missing_prerequisite(f"cannot make a read-only bind mount (unshare -rm): {probe.stderr}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("exprbench: error: ") and str(dest) in lines[0], lines
    assert "Read-only file system" in lines[0]
    assert lines[1].startswith("exprbench: next: ") and "writable folder" in lines[1]
