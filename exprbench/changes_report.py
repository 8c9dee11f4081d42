"""The report's "What changed" pages: one self-contained HTML page per generator.

For each `exprbench.compare.Comparison` (a generator's newest version against the previous
one, by the declared version order), a page `changes/<generator>.html` beside the main
report shows:

* the deltas as a heatmap: rows metric x scorer, columns the overall cell, each
  expression over all subjects, and every subject x expression cell; each cell shows
  head - base with its 95% interval (`exprbench.compare`: paired over the shared cells,
  or a bootstrap of a single cell's images) and n, coloured green where the metric moved
  in its better direction and red where it got worse (intensity: |delta| over the
  largest |delta| of that metric on the page). A cell the regression rule flags is
  outlined and marked "regressed"; a cell without a delta (only one version has it, or
  neither has a value) is hatched and says which, never drawn as 0;
* the regression list (scorer / metric / subject / expression, base -> head, delta,
  interval, n shared cells);
* for the regressed subject x expression cells, largest drop first, the contact sheets of
  both versions side by side (the aligned crop where a face was found, else the image, as
  in the main report's contact sheet), with the captions of each image's scores; at most
  `report.sheet_page_size` images, so the page stays bounded on a large corpus (the page
  says how many regressed cells have no sheet; the regression list names them all).

A generator with one version gets no page; the main report's "What changed" note says so.
`headline_deltas` writes the newest-vs-previous deltas of the headline metrics (those of
`exprbench.aggregate.headline_metrics`) for the DVC metrics, so `dvc metrics diff` shows them.

Pure functions from comparisons and score rows to HTML and dicts; nothing here runs the
comparison or reads the pipeline's files (the report stage does).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from exprbench.aggregate import headline_metrics
from exprbench.compare import CellDelta, Comparison, RegressionRule
from exprbench.fileio import atomic_write_text
from exprbench.labels import EXPRESSIONS
from exprbench.metrics import MetricSpec, spec_index
from exprbench.report import (
    PRIMARY_SCORER,
    THUMBNAIL_PX,
    _contact_sheet,
    _environment,
    _fmt,
    thumbnail_data_uri,
)
from exprbench.report_sheets import DEFAULT_PAGE_SIZE, ReportScores
from exprbench.thumbnails import ThumbnailCache

Row = dict[str, Any]
PAGE_TEMPLATE = "changes.html.j2"  # one page per generator
HEATMAP_SUBJECTS = 30  # subjects whose cells the heatmap draws (regressed ones first)
INDEX_TEMPLATE = "_changes.html.j2"  # the main report's "What changed" note (included)
PAGES_DIR = "changes"  # beside the main report's index.html
OVERALL = "overall"


def page_name(generator: str) -> str:
    """A file name for the generator's page: its name where that is a safe file name,
    else a slug with a short hash (two generators never share a page)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", generator).strip("._-") or "generator"
    if slug != generator:
        slug += "-" + hashlib.sha256(generator.encode()).hexdigest()[:8]
    return f"{slug}.html"


def _column_label(key: tuple[str | None, str | None]) -> str:
    subject, expression = key
    if subject is None and expression is None:
        return OVERALL
    return f"{subject or 'all subjects'}/{expression or 'all expressions'}"


def regression_label(delta: CellDelta) -> str:
    """A regression's name, as `exprbench compare` prints it: scorer/metric/subject/expression
    ('*' for all subjects or expressions)."""
    return delta.where


def _finite(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------- colours


def delta_colour(delta: float | None, better: str, extent: float) -> str | None:
    """Green where `delta` moved the metric in its `better` direction, red where worse,
    stronger with |delta| / `extent`; a metric without a direction blue (down) / red (up)."""
    if not _finite(delta) or extent <= 0:
        return None
    assert delta is not None
    t = min(1.0, abs(delta) / extent)
    if delta == 0:
        return None
    lightness = f"{95 - 30 * t:.0f}%"
    if better not in ("higher", "lower"):
        return f"hsl({0 if delta > 0 else 215}, 70%, {lightness})"
    improved = (delta > 0) == (better == "higher")
    return f"hsl({120 if improved else 0}, 65%, {lightness})"


# --------------------------------------------------------------------------- heatmap

CellKey = tuple[str | None, str | None]


def _column_order(key: CellKey) -> tuple[int, str, int, str]:
    subject, expression = key
    group = 2 if subject is not None else 1 if expression is not None else 0
    rank = EXPRESSIONS.index(expression) if expression in EXPRESSIONS else len(EXPRESSIONS)
    return group, subject or "", rank, expression or ""


def _no_delta(key: CellKey, delta: CellDelta | None, c: Comparison) -> tuple[str, str]:
    """(class, text) of a cell without a delta: hatched "only in <version>" where the other
    version has no image for it (`Comparison.missing`), else grey "no value" (images on
    both sides but no value on one, e.g. no face, or the neutral of a metric measured
    against it)."""
    label = _column_label(key)
    for side, version in (("base_only", c.base), ("head_only", c.head)):
        if label in c.missing.get(side, ()):
            return "missing", f"only in {version}"
    if delta is not None and _finite(delta.base_mean) != _finite(delta.head_mean):
        return "novalue", f"no value in {c.base if _finite(delta.head_mean) else c.head}"
    return "novalue", "no value"


def _cell(
    key: CellKey,
    delta: CellDelta | None,
    spec: MetricSpec | None,
    extent: float,
    c: Comparison,
) -> Row:
    digits = spec.digits if spec is not None else 2
    title = ""
    if delta is not None:
        title = (
            f"{c.base}: {_fmt(delta.base_mean, digits)}; "
            f"{c.head}: {_fmt(delta.head_mean, digits)}; shared {delta.n_shared}, "
            f"only in {c.base} {delta.base_only}, only in {c.head} {delta.head_only}"
        )
    if delta is None or not _finite(delta.delta):
        cls, text = _no_delta(key, delta, c)
        return {"cls": cls, "text": text, "title": title, "lines": [], "colour": None}
    assert delta is not None
    lines = []
    if _finite(delta.low) and _finite(delta.high):
        lines.append(
            f"[{_fmt(delta.low, digits, sign=True)}, {_fmt(delta.high, digits, sign=True)}]"
        )
    else:
        lines.append("no interval")
    lines.append(f"n={delta.n_shared}")
    return {
        "cls": "regressed" if delta.regressed else "",
        "text": _fmt(delta.delta, digits, sign=True),
        "lines": lines,
        "colour": delta_colour(delta.delta, delta.better, extent),
        "title": title,
        "regressed": delta.regressed,
    }


def _direction(better: str) -> str:
    return f"{better} is better" if better in ("higher", "lower") else "no direction"


def delta_heatmap(
    comparison: Comparison, specs: Sequence[MetricSpec], max_subjects: int = HEATMAP_SUBJECTS
) -> Row:
    """Rows metric x scorer (metrics in their declared order, the primary scorer first),
    columns overall, then each expression over all subjects, then subject x expression
    for at most `max_subjects` subjects (those with a regressed cell first, then by name),
    so the page stays bounded on a large corpus; `subjects_not_shown` counts the rest."""
    by_column = spec_index(specs)
    order = {column: i for i, column in enumerate(by_column)}
    cells: dict[tuple[str, str], dict[CellKey, CellDelta]] = defaultdict(dict)
    extents: dict[str, float] = defaultdict(float)
    for delta in comparison.deltas:
        cells[(delta.metric, delta.scorer)][(delta.subject, delta.expression)] = delta
        if _finite(delta.delta):
            assert delta.delta is not None
            extents[delta.metric] = max(extents[delta.metric], abs(delta.delta))
    subjects = {key[0] for line in cells.values() for key in line if key[0] is not None}
    regressed = {d.subject for d in comparison.regressions() if d.subject is not None}
    drawn = set(sorted(subjects, key=lambda s: (s not in regressed, s))[:max_subjects])
    columns = sorted(
        {key for line in cells.values() for key in line if key[0] is None or key[0] in drawn},
        key=_column_order,
    )
    groups: list[Row] = []
    for subject, expression in columns:
        name = OVERALL if subject is None and expression is None else subject or "all subjects"
        if not groups or groups[-1]["name"] != name:
            groups.append({"name": name, "span": 0})
        groups[-1]["span"] += 1
    rows = []
    for metric, scorer in sorted(
        cells,
        key=lambda k: (order.get(k[0], len(order)), k[0], k[1] != PRIMARY_SCORER, k[1]),
    ):
        spec = by_column.get(metric)
        line = cells[(metric, scorer)]
        better = next(iter(line.values())).better
        rows.append(
            {
                "metric": metric,
                "scorer": scorer,
                "direction": _direction(better),
                "description": spec.description if spec is not None else "",
                "cells": [
                    _cell(key, line.get(key), spec, extents[metric], comparison)
                    | {"key": f"{metric} {scorer} {_column_label(key)}"}
                    for key in columns
                ],
            }
        )
    return {
        "groups": groups,
        "columns": [{"subject": s, "expression": e or "all"} for s, e in columns],
        "rows": rows,
        "subjects_not_shown": max(comparison.n_subjects, len(subjects)) - len(drawn),
        "max_subjects": max_subjects,
    }


# --------------------------------------------------------------------------- regressions


def _regression_rows(comparison: Comparison, specs: Sequence[MetricSpec]) -> list[Row]:
    by_column = spec_index(specs)
    rows = []
    for delta in comparison.regressions():
        spec = by_column.get(delta.metric)
        digits = spec.digits if spec is not None else 2
        interval = (
            f"[{_fmt(delta.low, digits, sign=True)}, {_fmt(delta.high, digits, sign=True)}]"
            if _finite(delta.low) and _finite(delta.high)
            else "no interval"
        )
        rows.append(
            {
                "label": regression_label(delta),
                "base": _fmt(delta.base_mean, digits),
                "head": _fmt(delta.head_mean, digits),
                "delta": _fmt(delta.delta, digits, sign=True),
                "interval": interval,
                "n_shared": delta.n_shared,
                "direction": _direction(delta.better),
            }
        )
    return rows


def _sheets(
    comparison: Comparison,
    source: ReportScores,
    thumb_px: int,
    specs: Sequence[MetricSpec],
    thumbnail_cache: ThumbnailCache | None,
    max_images: int,
) -> tuple[list[Row], list[str], int]:
    """(one entry per regressed subject x expression cell with both versions' images,
    largest drop first, until `max_images` images are shown (at least one cell); the
    regressions on coarser cells, which have no single sheet; the regressed cells left out).

    The chosen cells' rows, thumbnails and faces are read in one query each."""
    by_cell: dict[tuple[str, str], list[CellDelta]] = defaultdict(list)
    coarse = []
    for delta in comparison.regressions():
        if delta.subject is None or delta.expression is None:
            coarse.append(regression_label(delta))
        else:
            by_cell[(delta.subject, delta.expression)].append(delta)

    def drop(cell: tuple[str, str]) -> float:
        return max((abs(d.delta) for d in by_cell[cell] if d.delta is not None), default=0.0)

    chosen: list[tuple[str, str]] = []
    images = 0
    for cell in sorted(by_cell, key=lambda c: (-drop(c), c)):
        size = max(d.n_base + d.n_head for d in by_cell[cell])
        if chosen and images + size > max_images:
            break
        chosen.append(cell)
        images += size
    rows = source.cells_rows(comparison.generator, [comparison.base, comparison.head], chosen)
    paths = sorted({str(r["path"]) for members in rows.values() for r in members})
    thumbnails, notes, faces = source.images_of(paths)
    entries = []
    for subject, expression in chosen:
        members = rows[(subject, expression)]
        mine = {str(r["path"]) for r in members}
        sheet = _contact_sheet(
            members,
            [f for f in faces if str(f["path"]) in mine],
            thumbnails,
            thumb_px,
            specs,
            notes,
            thumbnail_cache,
        )
        column = EXPRESSIONS.index(expression) if expression in EXPRESSIONS else None
        shown: dict[str, list[Row]] = {comparison.base: [], comparison.head: []}
        for row in sheet:
            if column is not None:
                shown[row["version"]] = row["cells"][column]
        entries.append(
            {
                "subject": subject,
                "expression": expression,
                "regressions": [f"{d.scorer}/{d.metric}" for d in by_cell[(subject, expression)]],
                "sides": [
                    {"version": version, "role": role, "images": shown[version]}
                    for role, version in (("base", comparison.base), ("head", comparison.head))
                ],
            }
        )
    return entries, coarse, len(by_cell) - len(chosen)


# --------------------------------------------------------------------------- pages


def render_changes_page(
    comparison: Comparison,
    rule: RegressionRule,
    source: ReportScores,
    out_html: Path,
    *,
    specs: Sequence[MetricSpec],
    thumb_px: int = THUMBNAIL_PX,
    timestamp: str = "",
    index_href: str = "../index.html",
    thumbnail_cache: ThumbnailCache | None = None,
    max_sheet_images: int = DEFAULT_PAGE_SIZE,
) -> Path:
    """Write the "What changed in <generator> <head> (vs <base>)" page to `out_html`.

    `source` holds the scores (only the regressed cells' rows are read, with their
    thumbnails and notes); `thumbnail_cache` keeps encoded thumbnails by content.
    """
    sheets, coarse, not_shown = _sheets(
        comparison, source, thumb_px, specs, thumbnail_cache, max_sheet_images
    )
    context = {
        "generator": comparison.generator,
        "base": comparison.base,
        "head": comparison.head,
        "order": comparison.order,
        "rule": rule,
        "timestamp": timestamp,
        "index_href": index_href,
        "heatmap": delta_heatmap(comparison, specs),
        "regressions": _regression_rows(comparison, specs),
        "sheets": sheets,
        "coarse": coarse,
        "sheets_not_shown": not_shown,
        "missing": comparison.missing,
    }
    html = _environment().get_template(PAGE_TEMPLATE).render(**context)
    atomic_write_text(out_html, html)
    return out_html


def write_changes(
    comparisons: Iterable[Comparison],
    rule: RegressionRule,
    versions: Mapping[str, Sequence[str]],
    scores: pd.DataFrame | ReportScores,
    faces: pd.DataFrame | None,
    thumbnails: Mapping[str, Path],
    reports_dir: Path,
    *,
    specs: Sequence[MetricSpec],
    thumb_px: int = THUMBNAIL_PX,
    image_notes: Mapping[str, str | None] | None = None,
    timestamp: str = "",
    error: str | None = None,
    thumbnail_cache: Path | None = None,
    max_sheet_images: int = DEFAULT_PAGE_SIZE,
) -> Row:
    """Write one page per comparison under `reports_dir`/changes (removing pages of
    generators no longer compared) and return the main report's "What changed" context.

    `versions`: every generator's versions (to name those with one version, which get no
    page); `error`: why no comparison could be made (e.g. a bad versions.csv), shown instead.
    `scores`: a DataFrame (with `faces`, `thumbnails`, `image_notes`) or the report stage's
    `ReportScores` (which holds those); `thumbnail_cache`: a cache root for thumbnails.
    """
    source = (
        scores
        if isinstance(scores, ReportScores)
        else ReportScores.from_frames(scores, faces, thumbnails, image_notes)
    )
    thumbs = (
        None if thumbnail_cache is None else ThumbnailCache(thumbnail_cache, thumbnail_data_uri)
    )
    pages_dir = reports_dir / PAGES_DIR
    pages_dir.mkdir(parents=True, exist_ok=True)
    entries: list[Row] = []
    written: list[str] = []
    # one comparison in memory at a time: each page is written as its comparison comes
    for comparison in comparisons:
        name = page_name(comparison.generator)
        written.append(comparison.generator)
        render_changes_page(
            comparison,
            rule,
            source,
            pages_dir / name,
            specs=specs,
            thumb_px=thumb_px,
            timestamp=timestamp,
            thumbnail_cache=thumbs,
            max_sheet_images=max_sheet_images,
        )
        entries.append(
            {
                "generator": comparison.generator,
                "base": comparison.base,
                "head": comparison.head,
                "href": f"{PAGES_DIR}/{name}",
                # the index names the first few: the page lists them all
                "regressions": [regression_label(d) for d in comparison.regressions()[:10]],
                "n_regressions": comparison.n_regressions,
                "warning": comparison.order.warning,
            }
        )
    entries.sort(key=lambda entry: str(entry["generator"]))
    compared = set(written)
    wanted = {page_name(generator) for generator in compared}
    for old in pages_dir.glob("*.html"):
        if old.name not in wanted:
            old.unlink()
    single = [
        {"generator": generator, "versions": list(found)}
        for generator, found in sorted(versions.items())
        if generator not in compared and len(found) < 2
    ]
    return {"entries": entries, "single": single, "error": error, "template": INDEX_TEMPLATE}


# --------------------------------------------------------------------------- DVC metrics


def headline_deltas(
    tables: Mapping[str, pa.Table],
    comparisons: Sequence[Comparison],
    scorer_order: Sequence[str],
    specs: Sequence[MetricSpec],
) -> dict[str, Any]:
    """{generator: {base, head, regressions, <scorer>: {<headline metric>: {delta,
    regressed}}}}: small and flat for `dvc metrics show/diff`.

    The headline metrics and their scorer are those of `headline_metrics` (the first scorer
    in `scorer_order` that measures each leaderboard column); the delta is the generator's
    head minus base leaderboard value; `regressed` is whether the regression rule flagged
    that scorer and metric's overall cell; `regressions` counts every flagged cell.
    """
    headline = headline_metrics(tables, scorer_order)
    board = {
        (row["scorer"], row["generator"], row["version"]): row
        for row in tables["leaderboard"].to_pylist()
    }
    metric_of = {spec.leaderboard.column: spec.column for spec in specs if spec.leaderboard}
    out: dict[str, Any] = {}
    for comparison in sorted(comparisons, key=lambda c: c.generator):
        flagged = {
            (d.scorer, d.metric)
            for d in comparison.regressions()
            if d.subject is None and d.expression is None
        }
        entry: dict[str, Any] = {
            "base": comparison.base,
            "head": comparison.head,
            "regressions": comparison.n_regressions,
        }
        for scorer, columns in headline.items():  # its "images" counts match no scorer
            base = board.get((scorer, comparison.generator, comparison.base))
            head = board.get((scorer, comparison.generator, comparison.head))
            if base is None or head is None:
                continue
            for column in columns:
                if not (_finite(base.get(column)) and _finite(head.get(column))):
                    continue
                entry.setdefault(scorer, {})[column] = {
                    "delta": round(float(head[column]) - float(base[column]), 6),
                    "regressed": (scorer, metric_of.get(column)) in flagged,
                }
        out[comparison.generator] = entry
    return out
