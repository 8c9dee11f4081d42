"""The HTML report: self-contained, escaped, missing cells marked (never drawn as 0)."""

from __future__ import annotations

import base64
import io
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape
from PIL import Image
from test_aggregate import MISSING, NO_FACE, ODD_NAME, make_scores, write_scores

from exprbench.aggregate import compute_tables
from exprbench.metrics import Leaderboard
from exprbench.report import (
    MIN_N,
    THUMBNAIL_PX,
    ColourScale,
    clipped,
    colour_for,
    render_report,
    statistic_direction,
    statistic_range,
    summary_questions,
    welch_interval,
)
from exprbench.scorers.base import BUILTIN_METRICS, MetricSpec
from exprbench.settings import ParamsError, Settings, load_params
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


def build_report(root: Path) -> Path:
    """The report of the test data (also rendered in a browser by test_report_browser)."""
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
    return render_report(
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


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    out = build_report(tmp_path_factory.mktemp("report"))
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
    # "0.70 n=1" then why it is grey: fewer images than report.min_n (3 by default)
    assert _cell(fidelity, "ChatGPT", "happy") == ("fewn", "0.70 n=1 < 3")
    female = parser.table("Expression fidelity", "fer · female subjects")
    # "0.90 n=2", its reason, and the 95% interval clipped to [0, 1] (unclipped 0.26-1.54)
    assert _cell(female, "ChatGPT", "happy") == ("fewn", "0.90 n=2 < 3 [0.26, 1.00]")
    assert _cell(female, "Copilot", "disgust") == ("novalue", "no face")
    identity = parser.table("Identity", "dlib · male subjects")
    assert "neutral" not in [text for _, text in identity[0]]
    assert _cell(identity, generator, expression)[0] == "missing"
    assert _cell(identity, "Copilot", "sad") == ("novalue", "no value")  # no reference
    age = parser.table("Age", "agegender · male subjects")
    assert _cell(age, "Copilot", "neutral")[0] == "missing"
    assert _cell(age, "ChatGPT", "neutral")[1] == "40.0 (ref) n=1 < 3"
    assert _cell(age, "ChatGPT", "sad")[1] == "42.0 (Δ +2.0) n=1 < 3"


def test_leaderboard_and_confusion(report) -> None:
    _, _, parser = report
    board = parser.table("Leaderboard", "Scorer fer")
    header = [text for _, text in board[0]]
    assert [r[0][1] for r in board[1:]] == ["ChatGPT", "Gemini", "Copilot"]
    copilot = board[3]
    assert copilot[header.index("missing cells")][1] == "1"
    # "0.83", its n and its 95% interval clipped to [0, 1] (unclipped 0.59-1.08)
    assert copilot[header.index("top-1 accuracy")][1] == "0.83 n=12 [0.59, 1.00]"
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


# --------------------------------------------------------------------------- presentation


def _render(root: Path, scores: pd.DataFrame, **options) -> tuple[str, _Cells]:
    """The report of `scores` (no thumbnails) and its parsed tables."""
    tables = compute_tables(write_scores(scores, root / "scores")) if len(scores) else {}
    out = render_report(tables, scores, None, None, {}, {}, root / "r.html", **options)
    html = out.read_text(encoding="utf-8")
    parser = _Cells()
    parser.feed(html)
    return html, parser


def _summary(html: str) -> str:
    """The summary section's text, whitespace collapsed."""
    section = html.split('<h2 id="summary">', 1)[1].split("<h2", 1)[0]
    return " ".join(unescape(re.sub(r"<[^>]+>", "", section)).split())


def _td(html: str, text: str) -> str:
    """The opening <td ...> tag of the cell whose text starts with `text`."""
    match = re.search(r"(<td[^>]*>)" + re.escape(text), html)
    assert match, text
    return match.group(1)


def test_grey_below_min_n_and_coloured_at_or_above(report) -> None:
    _, html, parser = report
    # below report.min_n (3): grey with the reason, never a colour
    assert 'class="fewn" style' not in html
    assert html.count('class="fewn"') > 0
    board = parser.table("Leaderboard", "Scorer fer")
    header = [text for _, text in board[0]]
    chatgpt = board[1][header.index("mean target p (non-neutral)")]
    assert chatgpt == ("", "0.81 n=13 [0.74, 0.87]")  # 10.5/13 ± t(12) sd/sqrt(13)
    assert "Cells: value, <b>n</b>" in html and "clipped to the metric's declared range" in html


def test_leaderboard_value_from_one_image_is_grey_not_a_win(tmp_path: Path) -> None:
    scores = make_scores()
    fer_copilot = (scores.scorer == "fer") & (scores.generator == "Copilot")
    keep = fer_copilot & scores.path.str.endswith("anna/1-happy.png")
    scores.loc[keep, "target_prob"] = 1.0  # a perfect score, from one image
    scores = scores[~fer_copilot | keep].reset_index(drop=True)
    html, parser = _render(tmp_path, scores)
    board = parser.table("Leaderboard", "Scorer fer")
    header = [text for _, text in board[0]]
    copilot = next(r for r in board[1:] if r[0][1] == "Copilot")
    assert copilot[header.index("mean target p (non-neutral)")] == ("fewn", "1.00 n=1 < 3")
    assert 'class="fewn">1.00' in html  # no style: not coloured
    # the scale spans the runs that count (0.61 .. 0.81), not the lone 1.00
    assert "0.61 worst seen" in html and "0.81 best seen" in html
    summary = _summary(html)
    assert "Left out (n < 3): Copilot 10 (n=1 < 3)" in summary
    assert "ChatGPT 4o is best" in summary


def test_colour_scales_span_the_observed_range(tmp_path: Path) -> None:
    html, _ = _render(tmp_path, make_scores(), min_n=1)
    fidelity = html.split('id="heatmap-1"', 1)[1].split("<h2", 1)[0]
    # worst and best cell seen get the ends of the scale, and the legend says so
    assert "0.20 worst seen" in fidelity and "0.90 best seen" in fidelity
    assert _td(fidelity, "0.90").endswith('style="background: hsl(120, 65%, 78%)">')
    assert _td(fidelity, "0.20").endswith('style="background: hsl(0, 65%, 78%)">')
    # a BRISQUE-like metric declared over [-250, 480]: 7 and 61 no longer look alike
    brisque = MetricSpec("q", -250.0, 480.0, False, "")
    assert colour_for(7.0, brisque, 0) == "hsl(78, 65%, 78%)"  # declared range: close
    assert colour_for(61.0, brisque, 0) == "hsl(69, 65%, 78%)"
    scale = ColourScale.observed([7.0, 61.0, 30.0], False, (-250.0, 480.0), 1)
    assert scale.colour(7.0) == "hsl(120, 65%, 78%)" and scale.colour(61.0) == "hsl(0, 65%, 78%)"
    assert [label for _, label in scale.legend()] == ["61.0 worst seen", "7.0 best seen"]
    # never wider than the declared range; an undirected metric stays diverging around 0
    assert ColourScale.observed([0.5, 2.0], True, (0.0, 1.0)).high == 1.0
    drift = ColourScale.observed([-3.0, 5.0], None, (-120.0, 120.0), 1)
    assert (drift.low, drift.high) == (-5.0, 5.0) and drift.colour(0.0) == "hsl(215, 70%, 97%)"
    assert ColourScale.observed([], True, (0.0, 1.0)).legend("none") == [(None, "none")]
    flat = ColourScale.observed([0.0, 0.0], None, (-1.0, 1.0))
    assert [label for _, label in flat.legend()] == ["all coloured values 0"]
    same = ColourScale.observed([0.4, 0.4], True, (0.0, 1.0))
    assert same.colour(0.4) == "hsl(60, 65%, 78%)"  # neither better nor worse
    assert [label for _, label in same.legend()] == ["all coloured values 0.40"]


def test_interval_clipping() -> None:
    probability = MetricSpec("p", 0.0, 1.0, True, "")
    assert clipped(-0.57, 0.73, (0.0, 1.0)) == (0.0, 0.73)
    assert clipped(0.2, 1.4, (0.0, 1.0)) == (0.2, 1.0)
    assert clipped(None, 0.5, (0.0, 1.0)) is None
    assert statistic_range(probability, "anything") == (0.0, 1.0)
    drift = MetricSpec("d", -120.0, 120.0, None, "", leaderboard=Leaderboard("m", "m", "mean_abs"))
    assert statistic_range(drift, "m") == (0.0, 120.0)  # a mean |drift|
    assert statistic_direction(drift, "m") is False  # smaller drift is better
    assert statistic_direction(probability, "x") is True


def test_contact_sheet_captions_name_their_scorer(report) -> None:
    _, _, parser = report
    sheet = parser.table("Contact sheet", "")
    header = [text for _, text in sheet[0]]
    generator, subject, _ = NO_FACE
    row = next(
        r for r in sheet[1:] if r[0][1].startswith(generator) and f" {subject} " in f" {r[0][1]} "
    )
    happy = row[header.index("happy")][1]
    assert "fer: p 0.40" in happy and "agegender: age 27" in happy and "dlib: id 0.50" in happy


def test_summary_ranks_with_interval_and_welch_test(report) -> None:
    _, html, _ = report
    summary = _summary(html)
    stats = pytest.importorskip("scipy.stats")
    chatgpt = [0.95, 0.85] + [0.9] * 5 + [0.7] * 6
    gemini = [0.7] * 6 + [0.5] * 5
    welch = stats.ttest_ind(chatgpt, gemini, equal_var=False).confidence_interval(0.95)
    assert f"[{welch.low:+.2f}, {welch.high:+.2f}]" == "[+0.11, +0.29]"
    # ChatGPT and Gemini share subjects: a paired comparison on their 11 shared cells,
    # each exactly 0.2 apart (Welch on all images, [+0.11, +0.29], is the fallback)
    assert (
        "Expression fidelity (mean target p (non-neutral), higher is better; scorer fer): "
        "ChatGPT 4o is best (0.81 [0.74, 0.87], n=13), ahead of Gemini 2.5 "
        "(0.61 [0.54, 0.68], n=11): paired on 11 shared subject x expression cells "
        "(2 subjects), mean difference +0.20; no interval (the differences do not vary)."
    ) in summary
    assert "Ranking: 1. ChatGPT 4o 0.81 [0.74, 0.87], n=13 · 2. Gemini 2.5" in summary
    assert "3. Copilot 10 0.29 [0.22, 0.36], n=11" in summary
    # |age Δ|: smaller is better; identity; a tie is called a tie
    assert "Age (mean |age Δ|, lower is better; scorer agegender): ChatGPT 4o is best" in summary
    assert (
        "Identity (rank-1 id. vs impostors, higher is better; scorer dlib): ChatGPT 4o" in summary
    )
    assert "ChatGPT 4o (1.00 [1.00, 1.00], n=13) and Gemini 2.5" in summary
    assert "tie for first place" in summary
    assert "Not measured in this run: Image quality, Perceptual distance." in summary
    assert "Welch's two-sample t-interval" in summary  # the fallback, explained


def test_verdict_pairs_shared_cells_and_falls_back_to_welch() -> None:
    from exprbench.report import _verdict
    from exprbench.uncertainty import paired_comparison

    best = {"generator": "A", "version": "1", "mean": 0.8, "sd": 0.1, "n": 6}
    second = {"generator": "B", "version": "1", "mean": 0.6, "sd": 0.1, "n": 6}
    a = {("s1", "happy"): 0.9, ("s1", "sad"): 0.7, ("s2", "happy"): 0.85, ("s2", "sad"): 0.75}
    b = {("s1", "happy"): 0.6, ("s1", "sad"): 0.6, ("s2", "happy"): 0.62, ("s2", "sad"): 0.58}
    text, significant = _verdict(
        [best, second], lambda r: "x", 2, 3, lambda x, y: paired_comparison(a, b, resamples=200)
    )
    assert "paired on 4 shared subject x expression cells (2 subjects)" in text
    assert "mean difference +0.20, d_z" in text and "95% bootstrap CI [+" in text
    assert significant is True
    text, _ = _verdict([best, second], lambda r: "x", 2, 3, lambda x, y: None)
    assert "no shared subject x expression cells, so Welch on all images" in text
    assert "95% CI [" in text


def test_welch_interval_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    a = {"mean": 0.50, "sd": 0.20, "n": 5}
    b = {"mean": 0.45, "sd": 0.10, "n": 4}
    diff, low, high = welch_interval(a, b)
    result = stats.ttest_ind_from_stats(0.50, 0.20, 5, 0.45, 0.10, 4, equal_var=False)
    assert diff == pytest.approx(0.05) and low < 0 < high and result.pvalue > 0.05
    # the interval excludes 0 exactly when the two-sided p-value is below 0.05
    a = {"mean": 0.80, "sd": 0.05, "n": 8}
    _, low, _ = welch_interval(a, b)
    assert low > 0
    assert stats.ttest_ind_from_stats(0.80, 0.05, 8, 0.45, 0.10, 4, equal_var=False).pvalue < 0.05
    assert welch_interval({"mean": 1.0, "sd": None, "n": 1}, b) is None


def test_summary_not_significant_when_the_interval_includes_zero(tmp_path: Path) -> None:
    scores = make_scores()
    gemini = (scores.scorer == "fer") & (scores.generator == "Gemini")
    # Gemini now scatters around ChatGPT's level: no clear winner
    spread = [0.95, 0.55, 0.99, 0.6, 0.9, 0.65, 0.97, 0.5, 0.93, 0.58, 0.96, 0.62, 0.9]
    scores.loc[gemini, "target_prob"] = spread[: int(gemini.sum())]
    summary = _summary(_render(tmp_path, scores)[0])
    assert "includes 0, not significant" in summary


def test_summary_prefers_faceapi_and_lists_other_scorers(tmp_path: Path) -> None:
    scores = make_scores()
    faceapi = scores[scores.scorer == "fer"].copy()
    faceapi["scorer"] = "faceapi"
    copilot = (faceapi.generator == "Copilot") & faceapi.target_prob.notna()
    faceapi.loc[copilot, "target_prob"] = 0.99  # faceapi disagrees with fer
    html, _ = _render(tmp_path, pd.concat([scores, faceapi], ignore_index=True))
    summary = _summary(html)
    assert "higher is better; scorer faceapi): Copilot 10 is best" in summary
    assert "First place by the other scorers: fer: ChatGPT 4o" in summary


def test_summary_with_one_generator_missing_metrics_and_no_scores(tmp_path: Path) -> None:
    scores = make_scores()
    only = scores[(scores.generator == "ChatGPT") & (scores.scorer == "fer")]
    summary = _summary(_render(tmp_path / "one", only.reset_index(drop=True))[0])
    assert "ChatGPT 4o (0.81 [0.74, 0.87], n=13) is the only generator/version" in summary
    assert "Not measured in this run: Age, Gender match, Identity" in summary
    # nothing reaches min_n: nothing ranked, and said so
    summary = _summary(_render(tmp_path / "high", only.reset_index(drop=True), min_n=50)[0])
    assert "No generator/version has n ≥ 50: nothing to rank." in summary
    assert "Left out (n < 50): ChatGPT 4o (n=13 < 50)" in summary
    empty = _summary(_render(tmp_path / "empty", scores.iloc[0:0])[0])
    assert empty == "Summary No scores: nothing to rank."
    # tables from before run_intervals existed: values shown, n unknown, nothing coloured
    glob = write_scores(scores, tmp_path / "old" / "scores")
    tables = {k: v for k, v in compute_tables(glob).items() if k != "run_intervals"}
    out = render_report(tables, scores, None, None, {}, {}, tmp_path / "old.html")
    parser = _Cells()
    parser.feed(out.read_text(encoding="utf-8"))
    board = parser.table("Leaderboard", "Scorer fer")
    assert board[1][2] == ("fewn", "0.81 n unknown")


def test_min_n_setting(tmp_path: Path) -> None:
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert Settings.from_params(params).report.min_n == MIN_N == 3
    params["report"]["min_n"] = 0
    with pytest.raises(ParamsError, match=r"report\.min_n must be at least 1"):
        Settings.from_params(params)
    with pytest.raises(ValueError, match="min_n"):
        render_report({}, make_scores().iloc[0:0], None, None, {}, {}, tmp_path / "r.html", min_n=0)


def test_summary_questions_come_from_the_study_tables() -> None:
    assert [
        (q.title, q.statistic, q.higher_is_better) for q in summary_questions(BUILTIN_METRICS)
    ] == [
        ("Expression fidelity", "mean_target_prob", True),  # the ranked leaderboard entry
        ("Age", "mean_abs_age_delta", False),  # a mean |drift|: smaller is better
        ("Gender match", "gender_match_rate", True),
        ("Identity", "identity_rank1_rate", True),  # against impostors, not a threshold
        ("Image quality", "mean_brisque", False),  # no leaderboard entry: its heatmap metric
        ("Perceptual distance", "mean_stlpips_vgg", False),
    ]


def test_contact_sheet_beyond_the_page_size_goes_to_linked_page_files(tmp_path: Path) -> None:
    scores = make_scores()
    tables = compute_tables(write_scores(scores, tmp_path / "scores"))
    shot = re.compile(r'<span class="path">#\d+ ([^<]+)</span>')
    inline = render_report(tables, scores, None, None, {}, {}, tmp_path / "one.html")
    everything = shot.findall(inline.read_text())
    assert len(everything) == scores["path"].nunique() > 5
    assert not (tmp_path / "one_sheets").exists()  # within the page size: no pages
    out = render_report(tables, scores, None, None, {}, {}, tmp_path / "r.html", sheet_page_size=5)
    index = out.read_text()
    assert not shot.findall(index)  # index.html links the pages, it holds no image
    files = sorted((tmp_path / "r_sheets").glob("page-*.html"))
    assert len(files) > 1
    pages = [shot.findall(f.read_text()) for f in files]
    for f, paths in zip(files, pages, strict=True):
        assert f'href="r_sheets/{f.name}"' in index
        subjects = {tuple(p.split("/")[:3]) for p in paths}
        assert len(paths) <= 5 or len(subjects) == 1  # whole rows, one big row alone
    assert [p for page in pages for p in page] == everything  # every image once, in order
    render_report(tables, scores, None, None, {}, {}, out)  # back within the page size
    assert not (tmp_path / "r_sheets").exists()  # stale pages are gone


@pytest.mark.parametrize("rows_per_pass", [100_000, 5])
def test_contact_sheet_rows_from_files_come_in_sheet_order(
    tmp_path: Path, rows_per_pass: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage's scores (read from files, sorted once into the sheet's order when they
    open, a few runs at a time when there are many rows) give the contact sheet the same
    rows in the same order as sorting them on the spot does, whatever order the score
    stage wrote them in; every image's thumbnail (its crop where its face has one) is
    found, whatever pass its path fell in."""
    from exprbench import duckdb_memory, report_sheets
    from exprbench.report_sheets import ReportScores
    from exprbench.settings import DuckdbSettings

    monkeypatch.setattr(duckdb_memory, "ROWS_PER_PASS", rows_per_pass)
    monkeypatch.setattr(report_sheets, "SHEET_ROWS_PER_PASS", rows_per_pass)

    scores = make_scores().sample(frac=1.0, random_state=7).reset_index(drop=True)
    paths = sorted(scores["path"].unique())
    scores.to_parquet(tmp_path / "scores.parquet")
    crops = [f"crops/{p}" if k % 2 else None for k, p in enumerate(paths)]  # half found one
    faces = {"path": paths, "crop_path": crops, "face_found": [c is not None for c in crops]}
    faces |= {"face_reason": [None] * len(paths), "face_count": [1] * len(paths)}
    pd.DataFrame(faces).to_parquet(tmp_path / "faces.parquet")
    pd.DataFrame({"path": paths}).to_parquet(tmp_path / "images.parquet")
    from_files = ReportScores.from_files(
        tmp_path / "scores.parquet",
        tmp_path / "faces.parquet",
        tmp_path / "images.parquet",
        tmp_path / "spill",
        DuckdbSettings(),
        lambda row: Path(str(row["crop_path"] or row["path"])),
        lambda row: None,
    )
    in_place = ReportScores.from_frames(scores, None, {})

    def sheet(source: ReportScores) -> list[tuple[object, list[tuple[str, str]]]]:
        return [
            (key, [(str(r["path"]), str(r["scorer"])) for r in members])
            for key, members in source.sheet_groups()
        ]

    expected = sheet(in_place)
    assert len(expected) > 1 and sheet(from_files) == expected
    thumbnails, _, _ = from_files.images_of(paths)
    assert thumbnails == {p: Path(c or p) for p, c in zip(paths, crops, strict=True)}
    # the page cuts' counts, and the image count, also come in passes
    assert list(from_files.sheet_rows()) == list(in_place.sheet_rows())
    assert from_files.n_images() == in_place.n_images() == len(paths)
    # the source order inside a row is kept (the rows were shuffled, not sorted by path)
    first = [path for path, _ in expected[0][1]]
    assert first != sorted(first) or len(set(first)) == 1


def test_pages_cut_whole_sheet_rows_and_keep_only_their_bounds() -> None:
    from exprbench.report_sheets import SheetPage, pages

    rows = [(("g", "v", s), n) for s, n in zip("abcde", (2, 2, 7, 1, 1), strict=True)]
    assert pages(iter(rows), 5) == [
        SheetPage(("g", "v", "a"), ("g", "v", "b"), 2, 4),
        SheetPage(("g", "v", "c"), ("g", "v", "c"), 1, 7),  # more than a page: alone
        SheetPage(("g", "v", "d"), ("g", "v", "e"), 2, 2),
    ]
    assert pages(iter(()), 5) == []
