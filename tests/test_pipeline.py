"""The whole pipeline as Prefect flows against a real Prefect server (test harness)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exprbench.config import Layout
from exprbench.settings import load_params, load_settings
from tests.badinputs import swallowing_manifest
from tests.conftest import SMALL_SET, build_raw

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _cli(args: list[str], api_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, photos, models, prefect_server):
    from flows.stages import pipeline

    tmp = tmp_path_factory.mktemp("pipeline")
    raw = build_raw(tmp / "raw", photos, SMALL_SET)
    (raw / "toolA" / "v1" / "obama" / "sad.jpg").write_bytes(b"")  # quarantined
    (raw / "subjects.csv").write_text(
        "subject,gender\nobama,male\nhopper,female\nfranck,male\ncollins,female\n"
    )
    layout = Layout.for_output(raw, tmp / "out")
    results = pipeline(layout, load_settings(ROOT / "params.yaml"))
    return layout, results


def test_every_stage_ran_and_wrote_its_outputs(pipeline_run):
    layout, results = pipeline_run
    assert [r.stage for r in results] == [
        "ingest",
        "upscale",
        "faces",
        "score",
        "validate",
        "aggregate",
        "report",
    ]
    for path in (
        layout.images,
        layout.quarantine,
        layout.upscale_table,
        layout.faces_table,
        layout.scores,
        layout.validation_json,
        layout.database,
        layout.report_html,
        layout.metrics_json,
    ):
        assert path.is_file(), path


def test_scored_plus_quarantined_equals_discovered(pipeline_run):
    layout, _ = pipeline_run
    images = pq.read_table(layout.images).num_rows
    quarantine = pq.read_table(layout.quarantine).to_pylist()
    assert images + len(quarantine) == len(SMALL_SET) + 1
    assert quarantine[0]["path"].endswith("sad.jpg") and "empty" in quarantine[0]["reason"]
    scores = pq.read_table(layout.scores).to_pandas()
    assert len(scores) == images * len(load_params(ROOT / "params.yaml")["score"]["scorers"])
    no_face = scores[scores.path.str.endswith("hopper/surprise.jpg")]
    assert not no_face.face_found.any() and no_face.target_prob.isna().all()


def test_quality_columns_reach_the_tables_and_report(pipeline_run):
    import duckdb

    layout, _ = pipeline_run
    with duckdb.connect(str(layout.database), read_only=True) as con:
        quality = con.execute("SELECT sum(n_brisque), sum(n_piqe) FROM quality").fetchone()
        perceptual = con.execute("SELECT sum(n_stlpips_vgg) FROM perceptual").fetchone()
    assert quality[0] > 0 and quality[1] > 0
    assert perceptual[0] >= 2  # obama and franck have a neutral and one other expression
    html = layout.report_html.read_text()
    for title in ("Image quality (BRISQUE)", "Perceptual distance (ST-LPIPS, VGG)"):
        # the section under its heading (the title also appears in the nav bar)
        section = re.split(rf"<h2[^>]*>{re.escape(title)}</h2>", html)[1].split("<h2", 1)[0]
        assert "No scorer produced this measure" not in section, title
        assert "<td" in section, title


def test_study_numbers_are_sensible(pipeline_run):
    layout, _ = pipeline_run
    scores = pq.read_table(layout.scores).to_pandas()
    fer = scores[(scores.scorer == "fer") & scores.face_found].set_index("path")
    assert fer.loc["toolA/v1/obama/happy.jpg", "top1"] == "happy"
    ident = scores[(scores.scorer == "dlib")].set_index("path")
    # the same man smiling: same identity as his neutral photo
    assert ident.loc["toolB/2/franck/joy.jpg", "same_identity"]
    assert ident.loc["toolA/v1/obama/happy.jpg", "identity_similarity"] > 0.3
    # no neutral for collins: null with a reason, not an error
    assert "no neutral" in ident.loc["toolB/2/collins/happy.png", "note"]


def test_identity_against_impostors_on_real_photos(pipeline_run):
    """The real gallery faces and the other subjects as impostors, for every identity
    model; the separability table, leaderboard AUC, bootstrap intervals and report."""
    import duckdb

    layout, _ = pipeline_run
    scores = pq.read_table(layout.scores).to_pandas()
    identity = scores[scores.identity_rank.notna()]
    assert set(identity.scorer) >= {"faceapi", "dlib"}
    assert (identity.identity_rank >= 1).all()
    for _, row in identity.iterrows():
        ids = list(row.impostor_ids)
        # franck (toolB) has no other subject with a neutral: gallery faces only;
        # obama (toolA) also has hopper's neutral
        assert sum(i.startswith("fake-avatars:") for i in ids) >= 50, row.path
        assert row.identity_n_impostors == len(ids) == len(row.impostor_distances)
        assert row.identity_rank1 == (row.identity_rank == 1)
        assert (
            abs(row.identity_margin - (min(row.impostor_distances) - row.identity_distance)) < 1e-5
        )
    obama = identity[identity.path == "toolA/v1/obama/happy.jpg"]
    assert all("subject:hopper" in list(ids) for ids in obama.impostor_ids)
    with duckdb.connect(str(layout.database), read_only=True) as con:
        separability = con.sql("SELECT * FROM identity_separability").to_df()
        auc = con.sql("SELECT scorer, identity_auc FROM leaderboard").fetchall()
        boot = con.execute(
            "SELECT count(*) FROM run_intervals WHERE boot95_low IS NOT NULL"
        ).fetchone()
    assert ((separability.auc >= 0) & (separability.auc <= 1)).all()
    assert {"faceapi", "dlib", "ensemble"} <= set(separability.scorer)
    assert any(s == "dlib" and a is not None for s, a in auc)
    assert boot[0] > 0
    html = layout.report_html.read_text()
    section = html.split('<h2 id="identity-impostors">', 1)[1].split("<h2", 1)[0]
    assert "<svg" in section and "ensemble" in section


def test_flow_runs_and_artifacts_reach_the_server(pipeline_run, prefect_server):
    from prefect.client.orchestration import get_client

    async def query():
        async with get_client() as client:
            runs = await client.read_flow_runs()
            flows = {f.id: f.name for f in await client.read_flows()}
            artifacts = await client.read_artifacts()
            return runs, flows, artifacts

    runs, flows, artifacts = asyncio.run(query())
    names = {flows[r.flow_id] for r in runs if r.state and r.state.is_completed()}
    assert {
        "exprbench-pipeline",
        "exprbench-ingest",
        "exprbench-score",
        "exprbench-report",
    } <= names
    keys = {a.key for a in artifacts}
    assert "exprbench-ingest" in keys and "exprbench-score" in keys


def test_cli_run_uses_the_same_flows(tmp_path, photos, models, prefect_server):
    raw = build_raw(
        tmp_path / "raw", photos, {"g/v/s/neutral.jpg": "grace_hopper", "g/v/s/angry.jpg": "obama"}
    )
    result = _cli(["run", "--input", str(raw), "--output", str(tmp_path / "out")], prefect_server)
    assert result.returncode == 0, result.stderr[-3000:]
    report = tmp_path / "out" / "report" / "index.html"
    assert f"report:     {report.resolve()}" in result.stdout
    assert report.is_file()
    assert (tmp_path / "out" / "scores" / "scores.parquet").is_file()


def test_cli_reports_a_clear_error_for_a_missing_input(tmp_path, prefect_server):
    result = _cli(
        ["run", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")],
        prefect_server,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_bad_inputs_run_to_the_report(tmp_path, photos, models, prefect_server):
    """Every awkward input ends scored or quarantined, and the run still reaches the report."""
    from flows.stages import pipeline
    from tests.badinputs import write_bad_inputs

    raw = tmp_path / "raw"
    expected = write_bad_inputs(raw, photos)
    layout = Layout.for_output(raw, tmp_path / "out")
    pipeline(layout, load_settings(ROOT / "params.yaml"))
    assert layout.report_html.is_file()
    scored = set(pq.read_table(layout.scores).column("path").to_pylist())
    quarantined = set(pq.read_table(layout.quarantine).column("path").to_pylist())
    assert scored | quarantined == set(expected)
    assert not scored & quarantined
    scores = pq.read_table(layout.scores).to_pandas()
    multi = scores[scores.path.str.endswith("multi/happy.jpg")]
    assert (multi.face_count > 1).all() and multi.note.str.contains("scored the primary").all()
    no_face = scores[scores.path.str.endswith("noface/neutral.jpg")]
    assert (~no_face.face_found).all() and no_face.note.str.contains("no face").all()
    html = layout.report_html.read_text()
    assert "ünï cødé/neutral.jpg" in html  # unicode names survive into the report
    assert "hopper/happy.jpg" in html and "truncated" in html  # the quarantine list


@pytest.mark.parametrize("case", ["empty folder", "manifest swallowing every row"])
def test_a_run_with_nothing_scorable_completes_with_a_report(tmp_path, prefect_server, case):
    raw = tmp_path / "raw"
    raw.mkdir()
    if case != "empty folder":
        swallowing_manifest(raw)
    result = _cli(["run", "--input", str(raw), "--output", str(tmp_path / "out")], prefect_server)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "nothing to validate: no image was accepted" in html
    if case != "empty folder":
        assert "manifest.csv:2" in html  # the quarantine names the line
