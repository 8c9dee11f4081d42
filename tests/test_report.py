"""The HTML report: self-contained, escaped, missing cells marked (never drawn as 0)."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape
from PIL import Image
from test_aggregate import MISSING, NO_FACE, ODD_NAME, make_scores, write_scores

from exprbench.aggregate import compute_tables
from exprbench.report import THUMBNAIL_PX, colour_for, render_report
from exprbench.scorers.base import MetricSpec
from exprbench.validation import FailedCheck, ValidationReport

EVIL_QUARANTINE = "uploads/<script>alert('x')</script>.png"


class _Cells(HTMLParser):
    """Collects, per table, its heading (last h2 > h3 text) and rows of (class, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[tuple[str, str]]]]] = []
        self._heading = {"h2": "", "h3": ""}
        self._capture: str | None = None
        self._cell: list[str] | None = None
        self._cls = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "h3"):
            self._capture, self._heading[tag] = tag, ""
            if tag == "h2":
                self._heading["h3"] = ""
        elif tag == "table":
            self.tables.append((f"{self._heading['h2']} > {self._heading['h3']}", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell, self._cls = [], dict(attrs).get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h2", "h3"):
            self._capture = None
        elif tag in ("td", "th") and self._cell is not None and self.tables:
            text = " ".join(" ".join(self._cell).split())
            self.tables[-1][1][-1].append((self._cls, text))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._heading[self._capture] += data
        if self._cell is not None:
            self._cell.append(data)

    def table(self, heading_part: str, subheading: str) -> list[list[tuple[str, str]]]:
        found = [
            rows
            for heading, rows in self.tables
            if heading_part in heading.split(" > ")[0]
            and " ".join(heading.split(" > ")[1].split()) == subheading
        ]
        assert len(found) == 1, f"{heading_part} / {subheading}: {len(found)} tables"
        return found[0]


def _cell(rows: list[list[tuple[str, str]]], row_starts: str, column: str) -> tuple[str, str]:
    header = [text for _, text in rows[0]]
    line = next(r for r in rows[1:] if r[0][1].startswith(row_starts))
    return line[header.index(column)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("report")
    scores = make_scores()
    tables = compute_tables(write_scores(scores, root / "scores"))
    images = scores.drop_duplicates("path")
    thumbnails = {}
    for number, path in enumerate(images["path"]):
        if path.endswith("ChatGPT/4o/ben/1-neutral.png"):
            continue  # no thumbnail given: a placeholder instead
        target = root / "crops" / f"{number}.png"
        target.parent.mkdir(exist_ok=True)
        Image.new("RGB", (300, 200), (number * 5 % 255, 120, 200)).save(target)
        thumbnails[path] = target
    broken = next(p for p in images["path"] if p.endswith("Gemini/2.5/anna/1-happy.png"))
    thumbnails[broken].write_bytes(b"not an image")
    faces = pd.DataFrame(
        {
            "path": images["path"],
            "face_found": images["face_found"],
            "face_count": images["face_count"],
            "face_reason": [None if found else "no face detected" for found in images.face_found],
        }
    )
    crowded = faces["path"].str.endswith("Gemini/2.5/ben/1-sad.png")
    faces.loc[crowded, ["face_count", "face_reason"]] = [3, "3 faces; largest scored"]
    quarantine = pd.DataFrame(
        {
            "path": [EVIL_QUARANTINE, "ChatGPT/4o/cara/smile?.gif"],
            "stage": ["ingest", "ingest"],
            "reason": ["unreadable image & <bad> header", "no subject row"],
        }
    )
    validation = ValidationReport(
        success=False,
        n_rows=len(scores),
        checks=["range:age"],
        validated_at="now",
        failures=[
            FailedCheck(
                "range:age", "ExpectColumnValuesToBeBetween", "age", "age in [0, 120]", 1, 100
            )
        ],
    )
    out = render_report(
        tables,
        scores,
        faces,
        quarantine,
        thumbnails,
        {
            "timestamp": "2025-01-02T03:04:05Z",
            "params_hash": "abc123",
            "scorers": {"fer": "1.0"},
            "input": "data/raw & more",
        },
        root / "out" / "report.html",
        "../docs/index.html",
        validation=validation,
    )
    html = out.read_text(encoding="utf-8")
    parser = _Cells()
    parser.feed(html)
    return out, html, parser


def test_report_is_self_contained(report) -> None:
    out, html, _ = report
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "@import" not in html and "url(" not in html
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp left
    assert out.stat().st_size < 400_000


def test_user_strings_are_escaped(report) -> None:
    _, html, _ = report
    assert ODD_NAME not in html and "<script>alert" not in html
    assert str(escape(ODD_NAME)) in html
    assert str(escape(EVIL_QUARANTINE)) in html
    assert "unreadable image &amp; &lt;bad&gt; header" in html
    assert "data/raw &amp; more" in html


def test_header_and_validation_line(report) -> None:
    _, html, _ = report
    assert "2025-01-02T03:04:05Z" in html and "abc123" in html
    assert "<code>fer</code> 1.0" in html and "<code>dlib</code> 1.0" in html
    assert 'href="../docs/index.html"' in html
    assert "Validation: FAILED" in html and "range:age" in html


def test_missing_heatmap_cell_is_marked_not_zero(report) -> None:
    _, _, parser = report
    generator, _, expression = MISSING
    fidelity = parser.table("Expression fidelity", "fer · male subjects")
    assert _cell(fidelity, generator, expression) == ("missing", "missing (1 of 1)")
    assert _cell(fidelity, "ChatGPT", "happy")[1] == "0.70 n=1"
    female = parser.table("Expression fidelity", "fer · female subjects")
    assert _cell(female, "ChatGPT", "happy")[1] == "0.90 n=2"
    assert _cell(female, "Copilot", "disgust") == ("novalue", "no face")
    identity = parser.table("Identity", "dlib · male subjects")
    assert "neutral" not in [text for _, text in identity[0]]
    assert _cell(identity, generator, expression)[0] == "missing"
    assert _cell(identity, "Copilot", "sad") == ("novalue", "no value")  # no reference
    age = parser.table("Age", "agegender · male subjects")
    assert _cell(age, "Copilot", "neutral")[0] == "missing"
    assert _cell(age, "ChatGPT", "neutral")[1] == "40.0 (ref) n=1"
    assert _cell(age, "ChatGPT", "sad")[1] == "42.0 (Δ +2.0) n=1"


def test_leaderboard_and_confusion(report) -> None:
    _, _, parser = report
    board = parser.table("Leaderboard", "Scorer fer")
    header = [text for _, text in board[0]]
    assert [r[0][1] for r in board[1:]] == ["ChatGPT", "Gemini", "Copilot"]
    copilot = board[3]
    assert copilot[header.index("missing cells")][1] == "1"
    assert copilot[header.index("top-1 accuracy")][1] == "0.83"
    assert "mean |age Δ|" not in header  # the expression scorer has no age
    confusion = parser.table("Confusion", "fer · Copilot 10")
    sad = next(r for r in confusion if r[0][1] == "sad")
    assert [text for _, text in sad[1:]] == ["0", "0", "0", "0", "0", "2", "0"]
    neutral = next(r for r in confusion if r[0][1] == "neutral")
    assert [text for _, text in neutral[1:]] == ["1", "0", "0", "0", "0", "0", "0"]
    gemini = parser.table("Confusion", "fer · Gemini 2.5")
    fear = next(r for r in gemini if r[0][1] == "fear")
    assert [text for _, text in fear[1:]] == ["0", "0", "0", "0", "0", "1", "0"]


def test_contact_sheet_marks_missing_no_face_and_thumbnails(report) -> None:
    _, html, parser = report
    sheet = parser.table("Contact sheet", "")
    generator, subject, expression = MISSING
    header = [text for _, text in sheet[0]]
    row = next(
        r for r in sheet[1:] if r[0][1].startswith(generator) and f" {subject} " in f" {r[0][1]} "
    )
    assert row[header.index(expression)] == ("missing", "missing")
    generator, subject, expression = NO_FACE
    row = next(
        r for r in sheet[1:] if r[0][1].startswith(generator) and f" {subject} " in f" {r[0][1]} "
    )
    assert "no face" in row[header.index(expression)][1]
    assert html.count('class="shot noface"') == 1
    assert html.count(">3 faces</span> 3 faces; largest scored") == 1
    assert "no thumbnail" in html and "unreadable: UnidentifiedImageError" in html
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)
    assert len(uris) == make_scores()["path"].nunique() - 2  # 41 images: 1 absent, 1 broken
    with Image.open(io.BytesIO(base64.b64decode(uris[0]))) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == THUMBNAIL_PX
    happy = row[header.index("happy")][1]
    assert "p 0.40" in happy and "age 27" in happy and "id 0.50" in happy


def test_quarantine_listed(report) -> None:
    _, _, parser = report
    quarantine = parser.table("Quarantine", "")
    assert [r[1][1] for r in quarantine[1:]] == ["ingest", "ingest"]
    assert quarantine[1][0][1] == EVIL_QUARANTINE  # shown literally, after unescaping


def test_absolute_validation_link_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="relative"):
        render_report(
            {},
            make_scores(),
            None,
            None,
            {},
            {},
            tmp_path / "r.html",
            "https://example.org/docs/index.html",
        )
    assert not (tmp_path / "r.html").exists()


def test_empty_run_renders(tmp_path: Path) -> None:
    out = render_report({}, make_scores().iloc[0:0], None, None, {}, {}, tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    assert "No scores." in html and "No file was quarantined." in html
    assert "Validation: not run here" in html


def test_colours_follow_metric_direction() -> None:
    better = MetricSpec("x", 0.0, 1.0, True, "")
    worse = MetricSpec("x", 0.0, 4.0, False, "")
    assert colour_for(1.0, better, 0) == colour_for(0.0, worse, 0) == "hsl(120, 65%, 78%)"
    assert colour_for(None, better, 0) is None
    undirected = MetricSpec("x", -120.0, 120.0, None, "")
    assert colour_for(0.0, undirected, 5.0) == "hsl(215, 70%, 97%)"
    assert colour_for(5.0, undirected, 5.0).startswith("hsl(0,")
