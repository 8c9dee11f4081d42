"""`run_intervals`: n, mean, sd and 95% interval per run of each leaderboard entry and
study metric, generated from the specs with the leaderboard's own rules."""

from __future__ import annotations

import math

import duckdb
import pytest
from test_aggregate import make_scores, write_scores

from exprbench.aggregate import (
    TABLE_NAMES,
    compute_tables,
    run_statistics,
    study_table,
    table_sql,
    tabled,
)
from exprbench.report import _study_tables, run_statistic
from exprbench.scorers.base import BUILTIN_METRICS


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("intervals")
    return compute_tables(write_scores(make_scores(), root / "scores"))


def _one(tables, **where) -> dict:
    found = [
        r for r in tables["run_intervals"].to_pylist() if all(r[k] == v for k, v in where.items())
    ]
    assert len(found) == 1, where
    return found[0]


def test_means_equal_the_leaderboard(tables) -> None:
    columns = [spec.leaderboard.column for spec in BUILTIN_METRICS if spec.leaderboard]
    checked = 0
    for row in tables["leaderboard"].to_pylist():
        for column in columns:
            if row[column] is None:
                continue
            found = _one(
                tables,
                scorer=row["scorer"],
                generator=row["generator"],
                version=row["version"],
                statistic=column,
            )
            assert found["mean"] == pytest.approx(row[column])
            checked += 1
    assert checked == 24  # 3 runs x (2 fer + 2 agegender + 4 dlib) entries
    assert "run_intervals" in TABLE_NAMES  # in the DuckDB file and as CSV


def test_counts_follow_the_leaderboard_rules(tables) -> None:
    # mean_target_prob excludes neutral images: 13 of ChatGPT's 15 images
    target = _one(tables, scorer="fer", generator="ChatGPT", statistic="mean_target_prob")
    assert target["n"] == 13 and target["metric"] == "target_prob"
    assert target["mean"] == pytest.approx(10.5 / 13)
    values = [0.95, 0.85] + [0.9] * 5 + [0.7] * 6
    sd = math.sqrt(sum((v - 10.5 / 13) ** 2 for v in values) / 12)
    assert target["sd"] == pytest.approx(sd)
    half = 2.178813 * sd / math.sqrt(13)  # t(0.975, 12)
    assert target["ci95_low"] == pytest.approx(10.5 / 13 - half)
    assert target["ci95_high"] == pytest.approx(10.5 / 13 + half)
    # top-1 accuracy includes neutral: Copilot's 12 scored images, 10 right
    top1 = _one(tables, scorer="fer", generator="Copilot", statistic="top1_accuracy")
    assert (top1["n"], top1["mean"]) == (12, pytest.approx(10 / 12))
    assert top1["ci95_high"] > 1.0  # unclipped here; the report clips it
    # |age Δ|: reference-relative, so neutral rows and ben (no neutral) have none
    drift = _one(tables, scorer="agegender", generator="Copilot", statistic="mean_abs_age_delta")
    assert (drift["n"], drift["mean"], drift["metric"]) == (5, pytest.approx(3.0), "age_delta")
    # a study metric without a leaderboard entry: its plain mean over every image
    age = _one(tables, scorer="agegender", generator="ChatGPT", statistic="mean_age")
    assert age["n"] == 15
    # a scorer never gets rows for metrics it does not fill
    assert not [r for r in tables["run_intervals"].to_pylist() if r["n"] == 0]
    assert {
        r["statistic"] for r in tables["run_intervals"].to_pylist() if r["scorer"] == "fer"
    } == {
        "mean_target_prob",
        "top1_accuracy",
    }


def test_no_study_metric_gives_an_empty_table() -> None:
    with duckdb.connect() as con:
        rows = con.sql(table_sql(())["run_intervals"]).fetchall()
    assert rows == []


def test_report_names_statistics_and_tables_as_the_aggregate_does() -> None:
    # the report does not import exprbench.aggregate (the resolution page imports the
    # report); its copies of the naming and ordering rules must agree
    assert [(name, spec.column) for name, spec in run_statistics(BUILTIN_METRICS)] == [
        (run_statistic(spec), spec.column)
        for spec in BUILTIN_METRICS
        if spec.leaderboard is not None or spec.table is not None
    ]
    assert [
        (study_table(name).title, metrics) for name, metrics in tabled(BUILTIN_METRICS).items()
    ] == (_study_tables(BUILTIN_METRICS))
