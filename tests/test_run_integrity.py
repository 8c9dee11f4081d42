"""Nothing lost, nothing mixed, nothing let in: real runs of the CLI on real files.

One module-scoped run scores a small set that includes a 2048x2048 image with a ~52-px
face (upscaled within ingest.max_pixels); while it runs, a second run into the same output
is refused. The later tests build on that run's output: a stray Parquet file beside the
scores is not aggregated, a report that fails half way leaves no DuckDB folder behind, and
a failed validation removes the stale report, tables and database, after which the report
stage refuses to render.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from exprbench import upscale as up
from exprbench.config import Layout
from exprbench.runlock import LOCK_NAME, RunLocked, RunRefused, check_separate, run_lock
from exprbench.settings import Settings, load_params
from tests.badinputs import small_face_on_big_canvas

ROOT = Path(__file__).resolve().parent.parent
SCORERS = ["faceapi", "dlib"]  # expression, age, gender and identity: enough for the checks


def _env(api_url: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT)}


def _cli(args: list[str], api_url: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=ROOT,
        env=_env(api_url),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _params(tmp: Path, layout: Layout, **sections) -> Path:
    """A params file whose paths are `layout`'s (so `exprbench stage` works on a run)."""
    params = load_params(ROOT / "params.yaml")
    params["paths"] = {
        "raw": str(layout.input_dir),
        "interim": str(layout.interim),
        "scores": str(layout.scores_dir),
        "reports": str(layout.reports),
        "tables": str(layout.tables),
        "database": str(layout.database),
        "cache": str(layout.cache),
    }
    params["score"]["scorers"] = SCORERS
    params["score"]["impostor_gallery"] = 4  # impostors are not what these tests are about
    for name, values in sections.items():
        params[name] = {**params[name], **values}
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


# ------------------------------------------------------------------ no real run needed


def test_run_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with (
        run_lock(tmp_path, "--output folder"),
        pytest.raises(RunLocked, match=r"in use by another exprbench run .*pid"),
        run_lock(tmp_path, "--output folder"),
    ):
        pass
    with run_lock(tmp_path, "--output folder"):  # released on exit
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_cap_keeps_upscaled_images_within_max_pixels():
    wanted = up.decide(52, "face", method="bicubic", min_face_px=112, max_factor=8)
    assert wanted.factor == 4  # 8192x8192: over 40 M pixels
    capped = up.cap(wanted, 2048, 2048, 40_000_000)
    assert (capped.factor, capped.capped_from, capped.method) == (2, 4, "bicubic")
    # 7000x7000 accepted under max_pixels 80 M: any upscale would exceed it
    none = up.cap(wanted, 7000, 7000, 80_000_000)
    assert (none.factor, none.method, none.capped_from) == (1, "none", 4)
    assert "capped from x4" in up.describe(none.method, none.factor, none.capped_from)
    assert up.cap(wanted, 100, 100, 40_000_000) == wanted


def test_output_inside_input_is_refused(tmp_path, photos):
    raw = tmp_path / "raw"
    (raw / "g" / "v" / "s").mkdir(parents=True)
    (raw / "g" / "v" / "s" / "neutral.jpg").write_bytes(photos["obama"].read_bytes())
    for output in (raw, raw / "out"):
        result = _cli(["run", "--input", str(raw), "--output", str(output)])
        assert result.returncode == 2, result.stderr[-2000:]
        assert "inside the input folder" in result.stderr and "Traceback" not in result.stderr
    assert not (raw / "out").exists()
    # the output folder may hold the input (its written sub-folders may not), but a cache
    # inside the input is refused
    cache = raw / "cache"
    result = _cli(["run", "--input", str(raw), "--output", str(tmp_path), "--cache", str(cache)])
    assert result.returncode == 2 and "inside the input folder" in result.stderr
    result = _cli(
        ["run", "--input", str(raw), "--output", str(raw.parent / "x"), "--cache", str(raw.parent)]
    )
    assert result.returncode == 2 and "is inside cache" in result.stderr
    # stage commands check params paths the same way
    layout = Layout.for_output(raw, raw / "derived")
    result = _cli(["stage", "ingest", "--params", str(_params(tmp_path, layout))])
    assert result.returncode == 2 and "paths.interim" in result.stderr, result.stderr[-2000:]
    with pytest.raises(RunRefused, match=r"input folder .* is inside"):
        check_separate(raw / "g", {"interim": raw})


# ------------------------------------------------------------------ one real run


@pytest.fixture(scope="module")
def run(tmp_path_factory, photos, models, prefect_server):
    tmp = tmp_path_factory.mktemp("integrity")
    raw = tmp / "raw"
    for rel, name in {
        "t/v1/obama/neutral.jpg": "obama3",
        "t/v1/obama/happy.jpg": "obama",
        "t/v1/hopper/neutral.jpg": "grace_hopper",
    }.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(photos[name].read_bytes())
    # grace_hopper's face measures 187 px: shrunk to ~52 px on a 2048x2048 canvas, x4
    # would make it 8192x8192, over ingest.max_pixels (40 M)
    small_face_on_big_canvas(photos["grace_hopper"], raw / "t/v1/hopper/happy.jpg", 52, 187)
    out = tmp / "out"
    layout = Layout.for_output(raw, out)
    params = _params(tmp, layout)
    args = ["run", "--input", str(raw), "--output", str(out), "--params", str(params)]
    first = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=ROOT,
        env=_env(prefect_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = out / LOCK_NAME
    deadline = time.monotonic() + 120
    while not (lock.is_file() and str(first.pid) in lock.read_text()):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first run never took its lock"
        time.sleep(0.2)
    second = _cli(args, prefect_server)
    _, stderr = first.communicate(timeout=900)
    assert first.returncode == 0, stderr[-4000:]
    return layout, params, second, tmp


@pytest.mark.slow
def test_a_second_run_into_the_same_output_is_refused(run):
    _, _, second, _ = run
    assert second.returncode == 2, second.stderr[-3000:]
    assert "in use by another exprbench run" in second.stderr
    assert "Traceback" not in second.stderr


@pytest.mark.slow
def test_a_small_face_on_a_big_image_is_upscaled_within_max_pixels(run):
    layout, _, _, _ = run
    assert layout.report_html.is_file()
    rows = {r["path"]: r for r in pq.read_table(layout.upscale_table).to_pylist()}
    big = rows["t/v1/hopper/happy.jpg"]
    assert big["measured_on"] == "face" and big["upscale_factor"] == 2, big
    assert big["width"] * big["height"] <= 40_000_000
    assert "capped from x4" in big["upscale_detail"]
    faces = {r["path"]: r for r in pq.read_table(layout.faces_table).to_pylist()}
    assert faces["t/v1/hopper/happy.jpg"]["face_found"]


@pytest.mark.slow
def test_a_stray_parquet_beside_the_scores_is_not_aggregated(run, prefect_server):
    layout, params, _, _ = run
    before = {p.name: p.read_bytes() for p in layout.tables.glob("*.csv")}
    stray = layout.scores_dir / "backup.parquet"
    pq.write_table(pq.read_table(layout.scores), stray)  # every row twice, if it were read
    result = _cli(["stage", "aggregate", "--params", str(params)], prefect_server)
    stray.unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in layout.tables.glob("*.csv")} == before


@pytest.mark.slow
def test_a_failed_report_leaves_no_spill_folder(run):
    """The report's DuckDB folder (its sorted copies, spilled data) goes also when the
    report fails half way: here the aggregate's database cannot be read."""
    import duckdb

    from tasks.report import report

    layout, params, _, _ = run
    settings = Settings.from_params(load_params(params))
    database = layout.database.read_bytes()
    layout.database.write_bytes(b"not a DuckDB database")
    try:
        with pytest.raises(duckdb.Error):
            report.fn(layout, settings)
        assert not (layout.reports / ".report_spill").exists()
    finally:
        layout.database.write_bytes(database)


@pytest.mark.slow
def test_a_failed_validation_removes_stale_outputs_and_report_refuses(run, prefect_server):
    layout, params, _, _ = run
    assert layout.report_html.is_file() and layout.database.is_file()
    table = pq.read_table(layout.scores)
    frame = table.to_pandas()
    row = frame.index[frame.top1.notna()][0]
    probs = frame.loc[row, [c for c in frame.columns if c.startswith("p_")]].astype(float)
    wrong = probs.idxmin().removeprefix("p_")
    top1 = table.column("top1").to_pylist()
    top1[row] = wrong
    table = table.set_column(
        table.schema.get_field_index("top1"), "top1", pa.array(top1, pa.string())
    )
    pq.write_table(table, layout.scores)  # keeps the schema metadata
    result = _cli(["stage", "validate", "--params", str(params)], prefect_server)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "top1_is_argmax" in result.stderr + result.stdout
    assert json.loads(layout.validation_json.read_text())["success"] is False
    for stale in (layout.report_html, layout.database, layout.tables, layout.metrics_json):
        assert not stale.exists(), stale
    for stage in ("report", "aggregate"):
        result = _cli(["stage", stage, "--params", str(params)], prefect_server)
        assert result.returncode == 2, result.stderr[-3000:]
        # (Prefect logs the task's traceback; the command ends with the clear message)
        assert "exprbench: error:" in result.stderr
        assert "failed (or unreadable) validation" in result.stderr
    assert not layout.report_html.exists()


@pytest.mark.slow
def test_a_huge_image_under_a_raised_max_pixels_passes_upscale_and_faces(tmp_path, photos):
    """ingest.max_pixels raised to 80 M lets a 7000x7000 image in: the later stages honour
    that limit instead of a hard-coded one (they used to refuse it)."""
    from exprbench.settings import Settings
    from tasks.faces import faces
    from tasks.ingest import ingest
    from tasks.upscale import upscale

    raw = tmp_path / "raw"
    target = raw / "t" / "v1" / "hopper" / "neutral.jpg"
    target.parent.mkdir(parents=True)
    with Image.open(photos["grace_hopper"]) as photo:
        big = photo.convert("RGB").resize((7000, 7000), Image.Resampling.BILINEAR)
    big.save(target, "JPEG", quality=85)
    params = load_params(ROOT / "params.yaml")
    params["ingest"]["max_pixels"] = 80_000_000
    params["upscale"]["detect_upsample"] = 0  # the face is huge: no need to look closer
    settings = Settings.from_params(params)
    layout = Layout.for_output(raw, tmp_path / "out")
    for stage in (ingest, upscale, faces):
        stage.fn(layout, settings)
    images = pq.read_table(layout.images).to_pylist()
    assert [(r["width"], r["height"]) for r in images] == [(7000, 7000)]
    row = pq.read_table(layout.upscale_table).to_pylist()[0]
    assert row["upscale_factor"] == 1 and row["measured_on"] == "face"
    assert pq.read_table(layout.faces_table).to_pylist()[0]["face_found"]
