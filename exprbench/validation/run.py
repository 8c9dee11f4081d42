"""Running the suite with Great Expectations 1.x, and its report.

`validate_scores` turns the suite's `Check`s (`exprbench.validation.suite`) into GX
expectations, runs them in an ephemeral context and returns a `ValidationReport` naming
every failed check and the offending rows by (path, scorer); with a docs folder it also
writes offline Data Docs (`exprbench.validation.docs`).
"""

from __future__ import annotations

import copy
import html
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from exprbench.metrics import MetricSpec

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
from exprbench.scorers.base import BUILTIN_METRICS
from exprbench.validation.docs import DocsMode, make_data_docs_offline
from exprbench.validation.suite import (
    ROW_ID_COLUMNS,
    Check,
    build_checks,
    required_columns,
    with_derived_columns,
)

SUITE_NAME = "exprbench.scores"
SITE_NAME = "exprbench"


@dataclass
class FailedCheck:
    """A check that failed, with up to `max_rows` offending rows (path, scorer, value)."""

    name: str
    kind: str
    column: str
    description: str
    unexpected_count: int | None
    element_count: int | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    observed: Any = None
    exception: str | None = None


@dataclass
class ValidationReport:
    """Outcome of `validate_scores`; failures are in suite order."""

    success: bool
    n_rows: int
    checks: list[str]
    failures: list[FailedCheck]
    validated_at: str
    docs_index: Path | None = None
    docs_page: Path | None = None
    docs_mode: DocsMode | None = None
    note: str | None = None  # why nothing was checked (no image accepted)

    def summary_markdown(self) -> str:
        status = "PASSED" if self.success else "FAILED"
        lines = [
            f"## Score validation: {status}",
            "",
            f"{len(self.checks)} checks on {self.n_rows} rows, {len(self.failures)} failed "
            f"({self.validated_at}).",
        ]
        if self.docs_index is not None:
            lines.append(f"Data Docs: `{self.docs_index}` (assets: {self.docs_mode}).")
        for failure in self.failures:
            count = (
                ""
                if failure.unexpected_count is None
                else (f": {failure.unexpected_count} of {failure.element_count} rows")
            )
            lines += [
                "",
                f"### `{failure.name}` ({failure.kind}) on `{failure.column}`{count}",
                failure.description,
            ]
            if failure.exception:
                lines.append(f"Error: {failure.exception}")
            if failure.observed is not None:
                lines.append(f"Observed: {failure.observed!r}")
            if failure.rows:
                columns = list(dict.fromkeys(k for row in failure.rows for k in row))
                lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                lines += [
                    "| " + " | ".join(_md_cell(row.get(c)) for c in columns) + " |"
                    for row in failure.rows
                ]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ValidationReport:
        """Inverse of `to_json` (for stages that read the validation stage's output)."""
        payload = json.loads(text)
        payload["failures"] = [FailedCheck(**f) for f in payload.get("failures", [])]
        for key in ("docs_index", "docs_page"):
            payload[key] = None if payload.get(key) is None else Path(payload[key])
        return cls(**payload)

    def to_json(self) -> str:
        payload = asdict(self)
        for key in ("docs_index", "docs_page"):
            payload[key] = None if payload[key] is None else str(payload[key])
        return json.dumps(_json_safe(payload), indent=2, allow_nan=False)


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _json_safe(value: Any) -> Any:
    """Numpy scalars/arrays to Python, NaN to None: strict JSON for DVC and the report."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def validate_scores(
    df: pd.DataFrame,
    declared: Mapping[str, Collection[str]],
    docs_dir: Path | None = None,
    *,
    specs: Sequence[MetricSpec] = BUILTIN_METRICS,
    max_rows: int = 20,
    run_name: str | None = None,
) -> ValidationReport:
    """Validate a scores frame; write offline Data Docs into `docs_dir` when given.

    declared: scorer -> what it promises to fill (output kinds or column names, see
    `exprbench.validation.suite.build_checks`); specs: the metrics the scores table carries.
    """
    validated_at = datetime.now(UTC).isoformat(timespec="seconds")
    missing = [name for name in required_columns(specs) if name not in df.columns]
    if missing:
        failure = FailedCheck(
            "schema:columns",
            "schema",
            ",".join(missing),
            f"the frame lacks SCORES columns {missing}; no other check was run",
            None,
            None,
        )
        return ValidationReport(False, len(df), ["schema:columns"], [failure], validated_at)

    checks = build_checks(declared, specs)
    frame = with_derived_columns(df, declared, specs)
    results, page = _run_gx(frame, checks, docs_dir, run_name)
    # A check GX did not report on counts as failed rather than silently passing.
    not_run = {"success": False, "result": {}, "exception": "GX returned no result"}
    failures = [
        _failure(check, results.get(check.name, not_run), max_rows)
        for check in checks
        if not results.get(check.name, not_run)["success"]
    ]
    report = ValidationReport(
        success=not failures,
        n_rows=len(df),
        checks=[c.name for c in checks],
        failures=failures,
        validated_at=validated_at,
    )
    if docs_dir is not None:
        report.docs_mode = make_data_docs_offline(docs_dir)
        report.docs_index = docs_dir / "index.html"
        report.docs_page = page
    return report


def _run_gx(
    frame: pd.DataFrame, checks: list[Check], docs_dir: Path | None, run_name: str | None
) -> tuple[dict[str, dict[str, Any]], Path | None]:
    """Run `checks` on `frame`: (check name -> {success, result, exception}, docs page)."""
    # Imported here: importing GX takes seconds and most callers never validate.
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )
    from great_expectations.expectations.row_conditions import Column

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("exprbench")
        .add_dataframe_asset("scores")
        .add_batch_definition_whole_dataframe("all rows")
    )
    expectations = []
    for check in checks:
        kwargs: dict[str, Any] = dict(check.kwargs)
        if check.condition_column is not None:
            kwargs["row_condition"] = Column(check.condition_column) == True  # noqa: E712
        expectations.append(
            getattr(gxe, check.kind)(
                **kwargs, meta={"name": check.name}, description=check.description
            )
        )
    # Built whole, then added once: add_expectation on a stored suite re-serialises it.
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="scores", data=batch, suite=suite)
    )
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            SITE_NAME,
            # GX's TypedDict lacks show_how_to_buttons, which SiteBuilder does take
            cast(
                Any,
                {
                    "class_name": "SiteBuilder",
                    "show_how_to_buttons": False,
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(docs_dir.resolve()),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            ),
        )
    # No UpdateDataDocsAction: the docs are built below from an HTML-escaped copy of the
    # results, since GX puts unexpected values (paths, labels) into the pages unescaped.
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="scores",
            validation_definitions=[definition],
            actions=[],
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": list(ROW_ID_COLUMNS),
            },
        )
    )
    outcome = checkpoint.run(
        batch_parameters={"dataframe": frame},
        run_id=RunIdentifier(run_name=run_name or "exprbench"),
    )
    results: dict[str, dict[str, Any]] = {}
    page: Path | None = None
    for identifier, validation in outcome.run_results.items():
        for result in validation.results:
            info = result.exception_info or {}
            config = result.expectation_config
            assert config is not None and config.meta is not None, "GX result without its check"
            results[config.meta["name"]] = {
                "success": bool(result.success),
                "result": dict(result.result or {}),
                "exception": info.get("exception_message")
                if info.get("raised_exception")
                else None,
            }
        if docs_dir is not None:
            context.validation_results_store.set(identifier, _escaped_for_docs(validation))
            # site_names: the ephemeral context also has a temp-dir 'local_site'; skip it.
            context.build_data_docs(
                site_names=[SITE_NAME],
                # GX's annotation wants one kind per list; its builders take both.
                resource_identifiers=cast(
                    Any, [identifier, ExpectationSuiteIdentifier(name=SUITE_NAME)]
                ),
            )
            urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE_NAME)
            url = (urls[0].get("site_url") if urls else None) or ""
            if url.startswith("file://"):
                page = Path(url.removeprefix("file://"))
    return results, page


def _html_escaped(value: Any) -> Any:
    """Every string in `value` (nested dicts/lists, keys too) HTML-escaped."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {_html_escaped(k): _html_escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_html_escaped(v) for v in value)
    return value


def _escaped_for_docs(validation: ExpectationSuiteValidationResult) -> Any:
    """A copy of `validation` whose data-derived strings are HTML-escaped, for Data Docs.

    GX's table renderer writes unexpected values and index columns (path, scorer) into the
    page as raw HTML; a file name or label from the data must not become markup there.
    Only `result` and exception messages carry data; the expectations' own kwargs are ours
    and GX escapes them already.
    """
    escaped = copy.deepcopy(validation)
    for result in escaped.results:
        result.result = _html_escaped(dict(result.result or {}))
        info = result.exception_info
        if info:
            result.exception_info = _html_escaped(dict(info))
    return escaped


def _failure(check: Check, outcome: Mapping[str, Any], max_rows: int) -> FailedCheck:
    result = outcome["result"]
    rows = [
        _json_safe(
            {
                **{c: row.get(c) for c in ROW_ID_COLUMNS},
                **{k: v for k, v in row.items() if k not in ROW_ID_COLUMNS},
            }
        )
        for row in (result.get("unexpected_index_list") or [])[:max_rows]
    ]
    return FailedCheck(
        name=check.name,
        kind=check.kind,
        column=check.column,
        description=check.description,
        unexpected_count=result.get("unexpected_count"),
        element_count=result.get("element_count"),
        rows=rows,
        observed=_json_safe(result.get("observed_value")),
        exception=outcome["exception"],
    )
