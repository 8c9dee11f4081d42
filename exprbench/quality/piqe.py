"""PIQE: Perception-based Image Quality Evaluator (no reference; 0 best, 100 worst).

Venkatanath N. et al., "Blind image quality evaluation using perception based features",
NCC 2015. This is a vectorised port of `pypiqe` 1.2 (MIT), itself a port of MATLAB's
`piqe`; it needs no trained parameters. Behaviour kept from that reference:

- grey = OpenCV's RGB->grey (0.299 R + 0.587 G + 0.114 B, rounded to uint8). `pypiqe`
  calls `cv2.COLOR_BGR2GRAY`, so it must be given BGR to agree with this function;
- the image is padded (symmetric, bottom/right) to a multiple of 16 px, rescaled so that
  its maximum is 255, and MSCN-normalised with a 7x7, sigma 7/6 Gaussian (replicate border,
  C = 1);
- 16x16 blocks with MSCN variance > 0.1 are "active"; an active block scores 1 - var when
  one of its edges has a 6-px segment with standard deviation < 0.1 (blockiness) and + var
  when its centre/surround deviation pattern looks like noise (`pypiqe`'s centre/surround
  split, which drops columns 7 and 9, is kept as is);
- score = 100 * (sum of block scores + 1) / (active blocks + 1). A flat image (no active
  block) scores 100, as in MATLAB; an all-black image, where the rescaling is undefined,
  also scores 100.

The score lies in [0, 100] for natural images; a block's noise term is its variance, which
can exceed 1 on pathological inputs, so 100 is not a hard mathematical bound (no distorted
photo, flat or synthetic test pattern exceeded it; see tests/test_quality.py).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from exprbench.imagecheck import check_rgb_image
from exprbench.quality.specs import PIQE

SPEC = PIQE  # score column, range and direction (see exprbench.quality.specs)
BLOCK = 16
_ACTIVITY = 0.1  # block MSCN variance above which a block is spatially active
_IMPAIRED = 0.1  # segment std below which a block edge counts as a noticeable artifact
_SEGMENT = 6  # pixels per edge segment


def piqe(rgb: np.ndarray) -> float:
    """PIQE score of an H x W x 3 uint8 RGB image (lower is better)."""
    image = check_rgb_image(rgb, "PIQE")
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return piqe_grey(grey)


def piqe_grey(grey: np.ndarray) -> float:
    """PIQE score of an H x W uint8 greyscale image."""
    rows, cols = grey.shape
    pad_r, pad_c = -rows % BLOCK, -cols % BLOCK
    if pad_r or pad_c:
        grey = np.pad(grey, ((0, pad_r), (0, pad_c)), mode="symmetric")
    peak = float(grey.max())
    if peak == 0.0:
        return 100.0
    img = np.round(255.0 * (grey.astype(np.float64) / peak))

    mu = cv2.GaussianBlur(img, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE)
    var = cv2.GaussianBlur(img * img, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE)
    norm = (img - mu) / (np.sqrt(np.abs(var - mu * mu)) + 1.0)

    h, w = norm.shape
    grid = norm.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).swapaxes(1, 2)
    blocks = grid.reshape(-1, BLOCK, BLOCK)
    block_var = blocks.var(axis=(1, 2), ddof=1)
    active = block_var > _ACTIVITY
    n_active = int(active.sum())
    if n_active == 0:
        return 100.0
    blk, bvar = blocks[active], block_var[active]

    # Noticeable artifacts: any 6-px run along any block edge that is nearly constant.
    edges = np.stack([blk[:, 0, :], blk[:, :, -1], blk[:, -1, :], blk[:, :, 0]], axis=1)
    segment_std = sliding_window_view(edges, _SEGMENT, axis=2).std(axis=3, ddof=1)
    impaired = (segment_std < _IMPAIRED).any(axis=(1, 2))

    # Noise: block std against the centre/surround std ratio. Columns 7 and 8 form the
    # centre; the surround drops column 7 then (after the shift) original column 9.
    sigma = np.sqrt(bvar)
    centre = np.concatenate([blk[:, :, 7], blk[:, :, 8]], axis=1).std(axis=1, ddof=1)
    surround = np.delete(np.delete(blk, 7, axis=2), 8, axis=2)
    surround_std = surround.reshape(len(blk), -1).std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = centre / surround_std
        ratio = np.where(np.isnan(ratio), 0.0, ratio)
        beta = np.abs(sigma - ratio) / np.maximum(sigma, ratio)
        noisy = sigma > 2.0 * beta

    distortion = float(np.sum(np.where(impaired, 1.0 - bvar, 0.0) + np.where(noisy, bvar, 0.0)))
    return (distortion + 1.0) / (n_active + 1.0) * 100.0
