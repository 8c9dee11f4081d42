"""Stage 7, report: the self-contained HTML report, DVC metrics and plot data."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from prefect import task
from prefect.cache_policies import NONE

import exprbench
from exprbench.aggregate import SUBJECT_CELLS, headline_metrics, metrics_summary
from exprbench.changes_report import HEATMAP_SUBJECTS, headline_deltas, write_changes
from exprbench.compare import Comparison, RegressionRule, compare_versions
from exprbench.config import Layout
from exprbench.fileio import atomic_write_bytes
from exprbench.ingest import PROVENANCE_COLUMNS, InputConfigError, provenance_note
from exprbench.judgement_report import DISAGREEMENTS_SHOWN
from exprbench.judgement_specs import PER_IMAGE_TABLES
from exprbench.metrics import MetricSpec
from exprbench.report import render_report
from exprbench.report_sheets import ReportScores
from exprbench.report_uncertainty import RunCells
from exprbench.runlock import require_validation_passed
from exprbench.schema import FACES, IMAGES, QUARANTINE, check_scores, check_table, read_table
from exprbench.settings import Settings
from exprbench.validation.run import ValidationReport
from tasks.common import StageResult


def _load_tables(con: duckdb.DuckDBPyConnection) -> dict:
    """The aggregate's tables (`con` reads its database); of a per-image one, the rows the
    report draws only (the first DISAGREEMENTS_SHOWN disagreements and one more, to say
    there are more); not `subject_cells`, which grows with the subjects (`_subject_cells`
    asks for one run's)."""
    shown = f"WHERE NOT unanimous ORDER BY generator, version, path LIMIT {DISAGREEMENTS_SHOWN + 1}"
    names = [row[0] for row in con.execute("SHOW TABLES").fetchall() if row[0] != SUBJECT_CELLS]
    return {
        name: con.sql(
            f'SELECT * FROM "{name}" ' + (shown if name in PER_IMAGE_TABLES else "")
        ).to_arrow_table()
        for name in names
    }


def write_plot_data(tables: dict, specs: Sequence[MetricSpec], plots_dir: Path) -> None:
    """One CSV per plotted metric and scorer: its leaderboard value per generator/version,
    with n and the 95% interval (from the `run_intervals` table).

    Every file has the same columns (generator_version, value, n, ci95_low, ci95_high,
    metric), so dvc.yaml declares the folder once and a newly plotted metric needs no edit.
    """
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.csv"):
        old.unlink()
    runs = tables["run_intervals"].to_pylist()
    for spec in specs:
        if not spec.plot or spec.leaderboard is None:
            continue
        statistic = spec.leaderboard.column
        for scorer in sorted({row["scorer"] for row in runs}):
            rows = [
                {
                    "generator_version": f"{r['generator']} {r['version']}",
                    "value": r["mean"],
                    "n": r["n"],
                    "ci95_low": r["ci95_low"],
                    "ci95_high": r["ci95_high"],
                    "metric": statistic,
                }
                for r in runs
                if r["scorer"] == scorer and r["statistic"] == statistic
            ]
            if rows:
                path = plots_dir / f"{spec.column}_{scorer}.csv"
                pacsv.write_csv(pa.Table.from_pylist(rows), path)


def _params_hash(*sections: Any) -> str:
    """12 hex digits identifying the params of every pipeline stage (not paths)."""
    payload = json.dumps([asdict(s) for s in sections], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _subject_cells(con: duckdb.DuckDBPyConnection) -> RunCells:
    """One run's rows of the aggregate's `subject_cells`, queried when asked for."""

    def of_run(scorer: str, generator: str, version: str) -> list[dict]:
        query = f"SELECT * FROM {SUBJECT_CELLS} WHERE scorer = ? AND generator = ? AND version = ?"
        return con.sql(query, params=[scorer, generator, version]).to_arrow_table().to_pylist()

    return of_run


@task(name="report", cache_policy=NONE)
def report(layout: Layout, settings: Settings) -> StageResult:
    require_validation_passed(layout.validation_json, "report")
    thumb_px = settings.report.thumb_px
    specs = check_scores(layout.scores)
    check_table(layout.faces_table, FACES)
    check_table(layout.images, IMAGES)
    quarantine = read_table(layout.quarantine, QUARANTINE).to_pandas()
    spill = layout.reports / ".report_spill"  # DuckDB's sorted copies and spilled data
    try:
        scores = ReportScores.from_files(
            layout.scores,
            layout.faces_table,
            layout.images,
            spill,
            settings.duckdb,
            # the aligned crop where a face was found, else the whole image (a sheet cell's file)
            thumbnail=lambda row: layout.resolve(row["crop_path"] or row["source"]),
            note=provenance_note,
            image_columns=("source", *PROVENANCE_COLUMNS),
        )
        aggregate_db = scores.reading(layout.database)  # the stage's one DuckDB reads it too
        tables = _load_tables(aggregate_db)
        validation = ValidationReport.from_json(layout.validation_json.read_text())
        run_info = {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "params_hash": _params_hash(
                settings.ingest,
                settings.upscale,
                settings.faces,
                settings.score,
                settings.validate,
                settings.report,
                settings.uncertainty,
                settings.compare,
            ),
            "exprbench": exprbench.__version__,
            "upscale": f"{settings.upscale.method} below {settings.upscale.min_face_px} px",
            "thumbnail px": thumb_px,
            "tau": settings.score.tau,
        }
        rule = RegressionRule.from_settings(settings.compare)
        seed, resamples = settings.uncertainty.seed, settings.uncertainty.resamples
        compared: list[Comparison] = []  # their essentials, for deltas.json

        def one_at_a_time(found: Iterator[Comparison]) -> Iterator[Comparison]:
            for comparison in found:
                yield comparison
                compared.append(comparison.essentials())

        try:  # newest version of each generator vs the previous one
            comparisons = compare_versions(
                layout.scores,
                layout.images,
                layout.input_dir,
                rule,
                seed,
                resamples,
                con=scores.con,  # one DuckDB, one memory limit, for the whole stage
                subjects_shown=HEATMAP_SUBJECTS,  # what the page draws: bounded memory
            )
            not_compared = None
        except InputConfigError as error:  # e.g. a bad versions.csv: said on the report
            comparisons, not_compared = iter(()), str(error)
        changes = write_changes(
            one_at_a_time(comparisons),
            rule,
            scores.versions(),
            scores,
            None,
            {},
            layout.reports,
            specs=specs,
            thumb_px=thumb_px,
            timestamp=str(run_info["timestamp"]),
            error=not_compared,
            thumbnail_cache=layout.cache,
            max_sheet_images=settings.report.sheet_page_size,
        )
        docs_index = layout.validation_dir / "index.html"
        link = docs_index.relative_to(layout.reports).as_posix() if docs_index.is_file() else None
        try:
            render_report(
                tables,
                scores,
                None,
                quarantine,
                {},
                run_info,
                layout.report_html,
                link,
                validation=validation,
                thumb_px=thumb_px,
                specs=specs,
                min_n=settings.report.min_n,
                uncertainty=(seed, resamples),
                changes=changes,
                thumbnail_cache=layout.cache,
                sheet_page_size=settings.report.sheet_page_size,
                subject_cells=_subject_cells(aggregate_db),
            )
        finally:
            aggregate_db.close()
    finally:  # also when the report fails: nothing of it is left in the reports
        shutil.rmtree(spill, ignore_errors=True)
    for path, content in (
        (layout.metrics_json, headline_metrics(tables, settings.score.scorers)),
        (layout.leaderboard_json, metrics_summary(tables)),
        (layout.deltas_json, headline_deltas(tables, compared, settings.score.scorers, specs)),
    ):
        atomic_write_bytes(path, json.dumps(content, indent=2, sort_keys=True).encode())
    write_plot_data(tables, specs, layout.plots_dir)
    return StageResult(
        "report",
        {
            "report": str(layout.report_html.resolve()),
            "images": scores.n_images(),
            "quarantined": len(quarantine),
        },
    )
