"""Fetching packaged files: concurrent, resumable, and failing with what to do next.

The concurrency test downloads one small real wheel (brisque 0.2.0, ~150 kB) with pip into
a temporary EXPRBENCH_HOME; the other tests use a local stand-in archive, so they run
without the registries.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from exprbench import packaged
from exprbench.packaged import PackagedFile, PackagedFileError, ensure, ensure_all, local_path

REPO = Path(__file__).resolve().parent.parent
UNREACHABLE = ("could not be reached", "pip found no", "npm is not on PATH")


def _env(home: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "EXPRBENCH_HOME": str(home), "PYTHONPATH": path, **extra}


def _leftovers(root: Path) -> list[Path]:
    """Temp files and download folders a fetch should never leave behind."""
    downloads = root / packaged.DOWNLOADS_DIR
    stray = list(downloads.iterdir()) if downloads.is_dir() else []
    return stray + [
        p for p in root.rglob(".*") if p.is_file() and p.parent.name != packaged.LOCKS_DIR
    ]


# ---- a local stand-in for a registry -------------------------------------------------

DATA = {"fakepkg/data/a.bin": b"alpha" * 1000, "fakepkg/data/b.bin": b"beta" * 1000}


def _item(member: str, sha256: str | None = None) -> PackagedFile:
    sha = sha256 or hashlib.sha256(DATA[member]).hexdigest()
    return PackagedFile("wheel", "fakepkg", "1.0", member, sha, "MIT")


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Serve fakepkg 1.0 from a local wheel instead of pip; returns the download log."""
    wheel = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, data in DATA.items():
            zf.writestr(member, data)
    downloads: list[str] = []

    def fake_download(item, dest, items, rerun):
        downloads.append(item.spec)
        return Path(shutil.copy(wheel, dest / wheel.name))

    monkeypatch.setattr(packaged, "_download", fake_download)
    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path / "home"))
    return downloads


def test_verified_files_are_not_fetched_again(registry: list[str]) -> None:
    items = [_item(m) for m in DATA]
    paths = ensure_all(items)
    assert [p.read_bytes() for p in paths] == list(DATA.values())
    assert ensure_all(items) == paths and ensure(items[0]) == paths[0]
    assert registry == ["fakepkg==1.0"]  # one download for both files, none afterwards
    assert _leftovers(paths[0].parents[3]) == []


def test_a_killed_fetch_leaves_nothing_that_breaks_the_next(registry: list[str]) -> None:
    """A run killed mid-fetch (SIGKILL: no cleanup at all) while it held the lock, had a
    partial archive, an unfinished temp file and, as older exprbench versions could, a
    truncated file under the final name."""
    item = _item("fakepkg/data/a.bin")
    target = local_path(item)
    root = target.parents[3]
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from exprbench import packaged
        item = packaged.PackagedFile(*{list(item.__dict__.values())!r})
        root = Path({str(root)!r})
        target = packaged.local_path(item, root)
        with packaged._archive_lock(item, root):
            work = root / packaged.DOWNLOADS_DIR / packaged._safe_name(item.archive_key)
            work.mkdir(parents=True)
            (work / "fakepkg-1.0-py3-none-any.whl").write_bytes(b"PK\\x03\\x04 cut short")
            target.parent.mkdir(parents=True)
            (target.parent / f".{{target.name}}.k9x2m4qz").write_bytes(b"half a file")
            (target.parent / f".{{target.name}}.part").write_bytes(b"old fixed temp name")
            target.write_bytes(b"truncated")
            print("holding the lock", flush=True)
            time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=_env(root.parent)
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding the lock"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(_leftovers(root)) == 3 and target.read_bytes() == b"truncated"

    with open(packaged.lock_path(item), "a+b") as handle:  # the kernel dropped the lock
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle, fcntl.LOCK_UN)
    with pytest.raises(PackagedFileError, match="is damaged"):
        ensure(item, fetch=False)  # the truncated file is never taken for the real one
    assert ensure_all([item]) == [target]
    assert target.read_bytes() == DATA[item.member]
    assert registry == ["fakepkg==1.0"]
    assert _leftovers(root) == []


def test_sha256_mismatch_stores_nothing_and_says_what_to_do(registry: list[str]) -> None:
    item = _item("fakepkg/data/a.bin", sha256="0" * 64)
    with pytest.raises(PackagedFileError) as caught:
        ensure_all([item])
    message = str(caught.value)
    for part in ("fakepkg==1.0", item.member, "0" * 64, "sha256", "rerun `exprbench fetch-models`"):
        assert part in message, message
    assert hashlib.sha256(DATA[item.member]).hexdigest() in message
    assert not local_path(item).exists()
    assert _leftovers(local_path(item).parents[3]) == []


def test_missing_file_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path))
    item = _item("fakepkg/data/a.bin")
    with pytest.raises(PackagedFileError, match="is missing") as caught:
        ensure(item, fetch=False, rerun="exprbench fetch-demo")
    assert "fakepkg==1.0" in str(caught.value) and "run `exprbench fetch-demo`" in str(caught.value)


def test_full_disk_says_where_and_what_to_do(
    registry: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextmanager
    def full_disk(path: Path) -> Iterator[Path]:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
        yield path  # pragma: no cover

    monkeypatch.setattr(packaged, "atomic_target", full_disk)
    item = _item("fakepkg/data/a.bin")
    with pytest.raises(PackagedFileError) as caught:
        ensure_all([item])
    message = str(caught.value)
    for part in (
        "fakepkg==1.0",
        item.member,
        "is full",
        "EXPRBENCH_HOME",
        "exprbench fetch-models",
    ):
        assert part in message, message
    assert _leftovers(local_path(item).parents[3]) == []


def test_missing_npm_says_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(packaged.shutil, "which", lambda name: None)
    item = PackagedFile("npm", "popper.js", "1.12.9", "package/dist/umd/popper.min.js", "0", "")
    with pytest.raises(PackagedFileError) as caught:
        ensure(item, rerun="exprbench plots-template")
    message = str(caught.value)
    for part in ("popper.js@1.12.9", item.member, "npm is not on PATH", "Node.js"):
        assert part in message, message
    assert "rerun `exprbench plots-template`" in message


def test_unreachable_registry_says_what_to_check(tmp_path, monkeypatch) -> None:
    """Real pip, pointed at a closed local port instead of the package index."""
    for key, value in {
        "EXPRBENCH_HOME": str(tmp_path),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(key, value)
    item = PackagedFile("wheel", "brisque", "0.2.0", "brisque/models/svm.txt", "0" * 64, "")
    with pytest.raises(PackagedFileError) as caught:
        ensure_all([item])
    message = str(caught.value)
    for part in ("brisque==0.2.0", item.member, "pip config list", "exprbench fetch-models"):
        assert part in message, message
    assert _leftovers(tmp_path / "packages") == []


# ---- two real processes, one small real package ---------------------------------------

_FETCH = """
import json, sys, time
from pathlib import Path
from exprbench.packaged import ensure_all
from exprbench.weights import WEIGHTS
go = Path(sys.argv[1])
Path(sys.argv[2]).touch()  # ready
while not go.exists():
    time.sleep(0.01)
paths = ensure_all([WEIGHTS["brisque-svm"], WEIGHTS["brisque-normalize"]])
print(json.dumps([str(p) for p in paths]))
"""


def test_two_processes_fetching_at_once_share_one_download(tmp_path: Path) -> None:
    """Two `fetch`es sharing one cache start at the same moment: both succeed, one waits
    for the other and reuses its verified files, and nothing is left behind."""
    from exprbench.weights import WEIGHTS

    home, go = tmp_path / "home", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FETCH, str(go), str(tmp_path / f"ready{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(home),
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "the fetch processes did not start"
        time.sleep(0.01)
    go.touch()
    results = [proc.communicate(timeout=600) for proc in procs]
    errors = [err for proc, (_, err) in zip(procs, results, strict=True) if proc.returncode]
    if errors and all(any(s in err for s in UNREACHABLE) for err in errors):
        pytest.skip(f"the package registry is unreachable: {errors[0][-500:]}")
    assert not errors, errors

    outs = [json.loads(out) for out, _ in results]
    assert outs[0] == outs[1]
    items = [WEIGHTS["brisque-svm"], WEIGHTS["brisque-normalize"]]
    for path, item in zip(outs[0], items, strict=True):
        assert packaged.sha256_file(path) == item.sha256
    # exactly one process downloaded; the other waited for it (or came after it)
    fetched = [err for _, err in results if "exprbench: fetching 2 file(s)" in err]
    assert len(fetched) == 1, [err for _, err in results]
    assert _leftovers(home / "packages") == []
