"""Uncertainty for every table mean: a seeded hierarchical bootstrap, a paired comparison
of two generators on their shared cells, and ROC AUC by Mann-Whitney. Pure numpy.

Hierarchical bootstrap (`bootstrap_means`): one replicate draws the group's subjects with
replacement, then, for every drawn subject, that subject's images with replacement; the
replicate's statistic is the mean over all drawn images (each metric over its non-null
values), the same pooled mean the tables report. The 95% interval is the 2.5th and 97.5th
percentile of the replicates. A replicate is expressed as a weight (draw count) per
image, so one set of draws serves every metric of a group: the cost is one matrix product
per group, `resamples x images x metrics`.

Determinism: each group's random stream is seeded from (seed, the group's key), so a
group's interval depends on its own rows and the seed only, not on which other groups or
rows the table holds, nor on their order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 20261201
# Draw at most this many weights (resamples x images) at once, to bound memory.
_CHUNK_CELLS = 1_000_000


def group_rng(seed: int, key: Sequence[Hashable]) -> np.random.Generator:
    """The random stream of one group: a function of the seed and the group's key only."""
    payload = json.dumps([int(seed), [str(part) for part in key]]).encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(payload).digest()[:8], "little"))


def _codes(labels: Sequence[Hashable] | np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes 0..k-1 for `labels` (in sorted label order) and k."""
    _, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    codes = codes.reshape(-1)
    return codes, int(codes.max()) + 1 if codes.size else 0


def resample_weights(subjects: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples x images) draw counts of a two-level bootstrap.

    `subjects` holds each image's subject code (0..S-1, every code present). Each row
    draws S subjects with replacement and, for each draw, as many of that subject's
    images as it has, with replacement.
    """
    n = subjects.size
    counts = np.bincount(subjects)
    n_subjects = counts.size
    order = np.argsort(subjects, kind="stable")  # images grouped by subject
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    picks = rng.integers(0, n_subjects, size=(resamples, n_subjects))
    sizes = counts[picks]
    slot = np.repeat(np.arange(resamples * n_subjects), sizes.ravel())
    drawn = picks.ravel()[slot]
    size = counts[drawn]
    local = np.minimum((rng.random(slot.size) * size).astype(np.int64), size - 1)
    rows = order[starts[drawn] + local]
    # slots run replicate by replicate: each replicate's draws are one contiguous run
    replicate = np.repeat(np.arange(resamples), sizes.sum(axis=1))
    flat = np.bincount(replicate * n + rows, minlength=resamples * n)
    return flat.reshape(resamples, n).astype(np.float64)


def bootstrap_means(
    values: np.ndarray,
    subjects: Sequence[Hashable] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    rng: np.random.Generator,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentile interval of the mean of each column of `values`.

    values: (images,) or (images x metrics), NaN where a metric has no value on an image.
    subjects: each image's subject. A metric with fewer than 2 values gets NaN. Images
    whose every value is NaN take no part (they cannot move any mean).
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    n_metrics = matrix.shape[1]
    low = np.full(n_metrics, np.nan)
    high = np.full(n_metrics, np.nan)
    present = ~np.isnan(matrix)
    keep = present.any(axis=1)
    # only the columns with values here (a group's rows are often one scorer's, and the
    # other scorers' metrics are all NaN on them): the matrix products cost per column
    used = np.flatnonzero(present.sum(axis=0) >= 2)
    if resamples < 1 or not used.size:
        return low, high
    matrix, present = matrix[keep][:, used], present[keep][:, used]
    codes, _ = _codes(np.asarray(subjects, dtype=object)[keep])
    filled = np.where(present, matrix, 0.0)
    # a column with a value on every image: its count is the replicate's total weight
    sparse = np.flatnonzero(~present.all(axis=0))
    mask = present[:, sparse].astype(np.float64)
    chunk = max(1, _CHUNK_CELLS // max(1, codes.size))
    means = []
    for start in range(0, resamples, chunk):
        weights = resample_weights(codes, min(chunk, resamples - start), rng)
        total = weights @ filled
        count = np.repeat(weights.sum(axis=1)[:, None], used.size, axis=1)
        if sparse.size:
            count[:, sparse] = weights @ mask
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(count > 0, total / np.where(count > 0, count, 1), np.nan))
    replicates = np.concatenate(means)
    tail = 100 * (1 - level) / 2
    for k, j in enumerate(used):
        column = replicates[:, k]
        column = column[~np.isnan(column)]
        if column.size:
            low[j], high[j] = np.percentile(column, [tail, 100 - tail])
    return low, high


def grouped_bootstrap(
    keys: Sequence[tuple[Hashable, ...]],
    subjects: Sequence[Hashable],
    values: np.ndarray,
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
) -> dict[tuple[Hashable, ...], tuple[np.ndarray, np.ndarray]]:
    """Per group key: (low, high) of each column of `values` over that group's rows."""
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    subject_array = np.asarray(subjects, dtype=object)
    members: dict[tuple[Hashable, ...], list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(tuple(key), []).append(index)
    out = {}
    for key, rows in members.items():
        picked = np.asarray(rows)
        out[key] = bootstrap_means(
            matrix[picked],
            subject_array[picked],
            resamples=resamples,
            rng=group_rng(seed, key),
        )
    return out


# --------------------------------------------------------------------------- paired


@dataclass(frozen=True)
class PairedComparison:
    """Run a minus run b on their shared subject x expression cells."""

    n_cells: int
    n_subjects: int
    mean_diff: float
    sd_diff: float | None  # None for one cell
    effect_size: float | None  # paired Cohen's d_z = mean_diff / sd_diff; None if sd is 0/None
    low: float | None  # bootstrap 95% interval of mean_diff (cells resampled within subjects)
    high: float | None


def paired_comparison(
    a: dict[tuple[str, str], float],
    b: dict[tuple[str, str], float],
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    key: Sequence[Hashable] = (),
) -> PairedComparison | None:
    """Compare two runs on the (subject, expression) cells both measured; None if none.

    `a`, `b`: (subject, expression) -> the cell's value (its images' mean). The interval
    resamples subjects, then each subject's shared cells (`bootstrap_means`).
    """
    shared = sorted(k for k in set(a) & set(b) if not (math.isnan(a[k]) or math.isnan(b[k])))
    if not shared:
        return None
    diffs = np.array([a[k] - b[k] for k in shared], dtype=np.float64)
    subjects = [k[0] for k in shared]
    mean = float(diffs.mean())
    sd = float(diffs.std(ddof=1)) if diffs.size > 1 else None
    if sd is not None and sd <= 1e-12 * (1.0 + abs(mean)):
        sd = 0.0  # float noise of identical differences
    effect = None if not sd else mean / sd
    low = high = None
    if diffs.size > 1:
        lo, hi = bootstrap_means(
            diffs, subjects, resamples=resamples, rng=group_rng(seed, ("paired", *key))
        )
        if not math.isnan(lo[0]):
            low, high = float(lo[0]), float(hi[0])
            if sd == 0.0:
                low = high = mean
    return PairedComparison(len(shared), len(set(subjects)), mean, sd, effect, low, high)


# --------------------------------------------------------------------------- AUC


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (as scipy.stats.rankdata)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    _, inverse, counts = np.unique(values[order], return_inverse=True, return_counts=True)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    ranks_sorted = (first + (counts + 1) / 2.0)[inverse]
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def auc_mann_whitney(lower: np.ndarray, higher: np.ndarray) -> float | None:
    """P(a value from `higher` exceeds one from `lower`) + half the ties: ROC AUC.

    For identity: `lower` = genuine distances, `higher` = impostor distances; 1 = every
    impostor farther than every genuine pair, 0.5 = no separation. None if either is empty.
    """
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(higher, dtype=np.float64)
    lo, hi = lo[~np.isnan(lo)], hi[~np.isnan(hi)]
    if lo.size == 0 or hi.size == 0:
        return None
    ranks = average_ranks(np.concatenate([lo, hi]))
    u = ranks[lo.size :].sum() - hi.size * (hi.size + 1) / 2.0
    return float(u / (lo.size * hi.size))
