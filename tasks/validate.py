"""Stage 5, validate: a Great Expectations suite over the scores; failure stops the run."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from exprbench.config import Layout, get
from exprbench.fileio import atomic_write_bytes
from exprbench.schema import SCORES, read_table
from exprbench.scorers import available_scorers
from tasks.common import StageResult


class ValidationFailed(RuntimeError):
    """The scores broke expectations; the message names them and the offending rows."""


@task(name="validate", cache_policy=NONE)
def validate(layout: Layout, params: dict[str, Any]) -> StageResult:
    from exprbench.validation import validate_scores

    max_rows = get(params, "validate.max_failed_rows", int)
    frame = read_table(layout.scores, SCORES).to_pandas()
    registry = available_scorers()
    declared = {
        name: set(registry[name].outputs) for name in frame["scorer"].unique() if name in registry
    }
    report = validate_scores(
        frame, declared, layout.validation_dir, max_rows=max_rows, run_name="exprbench"
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
        raise ValidationFailed(
            f"validation failed; report stopped. Data Docs: {report.docs_index}\n"
            + report.summary_markdown()
        )
    return result
