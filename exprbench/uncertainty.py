"""Uncertainty for every table mean: a seeded hierarchical bootstrap, a paired comparison
of two generators on their shared cells, and ROC AUC by Mann-Whitney. Pure numpy.

Hierarchical bootstrap (`SubjectBootstrap`, `bootstrap_means`): one replicate draws the
group's S subjects with replacement, then, for every drawn subject, that subject's images
with replacement; the replicate's statistic is the mean over all drawn images (each metric
over its non-null values), the same pooled mean the tables report. The 95% interval is the
2.5th and 97.5th percentile of the replicates. A replicate is expressed as a weight (draw
count) per image, so one set of draws serves every metric of a group.

Bounded memory: the subjects are taken in blocks of whole subjects (in subject order) and
each replicate only keeps running sums, so memory depends on the block size, not on the
group's size. How often each subject is drawn is the multinomial (S draws over S
subjects) split block by block: a block of b of the s subjects still to come gets a
Binomial(draws left, b / s) share of a replicate's remaining draws, spread over its
subjects uniformly (a multinomial), which is exactly the joint multinomial.

Determinism: each group's random stream is seeded from (seed, the group's key), and the
blocks are a function of the subjects' sizes only, so a group's interval depends on its
own rows (in subject order, then their order within a subject) and the seed only, not on
which other groups the table holds nor on how the rows arrive in batches.
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
# Weights (replicates x images) drawn at once; a block of subjects holds about this many
# divided by the resamples images (a larger subject is a block of its own). Small arrays
# (1 MB) are also faster here than 8 MB ones: 2.8 s against 5.1 s for 280k images x 1000
# resamples (their allocation's page faults dominated the larger blocks).
BLOCK_CELLS = 125_000


def group_rng(seed: int, key: Sequence[Hashable]) -> np.random.Generator:
    """The random stream of one group: a function of the seed and the group's key only."""
    payload = json.dumps([int(seed), [str(part) for part in key]]).encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(payload).digest()[:8], "little"))


class SubjectBootstrap:
    """The hierarchical bootstrap of one group's means, fed whole subjects in order.

    `n_subjects`: S, the number of subjects the group holds (every one must be fed, with
    at least one image). `add(sizes, values)` takes complete subjects: their image counts
    and their images' rows (images x metrics, NaN where a metric has no value), subject
    after subject; `interval()` gives each metric's (low, high) once all are in.
    """

    def __init__(
        self,
        n_subjects: int,
        n_metrics: int,
        *,
        resamples: int,
        rng: np.random.Generator,
        block_cells: int = BLOCK_CELLS,
    ) -> None:
        if n_subjects < 1 or resamples < 1:
            raise ValueError(f"need >= 1 subject and resample, got {n_subjects}, {resamples}")
        self._rng = rng
        self._resamples = resamples
        self._block_cells = block_cells
        self._block_images = max(1, block_cells // resamples)
        self._subjects_left = n_subjects
        self._draws_left = np.full(resamples, n_subjects, dtype=np.int64)
        self._total = np.zeros((resamples, n_metrics))
        self._count = np.zeros((resamples, n_metrics))
        self._n_values = np.zeros(n_metrics, dtype=np.int64)
        self._sizes: list[int] = []  # fed subjects not yet drawn, and their rows
        self._rows: list[np.ndarray] = []

    def add(self, sizes: Sequence[int] | np.ndarray, values: np.ndarray) -> None:
        sizes = [int(size) for size in sizes]
        rows = np.asarray(values, dtype=np.float64).reshape(-1, self._total.shape[1])
        if min(sizes, default=1) < 1 or sum(sizes) != rows.shape[0]:
            raise ValueError(f"subject sizes {sum(sizes)} images, rows {rows.shape[0]}")
        if len(self._sizes) + len(sizes) > self._subjects_left:
            raise ValueError(f"more subjects fed than the {self._subjects_left} declared")
        self._sizes += sizes
        self._rows.append(rows)
        # close every block the greedy rule completes: a block ends before the subject
        # that would take it past the budget (a function of the sizes only)
        cuts, filled = [], 0
        for index, size in enumerate(self._sizes):
            if filled and filled + size > self._block_images:
                cuts.append(index)
                filled = 0
            filled += size
        if cuts:
            self._draw_blocks(cuts)

    def _draw_blocks(self, cuts: list[int]) -> None:
        stacked = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
        sizes = np.asarray(self._sizes, dtype=np.int64)
        ends = np.cumsum(sizes)
        first = 0
        for cut in cuts:
            start_row = int(ends[first - 1]) if first else 0
            self._draw(sizes[first:cut], stacked[start_row : int(ends[cut - 1])])
            first = cut
        done = int(ends[first - 1]) if first else 0
        self._sizes = self._sizes[first:]
        self._rows = [stacked[done:].copy()] if self._sizes else []

    def _draw(self, sizes: np.ndarray, rows: np.ndarray) -> None:
        """One block of whole subjects: draw how often each is picked, then its images."""
        rng, n_block = self._rng, sizes.size
        if n_block >= self._subjects_left:  # the last block takes every draw left
            in_block = self._draws_left
        else:
            in_block = rng.binomial(self._draws_left, n_block / self._subjects_left)
        self._draws_left = self._draws_left - in_block
        self._subjects_left -= n_block
        # each of a replicate's draws in the block picks one of its subjects uniformly
        replicate = np.repeat(np.arange(self._resamples), in_block)
        who = rng.integers(0, n_block, replicate.size)
        picked = np.bincount(replicate * n_block + who, minlength=self._resamples * n_block)
        picked = picked.reshape(self._resamples, n_block)  # (R, b): times each is drawn
        present = ~np.isnan(rows)
        self._n_values += present.sum(axis=0)
        columns = np.flatnonzero(present.any(axis=0))
        filled = np.where(present, rows, 0.0)[:, columns]
        # a column with a value on every image: its count is the replicate's total weight
        sparse = np.flatnonzero(~present[:, columns].all(axis=0))
        mask = present[:, columns[sparse]].astype(np.float64)
        n_images = rows.shape[0]
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        step = max(1, self._block_cells // n_images)
        for first in range(0, self._resamples, step):
            last = min(first + step, self._resamples)
            weights = self._image_weights(picked[first:last] * sizes, sizes, starts, n_images)
            total = weights @ filled
            count = np.repeat(weights.sum(axis=1)[:, None], columns.size, axis=1)
            if sparse.size:
                count[:, sparse] = weights @ mask
            self._total[first:last, columns] += total
            self._count[first:last, columns] += count

    def _image_weights(
        self, picks: np.ndarray, sizes: np.ndarray, starts: np.ndarray, n_images: int
    ) -> np.ndarray:
        """(replicates x images) draw counts: picks[r, j] images of subject j drawn with
        replacement among its own, for each replicate r."""
        n_replicates, n_block = picks.shape
        counts = picks.ravel()
        subject = np.repeat(np.tile(np.arange(n_block), n_replicates), counts)
        size = sizes[subject]
        uniform = self._rng.random(subject.size)
        uniform *= size
        local = uniform.astype(np.int64)
        size -= 1
        np.minimum(local, size, out=local)  # a product may round up to the size itself
        # each draw's flat index: its replicate's row, then its image
        index = np.repeat(np.arange(n_replicates) * n_images, picks.sum(axis=1))
        index += starts[subject]
        index += local
        flat = np.bincount(index, minlength=n_replicates * n_images)
        return flat.reshape(n_replicates, n_images).astype(np.float64)

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) percentile interval of each metric's mean; NaN where a metric has
        fewer than 2 values."""
        if self._sizes:
            self._draw_blocks([len(self._sizes)])
        if self._subjects_left:
            raise ValueError(f"{self._subjects_left} subject(s) declared but never fed")
        n_metrics = self._total.shape[1]
        low, high = np.full(n_metrics, np.nan), np.full(n_metrics, np.nan)
        tail = 100 * (1 - level) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(self._count > 0, self._total / self._count, np.nan)
        for j in np.flatnonzero(self._n_values >= 2):
            column = means[:, j]
            column = column[~np.isnan(column)]
            if column.size:
                low[j], high[j] = np.percentile(column, [tail, 100 - tail])
        return low, high


def bootstrap_means(
    values: np.ndarray,
    subjects: Sequence[Hashable] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    rng: np.random.Generator,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentile interval of the mean of each column of `values`, all rows
    in memory (`SubjectBootstrap` for a stream).

    values: (images,) or (images x metrics), NaN where a metric has no value on an image.
    subjects: each image's subject; subjects are taken in sorted label order, each one's
    images in their given order. A metric with fewer than 2 values gets NaN. Images
    whose every value is NaN take no part (they cannot move any mean).
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    keep = ~np.isnan(matrix).all(axis=1)
    if resamples < 1 or not keep.any():
        return np.full(matrix.shape[1], np.nan), np.full(matrix.shape[1], np.nan)
    labels = np.asarray(subjects, dtype=object)[keep].astype(str)
    _, codes, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(codes.reshape(-1), kind="stable")
    stream = SubjectBootstrap(sizes.size, matrix.shape[1], resamples=resamples, rng=rng)
    stream.add(sizes, matrix[keep][order])
    return stream.interval(level)


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

_AUC_CHUNK = 65_536  # `higher` values counted at once


def auc_mann_whitney(lower: np.ndarray, higher: np.ndarray) -> float | None:
    """P(a value from `higher` exceeds one from `lower`) + half the ties: ROC AUC.

    For identity: `lower` = genuine distances, `higher` = impostor distances; 1 = every
    impostor farther than every genuine pair, 0.5 = no separation. None if either is empty.
    Counted exactly (integer pair counts) against the sorted `lower`, `higher` a chunk at a
    time: memory grows with `lower` only, not with the impostors (ten or more per image).
    """
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(higher, dtype=np.float64)
    lo, hi = np.sort(lo[~np.isnan(lo)]), hi[~np.isnan(hi)]
    if lo.size == 0 or hi.size == 0:
        return None
    below = ties = 0  # pairs with the higher value above / equal
    for start in range(0, hi.size, _AUC_CHUNK):
        part = hi[start : start + _AUC_CHUNK]
        left = np.searchsorted(lo, part, side="left")
        below += int(left.sum())
        ties += int((np.searchsorted(lo, part, side="right") - left).sum())
    return (below + ties / 2) / (lo.size * hi.size)
