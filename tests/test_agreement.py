"""Judgements on several recognizers: Fleiss' kappa against Fleiss' worked example and an
independent implementation (statsmodels), majority and tie rule, the seed study's
lambda weighting, accuracy / structural confusion rates, requested-age forms; then the
real stages (ingest .. report) on real photos with the real recognizers, and the DuckDB
tables checked against the pure functions row by row.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import build_raw, import_or_missing

from exprbench.agreement import (
    add_weights,
    age_prompt_columns,
    confusion_rates,
    fleiss_kappa,
    lambda_weight,
    majority,
    table_range_violations,
    top1_of_six,
)
from exprbench.config import Layout
from exprbench.judgement_specs import SCR_PAIRS
from exprbench.labels import EXPRESSIONS
from exprbench.prompt_age import MAX_AGE, AgeFormError, parse_requested_age
from exprbench.settings import ParamsError, Settings, load_params, load_settings

ROOT = Path(__file__).resolve().parent.parent

# Fleiss (1971), the worked example as reproduced in most textbooks: 10 subjects, 14
# raters, 5 categories; P = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_EXAMPLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_matches_the_worked_example() -> None:
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_matches_statsmodels() -> None:
    inter_rater = import_or_missing(
        "statsmodels.stats.inter_rater", "pip install statsmodels (the dev extra)"
    )
    rng = random.Random(7)
    for _ in range(50):
        raters, categories = rng.randint(2, 6), rng.randint(2, 7)
        table = []
        for _ in range(rng.randint(1, 30)):
            row = [0] * categories
            for _ in range(raters):
                row[rng.randrange(categories)] += 1
            table.append(row)
        ours = fleiss_kappa(table)
        if ours is None:  # undefined: every vote in one category
            assert sum(1 for j in range(categories) if any(r[j] for r in table)) == 1
            continue
        assert ours == pytest.approx(inter_rater.fleiss_kappa(table, method="fleiss"), abs=1e-12)


def test_fleiss_kappa_edges() -> None:
    assert fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)
    assert fleiss_kappa([[1, 1], [1, 1]]) == pytest.approx(-1.0)
    assert fleiss_kappa([[2, 0], [2, 0]]) is None  # no variation: undefined
    assert fleiss_kappa([[1, 0]]) is None  # one rater
    assert fleiss_kappa([]) is None
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa([[2, 0], [1, 0]])


def test_majority_and_tie_rule() -> None:
    three = majority({"a": ("happy", 0.9), "b": ("happy", 0.6), "c": ("sad", 0.99)})
    assert (three.label, three.votes, three.tied, three.agreement_rate) == (
        "happy",
        2,
        False,
        pytest.approx(2 / 3),
    )
    # a 1-1 tie goes to the more confident side, and is marked
    tie = majority({"a": ("fear", 0.55), "b": ("surprise", 0.8)})
    assert (tie.label, tie.tied, tie.agreement_rate) == ("surprise", True, 0.5)
    # equal confidence too: the canonical expression order decides
    even = majority({"a": ("fear", 0.5), "b": ("surprise", 0.5)})
    assert even.label == "surprise"  # surprise precedes fear in EXPRESSIONS
    assert EXPRESSIONS.index("surprise") < EXPRESSIONS.index("fear")
    with pytest.raises(ValueError):
        majority({})


def test_lambda_weighting() -> None:
    assert lambda_weight(0.6, 0.6) == 1.0
    assert lambda_weight(0.59, 0.6) == 0.59
    rows = [
        {"path": "a.png", "scorer": "r1", "target_prob": 0.3},
        {"path": "a.png", "scorer": "r2", "target_prob": 0.9},
        {"path": "a.png", "scorer": "ageonly", "target_prob": None},
        {"path": "b.png", "scorer": "r1", "target_prob": 0.7},
        {"path": "b.png", "scorer": "judge", "target_prob": 0.2},
    ]
    out = add_weights([dict(r) for r in rows], 0.6, judges=["judge"])
    by = {(r["path"], r["scorer"]): r for r in out}
    # no judge on a.png: each recognizer its own target probability
    assert (by["a.png", "r1"]["lambda_weight"], by["a.png", "r1"]["ambiguous"]) == (0.3, True)
    assert (by["a.png", "r2"]["lambda_weight"], by["a.png", "r2"]["ambiguous"]) == (1.0, False)
    assert "lambda_weight" not in by["a.png", "ageonly"]
    # the judge's confidence on b.png weighs every recognizer there
    assert by["b.png", "judge"]["image_confidence"] == 0.2
    assert by["b.png", "r1"]["lambda_weight"] == 0.2 and by["b.png", "r1"]["ambiguous"]
    with pytest.raises(ValueError, match="tau"):
        add_weights(rows, 0.0)


def test_tau_param() -> None:
    params = load_params(ROOT / "params.yaml")
    assert load_settings(ROOT / "params.yaml").score.tau == 0.6
    params["score"]["tau"] = 1.5
    with pytest.raises(ParamsError, match=r"score\.tau"):
        Settings.from_params(params)


def _probs(best: str, second: str | None = None) -> dict[str, float]:
    probs = dict.fromkeys(EXPRESSIONS, 0.01)
    probs[best] = 0.8
    if second:
        probs[second] = 0.13
    return probs


def test_confusion_rates_by_hand() -> None:
    images = [
        ("fear", "surprise", _probs("surprise", "fear")),  # fear read as surprise
        ("fear", "fear", _probs("fear")),
        ("surprise", "surprise", _probs("surprise")),
        ("sad", "neutral", _probs("neutral", "sad")),  # over 6 classes: sad, correct
        ("neutral", "neutral", _probs("neutral")),
        ("happy", "happy", _probs("happy")),
    ]
    rates = confusion_rates(images, SCR_PAIRS)
    assert (rates.n_7, rates.accuracy_7) == (6, pytest.approx(4 / 6))
    # over 6: fear read as surprise stays wrong, sad read as neutral counts as sad
    assert (rates.n_6, rates.accuracy_6) == (5, pytest.approx(4 / 5))
    assert rates.scr == {
        "scr_fear_surprise": pytest.approx(1 / 3),
        "scr_disgust_angry": None,
        "scr_sad_neutral": pytest.approx(1 / 2),
    }
    assert rates.mscr == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert top1_of_six(_probs("neutral", "sad")) == "sad"


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("34", 34, 35),
        ("30-40", 30, 41),
        (" 30 – 40 ", 30, 41),
        ("30 to 40", 30, 41),
        ("20s", 20, 30),
        ("20's", 20, 30),
        ("early 30s", 30, 34),
        ("Late 30s", 36, 40),
        ("65+", 65, MAX_AGE),
        ("over 65", 65, MAX_AGE),
        ("under 18", 0, 18),
        ("Adult", 18, 65),
        ("middle-aged", 40, 65),
        ("young adult", 18, 30),
        ("elderly", 65, MAX_AGE),
    ],
)
def test_requested_age_forms(text: str, low: float, high: float) -> None:
    parsed = parse_requested_age(text)
    assert (parsed.low, parsed.high) == (low, high)


@pytest.mark.parametrize("text", ["thirtyish", "40-30", "200", "25s", "", "adult-ish"])
def test_requested_age_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(AgeFormError, match=re.escape(repr(text))):
        parse_requested_age(text)


def test_age_against_the_prompt() -> None:
    assert age_prompt_columns(45.5, "30-40") == (
        {"age_prompt_error": pytest.approx(4.5), "age_in_prompt_range": False},
        None,
    )
    assert age_prompt_columns(27.0, "30-40")[0]["age_prompt_error"] == -3.0
    assert age_prompt_columns(40.9, "30-40")[0] == {
        "age_prompt_error": 0.0,
        "age_in_prompt_range": True,
    }
    assert age_prompt_columns(90.0, "65+")[0]["age_in_prompt_range"]
    assert age_prompt_columns(30.0, None) == ({}, None)
    columns, note = age_prompt_columns(30.0, "thirtyish")
    assert columns == {} and note is not None and "accepted" in note


def test_table_range_violations_name_table_column_and_row() -> None:
    table = pa.table({"fleiss_kappa": [0.5, -1.2, None], "mean_agreement_rate": [1.0, 0.2, 1.5]})
    problems = table_range_violations({"agreement": table})
    assert len(problems) == 2
    assert problems[0].startswith("agreement.fleiss_kappa row 1: -1.2 outside [-1, 1]")
    assert problems[1].startswith("agreement.mean_agreement_rate row 2")


# --------------------------------------------------------------- the real stages

# Real photos (from packages) as two generator/versions; ages in several forms, one not
# understood (flagged by ingest, measured nowhere).
REAL_SET = {
    "genA/v1/obama/neutral.jpg": "obama3",
    "genA/v1/obama/happy.jpg": "obama",
    "genA/v1/obama/sad.jpg": "obama2",
    "genA/v1/biden/neutral.jpg": "biden",
    "genA/v1/hopper/neutral.jpg": "grace_hopper",
    "genA/v1/hopper/surprise.jpg": "feat_surprise",
    "genB/2/franck/neutral.jpg": "franck_01829",
    "genB/2/franck/happy.jpg": "franck_04117",
    "genB/2/franck/fear.jpg": "franck_02045",
    "genB/2/franck/angry.jpg": "feat_angry",
    "genB/2/franck/disgust.jpg": "feat_disgust",
    "genB/2/collins/happy.png": "astronaut",
}
SUBJECTS_CSV = (
    "subject,gender,age\n"
    "obama,male,45-55\n"
    "biden,male,over 65\n"
    "hopper,female,elderly\n"
    "franck,man,30s\n"
    "collins,female,thirtyish\n"
)
RECOGNIZERS = ("faceapi", "fer", "age_gender")


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory, photos, models):
    from tasks.aggregate import aggregate
    from tasks.faces import faces
    from tasks.ingest import ingest
    from tasks.report import report
    from tasks.score import score
    from tasks.upscale import upscale
    from tasks.validate import validate

    root = tmp_path_factory.mktemp("judged")
    raw = build_raw(root / "raw", photos, REAL_SET)
    (raw / "subjects.csv").write_text(SUBJECTS_CSV)
    settings = load_settings(ROOT / "params.yaml")
    settings = dataclasses.replace(
        settings, score=dataclasses.replace(settings.score, scorers=RECOGNIZERS)
    )
    layout = Layout.for_output(raw, root / "out")
    for stage in (ingest, upscale, faces, score, validate, aggregate, report):
        stage.fn(layout, settings)
    with duckdb.connect(str(layout.database), read_only=True) as con:
        tables = {
            name: con.sql(f"SELECT * FROM {name}").to_arrow_table().to_pylist()
            for name in (
                "image_agreement",
                "agreement",
                "confusion_summary",
                "weighted_expression",
                "gender_agreement",
                "gender_runs",
                "age_prompt",
            )
        }
    scores = pq.read_table(layout.scores).to_pylist()
    return layout, tables, scores, settings


def _expression_rows(scores: list[dict]) -> list[dict]:
    return [r for r in scores if r["scorer"] in ("faceapi", "fer") and r["top1"] is not None]


def test_real_scores_carry_weights_and_age_against_prompt(judged) -> None:
    layout, _, scores, settings = judged
    rows = _expression_rows(scores)
    assert rows
    for row in rows:
        expected = lambda_weight(row["target_prob"], settings.score.tau)
        assert row["lambda_weight"] == pytest.approx(expected)
        assert row["ambiguous"] == (row["target_prob"] < settings.score.tau)
    ages = [r for r in scores if r["scorer"] == "age_gender" and r["age"] is not None]
    by_subject = {r["subject"]: r for r in ages}
    obama = by_subject["obama"]
    assert obama["subject_age"] == "45-55"
    wanted = parse_requested_age("45-55")
    assert obama["age_prompt_error"] == pytest.approx(wanted.error(obama["age"]))
    assert obama["age_in_prompt_range"] == (obama["age_prompt_error"] == 0.0)
    collins = by_subject["collins"]
    assert collins["age_prompt_error"] is None and "thirtyish" in collins["note"]
    flags = pq.read_table(layout.images).to_pylist()
    assert any("thirtyish" in (r["flags"] or "") for r in flags)
    # validation ran the range checks of the new columns and passed
    validation = json.loads(layout.validation_json.read_text())
    assert validation["success"], validation
    assert {
        "range:lambda_weight",
        "range:age_prompt_error",
        "not_null:lambda_weight",
        "not_null:ambiguous",
        "ambiguous_matches_lambda",
        "age_in_range_matches_error",
    } <= set(validation["checks"])


def test_agreement_tables_match_the_pure_functions(judged) -> None:
    _, tables, scores, _ = judged
    rows = _expression_rows(scores)
    per_image: dict[str, dict[str, tuple[str, float]]] = {}
    for row in rows:
        per_image.setdefault(row["path"], {})[row["scorer"]] = (row["top1"], row["top1_prob"])
    images = {r["path"]: r for r in tables["image_agreement"]}
    assert set(images) == set(per_image)
    for path, votes in per_image.items():
        expected = majority(votes)
        got = images[path]
        assert (got["majority"], got["majority_votes"], got["tied"], got["n_raters"]) == (
            expected.label,
            expected.votes,
            expected.tied,
            expected.n_raters,
        )
        assert got["agreement_rate"] == pytest.approx(expected.agreement_rate)
        for scorer, (label, _) in votes.items():
            assert f"{scorer}: {label}" in got["verdicts"]
    for run in tables["agreement"]:
        complete = [
            votes
            for path, votes in per_image.items()
            if images[path]["generator"] == run["generator"] and len(votes) == run["n_raters"]
        ]
        counts = [
            [sum(v[0] == e for v in votes.values()) for e in EXPRESSIONS] for votes in complete
        ]
        assert run["n_images"] == len(complete)
        expected_kappa = fleiss_kappa(counts)
        if expected_kappa is None:
            assert run["fleiss_kappa"] is None
        else:
            assert run["fleiss_kappa"] == pytest.approx(expected_kappa, abs=1e-12)
    assert {r["recognizers"] for r in tables["agreement"]} == {"faceapi, fer"}


def test_confusion_and_weighted_tables_match_the_pure_functions(judged) -> None:
    _, tables, scores, _ = judged
    rows = _expression_rows(scores)
    for summary in tables["confusion_summary"]:
        mine = [
            (r["expression"], r["top1"], {e: r[f"p_{e}"] for e in EXPRESSIONS})
            for r in rows
            if (r["scorer"], r["generator"]) == (summary["scorer"], summary["generator"])
        ]
        rates = confusion_rates(mine, SCR_PAIRS)
        assert summary["n_7"] == rates.n_7 and summary["n_6"] == rates.n_6
        for name in ("accuracy_7", "accuracy_6", "mscr", *rates.scr):
            value = (
                getattr(rates, name, None)
                if name in ("accuracy_7", "accuracy_6", "mscr")
                else rates.scr[name]
            )
            assert summary[name] == (None if value is None else pytest.approx(value))
    for line in tables["weighted_expression"]:
        mine = [
            r
            for r in rows
            if (r["scorer"], r["generator"]) == (line["scorer"], line["generator"])
            and (
                r["expression"] == line["expression"]
                if line["scope"] == "expression"
                else r["expression"] != "neutral"
            )
        ]
        weights = [r["lambda_weight"] for r in mine]
        assert line["n_target_prob"] == len(mine)
        assert line["n_ambiguous"] == sum(r["ambiguous"] for r in mine)
        expected = sum(w * r["target_prob"] for w, r in zip(weights, mine, strict=True)) / sum(
            weights
        )
        assert line["weighted_mean_target_prob"] == pytest.approx(expected)


def test_gender_majority_and_age_table(judged) -> None:
    _, tables, scores, _ = judged
    genders = [r for r in scores if r["gender"] is not None]
    assert {r["scorer"] for r in genders} == {"faceapi", "age_gender"}
    for image in tables["gender_agreement"]:
        votes = {
            r["scorer"]: (r["gender"], r["gender_prob"])
            for r in genders
            if r["path"] == image["path"]
        }
        expected = majority(votes, order=())
        assert (image["majority"], image["unanimous"]) == (
            expected.label,
            expected.votes == len(votes),
        )
    assert {r["generator"] for r in tables["gender_runs"]} == {"genA", "genB"}
    cells = [r for r in tables["age_prompt"] if r["n_age_prompt_error"]]
    assert {r["scorer"] for r in cells} == {"faceapi", "age_gender"}  # both estimate age


def test_report_shows_the_judgements(judged) -> None:
    layout, tables, _, _ = judged
    html = layout.report_html.read_text(encoding="utf-8")
    section = re.search(r'<h2 id="agreement">(.*?)<h2 id="contact-sheet"', html, re.S)
    assert section, "no agreement section"
    text = section.group(1)
    for run in tables["agreement"]:
        assert f"{run['generator']} {run['version']}" in text
    assert "Fleiss" in text and "weighted" in text
    confusion = re.search(r'<h2 id="confusion">(.*?)<h2 id="agreement"', html, re.S)
    assert confusion and confusion.group(1).count("mSCR") == len(tables["confusion_summary"])
    disagreeing = [r for r in tables["image_agreement"] if not r["unanimous"]]
    assert text.count('class="disagree-shot shot"') == len(disagreeing)
    if disagreeing:
        assert "data:image/jpeg;base64," in text
    assert "Age against the prompt" in html


def test_a_judge_declaring_image_confidence_weighs_every_recognizer(judged, tmp_path: Path) -> None:
    """The CLIP hook, with a real model as the judge: a scorer that declares the
    image_confidence metric (here fer under another name) sets every recognizer's lambda
    on the images it scored; validation accepts the result."""
    import shutil

    from exprbench.judgement_specs import IMAGE_CONFIDENCE
    from exprbench.scorers.base import get_scorer_class, register, unregister
    from tasks.score import score
    from tasks.validate import validate

    layout, _, _, settings = judged
    fer = get_scorer_class("fer")
    judge = type(
        "FerJudge",
        (fer,),
        {
            "name": "fer_judge",
            "extra_metrics": (IMAGE_CONFIDENCE,),
            "description": "fer as an image judge (test of the image_confidence hook)",
        },
    )
    register(judge)
    try:
        copy = Layout.for_output(layout.input_dir, tmp_path / "out")
        shutil.copytree(layout.interim, copy.interim)
        settings = dataclasses.replace(
            settings, score=dataclasses.replace(settings.score, scorers=("faceapi", "fer_judge"))
        )
        score.fn(copy, settings)
        validate.fn(copy, settings)
    finally:
        unregister("fer_judge")
    rows = [r for r in pq.read_table(copy.scores).to_pylist() if r["top1"] is not None]
    confidence = {r["path"]: r["target_prob"] for r in rows if r["scorer"] == "fer_judge"}
    assert confidence
    tau = settings.score.tau
    for row in rows:
        assert row["lambda_weight"] == pytest.approx(lambda_weight(confidence[row["path"]], tau))
        assert row["ambiguous"] == (confidence[row["path"]] < tau)
        if row["scorer"] == "fer_judge":
            assert row["image_confidence"] == row["target_prob"]
        else:
            assert row["image_confidence"] is None
    # somewhere the judge and faceapi disagree on the weight faceapi alone would give
    assert any(
        lambda_weight(r["target_prob"], tau) != r["lambda_weight"]
        for r in rows
        if r["scorer"] == "faceapi"
    )
    assert json.loads(copy.validation_json.read_text())["success"]


def test_disagreement_lists_are_capped_and_say_so() -> None:
    """The report draws the first DISAGREEMENTS_SHOWN disagreeing images (and decodes only
    their thumbnails), and says there are more; unanimous images are never drawn."""
    from exprbench.judgement_report import DISAGREEMENTS_SHOWN, judgement_context

    rows = [{"path": f"g/v/s/{k:04d}-happy.png", "unanimous": k % 3 == 0} for k in range(400)]
    decoded: list[str] = []

    def thumbnail(path: str) -> tuple[str | None, str | None]:
        decoded.append(path)
        return None, "no thumbnail"

    context = judgement_context({"image_agreement": rows}, thumbnail, None, 3)
    shown = context["disagreements"]
    assert shown["more"] and len(shown["images"]) == DISAGREEMENTS_SHOWN == len(decoded)
    assert not any(image["unanimous"] for image in shown["images"])
    few = judgement_context({"gender_agreement": rows[:30]}, thumbnail, None, 3)
    assert not few["gender_disagreements"]["more"]
    assert len(few["gender_disagreements"]["images"]) == 20
