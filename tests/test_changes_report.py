"""The "What changed" pages and the headline deltas in the DVC metrics.

Scores of the test data's kind (`test_aggregate._row`, scorer fer only, to stay fast) for
ChatGPT 4o and 5 (declared in a versions.csv) and Gemini 2.5 alone: in 5, anna's happy
images read much less happy (a regression) and ben's fear images are missing. The real
`compare_versions` compares them; the thumbnails are real photos from the demo packages,
4o's and 5's different, so each side of the contact sheet can be told apart.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from test_aggregate import _row

from exprbench.aggregate import compute_tables
from exprbench.changes_report import delta_colour, headline_deltas, page_name, write_changes
from exprbench.compare import RegressionRule, compare_versions
from exprbench.ingest import InputConfigError
from exprbench.labels import EXPRESSIONS
from exprbench.report import render_report
from exprbench.schema import IMAGES, SCORES, write_table
from exprbench.scorers.base import BUILTIN_METRICS

BASE, HEAD = "4o", "5"
SUBJECTS = ("anna", "ben")
REGRESSED = ("anna", "happy")  # 0.8 in 4o, 0.3 in 5
GONE = ("ben", "fear")  # no image in 5
RULE = RegressionRule(("target_prob",), 0.05, True)
PHOTOS = {BASE: ("obama", "obama3"), HEAD: ("franck_01829", "franck_04117")}


def _scores() -> pd.DataFrame:
    rows = []
    for generator, version in (("ChatGPT", BASE), ("ChatGPT", HEAD), ("Gemini", "2.5")):
        for subject in SUBJECTS:
            for expression in EXPRESSIONS:
                if (version, subject, expression) == (HEAD, *GONE):
                    continue
                for replicate in (1, 2, 3):
                    target = 0.8 + 0.01 * replicate
                    if (version, subject, expression) == (HEAD, *REGRESSED):
                        target -= 0.5
                    rows.append(
                        _row(generator, version, subject, expression, replicate, "fer", target)
                    )
    return pa.Table.from_pylist(rows, schema=SCORES).to_pandas()


def _images(scores: pd.DataFrame) -> pa.Table:
    images = scores.drop_duplicates("path")
    keys = ["generator", "version", "subject", "expression", "replicate", "path", "sha256"]
    rows = [
        {**{k: row[k] for k in keys}, "source": f"input:{row['path']}"}
        for row in images.to_dict("records")
    ]
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in IMAGES.names} for row in rows], schema=IMAGES
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]):
    root = tmp_path_factory.mktemp("changes")
    scores = _scores()
    scores_path = write_table(
        pa.Table.from_pandas(scores, schema=SCORES, preserve_index=False),
        root / "scores" / "scores.parquet",
        SCORES,
    )
    images_path = write_table(_images(scores), root / "images.parquet", IMAGES)
    raw = root / "raw"
    raw.mkdir()
    (raw / "versions.csv").write_text(
        "generator,version,release_date\n"
        f"ChatGPT,{BASE},2025-05-13\nChatGPT,{HEAD},2025-08-07\nGemini,2.5,2025-06-17\n"
    )
    comparisons = list(compare_versions(scores_path, images_path, raw, RULE, seed=1, resamples=200))
    thumbnails = {}
    for row in scores.drop_duplicates("path").to_dict("records"):
        if row["generator"] == "ChatGPT":
            thumbnails[row["path"]] = photos[PHOTOS[row["version"]][row["replicate"] % 2]]
    faces = scores.drop_duplicates("path")[["path", "face_found", "face_count"]]
    reports = root / "report"
    changes = write_changes(
        comparisons,
        RULE,
        {"ChatGPT": [BASE, HEAD], "Gemini": ["2.5"]},
        scores,
        faces,
        thumbnails,
        reports,
        specs=BUILTIN_METRICS,
        thumb_px=64,
    )
    tables = compute_tables(str(root / "scores" / "**" / "*.parquet"))
    index = render_report(
        tables, scores, faces, None, thumbnails, {}, reports / "index.html", changes=changes
    )
    return {
        "reports": reports,
        "comparisons": comparisons,
        "tables": tables,
        "page": (reports / "changes" / page_name("ChatGPT")).read_text(encoding="utf-8"),
        "index": index.read_text(encoding="utf-8"),
    }


def _cell(page: str, metric: str, scorer: str, column: str) -> tuple[str, str]:
    """(class, text) of the deltas heatmap's cell for metric x scorer at 'subject/expression'."""
    key = re.escape(f"{metric} {scorer} {column}")
    found = re.findall(rf'<td class="([^"]*)" data-cell="{key}"[^>]*>(.*?)</td>', page)
    assert len(found) == 1, (metric, scorer, column, len(found))
    cls, inner = found[0]
    return cls, " ".join(re.sub(r"<[^>]+>", " ", inner).split())


def test_a_page_for_the_generator_with_two_versions(built) -> None:
    page = built["page"]
    assert "<title>What changed in ChatGPT 5 (vs 4o)</title>" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.IGNORECASE)
    assert "versions.csv" in page  # where the order came from
    assert [c.generator for c in built["comparisons"]] == ["ChatGPT"]


def test_the_regressed_cell_is_named_marked_and_has_its_interval(built) -> None:
    page = built["page"]
    cls, text = _cell(page, "target_prob", "fer", "anna/happy")
    assert "regressed" in cls and "regressed" in text
    delta = float(text.split()[0])
    assert delta == pytest.approx(-0.5, abs=1e-6)
    low, high = map(float, re.search(r"\[([-+.\d]+), ([-+.\d]+)\]", text).groups())
    assert low <= delta <= high < 0
    regressions = page.split('id="regressions"', 1)[1].split('id="sheets"', 1)[0]
    assert "fer/target_prob/anna/happy" in regressions
    # an unchanged cell is neither regressed nor missing
    cls, text = _cell(page, "target_prob", "fer", "ben/happy")
    assert cls == "" and float(text.split()[0]) == pytest.approx(0.0, abs=1e-6)


def test_both_versions_contact_sheets_side_by_side(built, photos) -> None:
    sheets = built["page"].split('id="sheets"', 1)[1].split('id="missing"', 1)[0]
    assert "anna &middot; happy" in sheets
    sides = re.findall(
        r'<div class="side (base|head)">(.*?)</div>\s*(?=<div class="side|</div>)',
        sheets,
        re.DOTALL,
    )
    assert [role for role, _ in sides] == ["base", "head"]
    for (role, block), version in zip(sides, (BASE, HEAD), strict=True):
        shots = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)" alt="([^"]+)"', block)
        assert sorted(alt for _, alt in shots) == [
            f"ChatGPT/{version}/anna/{r}-happy.png" for r in (1, 2, 3)
        ], role
        for data, _ in shots:
            with Image.open(io.BytesIO(base64.b64decode(data))) as thumb:
                assert max(thumb.size) <= 64
    # the sides show different photos: 4o's obama, 5's franck
    assert sides[0][1].count("data:image/jpeg") == sides[1][1].count("data:image/jpeg") == 3
    assert _first_thumb(sides[0][1]) != _first_thumb(sides[1][1])


def _first_thumb(block: str) -> str:
    return re.search(r'src="(data:image/jpeg;base64,[^"]+)"', block).group(1)


def test_a_cell_only_one_version_has_is_hatched_not_zero(built) -> None:
    cls, text = _cell(built["page"], "target_prob", "fer", "ben/fear")
    assert cls == "missing" and text == "only in 4o"
    missing = built["page"].split('id="missing"', 1)[1]
    assert "ben/fear" in missing


def test_one_version_gets_no_page_and_a_note_on_the_index(built) -> None:
    assert sorted(p.name for p in (built["reports"] / "changes").iterdir()) == ["ChatGPT.html"]
    index = built["index"]
    assert '<a href="#changes">What changed</a>' in index
    assert 'href="changes/ChatGPT.html"' in index
    assert "What changed in ChatGPT 5 (vs 4o)" in index
    assert "fer/target_prob/anna/happy" in index
    assert "Gemini: only one version (2.5)" in index


def test_a_bad_versions_csv_is_said_on_the_index(built, tmp_path: Path) -> None:
    """What the report stage does when the version order cannot be read (ingest has
    quarantined the file): no page, the reason on the index."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "versions.csv").write_text("generator,version,release_date\nChatGPT,5,someday\n")
    root = built["reports"].parent
    with pytest.raises(InputConfigError) as error:
        compare_versions(
            root / "scores" / "scores.parquet", root / "images.parquet", raw, RULE, 1, 10
        )
    reports = tmp_path / "report"
    changes = write_changes(
        [], RULE, {"ChatGPT": [BASE, HEAD]}, _scores(), None, {}, reports,
        specs=BUILTIN_METRICS, error=str(error.value),
    )  # fmt: skip
    index = render_report(
        built["tables"], _scores(), None, None, {}, {}, reports / "index.html", changes=changes
    ).read_text(encoding="utf-8")
    assert "Versions not compared:" in index and "someday" in index
    assert not list((reports / "changes").iterdir())


def test_page_names_are_safe_and_distinct() -> None:
    assert page_name("ChatGPT") == "ChatGPT.html"
    odd = [page_name(name) for name in ("../x", "a b", "a_b", "<b>")]
    assert len(set(odd)) == len(odd)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+\.html", name) for name in odd)
    assert not any(name.startswith(".") for name in odd)


def test_colour_follows_the_better_direction() -> None:
    hue = lambda colour: int(colour.split("(")[1].split(",")[0])  # noqa: E731
    assert hue(delta_colour(-0.1, "lower", 0.2)) == 120  # lower is better: an improvement
    assert hue(delta_colour(-0.1, "higher", 0.2)) == 0  # higher is better: worse
    assert hue(delta_colour(0.1, "higher", 0.2)) == 120
    stronger, weaker = delta_colour(-0.2, "higher", 0.2), delta_colour(-0.05, "higher", 0.2)
    assert stronger != weaker
    assert delta_colour(None, "higher", 0.2) is None and delta_colour(0.0, "higher", 0.2) is None


def test_headline_deltas_for_dvc_metrics(built, tmp_path: Path) -> None:
    tables = built["tables"]
    deltas = headline_deltas(tables, built["comparisons"], ["fer"], BUILTIN_METRICS)
    assert set(deltas) == {"ChatGPT"}  # Gemini has one version: nothing to compare
    entry = deltas["ChatGPT"]
    assert (entry["base"], entry["head"]) == (BASE, HEAD)
    assert entry["regressions"] == len(built["comparisons"][0].regressions()) >= 1
    board = {
        (r["version"]): r
        for r in tables["leaderboard"].to_pylist()
        if r["scorer"] == "fer" and r["generator"] == "ChatGPT"
    }
    for column in ("mean_target_prob", "top1_accuracy"):
        expected = board[HEAD][column] - board[BASE][column]
        assert entry["fer"][column]["delta"] == pytest.approx(expected, abs=1e-6)
        assert isinstance(entry["fer"][column]["regressed"], bool)
    assert entry["fer"]["mean_target_prob"]["delta"] < 0

    # `dvc metrics show` and `diff` list them (a real git + DVC repository)
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None:
        pytest.fail(f"dvc is not installed beside {sys.executable} (a dependency)")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_EMAIL": "t@example.invalid"}

    def run(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("git", "init", "-q")
    run(dvc, "init", "-q")
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - deltas.json\n")
    before = {"ChatGPT": entry | {"fer": {"mean_target_prob": {"delta": 0.0}}}}
    (tmp_path / "deltas.json").write_text(json.dumps(before))
    run("git", "add", "-A")
    run("git", "commit", "-qm", "previous")
    (tmp_path / "deltas.json").write_text(json.dumps(deltas))
    shown = json.loads(run(dvc, "metrics", "show", "--json"))
    flat = json.dumps(shown)
    assert '"mean_target_prob"' in flat and '"regressed"' in flat
    diff = json.loads(run(dvc, "metrics", "diff", "--json"))["deltas.json"]
    changed = diff["ChatGPT.fer.mean_target_prob.delta"]
    assert changed["new"] == pytest.approx(entry["fer"]["mean_target_prob"]["delta"])
    assert changed["old"] == 0.0


# ------------------------------------------------------------------ the report stage, real run
# `two_version_run` (tests/conftest.py): toolA old < new by versions.csv; in new, s1/happy
# no longer smiles (a regression), s2/sad is only in old; toolB has one version. The later
# stages run on a copy of its output.


@pytest.fixture(scope="module")
def stage_report(two_version_run, tmp_path_factory: pytest.TempPathFactory):
    from dataclasses import replace

    from exprbench.config import Layout
    from exprbench.settings import load_settings
    from tasks.aggregate import aggregate
    from tasks.report import report
    from tasks.validate import validate

    layout, _ = two_version_run
    out = tmp_path_factory.mktemp("changes_stage") / "out"
    shutil.copytree(layout.scores_dir.parent, out)
    copy = Layout.for_output(layout.input_dir, out, layout.cache)
    settings = load_settings(Path(__file__).resolve().parent.parent / "params.yaml")
    settings = replace(
        settings,
        upscale=replace(settings.upscale, method="none"),
        score=replace(settings.score, scorers=("fer",), impostor_gallery=0),
        uncertainty=replace(settings.uncertainty, resamples=200),
    )
    for stage in (validate, aggregate, report):
        stage.fn(copy, settings)
    return copy


def test_report_stage_writes_the_page_links_it_and_the_deltas(stage_report) -> None:
    reports = stage_report.reports
    assert sorted(p.name for p in (reports / "changes").iterdir()) == ["toolA.html"]
    page = (reports / "changes" / "toolA.html").read_text(encoding="utf-8")
    assert "<title>What changed in toolA new (vs old)</title>" in page
    cls, text = _cell(page, "target_prob", "fer", "s1/happy")
    assert cls == "regressed" and "regressed" in text and float(text.split()[0]) < -0.5
    assert _cell(page, "target_prob", "fer", "s2/sad") == ("missing", "only in old")
    sheets = page.split('id="sheets"', 1)[1].split('id="missing"', 1)[0]
    for version in ("old", "new"):  # both versions' aligned crops of the regressed cell
        alts = re.findall(r'<img src="data:image/jpeg;base64,[^"]+" alt="([^"]+)"', sheets)
        assert {f"toolA/{version}/s1/happy.jpg", f"toolA/{version}/s1/happy-2.jpg"} <= set(alts)
    index = (reports / "index.html").read_text(encoding="utf-8")
    assert 'href="changes/toolA.html"' in index
    assert "toolB: only one version (1)" in index
    deltas = json.loads((reports / "deltas.json").read_text())
    assert set(deltas) == {"toolA"}
    assert deltas["toolA"]["fer"]["mean_target_prob"]["delta"] < 0
    assert deltas["toolA"]["regressions"] >= 1


def test_a_large_comparison_keeps_the_page_bounded(built) -> None:
    """The heatmap draws at most `max_subjects` subjects' cells, regressed ones first; the
    side-by-side sheets stop at `max_images` images, largest drop first, and say how many
    regressed cells have no sheet."""
    from dataclasses import replace

    from exprbench.changes_report import _sheets, delta_heatmap
    from exprbench.report_sheets import ReportScores

    comparison = built["comparisons"][0]
    heatmap = delta_heatmap(comparison, BUILTIN_METRICS, max_subjects=1)
    assert heatmap["subjects_not_shown"] == 1
    assert {c["subject"] for c in heatmap["columns"]} == {None, "anna"}  # anna regressed
    full = delta_heatmap(comparison, BUILTIN_METRICS)
    assert full["subjects_not_shown"] == 0
    assert {c["subject"] for c in full["columns"]} == {None, "anna", "ben"}

    # a second regressed cell with a smaller drop: with room for one cell's 6 images, the
    # larger drop (anna/happy) has its sheet and the other is counted as not shown
    worst = next(d for d in comparison.regressions() if d.subject == "anna")
    milder = replace(worst, subject="ben", delta=-0.2)
    two = replace(comparison, deltas=(*comparison.deltas, milder))
    scores = pd.read_parquet(built["reports"].parent / "scores" / "scores.parquet")
    source = ReportScores.from_frames(scores, None, {}, None)
    entries, _, not_shown = _sheets(two, source, 64, BUILTIN_METRICS, None, max_images=6)
    assert [(e["subject"], e["expression"]) for e in entries] == [("anna", "happy")]
    assert not_shown == 1
    entries, _, not_shown = _sheets(two, source, 64, BUILTIN_METRICS, None, max_images=12)
    assert [e["subject"] for e in entries] == ["anna", "ben"] and not_shown == 0
    assert [len(side["images"]) for side in entries[1]["sides"]] == [3, 3]
