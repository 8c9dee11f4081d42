"""The demo set: layout, subjects.csv, pinned checksums, idempotence, README in sync."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from exprbench.demo import (
    DEMO_IMAGES,
    DEMO_LABELS,
    DEMO_SUBJECT_GENDERS,
    EXCLUDED_PHOTOS,
    SUBJECTS_COLUMNS,
    build_demo,
    credits_markdown,
)
from exprbench.demo_sources import PHOTOS
from exprbench.labels import EXPRESSIONS, NEUTRAL, canonical_expression, canonical_gender
from exprbench.packaged import sha256_file

README = Path(__file__).resolve().parents[1] / "data" / "README.md"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
STEM = re.compile(r"^(?P<label>.+?)(?:-(?P<n>\d+))?$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    raw = tmp_path_factory.mktemp("raw")
    return raw, build_demo(raw)


def _images(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]


def _tree(raw: Path) -> dict[str, bytes]:
    return {str(p.relative_to(raw)): p.read_bytes() for p in sorted(raw.rglob("*")) if p.is_file()}


def test_layout_parses(demo: tuple[Path, list[Path]]) -> None:
    raw, paths = demo
    images = _images(paths)
    assert len(images) == len(DEMO_IMAGES)
    assert 15 <= len(images) <= 30  # small enough to run in minutes on 2 cores
    assert sorted(_images(list(raw.rglob("*")))) == sorted(images)
    keys = set()
    for path in images:
        parts = path.relative_to(raw).parts
        assert len(parts) == 4, path
        generator, version, subject, filename = parts
        assert all(parts) and not filename.startswith("."), path
        match = STEM.match(Path(filename).stem)
        assert match, path
        expression = canonical_expression(match["label"])
        assert expression == match["label"], f"{path}: label is not a canonical name"
        assert int(match["n"] or 1) >= 1
        keys.add((generator, version, subject, expression, int(match["n"] or 1)))
    assert len(keys) == len(images)


def test_arrangement_covers_the_edge_cases() -> None:
    by_subject: dict[str, set[str]] = {}
    for image in DEMO_IMAGES:
        by_subject.setdefault(image.subject, set()).add(image.expression)
        assert image.why.strip(), f"{image.photo} has no by-eye rationale"
    assert "feat_no_face" in DEMO_LABELS and "feat_multi_face" in DEMO_LABELS
    assert any(NEUTRAL not in exprs for exprs in by_subject.values())  # missing neutral
    assert any(exprs == {NEUTRAL} for exprs in by_subject.values())  # missing expressions
    assert len({i.expression for i in DEMO_IMAGES} & set(EXPRESSIONS)) >= 5
    # each subject lives in exactly one generator/version
    homes = {(i.subject, i.generator, i.version) for i in DEMO_IMAGES}
    assert len(homes) == len(by_subject)
    # every photo is either used once or deliberately left out
    used = [i.photo for i in DEMO_IMAGES]
    assert len(used) == len(set(used))
    assert set(used) | set(EXCLUDED_PHOTOS) == set(PHOTOS)
    assert not set(used) & set(EXCLUDED_PHOTOS)


def test_subjects_csv(demo: tuple[Path, list[Path]]) -> None:
    raw, paths = demo
    csvs = [p for p in paths if p.name == "subjects.csv"]
    folders = {(i.generator, i.version) for i in DEMO_IMAGES}
    assert {p.relative_to(raw).parts[:2] for p in csvs} == folders
    assert not (raw / "subjects.csv").exists()  # the input root is left to the user
    listed: dict[str, str] = {}
    for path in csvs:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames or ()) == SUBJECTS_COLUMNS
            for row in reader:
                assert (path.parent / row["subject"]).is_dir(), row
                listed[row["subject"]] = row["gender"]
    assert set(listed) == {i.subject for i in DEMO_IMAGES}
    for subject, gender in listed.items():
        expected = DEMO_SUBJECT_GENDERS[subject]
        if expected is None:  # the group photo: not one person
            assert gender == "", subject
        else:
            assert canonical_gender(gender) == gender == expected, subject


def test_checksums_match_pins(demo: tuple[Path, list[Path]]) -> None:
    raw, _ = demo
    for image in DEMO_IMAGES:
        path = raw.joinpath(*image.relpath.parts)
        assert sha256_file(path) == PHOTOS[image.photo].sha256, path


def test_idempotent_and_keeps_user_files(tmp_path: Path) -> None:
    user_file = tmp_path / "mygen" / "v1" / "alice" / "happy.png"
    user_file.parent.mkdir(parents=True)
    user_file.write_bytes(b"not really a png")
    user_root_csv = tmp_path / "subjects.csv"
    user_root_csv.write_text("subject,gender,age,prompt\nalice,female,30,a woman\n")
    stray = tmp_path / "py-feat" / "2.1.5" / "feat-f1" / "notes.txt"  # user file in a demo dir
    stray.parent.mkdir(parents=True)
    stray.write_text("keep me")

    first = build_demo(tmp_path)
    before = _tree(tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in first}

    # a demo file that was edited is restored
    first[0].write_bytes(b"edited")
    second = build_demo(tmp_path)
    assert second == first
    assert _tree(tmp_path) == before
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in second[1:])  # untouched
    assert user_file.read_bytes() == b"not really a png"
    assert user_root_csv.read_text().startswith("subject,gender,age,prompt\nalice,")
    assert stray.read_text() == "keep me"
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temp files left


def test_readme_table_matches_code() -> None:
    text = README.read_text(encoding="utf-8")
    assert credits_markdown() in text, (
        "data/README.md is out of date: paste the output of `python -m exprbench.demo`"
    )
    for phrase in ("by eye", "not ground truth", "exprbench fetch-demo", "300-W"):
        assert phrase in text, phrase
