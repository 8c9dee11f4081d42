"""Discover input images, read their labels and subjects, and decide what gets scored.

Every discovered file ends in exactly one of two lists: images (to score) or quarantine
(with a reason). Nothing is silently dropped.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from exprbench.genmeta import GenerationMeta, reconcile
from exprbench.imageio import ImageMeta, ImageRejected
from exprbench.labels import EXPRESSIONS, canonical_expression, canonical_gender
from exprbench.prompt_age import AgeFormError, parse_requested_age

MANIFEST_NAME = "manifest.csv"
SUBJECTS_NAME = "subjects.csv"
SHEETS_NAME = "sheets.csv"
VERSIONS_NAME = "versions.csv"  # at the root: the order of versions (exprbench.versions)
CONFIG_NAMES = frozenset({MANIFEST_NAME, SUBJECTS_NAME, SHEETS_NAME})
SKIP = "skip"  # a sheet cell that is not an input (a blank, a tile of another prompt)
MAX_SHEET_SIDE = 16  # rows or columns of a sheet
_STEM = re.compile(r"^(?P<label>.+?)(?:-(?P<n>\d+))?$")
_LAYOUT_HINT = "<generator>/<version>/<subject>/<expression>[-<n>].<ext>"


class InputConfigError(ValueError):
    """manifest.csv or subjects.csv is malformed; the message names file and row."""


@dataclass(frozen=True)
class Candidate:
    """A file that looks like an input image, with its labels from folder or manifest."""

    abs_path: Path
    path: str  # relative to the input root, POSIX
    generator: str
    version: str
    subject: str
    label: str
    expression: str
    replicate: int
    sheet: SheetCell | None = None  # set for a cell cut from an image sheet

    @property
    def source(self) -> str:
        """Where later stages read the image: 'input:<path>' or 'interim:cells/<file>'."""
        if self.sheet is not None:
            return f"interim:cells/{self.abs_path.name}"
        return f"input:{self.path}"


@dataclass(frozen=True)
class SheetCell:
    """Provenance of a cell cut from an image sheet (see exprbench.sheets)."""

    sheet_abs_path: Path
    sheet_path: str
    sheet_sha256: str
    row: int
    column: int
    method: str  # how the cell was found: gutter | even (+frame)


@dataclass(frozen=True)
class SheetDecl:
    """One declared image sheet: a row of sheets.csv, or a manifest row with rows/columns."""

    abs_path: Path
    path: str  # relative to the input root, POSIX
    where: str  # '<file>:<line>' of the declaration, for messages
    rows: int
    columns: int
    labels: tuple[str, ...]  # as written, reading order; 'skip' for unused cells
    expressions: tuple[str | None, ...]  # canonical, None for 'skip'
    generator: str  # '' when neither the declaration nor the folder gives it
    version: str
    subject: str


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str
    sha256: str | None = None


@dataclass(frozen=True)
class SubjectInfo:
    gender: str | None
    age: str | None
    prompt: str | None


@dataclass
class Discovery:
    candidates: list[Candidate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    n_discovered: int = 0
    sheets: list[SheetDecl] = field(default_factory=list)  # cut into candidates by ingest


def _parse_label(stem: str) -> tuple[str, str | None, int]:
    """'happy-2' -> ('happy', 'happy', 2); unknown labels give None as the canonical name."""
    match = _STEM.match(stem)
    label, number = (match["label"], match["n"]) if match else (stem, None)
    expression = canonical_expression(label)
    if expression is None and number is not None:
        # The whole stem may itself be a label containing '-<digits>' (rare); try it.
        whole = canonical_expression(stem)
        if whole is not None:
            return stem, whole, 1
    return label, expression, int(number) if number is not None else 1


def _unknown_label_reason(label: str) -> str:
    return (
        f"unknown expression label {label!r}; expected one of {', '.join(EXPRESSIONS)} "
        "or a common synonym (joy, anger, surprised, fearful, disgusted, ...)"
    )


def display_path(rel: str) -> str:
    """`rel` as valid Unicode: bytes that are not UTF-8 (surrogate-escaped by the OS layer)
    are shown as \\xNN, so the path can be stored in Parquet and printed in the report."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _is_utf8(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Entry:
    """One path met while walking the input folder: a file to consider, or a problem."""

    abs_path: Path
    rel: str  # relative to the input root, POSIX, as the OS gave it
    problem: str | None = None  # set: the path is quarantined with this reason
    is_dir: bool = False  # a folder recorded (hidden, looping, outside) instead of entered


def _link_problem(path: Path, real_root: Path) -> str | None:
    """Why a symlink cannot be followed, or None when it resolves inside the input root."""
    target = os.readlink(path)
    try:
        resolved = path.resolve(strict=True)
    except RuntimeError:
        return f"symlink loop ({path.name} -> {target})"
    except OSError as error:
        if error.errno == 40:  # ELOOP
            return f"symlink loop ({path.name} -> {target})"
        return f"dangling symlink (-> {target}, {os.strerror(error.errno or 0)})"
    if not resolved.is_relative_to(real_root):
        return f"symlink points outside the input folder (-> {target})"
    return None


def walk(root: Path) -> Iterator[Entry]:
    """Every path under `root`, sorted, with one rule for links and hidden names:

    - a name starting with '.' is quarantined as hidden (a hidden folder once, not entered);
    - a symlink is followed when it resolves inside the input root, else quarantined
      (dangling, loop, or outside); a folder reached twice (a link loop) is not re-entered;
    - names that are not UTF-8, and anything but regular files and folders, are quarantined.
    """
    real_root = root.resolve()
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path, rel_parts: tuple[str, ...]) -> Iterator[Entry]:
        try:
            info = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            rel = "/".join(rel_parts) or "."
            reason = f"folder cannot be read: {os.strerror(error.errno or 0)}"
            yield Entry(folder, rel, reason, True)
            return
        seen.add((info.st_dev, info.st_ino))
        for item in entries:
            path = Path(item.path)
            rel = "/".join((*rel_parts, item.name))
            if item.name.startswith("."):
                is_dir = item.is_dir(follow_symlinks=False)
                kind = "folder (not searched)" if is_dir else "file"
                yield Entry(path, rel, f"hidden {kind}: name starts with '.'", is_dir)
                continue
            if item.is_symlink():
                problem = _link_problem(path, real_root)
                if problem is not None:
                    yield Entry(path, rel, problem)
                    continue
            try:
                mode = path.stat().st_mode
            except OSError as error:
                yield Entry(path, rel, f"cannot stat: {os.strerror(error.errno or 0)}")
                continue
            if stat.S_ISDIR(mode):
                target = path.stat()
                if (target.st_dev, target.st_ino) in seen:
                    yield Entry(
                        path, rel, "symlink to a folder already searched (loop); not entered", True
                    )
                    continue
                yield from visit(path, (*rel_parts, item.name))
                seen.discard((target.st_dev, target.st_ino))
            elif stat.S_ISREG(mode):
                yield Entry(path, rel)
            else:
                yield Entry(path, rel, "not a regular file (device, pipe or socket)")

    for entry in visit(root, ()):
        if entry.problem is None and not _is_utf8(entry.rel):
            entry = Entry(
                entry.abs_path,
                entry.rel,
                "file or folder name is not valid UTF-8 (bytes shown as \\xNN); rename it",
            )
        yield entry


def _rejected(entry: Entry) -> Rejected:
    return Rejected(display_path(entry.rel), entry.problem or "")


def _read_csv(path: Path, required: tuple[str, ...], name: str) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV with lower-cased headers, each with the line it starts on.

    `name` is the file as shown in messages. Raises InputConfigError naming file and line
    for missing columns, non-UTF-8 text and broken quoting (an unterminated quote would
    otherwise swallow every later row).
    """
    line = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise InputConfigError(
                    f"{name}:1: missing column(s) {missing}; found {header or 'no header'}"
                )
            rows = []
            line = reader.line_num + 1
            for values in reader:
                if any(values):
                    row = {k: v.strip() for k, v in zip(header, values, strict=False)}
                    rows.append((line, {**dict.fromkeys(header, ""), **row}))
                line = reader.line_num + 1
            return rows
    except UnicodeDecodeError as error:
        raise InputConfigError(f"{name}: not UTF-8 text ({error})") from None
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise InputConfigError(
                f"{name}:{line}: unterminated quote; the field opened on line {line} "
                "runs to the end of the file"
            ) from None
        raise InputConfigError(f"{name}:{line}: malformed CSV ({error})") from None


def _scope(rel_parts: tuple[str, ...]) -> tuple[str, str]:
    padded = (*rel_parts[:2], "*", "*")
    return padded[0], padded[1]


@dataclass
class Subjects:
    """subjects.csv contents, plus the files that could not be used (quarantined)."""

    table: dict[tuple[str, str, str], SubjectInfo] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    # (generator, version, subject) folders, '*' for any, whose subjects.csv was quarantined
    unusable: dict[tuple[str, str, str], str] = field(default_factory=dict)


def load_subjects(root: Path) -> Subjects:
    """Read every subjects.csv (see `read_subjects`); a bad file is quarantined, not fatal."""
    found = Subjects()
    for entry in walk(Path(root)):
        if entry.problem is not None or Path(entry.rel).name != SUBJECTS_NAME:
            continue
        rel_parts = tuple(entry.rel.split("/")[:-1])
        try:
            found.table.update(_subjects_file(entry.abs_path, rel_parts, entry.rel))
        except InputConfigError as error:
            rel = display_path(entry.rel)
            found.rejected.append(Rejected(rel, f"{error}; its subjects were not used"))
            folder = (*rel_parts[:3], "*", "*", "*")
            found.unusable[(folder[0], folder[1], folder[2])] = rel
    return found


def _subjects_file(
    path: Path, rel_parts: tuple[str, ...], rel: str
) -> dict[tuple[str, str, str], SubjectInfo]:
    if len(rel_parts) not in (0, 2):
        raise InputConfigError(
            f"{rel}: subjects.csv belongs at the input root or in a <generator>/<version>/ folder"
        )
    scope = _scope(rel_parts)
    table: dict[tuple[str, str, str], SubjectInfo] = {}
    for line, row in _read_csv(path, ("subject", "gender"), rel):
        if not row.get("subject"):
            raise InputConfigError(f"{rel}:{line}: empty subject")
        gender_text = row.get("gender") or None
        # female/male synonyms are folded; any other value is the subject's gender as written
        gender = canonical_gender(gender_text) or (gender_text.lower() if gender_text else None)
        age = row.get("age") or row.get("age_group") or None
        table[(*scope, row["subject"])] = SubjectInfo(gender, age, row.get("prompt") or None)
    return table


def read_subjects(root: Path) -> dict[tuple[str, str, str], SubjectInfo]:
    """subjects.csv files: the root one applies everywhere, a generator/version one overrides.

    Returns {(generator, version, subject): info}; generator/version '*' mean 'any'. Raises
    InputConfigError for the first unusable file; ingest uses `load_subjects`, which
    quarantines such a file and goes on.
    """
    found = load_subjects(root)
    if found.rejected:
        raise InputConfigError(found.rejected[0].reason)
    return found.table


def subject_info(
    subjects: dict[tuple[str, str, str], SubjectInfo], generator: str, version: str, subject: str
) -> SubjectInfo | None:
    return subjects.get((generator, version, subject)) or subjects.get(("*", "*", subject))


def _manifest_path(text: str, root: Path, real_root: Path) -> str | None:
    """A manifest path normalised to the form discovery uses (relative, POSIX, no '.' or
    '//'); absolute paths inside the input folder become relative. None: outside."""
    text = text.replace("\\", "/")
    if posixpath.isabs(text):
        absolute = Path(text)
        for base in (root.absolute(), real_root):
            if absolute.is_relative_to(base):
                text = absolute.relative_to(base).as_posix()
                break
        else:
            return None
    rel = posixpath.normpath(text)
    if rel == "." or rel == ".." or rel.startswith("../"):
        return None
    return rel


def _from_manifest(root: Path, extensions: frozenset[str]) -> Discovery:
    found = Discovery()
    real_root = root.resolve()
    entries = list(walk(root))
    try:
        rows = _read_csv(
            root / MANIFEST_NAME,
            ("path", "generator", "version", "subject", "expression"),
            MANIFEST_NAME,
        )
    except InputConfigError as error:
        # The manifest itself is unusable: it is quarantined, and every image file with it
        # (below, as not listed), so the run still completes and says why nothing scored.
        found.n_discovered += 1
        found.rejected.append(Rejected(MANIFEST_NAME, f"{error}; no row of it was used"))
        rows = []
    by_rel = {entry.rel: entry for entry in entries}
    listed: dict[str, int] = {}
    declared = _read_sheets_csv(found, root, entries)
    sheet_rows: list[tuple[str, dict[str, str]]] = []
    for line, row in rows:
        where = f"{MANIFEST_NAME}:{line}"
        if row.get("rows") or row.get("columns"):
            sheet_rows.append((where, row))  # an image sheet: cut into cells by ingest
            continue
        found.n_discovered += 1
        # generator, version and expression may be left empty for the file's metadata to fill
        if not all(row[k] for k in ("path", "subject")):
            found.rejected.append(Rejected(where, f"{where}: empty required field"))
            continue
        rel = _manifest_path(row["path"], root, real_root)
        if rel is None:
            found.rejected.append(Rejected(where, f"{where}: path points outside the input folder"))
            continue
        if rel in declared:
            found.rejected.append(
                Rejected(
                    where,
                    f"{where}: {display_path(rel)} is declared as an image sheet on "
                    f"{declared[rel]}; its cells are scored, not the whole sheet",
                )
            )
            continue
        if rel in listed:
            found.rejected.append(
                Rejected(
                    where,
                    f"{where}: {display_path(rel)} is already listed on "
                    f"{MANIFEST_NAME}:{listed[rel]}; each file is scored once, as first listed",
                )
            )
            continue
        listed[rel] = line
        entry = by_rel.get(rel)
        if entry is None:
            entry = _listed_entry(root, rel, real_root)
        if entry.problem is not None:
            found.rejected.append(Rejected(display_path(rel), f"{where}: {entry.problem}"))
            continue
        label, expression, replicate = (
            _parse_label(row["expression"]) if row["expression"] else ("", "", 1)
        )
        if row.get("replicate", "").isdigit():
            replicate = int(row["replicate"])
        if expression is None:
            found.rejected.append(
                Rejected(display_path(rel), f"{where}: {_unknown_label_reason(label)}")
            )
            continue
        found.candidates.append(
            Candidate(
                entry.abs_path,
                rel,
                row["generator"],
                row["version"],
                row["subject"],
                row["expression"],
                expression,
                replicate,
            )
        )
    declared = _sheet_rows(found, root, sheet_rows, entries, declared)
    for entry in entries:
        if entry.rel in listed or entry.rel in declared or Path(entry.rel).name in CONFIG_NAMES:
            continue
        if entry.is_dir:
            found.n_discovered += 1
            found.rejected.append(_rejected(entry))
        elif Path(entry.rel).suffix.lower().lstrip(".") in extensions:
            found.n_discovered += 1
            reason = f"not listed in {MANIFEST_NAME}"
            if entry.problem is not None:
                reason = f"{entry.problem}; {reason}"
            found.rejected.append(Rejected(display_path(entry.rel), reason))
    return found


def _listed_entry(root: Path, rel: str, real_root: Path) -> Entry:
    """A manifest path the walk did not yield as a file (inside a hidden or looping folder,
    missing, ...), judged by the same rules as the walk."""
    path = root / rel
    for depth in range(1, len(rel.split("/")) + 1):
        part = root.joinpath(*rel.split("/")[:depth])
        if part.is_symlink():
            problem = _link_problem(part, real_root)
            if problem is not None:
                return Entry(path, rel, problem)
    if not path.exists():
        return Entry(path, rel, "listed file does not exist")
    if not path.is_file():
        return Entry(path, rel, "listed path is not a regular file")
    if not _is_utf8(rel):
        return Entry(path, rel, "file or folder name is not valid UTF-8; rename it")
    return Entry(path, rel)  # e.g. a hidden file listed on purpose: the manifest is explicit


_LABEL_SPLIT = re.compile(r"[;|,\s]+")


def _declaration(
    row: dict[str, str], where: str, root: Path, real_root: Path, by_rel: dict[str, Entry]
) -> tuple[str | None, SheetDecl | Rejected]:
    """A sheet declaration row checked (file, grid, labels, subject), or why it is unusable.

    Returns the declared file's relative path (None when it has none) with the result.
    """
    rel = _manifest_path(row.get("file") or row.get("path") or "", root, real_root)
    if not (row.get("file") or row.get("path")):
        return None, Rejected(where, f"{where}: empty file")
    if rel is None:
        return None, Rejected(where, f"{where}: path points outside the input folder")
    shown = display_path(rel)

    def bad(reason: str) -> tuple[str, Rejected]:
        return rel, Rejected(shown, f"{where}: sheet quarantined: {reason}")

    entry = by_rel.get(rel) or _listed_entry(root, rel, real_root)
    if entry.problem is not None:
        return bad(entry.problem.replace("listed file", "sheet file"))
    grid = (row.get("rows", ""), row.get("columns", ""))
    if not all(v.isdigit() and 1 <= int(v) <= MAX_SHEET_SIDE for v in grid):
        return bad(f"rows and columns must be whole numbers 1-{MAX_SHEET_SIDE}; got {grid}")
    rows, columns = int(grid[0]), int(grid[1])
    text = row.get("labels") or row.get("expression") or ""
    labels = tuple(label for label in _LABEL_SPLIT.split(text) if label)
    if len(labels) != rows * columns:
        return bad(
            f"{len(labels)} labels for a {rows} x {columns} sheet ({rows * columns} cells); "
            f"give one label per cell in reading order, '{SKIP}' for a cell to leave out"
        )
    expressions = tuple(
        None if label.lower() == SKIP else _parse_label(label)[1] for label in labels
    )
    unknown = [
        f"{label!r} (cell {i // columns + 1},{i % columns + 1})"
        for i, (label, expression) in enumerate(zip(labels, expressions, strict=True))
        if expression is None and label.lower() != SKIP
    ]
    if unknown:
        return bad(
            f"unknown label(s) {', '.join(unknown)}; expected one of {', '.join(EXPRESSIONS)}, "
            f"a common synonym, or '{SKIP}'"
        )
    if all(expression is None for expression in expressions):
        return bad(f"every cell is '{SKIP}': nothing to score")
    parts = rel.split("/")
    folder = parts[:3] if len(parts) == 4 else ["", "", ""]
    generator, version, subject = (
        row.get(key) or default
        for key, default in zip(("generator", "version", "subject"), folder, strict=True)
    )
    if not subject:
        return bad(f"no subject: fill the subject column or place the sheet as {_LAYOUT_HINT}")
    decl = SheetDecl(
        entry.abs_path, rel, where, rows, columns, labels, expressions, generator, version, subject
    )
    return rel, decl


def _sheet_rows(
    found: Discovery,
    root: Path,
    rows: Iterable[tuple[str, dict[str, str]]],
    entries: list[Entry],
    declared: dict[str, str],
) -> dict[str, str]:
    """Add each declared sheet (or its rejection) to `found`; return `declared` (each
    declared file and where it was first declared) with these rows' files added."""
    real_root = root.resolve()
    by_rel = {entry.rel: entry for entry in entries}
    for where, row in rows:
        found.n_discovered += 1
        rel, result = _declaration(row, where, root, real_root, by_rel)
        if rel is not None and rel in declared:
            result = Rejected(
                where,
                f"{where}: {display_path(rel)} is already declared on {declared[rel]}; "
                "each sheet is cut once, as first declared",
            )
        elif rel is not None:
            declared[rel] = where
        if isinstance(result, SheetDecl):
            found.sheets.append(result)
        else:
            found.rejected.append(result)
    return declared


def _read_sheets_csv(found: Discovery, root: Path, entries: list[Entry]) -> dict[str, str]:
    """Declarations from sheets.csv at the input root; a misplaced or unreadable sheets.csv
    is quarantined (its files are then judged like any other file)."""
    for entry in entries:
        if (
            entry.problem is None
            and Path(entry.rel).name == SHEETS_NAME
            and entry.rel != SHEETS_NAME
        ):
            found.n_discovered += 1
            found.rejected.append(
                Rejected(
                    display_path(entry.rel), f"{SHEETS_NAME} belongs at the input root; not read"
                )
            )
    if not (root / SHEETS_NAME).is_file():
        return {}
    try:
        rows = _read_csv(root / SHEETS_NAME, ("file", "rows", "columns", "labels"), SHEETS_NAME)
    except InputConfigError as error:
        found.n_discovered += 1
        found.rejected.append(Rejected(SHEETS_NAME, f"{error}; no sheet of it was cut"))
        return {}
    numbered = ((f"{SHEETS_NAME}:{line}", row) for line, row in rows)
    return _sheet_rows(found, root, numbered, entries, {})


def discover(root: Path, extensions: Iterable[str]) -> Discovery:
    """Find input files under `root` by manifest.csv if present, else by folder layout.

    Every path the walk meets counts as discovered and ends as a candidate or rejected.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist")
    exts = frozenset(e.lower().lstrip(".") for e in extensions)
    if (root / MANIFEST_NAME).is_file():
        return _from_manifest(root, exts)
    found = Discovery()
    entries = list(walk(root))
    declared = _read_sheets_csv(found, root, entries)
    for entry in entries:
        path = Path(entry.rel)
        if entry.rel in declared or (entry.problem is None and path.name in CONFIG_NAMES):
            continue
        if entry.problem is None and entry.rel == VERSIONS_NAME:
            continue  # read by exprbench.versions (the ingest task records the order)
        rel = entry.rel
        found.n_discovered += 1
        if entry.problem is not None:
            found.rejected.append(_rejected(entry))
            continue
        parts = path.parts
        if path.suffix.lower().lstrip(".") not in exts:
            found.rejected.append(
                Rejected(
                    rel,
                    f"unsupported extension {path.suffix or '(none)'!r}; expected "
                    f"{', '.join(sorted(exts))}",
                )
            )
            continue
        if len(parts) != 4:
            found.rejected.append(Rejected(rel, f"path does not follow {_LAYOUT_HINT}"))
            continue
        label, expression, replicate = _parse_label(path.stem)
        if expression is None:
            found.rejected.append(Rejected(rel, _unknown_label_reason(label)))
            continue
        found.candidates.append(
            Candidate(
                entry.abs_path, rel, parts[0], parts[1], parts[2], label, expression, replicate
            )
        )
    return found


def add_sheet_cells(
    found: Discovery,
    decl: SheetDecl,
    sheet_sha256: str,
    cells: Iterable[tuple[int, int, str, Path]],
) -> int:
    """Replace a declared sheet (one discovered file) by its cells: (row, column, cut method,
    the cut cell's file) for each non-skip cell. Cells of one expression are numbered as
    replicates after those already found for the same generator/version/subject.
    Returns the number of cells added."""
    used: dict[tuple[str, str, str, str], int] = {}
    for cand in found.candidates:
        key = (cand.generator, cand.version, cand.subject, cand.expression)
        used[key] = max(used.get(key, 0), cand.replicate)
    added = 0
    for row, column, method, path in cells:
        index = (row - 1) * decl.columns + column - 1
        expression = decl.expressions[index]
        if expression is None:
            continue
        key = (decl.generator, decl.version, decl.subject, expression)
        used[key] = used.get(key, 0) + 1
        sheet = SheetCell(decl.abs_path, decl.path, sheet_sha256, row, column, method)
        found.candidates.append(
            Candidate(
                path,
                f"{decl.path}#r{row}c{column}",
                decl.generator,
                decl.version,
                decl.subject,
                decl.labels[index],
                expression,
                used[key],
                sheet,
            )
        )
        added += 1
    found.n_discovered += added - 1
    return added


def _missing_labels(cand: Candidate) -> str | None:
    missing = [k for k in ("generator", "version", "expression") if not getattr(cand, k)]
    if not missing:
        return None
    return (
        f"no {'/'.join(missing)}: the manifest or sheet declaration leaves "
        f"{'it' if len(missing) == 1 else 'them'} empty and the file's generation metadata "
        "does not give it"
    )


def image_rows(
    discovery: Discovery,
    subjects: dict[tuple[str, str, str], SubjectInfo],
    inspect: Callable[[Candidate], tuple[str | None, ImageMeta | ImageRejected]],
    unusable_subjects: dict[tuple[str, str, str], str] | None = None,
    describe: Callable[[Candidate, str], GenerationMeta] | None = None,
) -> tuple[list[dict], list[Rejected]]:
    """Turn candidates into IMAGES rows; undecodable files and duplicates go to quarantine.

    `inspect` returns (sha256 or None when unread, decoded-or-rejection) for a candidate; it
    is injected so callers can cache decoding by content. `unusable_subjects` maps the
    (generator, version, subject) folder of each quarantined subjects.csv to its path, to flag the
    images whose subject information it would have given. `describe` gives a readable
    image's generation metadata (exprbench.genmeta), which fills labels left empty and is
    compared with the given ones (conflicts are flagged, not resolved).
    """
    unusable = unusable_subjects or {}
    rows: list[dict] = []
    rejected = list(discovery.rejected)
    first_by_key: dict[tuple, str] = {}
    first_by_sha: dict[str, tuple[str, tuple]] = {}
    ready: list[tuple[Candidate, str, ImageMeta, GenerationMeta | None, list[str], list[str]]] = []
    for cand in sorted(discovery.candidates, key=lambda c: c.path):
        sha, result = inspect(cand)
        if isinstance(result, ImageRejected) or sha is None:
            rejected.append(Rejected(cand.path, str(result), sha))
            continue
        meta = describe(cand, sha) if describe is not None else None
        (g, v, e), filled, conflicts = reconcile(
            cand.generator, cand.version, cand.expression, meta
        )
        cand = replace(cand, generator=g, version=v, expression=e)
        if (missing := _missing_labels(cand)) is not None:
            rejected.append(Rejected(cand.path, missing, sha))
            continue
        ready.append((cand, sha, result, meta, filled, conflicts))
    # Lowest replicate first, so 'happy.jpg' is the original and 'happy-2.jpg' its copy.
    order = lambda c: (c.generator, c.version, c.subject, c.expression, c.replicate, c.path)  # noqa: E731
    for cand, sha, result, meta, filled, conflicts in sorted(ready, key=lambda r: order(r[0])):
        cell = (cand.generator, cand.version, cand.subject, cand.expression)
        key = (*cell, cand.replicate)
        flags: list[str] = [*filled, *(f"metadata conflict: {c}" for c in conflicts)]
        if sha in first_by_sha:
            other_path, other_key = first_by_sha[sha]
            if other_key[:4] == cell:
                rejected.append(Rejected(cand.path, f"duplicate of {other_path} (same bytes)", sha))
                continue
            flags.append(f"same bytes as {other_path}")
        if key in first_by_key:
            rejected.append(
                Rejected(
                    cand.path,
                    f"same generator/version/subject/expression/replicate as "
                    f"{first_by_key[key]}; number replicates as <expression>-2, -3, ...",
                    sha,
                )
            )
            continue
        first_by_key[key] = cand.path
        first_by_sha.setdefault(sha, (cand.path, key))
        info = subject_info(subjects, cand.generator, cand.version, cand.subject)
        if info is None and subjects:
            flags.append("subject not in subjects.csv")
        g, v, s = cand.generator, cand.version, cand.subject
        for scope in ((g, v, s), (g, v, "*"), (g, "*", "*"), ("*", "*", "*")):
            if scope in unusable:
                flags.append(f"{unusable[scope]} quarantined: subject info from it not used")
        if result.frames > 1:
            flags.append(f"animated {result.format}: scored frame 1 of {result.frames}")
        if info is not None and info.age is not None:
            try:
                parse_requested_age(info.age)
            except AgeFormError as error:
                flags.append(f"subjects.csv: {error}; age against the prompt not measured")
        rows.append(
            {
                "generator": cand.generator,
                "version": cand.version,
                "subject": cand.subject,
                "expression": cand.expression,
                "replicate": cand.replicate,
                "path": cand.path,
                "sha256": sha,
                "label": cand.label,
                "format": result.format,
                "mode": result.mode,
                "width": result.width,
                "height": result.height,
                "exif_orientation": result.exif_orientation,
                "subject_gender": info.gender if info else None,
                "subject_age": info.age if info else None,
                "prompt": info.prompt if info else None,
                "flags": "; ".join(flags) or None,
                **_provenance_columns(cand, meta, conflicts),
            }
        )
    return rows, rejected


def _provenance_columns(
    cand: Candidate, meta: GenerationMeta | None, conflicts: list[str]
) -> dict[str, object]:
    """The images table's source, sheet and generation-metadata columns for one image."""
    sheet = cand.sheet
    meta = meta or GenerationMeta()
    details = {**meta.details, **({"notes": "; ".join(meta.notes)} if meta.notes else {})}
    return {
        "source": cand.source,
        "sheet_path": sheet.sheet_path if sheet else None,
        "sheet_sha256": sheet.sheet_sha256 if sheet else None,
        "sheet_row": sheet.row if sheet else None,
        "sheet_column": sheet.column if sheet else None,
        "cut_method": sheet.method if sheet else None,
        "meta_generator": meta.generator,
        "meta_version": meta.version,
        "meta_model": meta.model,
        "meta_prompt": meta.prompt,
        "meta_seed": meta.seed,
        "meta_source": ", ".join(meta.sources) or None,
        "meta_details": json.dumps(details, ensure_ascii=False, sort_keys=True)
        if details
        else None,
        "label_conflict": "; ".join(conflicts) or None,
    }


# the images columns provenance_note reads
PROVENANCE_COLUMNS = (
    "sheet_path",
    "sheet_row",
    "sheet_column",
    "sheet_sha256",
    "cut_method",
    "meta_source",
    "meta_generator",
    "meta_model",
    "label_conflict",
)


def provenance_note(row: dict) -> str | None:
    """One line for the report: sheet cell provenance, metadata source, label conflicts."""
    parts = []
    if row.get("sheet_path"):
        parts.append(
            f"cell r{row['sheet_row']}c{row['sheet_column']} of sheet {row['sheet_path']} "
            f"(sha256 {str(row['sheet_sha256'])[:12]}, cut by {row['cut_method']})"
        )
    if row.get("meta_source"):
        made = " ".join(str(row[k]) for k in ("meta_generator", "meta_model") if row.get(k))
        parts.append(f"metadata: {made or 'present'} ({row['meta_source']})")
    if row.get("label_conflict"):
        parts.append(f"LABEL CONFLICT: {row['label_conflict']}")
    return "; ".join(parts) or None
