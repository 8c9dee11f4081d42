"""Discover input images, read their labels and subjects, and decide what gets scored.

Every discovered file ends in exactly one of two lists: images (to score) or quarantine
(with a reason). Nothing is silently dropped.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from exprbench.imageio import ImageMeta, ImageRejected
from exprbench.labels import EXPRESSIONS, canonical_expression, canonical_gender

MANIFEST_NAME = "manifest.csv"
SUBJECTS_NAME = "subjects.csv"
CONFIG_NAMES = frozenset({MANIFEST_NAME, SUBJECTS_NAME})
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


def _iter_files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(
            part.startswith(".") for part in path.relative_to(root).parts
        ):
            yield path


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise InputConfigError(
                    f"{path}: missing column(s) {missing}; found {header or 'no header'}"
                )
            return [
                {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
                for row in reader
            ]
    except UnicodeDecodeError as error:
        raise InputConfigError(f"{path}: not UTF-8 text ({error})") from None


def read_subjects(root: Path) -> dict[tuple[str, str, str], SubjectInfo]:
    """subjects.csv files: the root one applies everywhere, a generator/version one overrides.

    Returns {(generator, version, subject): info}; generator/version '*' mean 'any'.
    """
    table: dict[tuple[str, str, str], SubjectInfo] = {}
    for path in sorted(root.rglob(SUBJECTS_NAME)):
        rel = path.parent.relative_to(root).parts
        if len(rel) == 0:
            scope = ("*", "*")
        elif len(rel) == 2:
            scope = (rel[0], rel[1])
        else:
            raise InputConfigError(
                f"{path}: subjects.csv belongs at the input root or in a "
                "<generator>/<version>/ folder"
            )
        for line, row in enumerate(_read_csv(path, ("subject", "gender")), start=2):
            if not row.get("subject"):
                raise InputConfigError(f"{path}:{line}: empty subject")
            gender_text = row.get("gender") or None
            gender = canonical_gender(gender_text)
            if gender_text and gender is None:
                raise InputConfigError(
                    f"{path}:{line}: gender {gender_text!r} not understood; use female or male "
                    "(or leave it empty)"
                )
            age = row.get("age") or row.get("age_group") or None
            table[(*scope, row["subject"])] = SubjectInfo(gender, age, row.get("prompt") or None)
    return table


def subject_info(
    subjects: dict[tuple[str, str, str], SubjectInfo], generator: str, version: str, subject: str
) -> SubjectInfo | None:
    return subjects.get((generator, version, subject)) or subjects.get(("*", "*", subject))


def _from_manifest(root: Path, extensions: frozenset[str]) -> Discovery:
    manifest = root / MANIFEST_NAME
    rows = _read_csv(manifest, ("path", "generator", "version", "subject", "expression"))
    found = Discovery()
    listed: set[str] = set()
    for line, row in enumerate(rows, start=2):
        rel = row["path"].replace("\\", "/")
        listed.add(rel)
        found.n_discovered += 1
        where = f"{MANIFEST_NAME}:{line}"
        if not all(row[k] for k in ("path", "generator", "version", "subject", "expression")):
            found.rejected.append(Rejected(rel or where, f"{where}: empty required field"))
            continue
        abs_path = (root / rel).resolve()
        if not abs_path.is_relative_to(root.resolve()):
            found.rejected.append(Rejected(rel, f"{where}: path points outside the input folder"))
            continue
        if not abs_path.is_file():
            found.rejected.append(Rejected(rel, f"{where}: listed file does not exist"))
            continue
        label, expression, replicate = _parse_label(row["expression"])
        if row.get("replicate", "").isdigit():
            replicate = int(row["replicate"])
        if expression is None:
            found.rejected.append(Rejected(rel, f"{where}: {_unknown_label_reason(label)}"))
            continue
        found.candidates.append(
            Candidate(
                abs_path,
                rel,
                row["generator"],
                row["version"],
                row["subject"],
                row["expression"],
                expression,
                replicate,
            )
        )
    for path in _iter_files(root):
        rel = path.relative_to(root).as_posix()
        if rel in listed or path.name in CONFIG_NAMES:
            continue
        if path.suffix.lower().lstrip(".") in extensions:
            found.n_discovered += 1
            found.rejected.append(Rejected(rel, f"not listed in {MANIFEST_NAME}"))
    return found


def discover(root: Path, extensions: Iterable[str]) -> Discovery:
    """Find input files under `root` by manifest.csv if present, else by folder layout."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist")
    exts = frozenset(e.lower().lstrip(".") for e in extensions)
    if (root / MANIFEST_NAME).is_file():
        return _from_manifest(root, exts)
    found = Discovery()
    for path in _iter_files(root):
        if path.name in CONFIG_NAMES:
            continue
        rel = path.relative_to(root).as_posix()
        found.n_discovered += 1
        parts = path.relative_to(root).parts
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
            Candidate(path, rel, parts[0], parts[1], parts[2], label, expression, replicate)
        )
    return found


def image_rows(
    discovery: Discovery,
    subjects: dict[tuple[str, str, str], SubjectInfo],
    inspect: Callable[[Candidate], tuple[str, ImageMeta | ImageRejected]],
) -> tuple[list[dict], list[Rejected]]:
    """Turn candidates into IMAGES rows; undecodable files and duplicates go to quarantine.

    `inspect` returns (sha256, decoded-or-rejection) for a candidate; it is injected so
    callers can cache decoding by content.
    """
    rows: list[dict] = []
    rejected = list(discovery.rejected)
    first_by_key: dict[tuple, str] = {}
    first_by_sha: dict[str, tuple[str, tuple]] = {}
    # Lowest replicate first, so 'happy.jpg' is the original and 'happy-2.jpg' its copy.
    order = lambda c: (c.generator, c.version, c.subject, c.expression, c.replicate, c.path)  # noqa: E731
    for cand in sorted(discovery.candidates, key=order):
        sha, result = inspect(cand)
        if isinstance(result, ImageRejected):
            rejected.append(Rejected(cand.path, str(result), sha))
            continue
        cell = (cand.generator, cand.version, cand.subject, cand.expression)
        key = (*cell, cand.replicate)
        flags: list[str] = []
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
            }
        )
    return rows, rejected
