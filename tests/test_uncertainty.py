"""Pure-function tests of exprbench.uncertainty: AUC, the hierarchical bootstrap, the
paired comparison."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from exprbench.uncertainty import (
    SubjectBootstrap,
    auc_mann_whitney,
    bootstrap_means,
    group_rng,
    grouped_bootstrap,
    paired_comparison,
)


def test_auc_hand_worked_example() -> None:
    # genuine 0.2, 0.4, 0.6; impostors 0.5, 0.6, 0.9. Pairs (g, i) with i > g:
    # 0.2 < all 3; 0.4 < all 3; 0.6 < 0.9 only, ties 0.6 once (half) -> (3 + 3 + 1.5) / 9
    auc = auc_mann_whitney(np.array([0.2, 0.4, 0.6]), np.array([0.5, 0.6, 0.9]))
    assert auc == pytest.approx(7.5 / 9)
    assert auc_mann_whitney(np.array([0.1]), np.array([0.9])) == 1.0
    assert auc_mann_whitney(np.array([0.9]), np.array([0.1])) == 0.0
    assert auc_mann_whitney(np.array([0.5, 0.5]), np.array([0.5])) == 0.5
    assert auc_mann_whitney(np.array([]), np.array([0.5])) is None


@pytest.mark.parametrize("chunk", [7, 65_536])
def test_auc_matches_scipy_mann_whitney(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also when the impostors are counted a few at a time."""
    from exprbench import uncertainty

    monkeypatch.setattr(uncertainty, "_AUC_CHUNK", chunk)
    # independent reference: scipy's Mann-Whitney U (sklearn is not installed here)
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(3)
    genuine = np.round(rng.normal(0.4, 0.1, 200), 2)  # rounded: many ties
    impostor = np.round(rng.normal(0.6, 0.1, 700), 2)
    u = mannwhitneyu(impostor, genuine, alternative="two-sided").statistic
    expected = u / (genuine.size * impostor.size)
    assert auc_mann_whitney(genuine, impostor) == pytest.approx(expected, abs=1e-12)


class _Recorded(SubjectBootstrap):
    """A SubjectBootstrap that keeps every weights matrix it draws, block by block."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.blocks: list[list[np.ndarray]] = []

    def _draw(self, sizes, rows):  # type: ignore[no-untyped-def]
        self.blocks.append([])
        super()._draw(sizes, rows)

    def _image_weights(self, picks, sizes, starts, n_images):  # type: ignore[no-untyped-def]
        weights = super()._image_weights(picks, sizes, starts, n_images)
        self.blocks[-1].append(weights)  # replicate chunks of one block, in order
        return weights

    def weights(self) -> np.ndarray:
        """(replicates x images) weights of every image fed, over all blocks."""
        return np.hstack([np.vstack(chunks) for chunks in self.blocks])


def test_each_replicate_draws_subjects_then_their_images() -> None:
    """Across blocks, a replicate draws S subjects in all, and a subject drawn m times
    gets m x its size image draws, all among its own images."""
    sizes = np.array([3, 1, 2, 5, 1, 4])
    values = np.random.default_rng(0).random((sizes.sum(), 1))
    stream = _Recorded(sizes.size, 1, resamples=200, rng=group_rng(1, ("w",)), block_cells=200 * 4)
    stream.add(sizes, values)
    stream.interval()
    assert len(stream.blocks) > 1
    weights = stream.weights()
    assert weights.shape == (200, sizes.sum())
    per_subject = np.add.reduceat(weights, np.r_[0, np.cumsum(sizes)[:-1]], axis=1)
    times_drawn = per_subject / sizes
    assert np.array_equal(times_drawn, np.round(times_drawn))  # whole subjects only
    assert (times_drawn.sum(axis=1) == sizes.size).all()


def test_subjects_drawn_as_one_multinomial_across_blocks() -> None:
    """Block by block, each subject's draw count has the multinomial's moments: mean 1,
    variance 1 - 1/S, covariance -1/S, whether the subjects come in one block or many."""
    n_subjects, resamples = 8, 20_000
    sizes = np.ones(n_subjects, dtype=np.int64)
    for block_cells in (resamples * n_subjects, resamples):  # one block; one per subject
        stream = _Recorded(
            n_subjects,
            1,
            resamples=resamples,
            rng=group_rng(2, ("m", block_cells)),
            block_cells=block_cells,
        )
        stream.add(sizes, np.zeros((n_subjects, 1)))
        stream.interval()
        counts = stream.weights()
        assert (counts.sum(axis=1) == n_subjects).all()
        assert np.allclose(counts.mean(axis=0), 1, atol=0.04)
        cov = np.cov(counts, rowvar=False)
        assert np.allclose(np.diag(cov), 1 - 1 / n_subjects, atol=0.05)
        off = cov[~np.eye(n_subjects, dtype=bool)]
        assert np.allclose(off, -1 / n_subjects, atol=0.03)


def test_stream_does_not_depend_on_how_rows_arrive() -> None:
    """The same subjects fed whole or a few at a time: the same interval, bit for bit."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 9, 60)
    values = rng.normal(size=(sizes.sum(), 2))
    values[rng.random(values.shape) < 0.1] = np.nan
    results = []
    for step in (60, 7, 1):
        stream = SubjectBootstrap(
            60, 2, resamples=300, rng=group_rng(3, ("s",)), block_cells=300 * 25
        )
        ends = np.r_[0, np.cumsum(sizes)]
        for first in range(0, 60, step):
            last = min(first + step, 60)
            stream.add(sizes[first:last], values[ends[first] : ends[last]])
        results.append(stream.interval())
    for low, high in results[1:]:
        assert np.array_equal(low, results[0][0]) and np.array_equal(high, results[0][1])


def test_stream_checks_its_subjects() -> None:
    stream = SubjectBootstrap(2, 1, resamples=10, rng=group_rng(0, ()))
    with pytest.raises(ValueError, match="subject sizes 3 images, rows 2"):
        stream.add([1, 2], np.zeros((2, 1)))
    with pytest.raises(ValueError, match="more subjects fed than the 2 declared"):
        stream.add([1, 1, 1], np.zeros((3, 1)))
    stream.add([1], np.zeros((1, 1)))
    with pytest.raises(ValueError, match="1 subject\\(s\\) declared but never fed"):
        stream.interval()


def test_bootstrap_deterministic_per_seed_and_group() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(40, 2))
    subjects = np.repeat(np.arange(10), 4)
    a = bootstrap_means(values, subjects, resamples=300, rng=group_rng(7, ("x",)))
    b = bootstrap_means(values, subjects, resamples=300, rng=group_rng(7, ("x",)))
    c = bootstrap_means(values, subjects, resamples=300, rng=group_rng(8, ("x",)))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # a group's interval does not depend on the other groups in the call, nor on order
    keys = [("g1",)] * 40 + [("g2",)] * 10
    more = np.vstack([values, rng.normal(size=(10, 2))])
    subj = np.r_[subjects, np.arange(10)]
    both = grouped_bootstrap(keys, subj, more, seed=7, resamples=300)
    alone = grouped_bootstrap(keys[:40], subjects, values, seed=7, resamples=300)
    assert np.array_equal(both[("g1",)][0], alone[("g1",)][0])
    perm = np.random.default_rng(0).permutation(50)
    shuffled = grouped_bootstrap(
        [keys[i] for i in perm], subj[perm], more[perm], seed=7, resamples=300
    )
    # same rows and seed, another order: the draws map to other rows, so equal only in
    # distribution; the interval must still be close
    assert np.allclose(shuffled[("g1",)][0], both[("g1",)][0], atol=0.15)


def test_bootstrap_nulls_and_small_n() -> None:
    values = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, 5.0]])
    low, high = bootstrap_means(values, ["a", "b", "c"], resamples=200, rng=group_rng(0, ()))
    assert 1.0 <= low[0] <= 2.0 <= high[0] <= 3.0
    assert math.isnan(low[1]) and math.isnan(high[1])  # one value: no interval


def test_bootstrap_coverage_on_a_known_distribution() -> None:
    # 20 subjects x 3 images: subject effect sd 1, image noise sd 0.5, true mean 2.
    # The two-level percentile bootstrap should cover the true mean ~95% of the time
    # (percentile intervals run slightly short at this n: accept 88-99%).
    rng = np.random.default_rng(11)
    subjects = np.repeat(np.arange(20), 3)
    hits = 0
    trials = 300
    for trial in range(trials):
        values = 2.0 + rng.normal(0, 1, 20)[subjects] + rng.normal(0, 0.5, 60)
        low, high = bootstrap_means(values, subjects, resamples=400, rng=group_rng(5, (trial,)))
        hits += int(low[0] <= 2.0 <= high[0])
    assert 0.88 <= hits / trials <= 0.99, hits / trials
    # images treated as independent would cover far less: the hierarchy matters
    naive_hits = 0
    for trial in range(trials):
        values = 2.0 + rng.normal(0, 1, 20)[subjects] + rng.normal(0, 0.5, 60)
        low, high = bootstrap_means(
            values, np.arange(60), resamples=400, rng=group_rng(5, (trial,))
        )
        naive_hits += int(low[0] <= 2.0 <= high[0])
    assert naive_hits < hits


def test_paired_comparison() -> None:
    a = {("s1", "happy"): 0.9, ("s1", "sad"): 0.7, ("s2", "happy"): 0.8, ("s3", "sad"): 0.5}
    b = {("s1", "happy"): 0.6, ("s1", "sad"): 0.5, ("s2", "happy"): 0.7, ("s9", "sad"): 0.1}
    result = paired_comparison(a, b, seed=1, resamples=500)
    assert result is not None
    diffs = np.array([0.3, 0.2, 0.1])  # the three shared cells
    assert result.n_cells == 3 and result.n_subjects == 2
    assert result.mean_diff == pytest.approx(diffs.mean())
    assert result.sd_diff == pytest.approx(diffs.std(ddof=1))
    assert result.effect_size == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert result.low is not None and result.high is not None
    assert 0.1 <= result.low <= result.mean_diff <= result.high <= 0.3
    assert paired_comparison(a, {("x", "y"): 1.0}) is None
    same = paired_comparison(a, a, resamples=100)
    assert same is not None and same.mean_diff == 0 and same.effect_size is None


def test_bootstrap_is_fast_on_100k_rows() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    keys = [(f"cell{i % 200}",) for i in range(n)]
    subjects = rng.integers(0, 500, n)
    values = rng.normal(size=(n, 10))
    start = time.perf_counter()
    out = grouped_bootstrap(keys, subjects, values, seed=0, resamples=200)
    elapsed = time.perf_counter() - start
    assert len(out) == 200
    assert elapsed < 60, elapsed  # ~seconds on 2 loaded cores


def test_bootstrap_columns_each_as_by_definition() -> None:
    """A column with a NaN, one with none and one all NaN, in one call, over several
    blocks: each interval is the by-definition one (each replicate's weighted mean over
    the present values, one replicate at a time) from the draws made; the all-NaN column
    adds nothing and changes no other column."""
    rng = np.random.default_rng(11)
    sizes = np.full(6, 4)
    full = rng.random(sizes.sum())
    holed = rng.random(sizes.sum())
    holed[[1, 7, 8]] = np.nan
    empty = np.full(sizes.sum(), np.nan)
    results = []
    for columns in ([full, holed, empty], [full, holed]):
        stream = _Recorded(
            6, len(columns), resamples=300, rng=group_rng(5, ("k",)), block_cells=300 * 9
        )
        stream.add(sizes, np.column_stack(columns))
        results.append(stream.interval())
    low, high = results[0]
    weights = stream.weights()
    for j, column in enumerate((full, holed)):
        present = ~np.isnan(column)
        means = [(w[present] @ column[present]) / w[present].sum() for w in weights]
        expected = np.percentile(means, [2.5, 97.5])
        assert (low[j], high[j]) == pytest.approx(tuple(expected), abs=1e-12)
    assert math.isnan(low[2]) and math.isnan(high[2])
    assert np.array_equal(results[1][0], low[:2]) and np.array_equal(results[1][1], high[:2])


def test_bootstrap_means_takes_subjects_in_label_order() -> None:
    """bootstrap_means on rows in any subject order = the stream fed in sorted subject
    order (each subject's images in their given order), all-NaN rows left out."""
    rng = np.random.default_rng(8)
    labels = np.array(["b", "a", "c", "a", "b", "b", "c", "a"])
    values = rng.random((8, 2))
    values[3] = np.nan
    got = bootstrap_means(values, labels, resamples=200, rng=group_rng(9, ("o",)))
    stream = SubjectBootstrap(3, 2, resamples=200, rng=group_rng(9, ("o",)))
    order = [1, 7, 0, 4, 5, 2, 6]  # a (row 3 all NaN: left out), b, c
    stream.add([2, 3, 2], values[order])
    low, high = stream.interval()
    assert np.array_equal(got[0], low) and np.array_equal(got[1], high)
