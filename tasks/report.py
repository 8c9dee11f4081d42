"""Stage 7, report: the self-contained HTML report, DVC metrics and plot data."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from prefect import task
from prefect.cache_policies import NONE

import exprbench
from exprbench.aggregate import metrics_summary, plot_frames
from exprbench.config import Layout, get
from exprbench.fileio import atomic_write_bytes
from exprbench.report import render_report
from exprbench.schema import FACES, QUARANTINE, SCORES, read_table
from exprbench.validation import ValidationReport
from tasks.common import StageResult


def _load_tables(layout: Layout) -> dict:
    with duckdb.connect(str(layout.database), read_only=True) as con:
        names = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
        return {name: con.sql(f'SELECT * FROM "{name}"').to_arrow_table() for name in names}


def write_plot_data(tables: dict, plots_dir) -> None:
    """One CSV per expression scorer: a bar per generator/version (dvc.yaml `plots`)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.csv"):
        old.unlink()
    leaderboard = plot_frames(tables)["leaderboard"].to_pylist()
    for scorer in sorted({row["scorer"] for row in leaderboard}):
        rows = [
            {
                "generator_version": f"{r['generator']} {r['version']}",
                "mean_target_prob": r["mean_target_prob"],
                "top1_accuracy": r["top1_accuracy"],
            }
            for r in leaderboard
            if r["scorer"] == scorer and r.get("mean_target_prob") is not None
        ]
        if rows:
            pacsv.write_csv(pa.Table.from_pylist(rows), plots_dir / f"target_prob_{scorer}.csv")


@task(name="report", cache_policy=NONE)
def report(layout: Layout, params: dict[str, Any]) -> StageResult:
    thumb_px = get(params, "report.thumb_px", int)
    tables = _load_tables(layout)
    scores = read_table(layout.scores, SCORES).to_pandas()
    faces_table = read_table(layout.faces_table, FACES)
    faces = faces_table.to_pandas()
    quarantine = read_table(layout.quarantine, QUARANTINE).to_pandas()
    # the aligned crop where a face was found, else the whole (possibly upscaled) image
    thumbnails = {
        row["path"]: layout.resolve(row["crop_path"])
        if row["crop_path"]
        else layout.input_dir / row["path"]
        for row in faces_table.select(["path", "crop_path"]).to_pylist()
    }
    validation = ValidationReport.from_json(layout.validation_json.read_text())
    run_info = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "params_hash": hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12],
        "exprbench": exprbench.__version__,
        "upscale": f"{params['upscale']['method']} below {params['upscale']['min_face_px']} px",
        "thumbnail px": thumb_px,
    }
    docs_index = layout.validation_dir / "index.html"
    link = docs_index.relative_to(layout.reports).as_posix() if docs_index.is_file() else None
    render_report(
        tables,
        scores,
        faces,
        quarantine,
        thumbnails,
        run_info,
        layout.report_html,
        link,
        validation=validation,
        thumb_px=thumb_px,
    )
    metrics = metrics_summary(tables)
    atomic_write_bytes(layout.metrics_json, json.dumps(metrics, indent=2, sort_keys=True).encode())
    write_plot_data(tables, layout.plots_dir)
    return StageResult(
        "report",
        {
            "report": str(layout.report_html.resolve()),
            "images": len(faces),
            "quarantined": len(quarantine),
        },
    )
