"""The order of each generator's versions, oldest to newest, for `exprbench compare`.

Version names carry no order anyone can rely on ('4o' after '4.5'? 'v10' after 'v9'?), so
the order is declared, per generator, by the first of:

1. `versions.csv` at the input root: columns generator, version, release_date (ISO 8601:
   2026-11-30 or 2026-11-30T14:00); one row per version;
2. a `release_date` column in `manifest.csv` (every row of a version gives the same date,
   or leaves it empty);
3. otherwise the modification time of each `<generator>/<version>/` folder, with a
   warning that names the folders: a copy, a `touch` or a restore changes it. Versions
   without such a folder (a manifest pointing elsewhere) are then ordered by name, with
   the same warning.

A declaration must cover all of a generator's versions: one it leaves out puts that
generator on the fallback, and the warning says which version was missing. A malformed
declaration (bad date, two dates for one version, two versions on the same date) is an
`InputConfigError` naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from exprbench.ingest import MANIFEST_NAME, VERSIONS_NAME, InputConfigError, _read_csv

Source = str  # "versions.csv" | "manifest" | "mtime" | "name" (no folder to date)


class VersionOrderError(InputConfigError):
    """versions.csv or the manifest's release_date is malformed; `file` names the file."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(message)
        self.file = file


@dataclass(frozen=True)
class VersionOrder:
    generator: str
    versions: tuple[str, ...]  # oldest -> newest
    source: Source  # "versions.csv" | "manifest" | "mtime" ("name": neither dates nor folders)
    warning: str | None  # set when the order fell back to folder mtime (says which folders)

    def newest_pair(self) -> tuple[str, str] | None:
        """(previous, newest), or None for a generator with one version."""
        return (self.versions[-2], self.versions[-1]) if len(self.versions) > 1 else None

    def describe(self) -> str:
        """One line: 'toolA: v9 < v10 (versions.csv)'."""
        return f"{self.generator}: {' < '.join(self.versions)} ({self.source})"


def _release_date(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputConfigError(
            f"{where}: release_date {text!r} is not an ISO 8601 date (2026-11-30 or "
            "2026-11-30T14:00)"
        ) from None
    return value.replace(tzinfo=None) if value.tzinfo is None else value


def _dated(
    rows: Iterable[tuple[str, dict[str, str]]], need_date: bool
) -> dict[str, dict[str, tuple[datetime, str]]]:
    """generator -> version -> (release date, where it was declared), checked: one date
    per version, no two versions of a generator on the same date."""
    dates: dict[str, dict[str, tuple[datetime, str]]] = {}
    for where, row in rows:
        generator, version = row.get("generator", ""), row.get("version", "")
        text = row.get("release_date", "")
        if not text:
            if need_date:
                raise InputConfigError(f"{where}: empty release_date")
            continue
        if not generator or not version:
            if not need_date:
                continue  # a manifest row whose labels the file's metadata fills: undated
            raise InputConfigError(f"{where}: a release_date needs a generator and a version")
        date = _release_date(text, where)
        known = dates.setdefault(generator, {})
        if version in known:
            if known[version][0] != date:
                raise InputConfigError(
                    f"{where}: {generator}/{version} has release_date {text}, but "
                    f"{known[version][1]} gave {known[version][0].isoformat()}"
                )
            if need_date:
                raise InputConfigError(
                    f"{where}: {generator}/{version} is already listed on {known[version][1]}"
                )
            continue
        known[version] = (date, where)
    for generator, known in dates.items():
        by_date: dict[datetime, str] = {}
        for version, (date, where) in known.items():
            if date in by_date:
                other = known[by_date[date]][1]
                raise InputConfigError(
                    f"{where}: {generator}/{version} has the same release_date as "
                    f"{generator}/{by_date[date]} ({other}); their order is ambiguous: "
                    "add a time of day (2026-11-30T14:00)"
                )
            by_date[date] = version
    return dates


def declared_dates(raw_dir: Path) -> tuple[dict[str, dict[str, tuple[datetime, str]]], ...]:
    """(from versions.csv, from the manifest's release_date): generator -> version ->
    (date, where). Raises InputConfigError for a malformed file."""
    found: list[dict[str, dict[str, tuple[datetime, str]]]] = []
    for name, required, need_date in (
        (VERSIONS_NAME, ("generator", "version", "release_date"), True),
        (MANIFEST_NAME, ("generator", "version"), False),
    ):
        path = Path(raw_dir) / name
        if not path.is_file():
            found.append({})
            continue
        try:
            rows = _read_csv(path, required, name)
            found.append(_dated(((f"{name}:{line}", row) for line, row in rows), need_date))
        except InputConfigError as error:
            raise VersionOrderError(name, str(error)) from None
    return tuple(found)


def _natural(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: digit runs as numbers ('v9' < 'v10')."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", version)
        if part
    )


def _fallback(raw_dir: Path, generator: str, versions: list[str], why: str) -> VersionOrder:
    folders = {v: Path(raw_dir) / generator / v for v in versions}
    if all(folder.is_dir() for folder in folders.values()):
        times = {v: folder.stat().st_mtime for v, folder in folders.items()}
        ordered = sorted(versions, key=lambda v: (times[v], _natural(v)))
        shown = ", ".join(f"{generator}/{v}/" for v in ordered)
        return VersionOrder(
            generator,
            tuple(ordered),
            "mtime",
            f"{generator}: {why}; versions ordered by folder modification time ({shown}, "
            f"oldest first), which a copy or restore changes: declare the order in "
            f"{VERSIONS_NAME} (generator,version,release_date)",
        )
    ordered = sorted(versions, key=_natural)
    absent = ", ".join(f"{generator}/{v}/" for v in ordered if not folders[v].is_dir())
    return VersionOrder(
        generator,
        tuple(ordered),
        "name",
        f"{generator}: {why}, and no version folder to date ({absent} absent); versions "
        f"ordered by name ({' < '.join(ordered)}): declare the order in {VERSIONS_NAME} "
        "(generator,version,release_date)",
    )


def version_orders(raw_dir: Path, found: Iterable[tuple[str, str]]) -> dict[str, VersionOrder]:
    """Order of each generator's versions: a versions.csv in raw_dir (generator,version,
    release_date) or the manifest's release_date column; else the version folders'
    modification time, with a warning. Bad files -> InputConfigError naming file and row.

    `found`: the (generator, version) pairs to order (e.g. those in the images table).
    """
    by_generator: dict[str, set[str]] = {}
    for generator, version in found:
        by_generator.setdefault(generator, set()).add(version)
    from_csv, from_manifest = declared_dates(raw_dir)
    orders: dict[str, VersionOrder] = {}
    for generator in sorted(by_generator):
        versions = sorted(by_generator[generator], key=_natural)
        order: VersionOrder | None = None
        gaps: list[str] = []
        for source, dates in (("versions.csv", from_csv), ("manifest", from_manifest)):
            known = dates.get(generator)
            if not known:
                continue
            missing = [v for v in versions if v not in known]
            if missing:
                gaps.append(f"{source} has no release_date for {', '.join(missing)}")
                continue
            ordered = sorted(versions, key=lambda v: known[v][0])
            order = VersionOrder(generator, tuple(ordered), source, None)
            break
        if order is None:
            why = "; ".join(gaps) or "no release dates declared"
            order = _fallback(raw_dir, generator, versions, why)
            if len(versions) == 1:  # nothing to order: no warning
                order = VersionOrder(generator, order.versions, order.source, None)
        orders[generator] = order
    return orders
