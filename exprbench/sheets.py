"""Cut an image sheet (a grid of generated images) into its cells.

Generators return grids: Midjourney's 2x2, expression sheets of 4x4 labelled cells. Given the
declared number of rows and columns, each split line between cells is looked for as a
*gutter*: a run of uniform lines (low standard deviation across the sheet) near where an
even split would put it. A uniform border around the whole sheet and a uniform frame around
each cell are trimmed. When a split line has no gutter near it, that axis falls back to an
even split, and the cell's `method` says so. Pure numpy; no file or label handling here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GUTTER = "gutter"
EVEN = "even"
FRAME_SUFFIX = "+frame"
MIN_CELL_PX = 32  # a cell smaller than this on either side is not a usable image
_SEARCH = 0.25  # a gutter is searched within +-25% of a cell's size around the even line
_MAX_TRIM = 0.2  # at most 20% of a cell (or of the sheet) is trimmed as frame or border


class SheetError(ValueError):
    """The sheet cannot be cut as declared; the message says why (used as the reason)."""


@dataclass(frozen=True)
class CellCut:
    """One cell: 1-based row and column, its box in sheet pixels, how it was found."""

    row: int
    column: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in the upright sheet
    method: str  # 'gutter' | 'even', with '+frame' when a frame was trimmed


def _line_std(grey: np.ndarray, axis: int) -> np.ndarray:
    """Standard deviation of each row (axis=1) or column (axis=0) of `grey`."""
    return grey.std(axis=axis)


def _uniform_edge(profile: np.ndarray, tolerance: float, limit: int) -> tuple[int, int]:
    """How many leading and trailing entries of `profile` are uniform lines (<= limit each)."""
    low = profile <= tolerance
    start = 0
    while start < limit and low[start]:
        start += 1
    end = 0
    while end < limit and low[len(low) - 1 - end]:
        end += 1
    return start, end


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in `mask`."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _split_axis(
    profile: np.ndarray, start: int, end: int, parts: int, tolerance: float
) -> tuple[list[tuple[int, int]], str, list[int]]:
    """Spans of `parts` cells along one axis of the trimmed sheet [start, end).

    Returns the spans, the method ('gutter' when every split line was found as a gutter,
    else 'even'), and the even-split positions where no gutter was found.
    """
    length = end - start
    step = length / parts
    spans: list[tuple[int, int]] = []
    missing: list[int] = []
    edge = start
    for k in range(1, parts):
        expected = start + k * step
        lo = max(start + 1, int(expected - _SEARCH * step))
        hi = min(end - 1, int(expected + _SEARCH * step) + 1)
        runs = [(lo + a, lo + b) for a, b in _runs(profile[lo:hi] <= tolerance)]
        if not runs:
            missing.append(round(expected))
            continue
        a, b = min(runs, key=lambda r: abs((r[0] + r[1]) / 2 - expected))
        spans.append((edge, a))
        edge = b
    spans.append((edge, end))
    if missing:
        cuts = [round(start + k * step) for k in range(parts + 1)]
        return [(cuts[k], cuts[k + 1]) for k in range(parts)], EVEN, missing
    return spans, GUTTER, []


def _extra_gutters(profile: np.ndarray, start: int, end: int, tolerance: float) -> int:
    """Number of evenly spaced interior gutters of the whole sheet, or -1 when the uniform
    lines are not evenly spaced (so they cannot tell the grid's size)."""
    runs = [
        (a, b)
        for a, b in _runs(profile[start:end] <= tolerance)
        if a > 0 and b < end - start  # interior only
    ]
    if not runs:
        return 0
    parts = len(runs) + 1
    step = (end - start) / parts
    for k, (a, b) in enumerate(runs, start=1):
        if abs((a + b) / 2 - k * step) > 0.1 * step:
            return -1
    return len(runs)


def cut_grid(rgb: np.ndarray, rows: int, columns: int, tolerance: float) -> list[CellCut]:
    """The `rows` x `columns` cells of `rgb` (H x W x 3 uint8), in reading order.

    `tolerance` is the largest standard deviation (0-255 grey levels) of a line that still
    counts as uniform (gutter, border, frame). Raises SheetError when the sheet is blank,
    too small for the grid, visibly has a different number of rows or columns, or a cell
    holds no image.
    """
    if rows < 1 or columns < 1:
        raise SheetError(f"rows and columns must be at least 1; got {rows} x {columns}")
    height, width = rgb.shape[:2]
    if height < rows * MIN_CELL_PX or width < columns * MIN_CELL_PX:
        raise SheetError(
            f"sheet of {width}x{height} px is too small for {rows} x {columns} cells "
            f"of at least {MIN_CELL_PX} px"
        )
    grey = rgb.astype(np.float32).mean(axis=2)
    if float(grey.std()) <= tolerance:
        raise SheetError("sheet is blank (one uniform colour): no cells found")
    row_std, col_std = _line_std(grey, 1), _line_std(grey, 0)
    # a uniform border around the whole sheet
    top, bottom = _uniform_edge(row_std, tolerance, int(_MAX_TRIM * height / rows))
    left, right = _uniform_edge(col_std, tolerance, int(_MAX_TRIM * width / columns))
    y0, y1, x0, x1 = top, height - bottom, left, width - right
    for axis, profile, lo, hi, declared in (
        ("rows", row_std, y0, y1, rows),
        ("columns", col_std, x0, x1, columns),
    ):
        gutters = _extra_gutters(profile, lo, hi, tolerance)
        if gutters > 0 and gutters + 1 != declared:
            raise SheetError(
                f"declared {declared} {axis} but the sheet shows {gutters + 1} "
                f"({gutters} evenly spaced gutters): fix rows/columns"
            )
    row_spans, row_method, _ = _split_axis(row_std, y0, y1, rows, tolerance)
    col_spans, col_method, _ = _split_axis(col_std, x0, x1, columns, tolerance)
    cells: list[CellCut] = []
    for r, (top_y, bottom_y) in enumerate(row_spans, start=1):
        for c, (left_x, right_x) in enumerate(col_spans, start=1):
            method = GUTTER if (row_method == GUTTER and col_method == GUTTER) else EVEN
            box, framed = _trim_frame(grey, (left_x, top_y, right_x, bottom_y), tolerance)
            cells.append(CellCut(r, c, box, method + (FRAME_SUFFIX if framed else "")))
    return cells


def _trim_frame(
    grey: np.ndarray, box: tuple[int, int, int, int], tolerance: float
) -> tuple[tuple[int, int, int, int], bool]:
    """`box` without the uniform lines (a frame, a gutter remainder) along its edges."""
    x0, y0, x1, y1 = box
    cell = grey[y0:y1, x0:x1]
    top, bottom = _uniform_edge(_line_std(cell, 1), tolerance, int(_MAX_TRIM * (y1 - y0)))
    left, right = _uniform_edge(_line_std(cell, 0), tolerance, int(_MAX_TRIM * (x1 - x0)))
    trimmed = (x0 + left, y0 + top, x1 - right, y1 - bottom)
    return trimmed, any((top, bottom, left, right))


def check_cell(rgb: np.ndarray, cut: CellCut, tolerance: float) -> None:
    """Raise SheetError when a cut cell is too small or holds no image (one colour)."""
    x0, y0, x1, y1 = cut.box
    where = f"cell row {cut.row}, column {cut.column}"
    if x1 - x0 < MIN_CELL_PX or y1 - y0 < MIN_CELL_PX:
        raise SheetError(f"{where}: only {x1 - x0}x{y1 - y0} px after cutting: cell not found")
    if float(rgb[y0:y1, x0:x1].astype(np.float32).mean(axis=2).std()) <= tolerance:
        raise SheetError(f"{where} is blank (one uniform colour): cell not found")


def crop(rgb: np.ndarray, cut: CellCut) -> np.ndarray:
    x0, y0, x1, y1 = cut.box
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])
