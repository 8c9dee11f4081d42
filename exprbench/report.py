"""One self-contained HTML report: leaderboard, study heatmaps, confusion, contact sheet.

Everything is inline (CSS in the template, thumbnails as base64 JPEG data URIs), so the
file opens offline and can be mailed as is. Jinja autoescaping covers every string that
comes from users (file names, subjects, generators, notes); the only markup built here is
colours and data URIs. What is drawn comes from the metric specs the scores carry
(`exprbench.metrics.MetricSpec`): one heatmap per spec with a `heatmap`, the leaderboard's
columns from each spec's `leaderboard`, captions from `caption`. Cell colours follow the
specs too: a metric with a direction
runs red (worse) to green (better) over its declared range; one without a direction
(age drift) runs blue-white-red around 0 over the largest drift seen. A cell nobody
produced is drawn hatched and labelled "missing", never as a value.
"""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
import pandas as pd
import pyarrow as pa
from PIL import Image, ImageOps, UnidentifiedImageError

from exprbench.fileio import atomic_write_text
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.metrics import MetricSpec
from exprbench.scorers.base import BUILTIN_METRICS

if TYPE_CHECKING:
    from exprbench.validation import ValidationReport

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
THUMBNAIL_PX = 128
THUMBNAIL_QUALITY = 80
Row = dict[str, Any]


# --------------------------------------------------------------------------- colours


def _directed_colour(value: float, spec: MetricSpec) -> str:
    t = (value - spec.low) / (spec.high - spec.low)
    t = min(1.0, max(0.0, t if spec.higher_is_better else 1.0 - t))
    return f"hsl({120 * t:.0f}, 65%, 78%)"


def _diverging_colour(value: float, extent: float) -> str:
    t = 0.0 if extent <= 0 else min(1.0, abs(value) / extent)
    hue = 0 if value > 0 else 215
    return f"hsl({hue}, 70%, {97 - 27 * t:.0f}%)"


def colour_for(value: float | None, spec: MetricSpec, extent: float) -> str | None:
    """Background for a cell; `extent` scales metrics that have no direction."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if spec.higher_is_better is None:
        return _diverging_colour(value, extent)
    return _directed_colour(value, spec)


# --------------------------------------------------------------------------- heatmaps


def _fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _heatmap_text(spec: MetricSpec, delta: MetricSpec | None) -> Callable[[Row], str]:
    """A cell's text: the mean, and with a `delta` metric its mean as "(Δ x)"."""

    def text(row: Row) -> str:
        value = _fmt(row[spec.mean_name], spec.digits)
        if delta is None:
            return value
        if row["expression"] == NEUTRAL:
            return f"{value} (ref)"
        return f"{value} (Δ {_fmt(row[delta.mean_name], delta.digits, sign=True)})"

    return text


def _cell_state(row: Row, value: Any) -> tuple[str, str]:
    """(css class, label) for a cell without a value; ('', '') when it has one."""
    if row["n_images"] == 0:
        if row["n_missing"] > 0:
            return "missing", f"missing ({row['n_missing']} of {row['n_subjects']})"
        return "empty", "no subjects" if row["n_subjects"] == 0 else "no images"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "novalue", "no face" if row["n_faces"] == 0 else "no value"
    return "", ""


def _ci_title(row: Row, spec: MetricSpec) -> str:
    stem = spec.column
    low, high = row.get(f"ci95_low_{stem}"), row.get(f"ci95_high_{stem}")
    parts = [f"n images={row['n_images']}", f"missing={row['n_missing']}"]
    if low is not None and high is not None:
        parts.append(f"95% CI [{_fmt(low)}, {_fmt(high)}]")
    return "; ".join(parts)


def _heatmap_section(spec: MetricSpec, by_column: Mapping[str, MetricSpec], rows: list[Row]) -> Row:
    """One block per scorer x subject gender: rows generator/version, columns expressions."""
    heatmap = spec.heatmap
    assert heatmap is not None
    colour_spec = by_column[heatmap.colour_by] if heatmap.colour_by else spec
    delta = by_column[heatmap.delta] if heatmap.delta else None
    text = _heatmap_text(spec, delta)
    colour_column = colour_spec.mean_name
    values = [abs(r[colour_column]) for r in rows if r[colour_column] is not None]
    extent = max(values, default=0.0)
    # The table's own expressions: identity has no neutral column.
    expressions = [e for e in EXPRESSIONS if any(r["expression"] == e for r in rows)]
    grouped: dict[tuple[str, str], dict[tuple[str, str], dict[str, Row]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for entry in rows:
        block = grouped[(entry["scorer"], entry["subject_gender"])]
        block[(entry["generator"], entry["version"])][entry["expression"]] = entry
    blocks = []
    for (scorer, gender), by_run in sorted(grouped.items()):
        body = []
        for (generator, version), cells in sorted(by_run.items()):
            line: list[Row] = []
            for expression in expressions:
                row = cells.get(expression)
                if row is None:  # not in the grid at all: treat as missing
                    line.append(
                        {
                            "cls": "missing",
                            "text": "missing",
                            "n": None,
                            "colour": None,
                            "title": "",
                        }
                    )
                    continue
                cls, label = _cell_state(row, row[spec.mean_name])
                colour = colour_for(row[colour_column], colour_spec, extent)
                line.append(
                    {
                        "cls": cls,
                        "text": label or text(row),
                        "n": row.get(f"n_{spec.column}"),
                        "colour": None if cls else colour,
                        "title": _ci_title(row, spec),
                    }
                )
            body.append({"generator": generator, "version": version, "cells": line})
        blocks.append({"scorer": scorer, "gender": gender, "rows": body})
    return {
        "title": heatmap.title,
        "note": heatmap.note or spec.description,
        "expressions": expressions,
        "blocks": blocks,
    }


def _confusion_blocks(confusion: list[Row], fidelity: list[Row]) -> list[Row]:
    """Requested (rows) x predicted top-1 (columns) per scorer x generator/version."""
    counts: dict[tuple[str, str, str], dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for row in confusion:
        counts[(row["scorer"], row["generator"], row["version"])][row["expression"]][
            row["top1"]
        ] = row["n"]
    produced: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for row in fidelity:
        produced[(row["scorer"], row["generator"], row["version"], row["expression"])] += row[
            "n_images"
        ]
    runs = sorted({(r["scorer"], r["generator"], r["version"]) for r in fidelity})
    blocks = []
    for run in runs:
        matrix: list[Row] = []
        for requested in EXPRESSIONS:
            line = counts[run].get(requested, {})
            total = sum(line.values())
            if total == 0:
                state = "missing" if produced[(*run, requested)] == 0 else "novalue"
                label = "missing" if state == "missing" else "no face"
                matrix.append({"requested": requested, "state": state, "label": label, "cells": []})
                continue
            cells = [
                {
                    "n": line.get(p, 0),
                    "diagonal": p == requested,
                    "colour": _confusion_colour(line.get(p, 0) / total, p == requested),
                }
                for p in EXPRESSIONS
            ]
            matrix.append(
                {"requested": requested, "state": "", "label": "", "cells": cells, "total": total}
            )
        blocks.append({"scorer": run[0], "generator": run[1], "version": run[2], "matrix": matrix})
    return blocks


def _confusion_colour(share: float, diagonal: bool) -> str | None:
    if share == 0:
        return None
    hue = 120 if diagonal else 0
    return f"hsl({hue}, 60%, {95 - 30 * share:.0f}%)"


# --------------------------------------------------------------------------- leaderboard

# Counts shown after the metrics' columns.
_LEADERBOARD_COUNTS: tuple[tuple[str, str], ...] = (
    ("n_images", "images"),
    ("n_no_face", "no face"),
    ("n_missing_cells", "missing cells"),
)


def leaderboard_columns(specs: Sequence[MetricSpec]) -> list[tuple[str, str, MetricSpec | None]]:
    """(column, heading, spec for its colour or None) of the leaderboard, from the specs."""
    columns: list[tuple[str, str, MetricSpec | None]] = [
        (spec.leaderboard.column, spec.leaderboard.heading, spec)
        for spec in specs
        if spec.leaderboard is not None
    ]
    # A drift without a direction (|age Δ|) is shown uncoloured: no side of it is better.
    columns = [(c, h, s if s and s.higher_is_better is not None else None) for c, h, s in columns]
    return columns + [(c, h, None) for c, h in _LEADERBOARD_COUNTS]


def _leaderboard_blocks(board: list[Row], specs: Sequence[MetricSpec]) -> list[Row]:
    by_scorer: dict[str, list[Row]] = defaultdict(list)
    for row in board:
        by_scorer[row["scorer"]].append(row)
    blocks = []
    for scorer, rows in sorted(by_scorer.items()):
        # Only the columns this scorer fills: an age scorer has no target probability.
        columns = [
            c for c in leaderboard_columns(specs) if any(r.get(c[0]) is not None for r in rows)
        ]
        body = []
        for row in rows:
            cells = []
            for column, _, spec in columns:
                value = row[column]
                text = str(value) if isinstance(value, int) else _fmt(value)
                colour = colour_for(value, spec, 0.0) if spec is not None else None
                cells.append({"text": text, "colour": colour})
            body.append(
                {
                    "generator": row["generator"],
                    "version": row["version"],
                    "scorer_version": row["scorer_version"],
                    "cells": cells,
                }
            )
        blocks.append({"scorer": scorer, "headings": [c[1] for c in columns], "rows": body})
    return blocks


# --------------------------------------------------------------------------- contact sheet


def thumbnail_data_uri(path: Path, size: int = THUMBNAIL_PX) -> str:
    """A JPEG thumbnail (longest side `size`) of `path` as a data URI."""
    with Image.open(path) as source:
        source.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
        image = ImageOps.exif_transpose(source).convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _records(df: pd.DataFrame | None) -> list[Row]:
    if df is None or df.empty:
        return []
    clean = df.astype(object).where(df.notna(), None)
    return clean.to_dict("records")


def _contact_sheet(
    scores: list[Row],
    faces: list[Row],
    thumbnails: Mapping[str, Path],
    thumb_px: int,
    specs: Sequence[MetricSpec],
) -> list[Row]:
    captions = [
        (
            spec.column,
            spec.caption,
            spec.digits if spec.caption_digits is None else spec.caption_digits,
        )
        for spec in specs
        if spec.caption is not None and spec.stored
    ]
    face_by_path = {row["path"]: row for row in faces}
    images: dict[str, Row] = {}
    for row in scores:
        image = images.setdefault(
            row["path"],
            {
                "path": row["path"],
                "generator": row["generator"],
                "version": row["version"],
                "subject": row["subject"],
                "subject_gender": row["subject_gender"],
                "expression": row["expression"],
                "replicate": row["replicate"],
                "face_found": False,
                "face_count": row.get("face_count"),
                "face_reason": None,
                "scores": [],
            },
        )
        image["face_found"] = image["face_found"] or bool(row["face_found"])
        if row.get("note") and not image["face_reason"] and not row["face_found"]:
            image["face_reason"] = row["note"]
        values = [
            (label, _fmt(row.get(column), digits))
            for column, label, digits in captions
            if row.get(column) is not None
        ]
        if values:
            image["scores"].append({"scorer": row["scorer"], "pairs": values})
    for path, image in images.items():
        face = face_by_path.get(path)
        if face is not None:
            image["face_found"] = bool(face["face_found"])
            image["face_reason"] = face.get("face_reason") or image["face_reason"]
            image["face_count"] = face.get("face_count", image["face_count"])
        image["src"], image["thumb_error"] = _thumbnail(thumbnails.get(path), thumb_px)
    grid: dict[tuple[str, str, str], dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    genders: dict[tuple[str, str, str], str | None] = {}
    for image in images.values():
        key = (image["generator"], image["version"], image["subject"])
        grid[key][image["expression"]].append(image)
        genders[key] = genders.get(key) or image["subject_gender"]
    rows = []
    for key in sorted(grid):
        cells = [sorted(grid[key].get(e, []), key=lambda i: i["replicate"]) for e in EXPRESSIONS]
        rows.append(
            {
                "generator": key[0],
                "version": key[1],
                "subject": key[2],
                "gender": genders[key],
                "cells": cells,
            }
        )
    return rows


def _thumbnail(path: Path | None, size: int) -> tuple[str | None, str | None]:
    if path is None:
        return None, "no thumbnail"
    try:
        return thumbnail_data_uri(Path(path), size), None
    except (OSError, UnidentifiedImageError) as error:
        return None, f"unreadable: {type(error).__name__}"


# --------------------------------------------------------------------------- the page


def _scorer_versions(scores: list[Row], run_info: Mapping[str, Any]) -> dict[str, str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for row in scores:
        seen[row["scorer"]].add(str(row["scorer_version"]))
    versions = {name: ", ".join(sorted(v)) for name, v in seen.items()}
    versions.update({str(k): str(v) for k, v in dict(run_info.get("scorers") or {}).items()})
    return dict(sorted(versions.items()))


def _check_relative(link: str | None) -> str | None:
    if link is None:
        return None
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        raise ValueError(f"validation_link must be a relative path (opens offline): {link!r}")
    return link


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(
    tables: Mapping[str, pa.Table],
    scores_df: pd.DataFrame,
    faces_df: pd.DataFrame | None,
    quarantine_df: pd.DataFrame | None,
    thumbnails: Mapping[str, Path],
    run_info: Mapping[str, Any],
    out_html: Path,
    validation_link: str | None = None,
    *,
    validation: ValidationReport | None = None,
    thumb_px: int = THUMBNAIL_PX,
    specs: Sequence[MetricSpec] = BUILTIN_METRICS,
) -> Path:
    """Write the report to `out_html` (atomically) and return its path.

    `thumbnails` maps a scores `path` to the crop or image to show; `validation_link` is
    the Data Docs index relative to `out_html`; `validation` adds the pass/fail line;
    `specs` (the metrics the scores carry) decide the heatmaps, leaderboard columns and
    captions.
    """
    by_column = {spec.column: spec for spec in specs}
    link = _check_relative(validation_link)
    scores = _records(scores_df.drop(columns=["descriptor"], errors="ignore"))
    rows = {name: table.to_pylist() for name, table in tables.items()}
    extra_info = {
        str(k): v for k, v in run_info.items() if k not in ("timestamp", "params_hash", "scorers")
    }
    failures = (
        []
        if validation is None
        else [
            {"name": f.name, "column": f.column, "count": f.unexpected_count}
            for f in validation.failures
        ]
    )
    context = {
        "timestamp": str(
            run_info.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds")
        ),
        "params_hash": run_info.get("params_hash"),
        "scorers": _scorer_versions(scores, run_info),
        "extra_info": extra_info,
        "expressions": EXPRESSIONS,
        "leaderboard": _leaderboard_blocks(rows.get("leaderboard", []), specs),
        "heatmaps": [
            _heatmap_section(spec, by_column, rows.get(spec.table or "", []))
            for spec in specs
            if spec.heatmap is not None
        ],
        "confusion": _confusion_blocks(
            rows.get("confusion", []), rows.get("expression_fidelity", [])
        ),
        "contact_sheet": _contact_sheet(scores, _records(faces_df), thumbnails, thumb_px, specs),
        "quarantine": _records(quarantine_df),
        "validation_link": link,
        "validation_success": None if validation is None else validation.success,
        "validation_failures": failures,
        "n_images": len({row["path"] for row in scores}),
    }
    html = _environment().get_template(TEMPLATE_NAME).render(**context)
    atomic_write_text(out_html, html)
    return out_html
