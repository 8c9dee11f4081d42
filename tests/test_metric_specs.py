"""Metrics declared once: a scorer defined here, with a metric no other scorer has, flows
through the real stages on real photos into every generated artefact, with no edit
outside this scorer.

The scorer is a real (small) measure, not a stand-in: the mouth opening from the 68
landmarks (inner-lip gap over inter-ocular distance), the kind of expression geometry a
later scorer will report against the neutral.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from exprbench.config import Layout
from exprbench.geometry import Face
from exprbench.metrics import Heatmap, Leaderboard, MetricSpec
from exprbench.schema import SCORES, metric_specs, scores_schema
from exprbench.scorers.base import ScoreOutput, Scorer, register, unregister
from exprbench.settings import load_settings
from tests.conftest import SMALL_SET, build_raw

ROOT = Path(__file__).resolve().parent.parent

MOUTH = MetricSpec(
    "mouth_open",
    0.0,
    2.0,
    None,
    "inner-lip gap over inter-ocular distance (68 landmarks)",
    unit="IOD",
    table="mouth",
    digits=3,
    heatmap=Heatmap("Mouth opening", "inner-lip gap / inter-ocular distance"),
    leaderboard=Leaderboard("mean_mouth_open", "mouth open"),
)


class MouthOpening(Scorer):
    name: ClassVar[str] = "mouth_probe"
    outputs: ClassVar[frozenset] = frozenset()
    extra_metrics: ClassVar[tuple[MetricSpec, ...]] = (MOUTH,)
    description: ClassVar[str] = "mouth opening from the 68 landmarks (test scorer)"
    crop: ClassVar[str] = "none: the faces stage's 68 landmarks"

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        marks = np.asarray(face.landmarks68, dtype=np.float64)
        iod = float(np.linalg.norm(marks[36:42].mean(0) - marks[42:48].mean(0)))
        gap = float(np.linalg.norm(marks[62] - marks[66]))
        return ScoreOutput(metrics={"mouth_open": gap / iod})


@pytest.fixture
def mouth_scorer() -> Iterator[type[Scorer]]:
    register(MouthOpening)
    yield MouthOpening
    unregister(MouthOpening.name)


def test_spec_round_trips_through_the_schema() -> None:
    schema = scores_schema([MOUTH], {"mouth_probe": ["mouth_open"]})
    assert schema.field("mouth_open").type == "double"
    specs = {s.column: s for s in metric_specs(schema)}
    assert specs["mouth_open"] == MOUTH
    assert "mouth_open" not in SCORES.names  # only where a scorer declares it
    with pytest.raises(ValueError, match="declared twice"):
        scores_schema([MOUTH, dataclasses.replace(MOUTH, high=3.0)])
    with pytest.raises(ValueError, match="lower-case identifier"):
        MetricSpec("Mouth Open", 0.0, 1.0, None, "")


def test_registering_a_conflicting_metric_is_refused() -> None:
    class Clash(MouthOpening):
        name: ClassVar[str] = "clash_probe"
        extra_metrics: ClassVar[tuple[MetricSpec, ...]] = (
            dataclasses.replace(MOUTH, column="target_prob"),
        )

    with pytest.raises(TypeError, match="built-in"):
        register(Clash)


@pytest.mark.slow
def test_a_new_scorer_s_metric_reaches_every_artefact(
    tmp_path: Path, photos, models, prefect_server, mouth_scorer
) -> None:
    from flows.stages import pipeline

    raw = build_raw(tmp_path / "raw", photos, SMALL_SET)
    settings = load_settings(ROOT / "params.yaml")
    settings = dataclasses.replace(
        settings, score=dataclasses.replace(settings.score, scorers=("fer", "mouth_probe"))
    )
    layout = Layout.for_output(raw, tmp_path / "out")
    pipeline(layout, settings)

    # the scores table has the column, filled on every face
    scores = pq.read_table(layout.scores)
    rows = [r for r in scores.to_pylist() if r["scorer"] == "mouth_probe" and r["face_found"]]
    assert rows and all(0.0 <= r["mouth_open"] < 2.0 for r in rows)
    # validation: a range check and a not-null check for it, both run by GX
    validation = json.loads(layout.validation_json.read_text())
    assert validation["success"]
    assert {"range:mouth_open", "not_null:mouth_open"} <= set(validation["checks"])
    # a study table with n, mean and the interval per cell, in DuckDB and as CSV
    with duckdb.connect(str(layout.database), read_only=True) as con:
        cells = con.sql(
            "SELECT n_mouth_open, mean_mouth_open, ci95_low_mouth_open, ci95_high_mouth_open "
            "FROM mouth WHERE scorer = 'mouth_probe' AND n_mouth_open > 0"
        ).fetchall()
        board = con.sql("SELECT mean_mouth_open FROM leaderboard WHERE scorer = 'mouth_probe'")
        assert all(v is not None for (v,) in board.fetchall())
    assert cells and all(n >= 1 and mean is not None for n, mean, _, _ in cells)
    happy = [r for r in rows if r["path"] == "toolA/v1/obama/happy.jpg"]
    assert happy and any(abs(mean - happy[0]["mouth_open"]) < 1e-9 for _, mean, _, _ in cells)
    assert (layout.tables / "mouth.csv").is_file()
    # the report draws its heatmap, and the DVC metrics carry its leaderboard value
    html = layout.report_html.read_text(encoding="utf-8")
    section = re.search(r"<h2[^>]*>Mouth opening</h2>(.*?)<h2", html, re.S)
    assert section, "no heatmap section for the new metric"
    assert "<h3>mouth_probe &middot;" in section.group(1) and "n=" in section.group(1)
    # the DVC headline metrics (its only scorer measures it) and the per-run leaderboard
    metrics = json.loads(layout.metrics_json.read_text())
    assert metrics["mouth_probe"]["mean_mouth_open"] > 0
    by_run = json.loads(layout.leaderboard_json.read_text())
    assert all("mean_mouth_open" in by_scorer["mouth_probe"] for by_scorer in by_run.values())
