"""Stage 5, validate: a Great Expectations suite over the scores; failure stops the run."""

from __future__ import annotations

import json
import shutil

from prefect import task
from prefect.cache_policies import NONE

from exprbench.config import Layout
from exprbench.fileio import atomic_write_bytes
from exprbench.schema import (
    THRESHOLD_METADATA_KEY,
    THRESHOLDS_METADATA_KEY,
    SchemaMismatchError,
    declared_columns,
    read_scores,
)
from exprbench.settings import Settings
from tasks.common import StageResult


class ValidationFailed(RuntimeError):
    """The scores broke expectations; the message names them and the offending rows."""


def remove_stale_outputs(layout: Layout) -> list[str]:
    """Delete the report, tables and database built from earlier scores: after a failed
    validation nothing that looks current may sit beside the failing scores. Returns what
    was removed."""
    removed = []
    for path in (
        layout.report_html,
        layout.metrics_json,
        layout.leaderboard_json,
        layout.plots_dir,
        layout.database,
        layout.database.with_name(layout.database.name + ".wal"),
        layout.tables,
    ):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(str(path))
    return removed


def _nothing_to_validate(layout: Layout) -> StageResult:
    from datetime import UTC, datetime

    from exprbench.validation.run import ValidationReport

    report = ValidationReport(
        success=True,
        n_rows=0,
        checks=[],
        failures=[],
        validated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        note="nothing to validate: no image was accepted (the quarantine lists every file and why)",
    )
    atomic_write_bytes(layout.validation_json, report.to_json().encode())
    return StageResult("validate", {"rows": 0, "expectations": 0, "note": str(report.note)})


@task(name="validate", cache_policy=NONE)
def validate(layout: Layout, settings: Settings) -> StageResult:
    from exprbench.validation.run import validate_scores  # GX takes seconds to import
    from exprbench.validation.suite import THRESHOLD_ATTR, THRESHOLDS_ATTR

    table, specs = read_scores(layout.scores)
    declared = declared_columns(table.schema)
    if declared is None:
        raise SchemaMismatchError(
            f"{layout.scores}: no record of what each scorer declares; rerun the score stage"
        )
    if table.num_rows == 0:
        # No image was accepted: a run with nothing to score completes, and says so.
        return _nothing_to_validate(layout)
    frame = table.to_pandas()
    # written by tasks/score.py: the score.same_identity_threshold same_identity came from
    threshold = (table.schema.metadata or {}).get(THRESHOLD_METADATA_KEY)
    if threshold is not None:
        frame.attrs[THRESHOLD_ATTR] = float(threshold)
    per_scorer = (table.schema.metadata or {}).get(THRESHOLDS_METADATA_KEY)
    if per_scorer is not None:
        frame.attrs[THRESHOLDS_ATTR] = json.loads(per_scorer)
    report = validate_scores(
        frame,
        declared,
        layout.validation_dir,
        specs=specs,
        max_rows=settings.validate.max_failed_rows,
        run_name="exprbench",
    )
    atomic_write_bytes(layout.validation_json, report.to_json().encode())
    result = StageResult(
        "validate",
        {
            "rows": report.n_rows,
            "expectations": len(report.checks),
            "failed": len(report.failures),
            "success": str(report.success),
            "data_docs": str(report.docs_index or "-"),
        },
    )
    result.rows = [
        {"expectation": f.name, "column": f.column, "unexpected": f.unexpected_count}
        for f in report.failures
    ]
    if not report.success:
        removed = remove_stale_outputs(layout)
        raise ValidationFailed(
            f"validation failed; report stopped. Data Docs: {report.docs_index}\n"
            + report.summary_markdown()
            + (
                "\nRemoved what the previous, passed run left and these scores make stale: "
                + ", ".join(removed)
                if removed
                else ""
            )
        )
    return result
