"""Identity against impostors: the per-image measures, the separability tables, the
bootstrap intervals in the aggregate tables, and the gallery's descriptors on real faces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_aggregate import make_scores, write_scores

from exprbench.aggregate import compute_tables
from exprbench.gallery import GALLERY, gallery_items
from exprbench.identity import ENSEMBLE, NO_IMPOSTORS, add_impostor_measures, identity_tables
from exprbench.scoring import add_relative_measures
from exprbench.uncertainty import auc_mann_whitney


def _row(subject: str, expression: str, descriptor, scorer: str = "dlib", **extra) -> dict:
    return {
        "generator": "g",
        "version": "1",
        "subject": subject,
        "expression": expression,
        "replicate": 1,
        "scorer": scorer,
        "face_found": True,
        "descriptor": list(descriptor),
        "note": None,
        **extra,
    }


def test_rank_margin_and_impostors_by_hand() -> None:
    rows = [
        _row("a", "neutral", [0.0, 0.0]),
        _row("a", "happy", [0.3, 0.0]),  # own 0.3; b's neutral at 0.5 -> rank 1
        _row("a", "sad", [0.0, 0.9]),  # own 0.9; b at 0.5*sqrt... nearer -> rank 2
        _row("b", "neutral", [0.8, 0.0]),
        _row("b", "happy", [0.7, 0.1]),
    ]
    rows = add_relative_measures(rows, 0.6)
    gallery = {"dlib": [("fake-avatars:0", [5.0, 5.0])]}
    rows = add_impostor_measures(rows, gallery)
    happy, sad, _, b_happy = rows[1], rows[2], rows[3], rows[4]
    assert happy["identity_distance"] == pytest.approx(0.3)
    assert happy["impostor_ids"] == ["subject:b", "fake-avatars:0"]
    assert happy["impostor_distances"][0] == pytest.approx(0.5)
    assert happy["identity_rank"] == 1.0 and happy["identity_rank1"] is True
    assert happy["identity_margin"] == pytest.approx(0.2)
    assert happy["impostor_distance"] == pytest.approx(0.5)
    assert happy["identity_n_impostors"] == 2.0
    # sad: own 0.9, b's neutral at sqrt(0.64 + 0.81) = 1.204 -> still rank 1; margin 0.304
    assert sad["identity_rank"] == 1.0
    assert sad["identity_margin"] == pytest.approx(math.sqrt(1.45) - 0.9, abs=1e-6)
    assert b_happy["identity_rank"] == 1.0
    assert b_happy["impostor_ids"][0] == "subject:a"
    # neutral references get no impostor columns (they are the reference)
    assert "identity_rank" not in rows[0] and "identity_rank" not in rows[3]


def test_rank_counts_nearer_and_tied_impostors_against_the_image() -> None:
    rows = [
        _row("a", "neutral", [0.0]),
        _row("a", "fear", [1.0]),
        _row("b", "neutral", [1.2]),  # 0.2 from the fear image: nearer than own (1.0)
        _row("c", "neutral", [2.0]),  # 1.0: a tie counts against
    ]
    rows = add_impostor_measures(add_relative_measures(rows, 0.6), {})
    fear = rows[1]
    assert fear["identity_rank"] == 3.0 and fear["identity_rank1"] is False
    assert fear["identity_margin"] == pytest.approx(-0.8)


def test_a_single_subject_without_gallery_gets_a_note() -> None:
    rows = [_row("a", "neutral", [0.0]), _row("a", "happy", [0.1])]
    rows = add_impostor_measures(add_relative_measures(rows, 0.6), {}, None)
    assert rows[1].get("identity_rank") is None
    assert NO_IMPOSTORS in rows[1]["note"]
    # a missing gallery says why, on every row it would have served
    rows = [_row("a", "neutral", [0.0]), _row("a", "happy", [0.1])]
    why = "impostor gallery unavailable: avatars/png/0.png is missing"
    rows = add_impostor_measures(add_relative_measures(rows, 0.6), {}, why)
    assert why in rows[1]["note"]


def test_gallery_items_are_pinned() -> None:
    assert len(GALLERY) == 263
    assert all(len(item.sha256) == 64 for item in GALLERY)
    assert [i.member for i in gallery_items(2)] == ["avatars/png/0.png", "avatars/png/1.png"]
    with pytest.raises(ValueError, match="impostor gallery size"):
        gallery_items(264)


def _scores_with_impostors(tmp_path: Path) -> str:
    """make_scores' dlib rows with real distances, plus a second identity scorer."""
    frame = make_scores()
    dlib = frame[frame["scorer"] == "dlib"].copy()
    second = dlib.copy()
    second["scorer"] = "faceapi"
    rng = np.random.default_rng(4)
    for part in (dlib, second):
        has = part["identity_distance"].notna() & (part["expression"] != "neutral")
        genuine = rng.uniform(0.2, 0.5, has.sum())
        part.loc[has, "identity_distance"] = genuine
        part.loc[has, "identity_similarity"] = 1 - genuine
        part.loc[has, "same_identity"] = genuine < 0.6
        impostors = [list(rng.uniform(0.45, 0.9, 3)) for _ in range(int(has.sum()))]
        part.loc[has, "impostor_distances"] = pd_series(impostors, part.index[has])
        part.loc[has, "impostor_ids"] = pd_series(
            [["subject:x", "fake-avatars:0", "fake-avatars:1"]] * int(has.sum()), part.index[has]
        )
        part.loc[has, "identity_margin"] = [
            min(i) - g for i, g in zip(impostors, genuine, strict=True)
        ]
        part.loc[has, "identity_rank1"] = [
            min(i) > g for i, g in zip(impostors, genuine, strict=True)
        ]
    others = frame[frame["scorer"] != "dlib"]
    import pandas as pd

    return write_scores(pd.concat([others, dlib, second]), tmp_path / "scores")


def pd_series(values: list, index) -> object:
    import pandas as pd

    return pd.Series(values, index=index, dtype=object)


def test_separability_table_matches_hand_computed_auc(tmp_path: Path) -> None:
    glob = _scores_with_impostors(tmp_path)
    tables = identity_tables(glob)
    separability = tables["identity_separability"].to_pylist()
    import pyarrow.parquet as pq

    rows = [
        r
        for path in sorted(tmp_path.glob("scores/**/*.parquet"))
        for r in pq.read_table(path).to_pylist()
        if r["scorer"] == "dlib"
        and r["generator"] == "ChatGPT"
        and r["expression"] != "neutral"
        and r["identity_distance"] is not None
    ]
    genuine = np.array([r["identity_distance"] for r in rows])
    impostor = np.array([d for r in rows for d in r["impostor_distances"]])
    entry = next(r for r in separability if r["scorer"] == "dlib" and r["generator"] == "ChatGPT")
    assert entry["auc"] == pytest.approx(auc_mann_whitney(genuine, impostor))
    assert 0.0 <= entry["auc"] <= 1.0
    assert entry["n_genuine"] == genuine.size and entry["n_impostor_pairs"] == impostor.size
    assert entry["rank1_rate"] == pytest.approx(np.mean([r["identity_rank1"] for r in rows]))
    # these files record no same-person threshold (the score stage writes one): no share
    assert entry["impostor_below_threshold"] is None and entry["threshold"] is None
    ensemble = [r for r in separability if r["scorer"] == ENSEMBLE]
    assert ensemble and all(r["members"] == "dlib+faceapi" for r in ensemble)
    assert all(0.0 <= r["auc"] <= 1.0 for r in ensemble)
    histogram = tables["identity_histogram"].to_pylist()
    genuine_bins = [
        h
        for h in histogram
        if (h["scorer"], h["generator"], h["kind"]) == ("dlib", "ChatGPT", "genuine")
    ]
    assert sum(h["count"] for h in genuine_bins) == genuine.size
    assert sum(h["share"] for h in genuine_bins) == pytest.approx(1.0)


def test_separability_shares_use_each_scorers_own_threshold(tmp_path: Path) -> None:
    """A scorer with its own same-person threshold (human_faceres: 0.9) is counted against
    it, the others against the global one, as the score stage recorded them."""
    import json

    import pyarrow.parquet as pq

    from exprbench.schema import THRESHOLD_METADATA_KEY, THRESHOLDS_METADATA_KEY

    glob = _scores_with_impostors(tmp_path)
    own = {"dlib": 0.45, "faceapi": 0.6}
    for path in sorted(tmp_path.glob("scores/**/*.parquet")):
        table = pq.read_table(path)
        metadata = {
            **(table.schema.metadata or {}),
            THRESHOLD_METADATA_KEY: b"0.6",
            THRESHOLDS_METADATA_KEY: json.dumps(own).encode(),
        }
        pq.write_table(table.replace_schema_metadata(metadata), path)
    separability = identity_tables(glob)["identity_separability"].to_pylist()
    rows = [
        r
        for path in sorted(tmp_path.glob("scores/**/*.parquet"))
        for r in pq.read_table(path).to_pylist()
        if r["generator"] == "ChatGPT"
        and r["expression"] != "neutral"
        and r["identity_distance"] is not None
    ]
    for scorer, threshold in own.items():
        entry = next(
            r for r in separability if r["scorer"] == scorer and r["generator"] == "ChatGPT"
        )
        impostor = np.array(
            [d for r in rows if r["scorer"] == scorer for d in r["impostor_distances"]]
        )
        genuine = np.array([r["identity_distance"] for r in rows if r["scorer"] == scorer])
        assert entry["threshold"] == threshold
        assert entry["impostor_below_threshold"] == pytest.approx(
            float((impostor < threshold).mean())
        )
        assert entry["genuine_below_threshold"] == pytest.approx(
            float((genuine < threshold).mean())
        )


def test_ensemble_by_hand_on_shared_images_and_impostors(tmp_path: Path) -> None:
    """The ensemble averages each member's z-scored distance (over all of that member's
    genuine and impostor distances in the run, population sd) on the images every member
    measured and the impostors both compared them with; sets measures stay per scorer."""
    import pyarrow.parquet as pq

    def row(path, scorer, own, impostors):
        return {
            "path": path,
            "scorer": scorer,
            "generator": "g",
            "version": "1",
            "subject": "s1",
            "expression": "happy",
            "face_found": True,
            "identity_distance": own,
            "identity_rank1": min(impostors.values()) > own,
            "identity_margin": min(impostors.values()) - own,
            "impostor_ids": list(impostors),
            "impostor_distances": list(impostors.values()),
        }

    rows = [
        row("p1", "a", 0.2, {"subject:s2": 0.8, "y": 0.6}),
        row("p1", "b", 0.4, {"subject:s2": 1.0, "z": 0.9}),
        row("p2", "a", 0.5, {"subject:s2": 0.7}),  # not measured by b: not in the ensemble
    ]
    schema = pa.schema(
        [
            *((name, pa.string()) for name in ("path", "scorer", "generator", "version")),
            ("subject", pa.string()),
            ("expression", pa.string()),
            ("face_found", pa.bool_()),
            ("identity_distance", pa.float64()),
            ("identity_rank1", pa.bool_()),
            ("identity_margin", pa.float64()),
            ("impostor_ids", pa.list_(pa.string())),
            ("impostor_distances", pa.list_(pa.float32())),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "scores.parquet")
    separability = identity_tables(str(tmp_path / "*.parquet"))["identity_separability"]
    by_scorer = {r["scorer"]: r for r in separability.to_pylist()}
    a = np.array([0.2, 0.8, 0.6, 0.5, 0.7])
    b = np.array([0.4, 1.0, 0.9])

    def z(values: np.ndarray, x: float) -> float:
        return (x - values.mean()) / values.std()

    own = (z(a, 0.2) + z(b, 0.4)) / 2
    shared = (z(a, 0.8) + z(b, 1.0)) / 2
    ensemble = by_scorer[ENSEMBLE]
    assert ensemble["members"] == "a+b"
    assert (ensemble["n_genuine"], ensemble["n_impostor_pairs"]) == (1, 1)
    assert ensemble["mean_genuine"] == pytest.approx(own)
    assert ensemble["mean_impostor"] == pytest.approx(shared, rel=1e-6)
    assert ensemble["mean_margin"] == pytest.approx(shared - own, rel=1e-6)
    assert ensemble["rank1_rate"] == 1.0 and ensemble["auc"] == 1.0
    assert by_scorer["a"]["n_impostor_pairs"] == 3 and by_scorer["a"]["n_impostor_pairs_sets"] == 2
    assert by_scorer["a"]["rank1_rate"] == 1.0
    assert by_scorer["a"]["mean_margin"] == pytest.approx((0.4 + 0.2) / 2, rel=1e-6)
    assert by_scorer["b"]["auc_sets"] == 1.0 and by_scorer["b"]["n_genuine"] == 1


def test_aggregate_bootstrap_intervals_are_ordered_seeded_and_on_every_mean(
    tmp_path: Path,
) -> None:
    glob = _scores_with_impostors(tmp_path)
    first = compute_tables(glob, (7, 300))
    again = compute_tables(glob, (7, 300))
    other = compute_tables(glob, (8, 300))
    cells = first["cells"].to_pylist()
    checked = 0
    for row in cells:
        for column in [c for c in row if c.startswith("boot95_low_")]:
            stem = column.removeprefix("boot95_low_")
            low, high = row[column], row[f"boot95_high_{stem}"]
            mean = row.get(f"mean_{stem}", row.get(f"share_{stem}"))
            n = row[f"n_{stem}"]
            if n >= 2:  # every mean from 2+ images has its interval
                assert low <= mean + 1e-12 and mean <= high + 1e-12, (row, stem)
                checked += 1
            if n < 2:
                assert low is None and high is None
    assert checked > 10
    assert first["cells"].equals(again["cells"])  # same seed, same intervals
    assert first["run_intervals"].equals(again["run_intervals"])
    assert not first["run_intervals"].equals(other["run_intervals"])
    runs = first["run_intervals"].to_pylist()
    assert all(
        r["boot95_low"] <= r["mean"] + 1e-12 <= r["boot95_high"] + 2e-12
        for r in runs
        if r["n"] >= 2 and r["boot95_low"] is not None
    )
    assert sum(r["boot95_low"] is not None for r in runs) > 10
    board = first["leaderboard"].to_pylist()
    dlib = [r for r in board if r["scorer"] == "dlib"]
    assert dlib and all(r["identity_auc"] is not None for r in dlib)
    assert all(r["identity_auc"] is None for r in board if r["scorer"] == "fer")
    paired = first["subject_cells"]
    assert isinstance(paired, pa.Table) and "mean_target_prob" in paired.column_names
    # without a bootstrap the columns exist and are NULL (the t-interval remains)
    plain = compute_tables(glob)["cells"].to_pylist()
    assert all(r["boot95_low_target_prob"] is None for r in plain)


def test_identity_section_draws_both_distributions(tmp_path: Path) -> None:
    from exprbench.report_uncertainty import PLOT_HEIGHT, PLOT_WIDTH, identity_section

    tables = identity_tables(_scores_with_impostors(tmp_path))
    section = identity_section(
        tables["identity_separability"].to_pylist(), tables["identity_histogram"].to_pylist()
    )
    scorers = [scorer for scorer, _ in section["plots"]]
    assert scorers == sorted(["dlib", "faceapi", ENSEMBLE])
    for _, plots in section["plots"]:
        for plot in plots:
            kinds = {bar["kind"] for bar in plot["bars"]}
            assert kinds == {"genuine", "impostor"}
            for bar in plot["bars"]:
                assert 0 <= bar["x"] <= PLOT_WIDTH and 0 <= bar["height"] <= PLOT_HEIGHT
            # the tallest bar of the two series reaches the top
            assert max(bar["height"] for bar in plot["bars"]) == PLOT_HEIGHT
    rows = {(r["scorer"], r["generator"]): r for r in section["rows"]}
    assert rows[("dlib", "ChatGPT")]["auc"] != "–"
    assert rows[(ENSEMBLE, "ChatGPT")]["better"] in ("yes", "no")
