"""Data Docs show hostile paths and labels as text: nothing from the data becomes markup.

A scores frame whose failing rows carry a file named `"><img src=x onerror=...>` and
labels `<script>...</script>` is validated with real Great Expectations Data Docs. Every
page is parsed (html.parser) and, for the validation page, also loaded in headless
Chromium (`--dump-dom`): no element or attribute may come from the data, and the values
must still be readable as text. Without Chromium the browser half is skipped locally and
fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import missing_prerequisite
from test_aggregate import DECLARED, make_scores

from exprbench.validation import ValidationReport, validate_scores
from tests.badinputs import HOSTILE_EXPRESSION, HOSTILE_PATH, HOSTILE_TOP1

EVIL_PATH = HOSTILE_PATH
EVIL_EXPRESSION = HOSTILE_EXPRESSION
EVIL_TOP1 = HOSTILE_TOP1
MARKERS = ("alert(9)", "alert(8)", "pwned")
INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium"


class _Markup(HTMLParser):
    """Elements, attributes and script bodies that mention a marker; and the page text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.injected: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("img", "svg", "iframe", "object", "embed") and any(
            name.startswith("on") for name, _ in attrs
        ):
            self.injected.append(f"<{tag} {attrs}>")
        for name, value in attrs:
            if any(m in f"{name}={value}" for m in MARKERS):
                self.injected.append(f"<{tag} {name}={value!r}>")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            if any(m in data for m in MARKERS):
                self.injected.append(f"<script>{data[:200]}")
        else:
            self.text.append(data)


def _parse(html: str) -> _Markup:
    parser = _Markup()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def hostile_docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidationReport, Path]:
    df: pd.DataFrame = make_scores()
    fer = np.flatnonzero((df["scorer"] == "fer").to_numpy())
    # Each row fails a vocabulary check, so GX lists it (with its path) in the page.
    df.loc[fer[0], "path"] = EVIL_PATH
    df.loc[fer[0], "expression"] = EVIL_EXPRESSION
    df.loc[fer[1], "top1"] = EVIL_TOP1
    docs = tmp_path_factory.mktemp("hostile-docs")
    return validate_scores(df, DECLARED, docs), docs


def test_report_keeps_the_raw_values(hostile_docs: tuple[ValidationReport, Path]) -> None:
    report, _ = hostile_docs
    rows = [row for failure in report.failures for row in failure.rows]
    assert {"path": EVIL_PATH, "expression": EVIL_EXPRESSION}.items() <= next(
        row for row in rows if row.get("expression") == EVIL_EXPRESSION
    ).items()
    assert any(row.get("top1") == EVIL_TOP1 for row in rows)


def test_no_page_turns_data_into_markup(hostile_docs: tuple[ValidationReport, Path]) -> None:
    report, docs = hostile_docs
    assert report.docs_page is not None and report.docs_page.is_file()
    pages = sorted(docs.rglob("*.html"))
    for page in pages:
        parsed = _parse(page.read_text(encoding="utf-8"))
        assert not parsed.injected, f"{page}: data became markup: {parsed.injected}"
    # ... and the validation page still shows the values, as text.
    text = "".join(_parse(report.docs_page.read_text(encoding="utf-8")).text)
    for value in (EVIL_PATH, EVIL_EXPRESSION, EVIL_TOP1):
        assert value in text, f"{value!r} is not shown as text in {report.docs_page}"


def _chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found:
        missing_prerequisite(f"headless Chromium not found; install it with: {INSTALL}")
    return found


def test_browser_dom_has_no_injected_element(
    hostile_docs: tuple[ValidationReport, Path], tmp_path: Path
) -> None:
    report, _ = hostile_docs
    assert report.docs_page is not None
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        # the page's own scripts run first; an injected onerror/script would run too
        "--virtual-time-budget=3000",
        "--dump-dom",
        report.docs_page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"chromium failed:\n{result.stderr[-3000:]}"
    dom = _parse(result.stdout)
    assert "show-scrollbars" in result.stdout, "Chromium did not render the validation page"
    assert not dom.injected, f"the browser built elements from the data: {dom.injected}"
    text = "".join(dom.text)
    for value in (EVIL_PATH, EVIL_EXPRESSION, EVIL_TOP1):
        assert value in text, f"{value!r} is not shown as text in the browser"
