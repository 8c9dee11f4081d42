"""The resolution study's page: montages and tables, one self-contained HTML file."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from exprbench.fileio import atomic_write_text
from exprbench.imagecheck import check_rgb_image
from exprbench.report import _environment, _fmt

TEMPLATE_NAME = "resolution.html.j2"
Row = dict[str, Any]

# --------------------------------------------------------------------------- montage

MONTAGE_GAP = 4
MONTAGE_HEADER = 22
MONTAGE_ROW_LABEL = 64
_BACKGROUND = 255
_MISSING = 200
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _put_text(canvas: np.ndarray, text: str, x: int, y: int, width: int, height: int) -> None:
    """Black text centred in the box (x, y, width, height), shrunk to fit its width."""
    scale = 0.45
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    if tw > width - 4:
        scale *= (width - 4) / tw
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    origin = (x + max(0, (width - tw) // 2), y + (height + th) // 2)
    cv2.putText(canvas, text, origin, _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def montage(
    original: np.ndarray,
    degraded_by_size: Mapping[int, np.ndarray],
    upscaled_by_method_size: Mapping[tuple[str, int], np.ndarray],
    labels: bool | Sequence[str] = True,
) -> np.ndarray:
    """A grid image, uint8 RGB: one row per degraded size (in the mapping's order),
    columns original / degraded (nearest-enlarged to the original's size) / each method
    (in order of first appearance in upscaled_by_method_size). Cells are the original's
    size, separated by MONTAGE_GAP px of white; a (method, size) with no image is grey.

    labels: True draws column headings (original, degraded, method names) in a
    MONTAGE_HEADER px strip and "<size> px" in a MONTAGE_ROW_LABEL px strip left of each
    row; a sequence gives the column headings instead (2 + number of methods); False
    draws neither strip.
    """
    original = check_rgb_image(original, "montage")
    cell = original.shape[0]
    if original.shape[1] != cell:
        raise ValueError(f"montage: the original must be square, got {original.shape}")
    sizes = list(degraded_by_size)
    methods = list(dict.fromkeys(m for m, _ in upscaled_by_method_size))
    if labels is True:
        headings = ["original", "degraded", *methods]
    elif labels is False:
        headings = []
    else:
        headings = [str(text) for text in labels]
        if len(headings) != 2 + len(methods):
            raise ValueError(
                f"montage: {len(headings)} labels for {2 + len(methods)} columns"
                f" (original, degraded, {', '.join(methods)})"
            )
    left = MONTAGE_ROW_LABEL if headings else 0
    top = MONTAGE_HEADER if headings else 0
    columns = 2 + len(methods)
    step = cell + MONTAGE_GAP
    height = top + len(sizes) * step - MONTAGE_GAP if sizes else top
    width = left + columns * step - MONTAGE_GAP
    canvas = np.full((max(height, 1), width, 3), _BACKGROUND, dtype=np.uint8)
    for j, text in enumerate(headings):
        _put_text(canvas, text, left + j * step, 0, cell, top)
    for i, size in enumerate(sizes):
        y = top + i * step
        small = check_rgb_image(degraded_by_size[size], "montage")
        enlarged = cv2.resize(small, (cell, cell), interpolation=cv2.INTER_NEAREST)
        tiles = [original, enlarged]
        for method in methods:
            big = upscaled_by_method_size.get((method, size))
            if big is None:
                tiles.append(np.full((cell, cell, 3), _MISSING, dtype=np.uint8))
            elif big.shape != original.shape:
                raise ValueError(
                    f"montage: {method} at {size} px has shape {big.shape}, "
                    f"expected {original.shape}"
                )
            else:
                tiles.append(big)
        for j, tile in enumerate(tiles):
            canvas[y : y + cell, left + j * step : left + j * step + cell] = tile
        if headings:
            _put_text(canvas, f"{size} px", 0, y, left, cell)
    return canvas


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class _Column:
    key: str
    heading: str
    better: str | None  # "high", "low" or None (not highlighted)
    digits: int = 2
    sign: bool = False
    scale: float = 1.0  # shown as value * scale


RECOGNITION_COLUMNS = (
    _Column("n", "faces", None, 0),
    _Column("n_scored", "scored", None, 0),
    _Column("face_found_rate", "face found", "high"),
    _Column("top1_agreement", "top-1 agreement", "high"),
    _Column("top1_kept_rate", "top-1 kept", "high"),
    _Column("mean_abs_delta_target_prob", "mean |Δ target p|", "low", 3),
    _Column("mean_delta_target_prob", "mean Δ target p", None, 3, True),
    _Column("mean_identity_distance", "mean identity distance", "low", 3),
    _Column("mean_abs_age_delta", "mean |age Δ|", "low", 1),
    _Column("mean_age_delta", "mean age Δ", None, 1, True),
    _Column("gender_agreement", "gender agreement", "high"),
)
FIDELITY_COLUMNS = (
    _Column("mean_psnr", "PSNR (dB)", "high"),
    _Column("mean_ssim", "SSIM", "high", 3),
    _Column("mean_seconds", "ms", "low", 1, scale=1000.0),
)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _best(rows: list[Row], column: _Column) -> float | None:
    values = [v for v in (_number(r.get(column.key)) for r in rows) if v is not None]
    if column.better is None or len(values) < 2 or min(values) == max(values):
        return None
    return max(values) if column.better == "high" else min(values)


def _cell_text(value: Any, column: _Column) -> str:
    number = _number(value)
    if number is None:
        return "–"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if column.digits == 0:
        return str(int(number))
    return _fmt(number * column.scale, column.digits, column.sign)


def _table(rows: list[Row], columns: Sequence[_Column]) -> Row:
    """Rows grouped by size; the best value per column within a size is marked."""
    used = [c for c in columns if any(_number(r.get(c.key)) is not None for r in rows)]
    groups = []
    for size in dict.fromkeys(r["size"] for r in rows):
        members = [r for r in rows if r["size"] == size]
        best = {c.key: _best(members, c) for c in used}
        lines = []
        for row in members:
            cells = [
                {
                    "text": _cell_text(row.get(c.key), c),
                    "best": best[c.key] is not None and _number(row.get(c.key)) == best[c.key],
                }
                for c in used
            ]
            lines.append(
                {
                    "method": row["method"],
                    "description": row["method_description"],
                    "factor": row["factor"],
                    "cells": cells,
                }
            )
        groups.append({"size": size, "rows": lines})
    return {"headings": [c.heading for c in used], "groups": groups}


def png_data_uri(rgb: np.ndarray) -> str:
    """A lossless PNG data URI of a uint8 RGB array (montages: JPEG would blur the very
    pixels being compared; report.thumbnail_data_uri reads a file path, not an array)."""
    buffer = io.BytesIO()
    Image.fromarray(check_rgb_image(rgb, "png_data_uri"), "RGB").save(
        buffer, format="PNG", optimize=True
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_study_page(
    summary_rows: Sequence[Row],
    montages: Mapping[str, np.ndarray],
    run_info: Mapping[str, Any],
    out_html: Path,
) -> Path:
    """Write the resolution study page to `out_html` (atomically) and return its path.

    One image-fidelity table (method x size: PSNR, SSIM, seconds, taken from the first
    scorer's summary rows, which cover the same faces) and one recognition table per
    scorer (method x size, the columns that scorer fills); in each, the best value per
    column among the methods at the same size is highlighted. Then one montage per
    subject label. Self-contained: inline CSS, PNG data URIs, nothing external.
    """
    rows = [dict(r) for r in summary_rows]
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    fidelity_rows = [r for r in rows if scorers and r["scorer"] == scorers[0]]
    context = {
        "timestamp": str(
            run_info.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds")
        ),
        "info": {str(k): v for k, v in run_info.items() if k != "timestamp"},
        "fidelity": _table(fidelity_rows, FIDELITY_COLUMNS),
        "recognition": [
            {
                "scorer": name,
                **_table([r for r in rows if r["scorer"] == name], RECOGNITION_COLUMNS),
            }
            for name in scorers
        ],
        "montages": [{"label": str(k), "src": png_data_uri(v)} for k, v in montages.items()],
    }
    html = _environment().get_template(TEMPLATE_NAME).render(**context)
    atomic_write_text(out_html, html)
    return out_html
