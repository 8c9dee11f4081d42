"""The GX suite: clean scores pass; each kind of corruption fails naming check and row."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import missing_prerequisite
from test_aggregate import DECLARED, NO_FACE, make_scores

from exprbench.packaged import PackagedFileError
from exprbench.schema import PROB_COLUMNS
from exprbench.validation import (
    ValidationReport,
    build_checks,
    fetch_data_docs_assets,
    rewrite_remote_tags,
    validate_scores,
)
from exprbench.validation.suite import (
    IMPOSTOR_COLUMN,
    NO_FACE_FILLED_COLUMN,
    SAME_IDENTITY_COLUMN,
    THRESHOLD_ATTR,
    TOP1_COLUMN,
    with_derived_columns,
)

REMOTE_LOAD = re.compile(
    r"<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE
)
LOCAL_LOAD = re.compile(
    r"<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*\"([^\"#?]+)", re.IGNORECASE
)


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return make_scores()


@pytest.fixture(scope="module")
def clean_report(clean: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    docs = tmp_path_factory.mktemp("docs")
    return validate_scores(clean, DECLARED, docs), docs


def _first(df: pd.DataFrame, **where) -> int:
    mask = np.logical_and.reduce([df[k] == v for k, v in where.items()])
    return int(df.index[mask][0])


def _fer_row(df: pd.DataFrame, expression: str) -> int:
    return _first(df, scorer="fer", generator="ChatGPT", subject="ben", expression=expression)


# Each corruption touches its own row, so all can be checked in one validation run.
def _out_of_range(df: pd.DataFrame) -> int:
    row = _fer_row(df, "sad")
    df.loc[row, "p_happy"] = 1.3
    return row


def _bad_sum(df: pd.DataFrame) -> int:
    row = _fer_row(df, "angry")
    df.loc[row, "p_angry"] += 0.05
    return row


def _duplicate(df: pd.DataFrame) -> int:
    row = _fer_row(df, "surprise")
    df.loc[len(df)] = df.loc[row]
    return row


def _unknown_expression(df: pd.DataFrame) -> int:
    row = _first(df, scorer="agegender", generator="Gemini", subject="anna", expression="sad")
    df.loc[row, "expression"] = "smiling"
    return row


def _unknown_top1(df: pd.DataFrame) -> int:
    row = _fer_row(df, "fear")
    df.loc[row, "top1"] = "joy"
    return row


def _null_with_face(df: pd.DataFrame) -> int:
    row = _fer_row(df, "disgust")
    df.loc[row, "top1"] = None
    return row


def _null_reference_without_note(df: pd.DataFrame) -> int:
    row = _first(df, scorer="dlib", generator="Gemini", subject="anna", expression="happy")
    df.loc[row, "identity_similarity"] = np.nan
    return row


def _age_out_of_range(df: pd.DataFrame) -> int:
    row = _first(df, scorer="agegender", generator="Copilot", subject="anna", expression="sad")
    df.loc[row, "age"] = 130.0
    return row


def _unknown_gender(df: pd.DataFrame) -> int:
    row = _first(df, scorer="agegender", generator="ChatGPT", subject="anna", expression="sad")
    df.loc[row, "gender"] = "woman"
    return row


def _top1_not_argmax(df: pd.DataFrame) -> int:
    row = _fer_row(df, "happy")
    df.loc[row, "top1"] = "sad"  # in the vocabulary, but p_happy is the highest
    return row


def _same_identity_far_away(df: pd.DataFrame) -> int:
    row = _first(df, scorer="dlib", generator="ChatGPT", subject="ben", expression="happy")
    df.loc[row, ["identity_distance", "identity_similarity"]] = [0.95, 0.05]
    df.loc[row, "same_identity"] = True
    return row


def _rank1_with_rank_three(df: pd.DataFrame) -> int:
    row = _first(df, scorer="dlib", generator="Gemini", subject="anna", expression="sad")
    df.loc[row, "identity_rank"] = 3.0  # identity_rank1 stays true
    return row


def _rank_zero(df: pd.DataFrame) -> int:
    row = _first(df, scorer="dlib", generator="ChatGPT", subject="anna", expression="sad")
    df.loc[row, "identity_rank"] = 0.0  # a rank is at least 1
    return row


def _value_without_face(df: pd.DataFrame) -> int:
    generator, subject, expression = NO_FACE
    row = _first(
        df, scorer="agegender", generator=generator, subject=subject, expression=expression
    )
    df.loc[row, "age"] = 30.0
    return row


CORRUPTIONS: dict[str, tuple[Callable[[pd.DataFrame], int], str, str]] = {
    # name: (mutate -> row index, failing check, column whose value the row shows)
    "probability above 1": (_out_of_range, "range:p_happy", "p_happy"),
    "probabilities not summing to 1": (_bad_sum, "probabilities_sum_to_one", "chk_p_sum"),
    "duplicate key": (_duplicate, "unique_key", "subject"),
    "unknown expression": (_unknown_expression, "vocabulary:expression", "expression"),
    "unknown top1": (_unknown_top1, "vocabulary:top1", "top1"),
    "null where a face was found": (_null_with_face, "not_null:top1", "top1"),
    "null reference value without a note": (
        _null_reference_without_note,
        "not_null:identity_similarity",
        "identity_similarity",
    ),
    "age above 120": (_age_out_of_range, "range:age", "age"),
    "gender outside the vocabulary": (_unknown_gender, "vocabulary:gender", "gender"),
    "top1 not the argmax": (_top1_not_argmax, "top1_is_argmax", TOP1_COLUMN),
    "same identity at distance 0.95": (
        _same_identity_far_away,
        "same_identity_matches_distance",
        SAME_IDENTITY_COLUMN,
    ),
    "rank-1 with rank 3": (
        _rank1_with_rank_three,
        "impostor_measures_consistent",
        IMPOSTOR_COLUMN,
    ),
    "rank 0": (_rank_zero, "range:identity_rank", "identity_rank"),
    "metric on a face_found=false row": (
        _value_without_face,
        "no_values_without_face",
        NO_FACE_FILLED_COLUMN,
    ),
}


def test_clean_scores_pass(clean_report) -> None:
    report, docs = clean_report
    assert report.success, report.summary_markdown()
    assert report.failures == [] and report.n_rows == len(make_scores())
    assert report.docs_index == docs / "index.html" and report.docs_index.is_file()
    assert report.docs_page is not None and report.docs_page.is_file()
    assert "PASSED" in report.summary_markdown()


def test_no_face_and_no_neutral_rows_are_accepted(clean: pd.DataFrame) -> None:
    generator, subject, expression = NO_FACE
    no_face = clean[
        (clean.generator == generator)
        & (clean.subject == subject)
        & (clean.expression == expression)
    ]
    assert not no_face.face_found.any() and no_face.target_prob.isna().all()
    assert clean.note.str.contains("no neutral").any()


def test_checks_follow_output_metrics() -> None:
    checks = {check.name: check for check in build_checks(DECLARED)}
    assert checks["range:identity_distance"].kwargs["min_value"] == 0.0
    assert checks["range:age"].kwargs["max_value"] == 120.0
    assert checks["range:top1_prob"].kwargs["max_value"] == 1.0
    assert {f"range:{c}" for c in PROB_COLUMNS} <= set(checks)
    assert checks["vocabulary:scorer"].kwargs["value_set"] == sorted(DECLARED)
    expression_only = {check.name for check in build_checks({"fer": {"expression"}})}
    assert "not_null:target_prob" in expression_only and "not_null:age" not in expression_only
    with pytest.raises(ValueError, match="emotion"):
        build_checks({"x": {"emotion"}})


@pytest.fixture(scope="module")
def corrupted(clean: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int], ValidationReport]:
    df = clean.copy()
    rows = {case: mutate(df) for case, (mutate, _, _) in CORRUPTIONS.items()}
    assert len(set(rows.values())) == len(rows), "corruptions must touch distinct rows"
    return df, rows, validate_scores(df, DECLARED)


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corruption_fails_naming_check_and_row(corrupted, case: str) -> None:
    df, rows, report = corrupted
    _, check_name, column = CORRUPTIONS[case]
    row = rows[case]
    assert not report.success
    failed = {f.name: f for f in report.failures}
    assert check_name in failed, f"{case}: failed checks were {sorted(failed)}"
    offending = failed[check_name].rows
    expected = (df.loc[row, "path"], df.loc[row, "scorer"])
    assert expected in {(r["path"], r["scorer"]) for r in offending}, offending
    assert all(column in r for r in offending)
    text = report.summary_markdown()
    assert check_name in text and df.loc[row, "path"] in text


def test_relations_name_what_is_inconsistent(corrupted) -> None:
    df, rows, report = corrupted
    failed = {f.name: f for f in report.failures}
    path = df.loc[rows["top1 not the argmax"], "path"]
    (top1,) = [r for r in failed["top1_is_argmax"].rows if r["path"] == path]
    assert "top1 sad" in top1[TOP1_COLUMN] and "p_happy" in top1[TOP1_COLUMN]
    (filled,) = failed["no_values_without_face"].rows
    assert filled[NO_FACE_FILLED_COLUMN] == "age"


def test_same_identity_follows_the_recorded_threshold(clean: pd.DataFrame) -> None:
    df = clean.copy()
    df.attrs[THRESHOLD_ATTR] = 0.6
    dlib = df.index[(df.scorer == "dlib") & df.identity_distance.notna()]
    # the fixture's rule (similarity >= 0.6) is not distance < 0.6: a distance of 0.5 is
    # the same identity under the recorded threshold, so those rows are flagged
    derived = with_derived_columns(df, DECLARED)[SAME_IDENTITY_COLUMN]
    flagged = set(derived.dropna().index)
    expected = {
        i for i in dlib if (df.at[i, "identity_distance"] < 0.6) != df.at[i, "same_identity"]
    }
    assert flagged == expected and expected
    df.loc[dlib, "same_identity"] = df.loc[dlib, "identity_distance"] < 0.6
    assert with_derived_columns(df, DECLARED)[SAME_IDENTITY_COLUMN].isna().all()


def test_subject_gender_beyond_female_male_is_data(clean: pd.DataFrame) -> None:
    df = clean.copy()
    df.loc[df.subject == "anna", "subject_gender"] = "nonbinary"
    assert "vocabulary:subject_gender" not in {c.name for c in build_checks(DECLARED)}
    assert "vocabulary:gender" in {c.name for c in build_checks(DECLARED)}
    report = validate_scores(df, DECLARED)
    assert report.success, report.summary_markdown()


def test_empty_frame_gives_a_clear_failure(clean: pd.DataFrame) -> None:
    report = validate_scores(clean.iloc[0:0], DECLARED)
    assert not report.success and report.n_rows == 0
    assert [f.name for f in report.failures] == ["table_has_rows"]
    assert "at least one row" in report.summary_markdown()


def test_missing_columns_are_reported_not_raised(clean: pd.DataFrame) -> None:
    report = validate_scores(clean.drop(columns=["target_prob", "note"]), DECLARED)
    assert not report.success
    assert report.failures[0].name == "schema:columns"
    assert "target_prob" in report.failures[0].column


def test_report_json_is_strict_and_complete(corrupted) -> None:
    _, _, report = corrupted
    payload = json.loads(report.to_json())
    assert payload["success"] is False
    failure = next(f for f in payload["failures"] if f["name"] == "range:p_happy")
    assert failure["unexpected_count"] == 1 and len(failure["rows"]) == 1
    assert failure["rows"][0]["p_happy"] == pytest.approx(1.3)
    # the p_happy row and the _bad_sum row; the duplicate has a valid sum
    sums = next(f for f in payload["failures"] if f["name"] == "probabilities_sum_to_one")
    assert sums["unexpected_count"] == 2


def _assert_offline(docs: Path) -> None:
    pages = list(docs.rglob("*.html"))
    assert len(pages) >= 3
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not REMOTE_LOAD.search(html), f"{page} still loads {REMOTE_LOAD.search(html)}"
        for target in LOCAL_LOAD.findall(html):
            assert (page.parent / target).is_file(), f"{page}: {target} does not exist"


def test_data_docs_stripped_without_asset_cache(
    clean: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path / "empty-cache"))
    report = validate_scores(clean, DECLARED, tmp_path / "docs")
    assert report.docs_mode == "stripped"
    _assert_offline(tmp_path / "docs")
    index = (tmp_path / "docs" / "index.html").read_text(encoding="utf-8")
    page = report.docs_page.relative_to(tmp_path / "docs").as_posix()
    assert f'href="{page}"' in index  # the plain list replaces the JS-drawn table


def test_data_docs_vendored_from_npm(clean: pd.DataFrame, tmp_path: Path) -> None:
    try:
        fetch_data_docs_assets()  # the setup step; cached after the first run
    except PackagedFileError as error:
        missing_prerequisite(
            f"the Data Docs assets (npm packages, fetched with `npm pack` into the user "
            f"cache) could not be fetched: install Node.js/npm and make the npm registry "
            f"reachable once: {error}"
        )
    report = validate_scores(clean, DECLARED, tmp_path / "docs")
    assert report.docs_mode == "vendored"
    _assert_offline(tmp_path / "docs")
    index = (tmp_path / "docs" / "index.html").read_text(encoding="utf-8")
    assert "static/vendor/" in index and "jquery.min.js" in index
    assert "integrity=" not in index and "crossorigin=" not in index


def test_rewrite_remote_tags_keeps_local_and_drops_unknown() -> None:
    html = (
        '<script src="https://cdn.example/a.js" integrity="sha384-x" crossorigin="anonymous">'
        '</script><link rel="stylesheet" href="https://cdn.example/b.css">'
        '<img src="https://cdn.example/c.png?d=1"><a href="https://example.org">doc</a>'
        '<script src="local.js"></script>'
    )
    out, dropped = rewrite_remote_tags(html, {"https://cdn.example/a.js": "vendor/a.js"})
    assert out.startswith('<script src="vendor/a.js"></script>')
    assert dropped == ["https://cdn.example/b.css", "https://cdn.example/c.png?d=1"]
    assert '<a href="https://example.org">' in out and '<script src="local.js">' in out
