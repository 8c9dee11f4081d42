"""Stage 6, aggregate: the study's tables and the leaderboard, in DuckDB and as CSV."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from exprbench.aggregate import build_tables, table_counts
from exprbench.config import Layout
from exprbench.runlock import require_validation_passed
from exprbench.schema import check_scores
from exprbench.settings import Settings
from tasks.common import StageResult


@task(name="aggregate", cache_policy=NONE)
def aggregate(layout: Layout, settings: Settings) -> StageResult:
    require_validation_passed(layout.validation_json, "aggregate")
    check_scores(layout.scores)  # schema check with a clear message before any SQL
    # exactly the file the score stage wrote (and validate checked), never a stray beside it
    bootstrap = settings.uncertainty
    tables = build_tables(
        layout.scores,
        layout.database,
        layout.tables,
        (bootstrap.seed, bootstrap.resamples),
        bounds=settings.duckdb,
    )
    result = StageResult("aggregate", dict(table_counts(layout.database)))
    result.counts["database"] = str(layout.database)
    result.rows = tables["leaderboard"].to_pylist()
    return result
