"""Great Expectations suite over the SCORES table, and offline Data Docs.

The suite is described as plain `Check` records (no GX import needed to build or inspect
it); `validate_scores` turns them into GX 1.x expectations, runs them in an ephemeral
context and returns a `ValidationReport` naming every failed check and the offending rows
by (path, scorer). Metric ranges come from `OUTPUT_METRICS`; which columns a row must fill
comes from the scorers' declared outputs, passed in so this module never imports models.

Data Docs: GX links jQuery, Bootstrap, bootstrap-table, Font Awesome, vega ... from CDNs.
`fetch_data_docs_assets()` (the setup step; needs npm and the registry) downloads the same
files from pinned npm packages into the exprbench cache, checked by sha256. After each
build the HTML is rewritten to load copies of them under `<docs>/static/vendor/`
("vendored"). Without the cache the remote tags are removed instead and the index page
gets a plain list of links, since its tables are otherwise drawn by the missing JS
("stripped"). Either way no page loads anything from the network.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
import pandas as pd

from exprbench.labels import EXPRESSIONS, GENDERS, NEUTRAL
from exprbench.packaged import PackagedFile, PackagedFileError, ensure, ensure_all, sha256_file
from exprbench.schema import PROB_COLUMNS, SCORES
from exprbench.scorers.base import OUTPUT_METRICS, MetricSpec

SUITE_NAME = "exprbench.scores"
SITE_NAME = "exprbench"
# One input image, and one row per image and scorer.
IMAGE_KEY: tuple[str, ...] = ("generator", "version", "subject", "expression", "replicate")
KEY_COLUMNS: tuple[str, ...] = (*IMAGE_KEY, "scorer")
ROW_ID_COLUMNS: tuple[str, ...] = ("path", "scorer")
SUM_TOLERANCE = 1e-3
# target_prob is copied from p_<expression>; anything beyond float noise is a join bug.
TARGET_TOLERANCE = 1e-6

# Derived columns added to a copy of the frame; prefixed so they cannot clash with SCORES.
SUM_COLUMN = "chk_p_sum"
TARGET_GAP_COLUMN = "chk_target_gap"

# Non-metric columns an output also fills (metric columns come from OUTPUT_METRICS).
_EXTRA_OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "expression": ("top1", "top1_prob"),
    "age": (),
    "gender": ("gender",),
    "identity": ("same_identity",),
    "quality": ("niqe_reliable",),
    "perceptual": (),
}
# Columns measured against the subject's neutral image: null is legitimate on the neutral
# row itself and on rows whose note says why (e.g. no neutral image, no face on it).
_REFERENCE_COLUMNS = frozenset(
    {
        "age_delta",
        "identity_distance",
        "identity_similarity",
        "same_identity",
        "stlpips_vgg",
        "stlpips_alex",
        "niqe",
    }  # NIQE is null, with a note, on images under 192 px
)
# Probability columns not in OUTPUT_METRICS share target_prob's declared range.
_BOUNDED_LIKE: dict[str, str] = {"top1_prob": "target_prob"}

DocsMode = Literal["vendored", "stripped"]


@dataclass(frozen=True)
class Check:
    """One expectation, independent of GX: `kind` is a GX expectation class name."""

    name: str
    kind: str
    kwargs: Mapping[str, Any]
    description: str
    condition_column: str | None = None  # boolean column: check only rows where it is True

    @property
    def column(self) -> str:
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        return ",".join(self.kwargs.get("column_list", ())) or "(table)"


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


# --------------------------------------------------------------------------- the suite


def _spec_for(column: str) -> MetricSpec:
    for specs in OUTPUT_METRICS.values():
        for spec in specs:
            if spec.column == column:
                return spec
    raise KeyError(f"no MetricSpec for column {column!r} in OUTPUT_METRICS")


def _range_checks() -> list[Check]:
    specs = [spec for specs in OUTPUT_METRICS.values() for spec in specs]
    specs += [
        MetricSpec(column, base.low, base.high, None, f"{column} (range of {base.column})")
        for column, base in ((c, _spec_for(b)) for c, b in _BOUNDED_LIKE.items())
    ]
    return [
        Check(
            f"range:{spec.column}",
            "ExpectColumnValuesToBeBetween",
            {"column": spec.column, "min_value": spec.low, "max_value": spec.high},
            f"{spec.column} ({spec.description}) must lie in [{spec.low:g}, {spec.high:g}]",
        )
        for spec in specs
    ]


def _declared_columns(output: str) -> tuple[str, ...]:
    return (*(spec.column for spec in OUTPUT_METRICS[output]), *_EXTRA_OUTPUT_COLUMNS[output])


def _needs_column(output: str, reference: bool) -> str:
    return f"chk_needs_{output}{'_ref' if reference else ''}"


def _not_null_checks(outputs: Iterable[str]) -> list[Check]:
    checks = []
    for output in sorted(outputs):
        for column in _declared_columns(output):
            reference = column in _REFERENCE_COLUMNS
            scope = "non-neutral rows without a note" if reference else "rows"
            checks.append(
                Check(
                    f"not_null:{column}",
                    "ExpectColumnValuesToNotBeNull",
                    {"column": column},
                    f"{column} must be filled on {scope} where a face was found and the scorer "
                    f"declares output {output!r}",
                    condition_column=_needs_column(output, reference),
                )
            )
    return checks


def build_checks(declared_outputs: Mapping[str, AbstractSet[str]]) -> list[Check]:
    """The full suite for scorers declaring `declared_outputs` (scorer -> output kinds)."""
    unknown = {o for outs in declared_outputs.values() for o in outs} - set(OUTPUT_METRICS)
    if unknown:
        raise ValueError(f"declared outputs {sorted(unknown)} are not in OUTPUT_METRICS")
    low, high = 1.0 - SUM_TOLERANCE, 1.0 + SUM_TOLERANCE
    vocab = {
        "expression": EXPRESSIONS,
        "top1": EXPRESSIONS,
        "gender": GENDERS,
        "subject_gender": GENDERS,
        "scorer": tuple(sorted(declared_outputs)),
    }
    used_outputs = {o for outs in declared_outputs.values() for o in outs}
    return [
        Check(
            "table_has_rows",
            "ExpectTableRowCountToBeBetween",
            {"min_value": 1},
            "the scores table must have at least one row (an empty table means nothing was scored)",
        ),
        Check(
            "unique_key",
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": list(KEY_COLUMNS)},
            f"one row per ({', '.join(KEY_COLUMNS)})",
        ),
        *(
            Check(
                f"vocabulary:{column}",
                "ExpectColumnValuesToBeInSet",
                {"column": column, "value_set": list(values)},
                f"{column} must be one of {', '.join(values) or '(no scorer declared)'}",
            )
            for column, values in vocab.items()
        ),
        *_range_checks(),
        Check(
            "probabilities_sum_to_one",
            "ExpectColumnValuesToBeBetween",
            {"column": SUM_COLUMN, "min_value": low, "max_value": high},
            f"p_* of a row must sum to 1 ± {SUM_TOLERANCE:g} where all are present "
            f"(derived column {SUM_COLUMN})",
        ),
        Check(
            "target_prob_matches",
            "ExpectColumnValuesToBeBetween",
            {"column": TARGET_GAP_COLUMN, "min_value": 0.0, "max_value": TARGET_TOLERANCE},
            f"target_prob must equal p_<expression> (derived column {TARGET_GAP_COLUMN})",
        ),
        *_not_null_checks(used_outputs),
    ]


def with_derived_columns(
    df: pd.DataFrame, declared_outputs: Mapping[str, AbstractSet[str]]
) -> pd.DataFrame:
    """A copy of `df` with the derived columns the checks read."""
    frame = df.copy()
    probs = frame[list(PROB_COLUMNS)].astype("float64")
    # NaN unless every p_* is present: GX range checks skip nulls, so a partial vector is
    # left to the not-null checks rather than reported as a bad sum.
    frame[SUM_COLUMN] = probs.sum(axis=1, skipna=False)
    column_of = {e: f"p_{e}" for e in EXPRESSIONS}
    target_p = pd.Series(np.nan, index=frame.index, dtype="float64")
    for expression, column in column_of.items():
        rows = frame["expression"] == expression
        target_p[rows] = probs.loc[rows, column]
    frame[TARGET_GAP_COLUMN] = (frame["target_prob"].astype("float64") - target_p).abs()
    face = frame["face_found"].fillna(False).astype(bool)
    excused = (frame["expression"] == NEUTRAL) | frame["note"].notna()
    for output in OUTPUT_METRICS:
        scorers = [name for name, outs in declared_outputs.items() if output in outs]
        needs = face & frame["scorer"].isin(scorers)
        frame[_needs_column(output, False)] = needs
        frame[_needs_column(output, True)] = needs & ~excused
    return frame


# --------------------------------------------------------------------------- running it


def validate_scores(
    df: pd.DataFrame,
    declared_outputs: Mapping[str, AbstractSet[str]],
    docs_dir: Path | None = None,
    *,
    max_rows: int = 20,
    run_name: str | None = None,
) -> ValidationReport:
    """Validate a SCORES frame; write offline Data Docs into `docs_dir` when given."""
    validated_at = datetime.now(UTC).isoformat(timespec="seconds")
    missing = [name for name in SCORES.names if name not in df.columns]
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

    checks = build_checks(declared_outputs)
    frame = with_derived_columns(df, declared_outputs)
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
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
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
    actions = []
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            SITE_NAME,
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        # site_names: the ephemeral context also has a temp-dir 'local_site'; skip it.
        actions.append(UpdateDataDocsAction(name="data_docs", site_names=[SITE_NAME]))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="scores",
            validation_definitions=[definition],
            actions=actions,
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
            results[result.expectation_config.meta["name"]] = {
                "success": bool(result.success),
                "result": dict(result.result or {}),
                "exception": info.get("exception_message")
                if info.get("raised_exception")
                else None,
            }
        if docs_dir is not None:
            urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE_NAME)
            url = (urls[0].get("site_url") if urls else None) or ""
            if url.startswith("file://"):
                page = Path(url.removeprefix("file://"))
    return results, page


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


# --------------------------------------------------------------------------- offline docs


def _npm(package: str, version: str, member: str, sha256: str, license: str) -> PackagedFile:
    return PackagedFile("npm", package, version, f"package/{member}", sha256, license)


_BOOTSTRAP = ("bootstrap", "4.3.1")
_BS_TABLE = ("bootstrap-table", "1.19.1")
_DATEPICKER = ("bootstrap-datepicker", "1.9.0")
_FONTAWESOME = ("@fortawesome/fontawesome-free", "6.6.0")
_FA_LICENSE = "Font Awesome Free: icons CC BY 4.0, fonts SIL OFL 1.1, code MIT"
_FILTER_CONTROL_CSS = _npm(
    *_BS_TABLE,
    "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "be4e0c0d11f9319f1ad191f7447a38f755728bbaa10903e469f367441ba79ae2",
    "MIT",
)

# Every remote URL in GX 1.24's Data Docs templates -> the same file from an npm package.
# Bytes are identical to the CDN's: GX's own SRI hashes for popper and bootstrap match.
# vega/vega-lite/vega-embed are pinned to the newest 5.x/5.x/6.x, which GX's '@5'/'@6' load.
DATA_DOCS_ASSETS: dict[str, PackagedFile] = {
    "https://cdn.jsdelivr.net/npm/vega@5": _npm(
        "vega",
        "5.33.1",
        "build/vega.min.js",
        "463f3db6a40b20e9747b4ed38f37ed0add508838f9141b1cf8366784b07b30c8",
        "BSD-3-Clause",
    ),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": _npm(
        "vega-lite",
        "5.23.0",
        "build/vega-lite.min.js",
        "58c27358e26f2d319cf62f45bc17a4c8362f08645001df2ec8d341eee4097c7f",
        "BSD-3-Clause",
    ),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": _npm(
        "vega-embed",
        "6.29.0",
        "build/vega-embed.min.js",
        "12d02acfbe3ec59ef9a37dd4822a2e04e2961b5bbb671bbe661d2221715b99da",
        "BSD-3-Clause",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": _npm(
        *_FONTAWESOME,
        "css/all.min.css",
        "e5e202e3c899507992952533f57b634722b69b34241d271963559d31aa33ef81",
        _FA_LICENSE,
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": _npm(
        "jquery",
        "3.7.1",
        "dist/jquery.min.js",
        "fc9a93dd241f6b045cbff0481cf4e1901becd0e12fb45166a8f17f95823f0b1a",
        "MIT",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": _npm(
        "popper.js",
        "1.12.9",
        "dist/umd/popper.min.js",
        "a52f7aa54d7bcaafa056ee0a050262dfc5694ae28dee8b4cac3429af37ff0d66",
        "MIT",
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": _npm(
        *_BOOTSTRAP,
        "dist/js/bootstrap.min.js",
        "0a34a87842c539c1f4feec56bba982fd596b73500046a6e6fe38a22260c6577b",
        "MIT",
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": _npm(
        *_BOOTSTRAP,
        "dist/css/bootstrap.min.css",
        "60b19e5da6a9234ff9220668a5ec1125c157a268513256188ee80f2d2c8d8d36",
        "MIT",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": _npm(
        *_BS_TABLE,
        "dist/bootstrap-table.min.js",
        "06a571a9beb50bd5ddd60517159775dfec1f3e798fff38fb117ae2350dc9ba9d",
        "MIT",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": _npm(
        *_BS_TABLE,
        "dist/bootstrap-table.min.css",
        "643f536f6982af4d7287af23f89ad457dd7e4a82f9c695330a112b0881c30a4a",
        "MIT",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": _npm(
        *_BS_TABLE,
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
        "111f68d31d1bdd714f9503bf5f4e162e0739c363e4ff2feef950d39e78266ffc",
        "MIT",
    ),
    # GX links the 1.19.0 filter-control CSS (min and non-min): 1.19.1's minified file
    # carries the same rules.
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": _FILTER_CONTROL_CSS,
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": _FILTER_CONTROL_CSS,
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": _npm(
        *_DATEPICKER,
        "dist/js/bootstrap-datepicker.min.js",
        "6ea55ea86749ee1fe560fabac6b3effd81b33046fa74dc657e24d41d28110a9f",
        "Apache-2.0",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": _npm(
        *_DATEPICKER,
        "dist/css/bootstrap-datepicker.min.css",
        "b22c8ea45fe905650f8087108b5ed32c1923bcd80d400adc9b0241f18be40208",
        "Apache-2.0",
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": _npm(
        "@forevolve/bootstrap-dark",
        "1.1.0",
        "dist/css/bootstrap-prefers-dark.css",
        "b087541364cdc7e95cbf71be42da5259f3d11431cc84198c17b47cd44c87cd5b",
        "MIT",
    ),
}
# Loaded by Font Awesome's all.min.css as ../webfonts/*: copied beside it.
_COMPANION_ASSETS: tuple[PackagedFile, ...] = tuple(
    _npm(*_FONTAWESOME, f"webfonts/{name}", sha256, _FA_LICENSE)
    for name, sha256 in (
        ("fa-brands-400.ttf", "bc844b5b02d3f3adabb514de4e0c0208252d3123413bd03f6287fa446acee859"),
        ("fa-brands-400.woff2", "c411f11975d26eb04cd2aa3c071181d4b18e489f1fb97060d4176a3531dfb36e"),
        ("fa-regular-400.ttf", "64f9fb623681f112261e9a2f97826782439f3925dea8f44a57d1e4db95ba6cfd"),
        (
            "fa-regular-400.woff2",
            "c732f106e91bc618767fbac8e2c7b27e5c736d477b2bb4fb83f597a43198c33c",
        ),
        ("fa-solid-900.ttf", "31f099c13f6e4ba05f1b471bf170cb5493249474222917372de3ca5cf29e6a1a"),
        ("fa-solid-900.woff2", "1f0189e087fcefbf654fad74a3a06668b782c01353a61d5c0b7f0bf23e33c020"),
        (
            "fa-v4compatibility.ttf",
            "a6274a12fd3f5f1ea05fc9b4677959b31fd101fdac4f0d09c17159c414d36d23",
        ),
        (
            "fa-v4compatibility.woff2",
            "2aca24b35bd41474dcc5e7fb5f11ec43fa06e3ac1d0035ad41108fa6b30b0871",
        ),
    )
)
# GX's navbar logo comes from S3 although the site ships its own copy.
_GX_LOGO_URL = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png"
_GX_LOGO_LOCAL = Path("static/images/logo-long.png")
_VENDOR_DIR = Path("static/vendor")
_OFFLINE_MARK = "<!-- exprbench: offline links -->"


def _all_assets() -> list[PackagedFile]:
    return list(dict.fromkeys([*DATA_DOCS_ASSETS.values(), *_COMPANION_ASSETS]))


def fetch_data_docs_assets(root: Path | None = None) -> list[Path]:
    """Setup step: download Data Docs' JS/CSS/fonts from pinned npm packages (needs npm)."""
    return ensure_all(_all_assets(), root)


def _cached_assets(root: Path | None) -> dict[PackagedFile, Path] | None:
    """Verified local copies of every asset, or None if any is missing (no download)."""
    try:
        return {item: ensure(item, root, fetch=False) for item in _all_assets()}
    except PackagedFileError:
        return None


def _vendor_path(item: PackagedFile) -> Path:
    safe_key = re.sub(r"[^A-Za-z0-9._-]+", "_", item.archive_key)
    return _VENDOR_DIR / safe_key / item.member


_TAG = re.compile(r"<script\b[^>]*>\s*</script>|<(?:link|img)\b[^>]*>", re.IGNORECASE)
_REMOTE_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(https?://[^"']*)\2""", re.IGNORECASE)
_SRI_ATTRS = re.compile(r"""\s+(integrity|crossorigin)\s*=\s*(["'])[^"']*\2""", re.IGNORECASE)


def rewrite_remote_tags(html: str, local_for: Mapping[str, str]) -> tuple[str, list[str]]:
    """Point remote <script>/<link>/<img> at `local_for[url]`; drop tags with no local copy.

    Returns the new HTML and the URLs dropped. SRI/crossorigin attributes go too: a
    crossorigin script is refused from file:// pages.
    """
    dropped: list[str] = []

    def replace(match: re.Match[str]) -> str:
        tag = match.group(0)
        remote = _REMOTE_ATTR.search(tag)
        if remote is None:
            return tag
        url = remote.group(3)
        local = local_for.get(url.split("?", 1)[0])
        if local is None:
            dropped.append(url)
            return ""
        tag = tag[: remote.start(3)] + local + tag[remote.end(3) :]
        return _SRI_ATTRS.sub("", tag)

    return _TAG.sub(replace, html), dropped


# GX 1.24 writes the favicon link of validation pages one '../' short; rebase every
# relative link into static/ on the page's real depth.
_STATIC_LINK = re.compile(r"""\b(src|href)="(?:\./|(?:\.\./)+)static/([^"]*)""")


def _rebase_static_links(html: str, page: Path, docs_dir: Path) -> str:
    prefix = Path(os.path.relpath(docs_dir / "static", page.parent)).as_posix()
    return _STATIC_LINK.sub(lambda m: f'{m.group(1)}="{prefix}/{m.group(2)}', html)


def _offline_index_links(docs_dir: Path, index: Path) -> str:
    """Plain links to every page: the index's own tables are drawn by (absent) JS."""
    items = []
    for kind in ("validations", "expectations"):
        for page in sorted((docs_dir / kind).rglob("*.html"), reverse=True):
            href = escape(quote(page.relative_to(index.parent).as_posix()))
            label = escape(page.relative_to(docs_dir / kind).as_posix())
            items.append(f'<li>{kind[:-1]}: <a href="{href}">{label}</a></li>')
    return (
        f"{_OFFLINE_MARK}<div><p>Pages (styles and scripts are not vendored: run "
        "<code>exprbench.validation.fetch_data_docs_assets()</code> once, with npm, and "
        f"validate again):</p><ul>{''.join(items)}</ul></div>"
    )


def make_data_docs_offline(docs_dir: Path, asset_root: Path | None = None) -> DocsMode:
    """Rewrite every page under `docs_dir` so it loads nothing remote; say how."""
    cached = _cached_assets(asset_root)
    targets: dict[str, Path] = {_GX_LOGO_URL: docs_dir / _GX_LOGO_LOCAL}
    if cached is not None:
        for item, source in cached.items():
            destination = docs_dir / _vendor_path(item)
            if not (destination.is_file() and sha256_file(destination) == item.sha256):
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
        targets |= {url: docs_dir / _vendor_path(item) for url, item in DATA_DOCS_ASSETS.items()}
    mode: DocsMode = "vendored" if cached is not None else "stripped"
    for page in docs_dir.rglob("*.html"):
        local_for = {
            url: Path(os.path.relpath(target, page.parent)).as_posix()
            for url, target in targets.items()
        }
        original = page.read_text(encoding="utf-8")
        html, _ = rewrite_remote_tags(original, local_for)
        html = _rebase_static_links(html, page, docs_dir)
        html = re.sub(re.escape(_OFFLINE_MARK) + r".*?</ul></div>", "", html, flags=re.S)
        if mode == "stripped" and page == docs_dir / "index.html":
            html = html.replace("<body>", "<body>" + _offline_index_links(docs_dir, page), 1)
        if html != original:
            tmp = page.with_name(f".{page.name}.tmp")
            tmp.write_text(html, encoding="utf-8")
            os.replace(tmp, page)
    return mode
