"""Overlapping-tile inference with bounded memory.

The input is cut into a grid of `tile` x `tile` cores (input pixels). Each core is run
together with up to `overlap` context pixels on every side (clipped at the image border,
where the model sees its own zero padding exactly as in an untiled run), and only the
upscaled core is kept. Peak memory is that of one (tile + 2*overlap)^2 input plus the
uint8 output; with enough overlap the result equals the untiled one (tests check
within 1/255).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


def tile_spans(length: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """(core_start, core_end, context_start, context_end) along one axis."""
    for start in range(0, length, tile):
        end = min(start + tile, length)
        yield start, end, max(start - overlap, 0), min(end + overlap, length)


def run_tiled(
    run: Callable[[np.ndarray], np.ndarray],
    rgb: np.ndarray,
    scale: int,
    *,
    tile: int | None,
    overlap: int,
) -> np.ndarray:
    """Apply `run` (uint8 HxWx3 -> uint8 (H*scale)x(W*scale)x3) tile by tile.

    `tile=None`, or an image no larger than one tile, runs in one piece.
    """
    height, width = rgb.shape[:2]
    if tile is None or (height <= tile and width <= tile):
        return run(rgb)
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    for y0, y1, cy0, cy1 in tile_spans(height, tile, overlap):
        for x0, x1, cx0, cx1 in tile_spans(width, tile, overlap):
            piece = run(np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1]))
            top, left = (y0 - cy0) * scale, (x0 - cx0) * scale
            out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = piece[
                top : top + (y1 - y0) * scale, left : left + (x1 - x0) * scale
            ]
    return out
