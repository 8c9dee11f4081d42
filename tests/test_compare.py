"""Version comparison: deltas, intervals, missing cells and the regression rule on small
hand-built score tables (checked by hand), and `exprbench compare` end to end on a real
pipeline run over two versions of a generator."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exprbench.compare import (
    CellDelta,
    Comparison,
    RegressionRule,
    UnknownVersionError,
    compare_versions,
    plan_pairs,
)
from exprbench.config import Layout
from exprbench.schema import IMAGES, scores_schema, write_rows
from exprbench.versions import VersionOrder
from flows.cli import main

ROOT = Path(__file__).resolve().parent.parent
RULE = RegressionRule(("target_prob", "identity_distance", "top1_correct"), 0.05, True)

# (version, subject, expression, replicate) -> fer target_prob; top1 is the expression
# except where noted. base = "1", head = "2".
TARGET = {
    ("1", "a", "happy", 1): 0.9,
    ("1", "a", "happy", 2): 0.7,
    ("1", "a", "sad", 1): 0.6,
    ("1", "b", "happy", 1): 0.8,
    ("1", "b", "sad", 1): 0.5,
    ("1", "c", "happy", 1): 0.7,  # only in base
    ("2", "a", "happy", 1): 0.5,
    ("2", "a", "happy", 2): 0.3,
    ("2", "a", "sad", 1): 0.6,
    ("2", "b", "happy", 1): 0.7,
    ("2", "b", "sad", 1): 0.5,
    ("2", "c", "surprise", 1): 0.9,  # only in head
}
WRONG_TOP1 = {("2", "a", "happy", 1), ("2", "a", "happy", 2)}
# dlib identity distance to the subject's neutral (lower is better): +0.2 everywhere in head;
# the neutral row itself is the reference, so its value must be ignored
DISTANCE = {
    ("1", "a", "happy"): 0.3,
    ("1", "a", "sad"): 0.3,
    ("1", "b", "happy"): 0.4,
    ("1", "b", "sad"): 0.4,
    ("2", "a", "happy"): 0.5,
    ("2", "a", "sad"): 0.5,
    ("2", "b", "happy"): 0.6,
    ("2", "b", "sad"): 0.6,
    ("1", "a", "neutral"): 9.0,
    ("2", "a", "neutral"): 5.0,
}


def _row(version: str, subject: str, expression: str, replicate: int, **values) -> dict:
    path = f"G/{version}/{subject}/{expression}-{replicate}.png"
    return {
        "generator": "G",
        "version": version,
        "subject": subject,
        "expression": expression,
        "replicate": replicate,
        "path": path,
        "sha256": f"{hash(path) & 0xFFFFFFFF:064x}",
        "scorer_version": "test",
        "face_found": True,
        "face_count": 1,
        "upscale_method": "none",
        "upscale_factor": 1.0,
        "source": f"input:{path}",
        **values,
    }


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    rows = [
        _row(
            v,
            s,
            e,
            r,
            scorer="fer",
            target_prob=p,
            top1="sad" if (v, s, e, r) in WRONG_TOP1 else e,
            age=30.0,  # no direction: never compared
        )
        for (v, s, e, r), p in TARGET.items()
    ]
    rows += [
        _row(v, s, e, 1, scorer="dlib", identity_distance=d) for (v, s, e), d in DISTANCE.items()
    ]
    rows.append(_row("1", "z", "happy", 1, generator="H", scorer="fer", target_prob=0.5))
    write_rows(rows, root / "scores.parquet", scores_schema())
    images = {(r["generator"], r["version"], r["subject"], r["expression"]): r for r in rows}
    images[("G", "1", "d", "neutral")] = _row("1", "d", "neutral", 1)  # scored by no one
    write_rows(list(images.values()), root / "images.parquet", IMAGES)
    raw = root / "raw"
    raw.mkdir()
    (raw / "versions.csv").write_text(
        "generator,version,release_date\nG,2,2026-02-01\nG,1,2026-01-01\n"
    )
    return root / "scores.parquet", root / "images.parquet", raw


def _compare(built: tuple[Path, Path, Path], rule: RegressionRule = RULE, **kw) -> Comparison:
    scores, images, raw = built
    found = list(compare_versions(scores, images, raw, rule, seed=7, resamples=2000, **kw))
    assert [c.generator for c in found] == ["G"]  # H has one version: no comparison
    return found[0]


def _delta(c: Comparison, scorer: str, metric: str, subject=None, expression=None) -> CellDelta:
    found = [
        d
        for d in c.deltas
        if (d.scorer, d.metric, d.subject, d.expression) == (scorer, metric, subject, expression)
    ]
    assert len(found) == 1, (scorer, metric, subject, expression)
    return found[0]


def test_overall_and_expression_deltas_are_paired_on_shared_cells(hand_built) -> None:
    c = _compare(hand_built)
    assert (c.base, c.head, c.order.source) == ("1", "2", "versions.csv")
    overall = _delta(c, "fer", "target_prob")
    # shared cells a/happy 0.8 -> 0.4, a/sad 0.6 -> 0.6, b/happy 0.8 -> 0.7, b/sad 0.5 -> 0.5
    assert overall.base_mean == pytest.approx((0.8 + 0.6 + 0.8 + 0.5) / 4)
    assert overall.head_mean == pytest.approx((0.4 + 0.6 + 0.7 + 0.5) / 4)
    assert overall.delta == pytest.approx(-0.125)
    assert (overall.n_shared, overall.base_only, overall.head_only) == (4, 1, 1)
    assert overall.low is not None and overall.high is not None
    # the interval's ends are means of resampled differences in {-0.4, 0, -0.1, 0}
    assert -0.4 <= overall.low < overall.delta < overall.high <= 0.0
    assert not overall.regressed  # a replicate of all-zero differences reaches the top end
    happy = _delta(c, "fer", "target_prob", expression="happy")
    assert happy.delta == pytest.approx(-0.25) and happy.n_shared == 2
    assert (happy.base_only, happy.head_only) == (1, 0)  # c/happy
    sad = _delta(c, "fer", "target_prob", expression="sad")
    assert sad.delta == pytest.approx(0.0) and (sad.low, sad.high) == (0.0, 0.0)
    assert not sad.regressed
    surprise = _delta(c, "fer", "target_prob", expression="surprise")
    assert surprise.delta is None and surprise.head_mean == pytest.approx(0.9)


def test_a_cell_with_replicates_gets_a_two_sample_interval_and_regresses(hand_built) -> None:
    c = _compare(hand_built)
    cell = _delta(c, "fer", "target_prob", "a", "happy")
    assert (cell.base_mean, cell.head_mean) == (pytest.approx(0.8), pytest.approx(0.4))
    assert cell.delta == pytest.approx(-0.4)
    assert (cell.n_base, cell.n_head, cell.n_shared) == (2, 2, 4)
    # Resampling 2 images a side: each mean is x1, (x1+x2)/2 or x2 with chances 1/4, 1/2,
    # 1/4, so the difference lies in [-0.6, -0.2] and each end has chance 1/16 > 2.5%:
    # the percentile interval is exactly those ends.
    assert (cell.low, cell.high) == (pytest.approx(-0.6), pytest.approx(-0.2))
    assert cell.regressed and cell.better == "higher"
    single = _delta(c, "fer", "target_prob", "b", "happy")
    assert single.delta == pytest.approx(-0.1)
    assert (single.low, single.high) == (None, None)  # one image a side: no interval
    assert not single.regressed  # worse by 0.1, but the rule asks for an interval
    # a derived metric (top1 == expression): a/happy went from right to wrong
    top1 = _delta(c, "fer", "top1_correct", "a", "happy")
    assert (top1.base_mean, top1.head_mean, top1.delta) == (1.0, 0.0, -1.0)
    assert top1.regressed  # both replicates: interval [-1, -1]
    regressed = {d.where for d in c.regressions()}
    assert "fer/target_prob/a/happy" in regressed
    assert "fer/target_prob/b/happy" not in regressed
    assert "fer/target_prob/*/*" not in regressed


def test_lower_is_better_and_the_neutral_reference_is_left_out(hand_built) -> None:
    c = _compare(hand_built)
    overall = _delta(c, "dlib", "identity_distance")
    assert overall.better == "lower"
    assert overall.delta == pytest.approx(0.2)  # the neutrals' 9.0 and 5.0 are not values
    assert (overall.low, overall.high) == (pytest.approx(0.2), pytest.approx(0.2))
    assert overall.regressed  # every cell 0.2 farther from the subject's neutral
    assert not [
        d for d in c.deltas if d.metric == "identity_distance" and d.expression == "neutral"
    ]
    # a scorer is compared on the metrics it fills only; no direction, no comparison
    assert {d.metric for d in c.deltas if d.scorer == "dlib"} == {"identity_distance"}
    assert "age" not in {d.metric for d in c.deltas}
    assert "target_prob" in {d.metric for d in c.deltas if d.scorer == "fer"}


def test_missing_cells_come_from_the_images_table(hand_built) -> None:
    c = _compare(hand_built)
    assert c.missing == {"base_only": ["c/happy", "d/neutral"], "head_only": ["c/surprise"]}
    base_only = _delta(c, "fer", "target_prob", "c", "happy")
    assert (base_only.base_mean, base_only.head_mean, base_only.delta) == (0.7, None, None)
    assert (base_only.base_only, base_only.head_only, base_only.n_shared) == (1, 0, 0)


def test_the_rule(hand_built) -> None:
    # without the interval condition, any watched metric worse by > min_delta regresses
    loose = replace(RULE, interval_excludes_zero=False)
    c = _compare(hand_built, loose)
    regressed = {d.where for d in c.regressions()}
    assert {"fer/target_prob/b/happy", "fer/target_prob/*/*"} <= regressed
    # a metric the rule does not watch never regresses
    unwatched = replace(RULE, metrics=("identity_distance",))
    assert {d.metric for d in _compare(hand_built, unwatched).regressions()} == {
        "identity_distance"
    }
    rule = RegressionRule(("m",), 0.05, True)
    assert rule.regressed("m", "higher", -0.06, -0.1, -0.01)
    assert not rule.regressed("m", "higher", -0.05, -0.1, -0.01)  # not more than min_delta
    assert not rule.regressed("m", "higher", -0.06, -0.1, 0.0)  # interval reaches 0
    assert not rule.regressed("m", "higher", 0.3, 0.2, 0.4)  # better
    assert rule.regressed("m", "lower", 0.06, 0.01, 0.1)
    assert not rule.regressed("m", "lower", -0.06, -0.1, -0.01)
    assert not rule.regressed("m", "lower", 0.06, None, None)


def test_same_seed_same_intervals_and_outputs(hand_built) -> None:
    a, b = _compare(hand_built), _compare(hand_built)
    assert a.deltas == b.deltas
    document = a.to_json()
    json.dumps(document, allow_nan=False)
    assert document["regressions"] == [d.where for d in a.regressions()]
    text = a.markdown()
    assert text.startswith("### What changed in G 2 vs 1")
    assert "fer/target_prob/a/happy: 0.80 -> 0.40 (delta -0.40" in text
    assert "Only in 1 (2 cells): c/happy, d/neutral." in text


def test_a_bounded_comparison_keeps_what_a_page_draws(hand_built) -> None:
    """subjects_shown=N (the report) keeps, of the full comparison's deltas and in its
    order, exactly the pooled ones, every regressed cell and the cells of the first N
    subjects (those with a regressed cell first, then by name); it still counts every
    subject."""
    full = _compare(hand_built)
    assert full.n_subjects == 3  # a, b, c (d has no score)
    regressed = {d.subject for d in full.regressions() if d.subject is not None}
    assert regressed == {"a"}
    order = sorted({"a", "b", "c"}, key=lambda s: (s not in regressed, s))
    for shown in (0, 1, 2, 5):
        bounded = _compare(hand_built, subjects_shown=shown)
        expected = tuple(
            d for d in full.deltas if d.level != "cell" or d.regressed or d.subject in order[:shown]
        )
        assert bounded.deltas == expected, shown
        assert bounded.n_subjects == 3
    assert _compare(hand_built, subjects_shown=5).deltas == full.deltas


def test_essentials_keep_the_pooled_deltas_and_count_every_regression(hand_built) -> None:
    """What the report keeps of each comparison for deltas.json: the pooled deltas, and
    the number of regressed deltas (single cells counted, no longer held)."""
    full = _compare(hand_built)
    regressed_cells = [d for d in full.regressions() if d.level == "cell"]
    assert regressed_cells
    kept = full.essentials()
    assert kept.deltas == tuple(d for d in full.deltas if d.level != "cell")
    assert kept.regressed_cells_left_out == len(regressed_cells)
    assert kept.n_regressions == full.n_regressions == len(full.regressions())
    assert kept.essentials() == kept  # nothing more to leave out, nothing counted twice


def test_choosing_versions() -> None:
    orders = {
        "G": VersionOrder("G", ("1", "2", "3"), "versions.csv", None),
        "H": VersionOrder("H", ("x",), "mtime", None),
    }
    assert [(o.generator, b, h) for o, b, h in plan_pairs(orders)] == [("G", "2", "3")]
    assert [(b, h) for _, b, h in plan_pairs(orders, head="2")] == [("1", "2")]
    assert [(b, h) for _, b, h in plan_pairs(orders, base="1")] == [("1", "3")]
    assert [(b, h) for _, b, h in plan_pairs(orders, "G", "3", "1")] == [("3", "1")]
    with pytest.raises(UnknownVersionError, match=r"no generator 'K'.*generators: G, H"):
        plan_pairs(orders, "K")
    with pytest.raises(UnknownVersionError, match=r"no version '9' \(--head\); versions: G: 1, 2"):
        plan_pairs(orders, "G", head="9")
    with pytest.raises(UnknownVersionError, match="no version before '1'"):
        plan_pairs(orders, "G", head="1")
    with pytest.raises(UnknownVersionError, match="'3' is the newest version: give a --head"):
        plan_pairs(orders, "G", base="3")
    with pytest.raises(UnknownVersionError, match="both '2'"):
        plan_pairs(orders, "G", "2", "2")
    assert plan_pairs(orders, "H") == []  # one version: nothing to compare


# ------------------------------------------------------------------ end to end, real run
# `two_version_run` (tests/conftest.py): toolA old < new by versions.csv; in new, s1/happy
# no longer smiles, s2/happy is the same photo, s2/sad is only in old, s2/surprise only in
# new; toolB has one version.


def _cli(layout: Layout, *args: str) -> list[str]:
    return [
        "compare",
        "--params",
        str(ROOT / "params.yaml"),
        "--output",
        str(layout.scores_dir.parent),
        "--input",
        str(layout.input_dir),
        *args,
    ]


def test_compare_command_on_a_real_run(two_version_run, capsys) -> None:
    layout, ingested = two_version_run
    assert ingested.counts["version_order"] == "toolA: old < new (versions.csv)"
    scores = pq.read_table(layout.scores).to_pylist()
    prob = {(r["version"], r["subject"], r["replicate"]): r["target_prob"] for r in scores}
    assert not any(v is None for k, v in prob.items() if k[1] == "s1")
    s1 = (prob[("new", "s1", 1)] + prob[("new", "s1", 2)]) / 2 - (
        prob[("old", "s1", 1)] + prob[("old", "s1", 2)]
    ) / 2

    assert main([*_cli(layout), "--json"]) == 0  # no --fail-on-regression: exit 0
    document = json.loads(capsys.readouterr().out)
    assert document["one_version"] == {"toolB": "1"}
    assert document["orders"]["toolA"]["versions"] == ["old", "new"]
    [found] = document["comparisons"]
    assert (found["generator"], found["base"], found["head"]) == ("toolA", "old", "new")
    assert found["missing"] == {"base_only": ["s2/sad"], "head_only": ["s2/surprise"]}
    deltas = {
        (d["metric"], d["subject"], d["expression"]): d
        for d in found["deltas"]
        if d["scorer"] == "fer"
    }
    cell = deltas[("target_prob", "s1", "happy")]
    assert cell["delta"] == pytest.approx(s1)  # by hand from the scores table
    assert s1 < -0.5  # smiling photos replaced by ones that do not smile
    assert cell["high"] < 0 and cell["regressed"]
    same = deltas[("target_prob", "s2", "happy")]
    assert same["delta"] == 0.0  # the same photo scores the same
    assert deltas[("target_prob", None, "happy")]["delta"] == pytest.approx(s1 / 2)
    assert deltas[("target_prob", "s2", "sad")]["head_mean"] is None
    assert "fer/target_prob/s1/happy" in found["regressions"]

    assert main([*_cli(layout), "--fail-on-regression"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("toolA: new vs old\nVersion order: old < new (versions.csv).")
    assert "toolB: one version (1); nothing to compare it with" in out
    lines = [line for line in err.splitlines() if "fer/target_prob/s1/happy" in line]
    assert len(lines) == 1
    assert lines[0].startswith(
        f"exprbench: regression: toolA new vs old: fer/target_prob/s1/happy delta {s1:+.4f}"
    )
    assert "95% [" in lines[0]

    # reversed, the same cell improved: nothing regresses on target_prob
    assert main([*_cli(layout), "--generator", "toolA", "--base", "new", "--head", "old"]) == 0
    assert "fer/target_prob/s1/happy" not in capsys.readouterr().out

    assert main([*_cli(layout), "--generator", "toolC"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "exprbench: error: no generator 'toolC' in the images table; generators: toolA, toolB"
    )
    assert main([*_cli(layout), "--generator", "toolA", "--head", "v9"]) == 2
    assert "versions: toolA: old, new" in capsys.readouterr().err
    assert main([*_cli(layout), "--generator", "toolB"]) == 0
    assert capsys.readouterr().out.strip() == "toolB: one version (1); nothing to compare it with"
    assert not math.isnan(cell["low"])


def test_single_cell_intervals_resample_each_side_from_the_cells_own_stream() -> None:
    """Cells resampled together (grouped by size) give each cell the interval of its own
    two-sample bootstrap: each side's images drawn with replacement from the cell's stream,
    base then head: n uniform picks among a side's n images per replicate."""
    from functools import partial

    import numpy as np

    from exprbench.compare import _cell_intervals
    from exprbench.uncertainty import group_rng

    values = np.random.default_rng(4).random(40)
    cells = [  # (base, head): sizes (2, 3) twice, (4, 2) once
        (list(values[0:2]), list(values[2:5])),
        (list(values[5:9]), list(values[9:11])),
        (list(values[11:13]), list(values[13:16])),
    ]
    resamples = 500
    got = _cell_intervals(
        [(b, h, partial(group_rng, 3, ("cell", k))) for k, (b, h) in enumerate(cells)],
        resamples,
    )
    for k, (base, head) in enumerate(cells):
        rng = group_rng(3, ("cell", k))
        means = []
        for side in (base, head):
            array = np.asarray(side)
            picks = (rng.random(resamples * array.size) * array.size).astype(np.int64)
            means.append(array[picks.reshape(resamples, array.size)].mean(axis=1))
        expected = np.percentile(means[1] - means[0], [2.5, 97.5])
        assert got[k] == pytest.approx(tuple(expected), abs=1e-12)


def test_only_the_metrics_a_scorer_fills_are_compared(hand_built) -> None:
    """One grouped pass finds each scorer's filled metrics; no other pair is queried, and
    every filled pair gets its deltas (the rows carry a value nobody compares: age)."""
    import duckdb

    from exprbench.compare import _filled_pairs, directed_specs

    scores = hand_built[0]
    params = {"generator": "G", "base": "1", "head": "2"}
    with duckdb.connect() as con:
        filled = _filled_pairs(con, scores, directed_specs(scores), params)
    pairs = [(scorer, spec.column) for scorer, spec in filled]
    assert pairs == [
        ("dlib", "identity_distance"),
        ("fer", "target_prob"),
        ("fer", "top1_correct"),
    ]
    assert {(d.scorer, d.metric) for d in _compare(hand_built).deltas} == set(pairs)


def test_the_first_pass_draws_only_the_cells_that_could_regress(hand_built, monkeypatch) -> None:
    """With subjects_shown, a cell whose delta cannot break the rule (an unwatched metric,
    here top1_correct, or not worse by more than min_delta) gets no bootstrap: only the
    others' random streams are made, and the result is the same."""
    import exprbench.compare as compare

    rule = RegressionRule(("target_prob", "identity_distance"), 0.05, True)
    full = _compare(hand_built, rule)
    with_interval = {d.where for d in full.deltas if d.level == "cell" and d.low is not None}
    assert with_interval == {"fer/target_prob/a/happy", "fer/top1_correct/a/happy"}
    drawn: list[str] = []
    real = compare.group_rng

    def counted(seed, key):
        if key[0] == "compare-cell":
            drawn.append("/".join(key[-4:]))
        return real(seed, key)

    monkeypatch.setattr(compare, "group_rng", counted)
    bounded = _compare(hand_built, rule, subjects_shown=0)
    assert drawn == ["fer/target_prob/a/happy"]
    assert bounded.deltas == tuple(d for d in full.deltas if d.level != "cell" or d.regressed)
    assert any(d.level == "cell" for d in bounded.deltas)
