"""Study tables: numbers checked against hand-computed values; missing cells stay NULL.

`make_scores` (also used by test_validation and test_report) builds a realistic SCORES
table: three generators (one with version '10', which must stay a string), a female and
a male subject each, three scorers, a replicate, a missing cell, a no-face image, a
subject without a neutral image, and a file name full of HTML metacharacters.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import import_or_missing

from exprbench.aggregate import (
    TABLE_NAMES,
    NoScoresError,
    _setup_sql,
    build_tables,
    compute_tables,
    metrics_summary,
    plot_frames,
)
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.schema import SCORES, write_table
from exprbench.settings import DuckdbSettings

DECLARED: dict[str, set[str]] = {
    "fer": {"expression"},
    "agegender": {"age", "gender"},
    "dlib": {"identity"},
}
GENERATORS = {("ChatGPT", "4o"): 0.8, ("Gemini", "2.5"): 0.6, ("Copilot", "10"): 0.3}
SUBJECTS = {"anna": ("female", 30.0, 0.1), "ben": ("male", 40.0, -0.1)}
AGE_DRIFT = {"ChatGPT": 2.0, "Gemini": 5.0, "Copilot": -3.0}
SIMILARITY = {"ChatGPT": 0.9, "Gemini": 0.7, "Copilot": 0.5}
# Two replicates of one cell, averaging to that cell's base value 0.9.
REPLICATES = {("ChatGPT", "anna", "happy"): (0.95, 0.85)}
MISSING = ("Gemini", "ben", "fear")  # the generator produced no such file
NO_FACE = ("Copilot", "anna", "disgust")
NO_NEUTRAL = ("Copilot", "ben")  # no neutral image: nothing to compare identity/age with
CONFUSED = ("Copilot", "sad", "fear")  # Copilot's sad faces read as fear
ODD_PATH = ("Gemini", "anna", "angry")
ODD_NAME = "<b>angry</b> & \"co\" 'x'.png"


def _probabilities(expression: str, target: float, confused_with: str | None) -> dict:
    others = [e for e in EXPRESSIONS if e != expression]
    probs = dict.fromkeys(others, (1.0 - target) / len(others))
    if confused_with is not None:
        probs = dict.fromkeys(others, 0.3 * (1.0 - target) / (len(others) - 1))
        probs[confused_with] = 0.7 * (1.0 - target)
    probs[expression] = target
    return probs


def _image_key(generator: str, version: str, subject: str, expression: str, rep: int):
    name = ODD_NAME if (generator, subject, expression) == ODD_PATH else f"{expression}.png"
    path = f"{generator}/{version}/{subject}/{rep}-{name}"
    return path, hashlib.sha256(path.encode()).hexdigest()


def _row(generator, version, subject, expression, rep, scorer, target) -> dict:
    gender, base_age, _ = SUBJECTS[subject]
    path, sha = _image_key(generator, version, subject, expression, rep)
    row = {
        "generator": generator,
        "version": version,
        "subject": subject,
        "expression": expression,
        "replicate": rep,
        "path": path,
        "sha256": sha,
        "subject_gender": gender,
        "scorer": scorer,
        "scorer_version": "1.0",
        "face_found": True,
        "face_count": 1,
        "upscale_method": "none",
        "upscale_factor": 1.0,
        "note": None,
    }
    if (generator, subject, expression) == NO_FACE:
        return row | {"face_found": False, "face_count": 0, "note": "no face detected"}
    no_reference = (generator, subject) == NO_NEUTRAL
    reference_note = "no neutral image for this subject" if no_reference else None
    neutral = expression == NEUTRAL
    if scorer == "fer":
        confused = CONFUSED[2] if (generator, expression) == CONFUSED[:2] else None
        probs = _probabilities(expression, target, confused)
        top1 = max(probs, key=probs.__getitem__)
        row |= {f"p_{e}": p for e, p in probs.items()}
        row |= {"target_prob": target, "top1": top1, "top1_prob": probs[top1]}
    elif scorer == "agegender":
        drift = 0.0 if neutral else AGE_DRIFT[generator]
        predicted = "female" if (generator, subject) == NO_NEUTRAL else gender
        row |= {
            "age": base_age + drift,
            "age_delta": None if no_reference else drift,
            "gender": predicted,
            "gender_prob": 0.9,
            "gender_match": predicted == gender,
            "note": reference_note,
        }
    else:
        similarity = 1.0 if neutral else SIMILARITY[generator]
        if no_reference:
            row |= {"note": reference_note}
        else:
            row |= {
                "identity_similarity": similarity,
                "identity_distance": 1.0 - similarity,
                "same_identity": similarity >= 0.6,
                "descriptor": [0.1] * 4,
            }
            if not neutral:  # three impostors at 0.4 (exprbench.identity's columns)
                own = 1.0 - similarity
                row |= {
                    "identity_rank1": own < 0.4,
                    "identity_rank": 1.0 if own < 0.4 else 4.0,
                    "identity_margin": 0.4 - own,
                    "impostor_distance": 0.4,
                    "identity_n_impostors": 3.0,
                    "impostor_ids": [f"fake-avatars:{i}" for i in range(3)],
                    "impostor_distances": [0.4] * 3,
                }
    return row


def make_scores() -> pd.DataFrame:
    """The SCORES table described in the module docstring, as a pandas frame."""
    rows = []
    for (generator, version), base in GENERATORS.items():
        for subject, (_, _, shift) in SUBJECTS.items():
            for expression in EXPRESSIONS:
                if (generator, subject, expression) == MISSING or (
                    (generator, subject) == NO_NEUTRAL and expression == NEUTRAL
                ):
                    continue
                targets = REPLICATES.get((generator, subject, expression), (base + shift,))
                for rep, target in enumerate(targets, start=1):
                    for scorer in DECLARED:
                        rows.append(
                            _row(
                                generator,
                                version,
                                subject,
                                expression,
                                rep,
                                scorer,
                                round(target, 10),
                            )
                        )
    table = pa.Table.from_pylist(rows, schema=SCORES)
    return table.to_pandas()


def write_scores(df: pd.DataFrame, folder: Path) -> str:
    """Write one Parquet file per generator/version (as the pipeline does); return a glob."""
    for (generator, version), part in df.groupby(["generator", "version"]):
        table = pa.Table.from_pandas(part, schema=SCORES, preserve_index=False)
        write_table(
            table,
            folder / f"generator={generator}" / f"version={version}" / "scores.parquet",
            SCORES,
        )
    return str(folder / "**" / "*.parquet")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("aggregate")
    glob = write_scores(make_scores(), root / "scores")
    tables = build_tables(glob, root / "tables.duckdb", root / "csv")
    return root, tables


def _rows(table: pa.Table, **where) -> list[dict]:
    return [r for r in table.to_pylist() if all(r[k] == v for k, v in where.items())]


def _one(table: pa.Table, **where) -> dict:
    found = _rows(table, **where)
    assert len(found) == 1, f"expected one row for {where}, got {len(found)}"
    return found[0]


def test_fidelity_cell_with_replicates_matches_hand_computation(built) -> None:
    _, tables = built
    cell = _one(
        tables["expression_fidelity"],
        scorer="fer",
        generator="ChatGPT",
        version="4o",
        subject_gender="female",
        expression="happy",
    )
    # replicates 0.95 and 0.85: mean 0.9, sd 0.0707107, se 0.05, t(0.975, 1) = 12.706205
    assert cell["n_images"] == 2 and cell["n_target_prob"] == 2
    assert cell["mean_target_prob"] == pytest.approx(0.9)
    assert cell["ci95_low_target_prob"] == pytest.approx(0.9 - 12.706205 * 0.05)
    assert cell["ci95_high_target_prob"] == pytest.approx(0.9 + 12.706205 * 0.05)
    single = _one(
        tables["expression_fidelity"],
        scorer="fer",
        generator="Gemini",
        version="2.5",
        subject_gender="female",
        expression="fear",
    )
    assert single["mean_target_prob"] == pytest.approx(0.7)
    assert single["ci95_low_target_prob"] is None  # one image: no interval


def test_missing_cell_is_null_not_zero(built) -> None:
    root, tables = built
    cell = _one(
        tables["expression_fidelity"],
        scorer="fer",
        generator="Gemini",
        version="2.5",
        subject_gender="male",
        expression="fear",
    )
    assert cell["n_images"] == 0 and cell["n_missing"] == 1 and cell["n_subjects"] == 1
    assert cell["mean_target_prob"] is None
    for name in ("age", "identity"):
        assert (
            _one(tables[name], generator="Gemini", subject_gender="male", expression="fear")[
                f"mean_{'age' if name == 'age' else 'identity_similarity'}"
            ]
            is None
        )
    assert _rows(tables["missing_cells"]) == [
        {
            "generator": "Copilot",
            "version": "10",
            "subject": "ben",
            "subject_gender": "male",
            "expression": "neutral",
        },
        {
            "generator": "Gemini",
            "version": "2.5",
            "subject": "ben",
            "subject_gender": "male",
            "expression": "fear",
        },
    ]
    with open(root / "csv" / "expression_fidelity.csv", newline="") as handle:
        rows = [
            r
            for r in csv.DictReader(handle)
            if (r["generator"], r["subject_gender"], r["expression"]) == ("Gemini", "male", "fear")
        ]
    assert rows and rows[0]["mean_target_prob"] == ""  # empty field, not "0"


def test_grid_is_complete_and_versions_stay_strings(built) -> None:
    _, tables = built
    fidelity = tables["expression_fidelity"]
    assert fidelity.schema.field("version").type == pa.string()
    # 3 generator/versions x 2 genders x 7 expressions, for the one expression scorer
    assert fidelity.num_rows == 3 * 2 * 7
    assert set(fidelity.column("scorer").to_pylist()) == {"fer"}
    assert {r["version"] for r in fidelity.to_pylist()} == {"4o", "2.5", "10"}
    identity = tables["identity"]
    assert NEUTRAL not in identity.column("expression").to_pylist()
    assert identity.num_rows == 3 * 2 * 6
    assert set(tables["age"].column("scorer").to_pylist()) == {"agegender"}


def test_age_and_identity_exclude_the_neutral_reference(built) -> None:
    _, tables = built
    neutral = _one(
        tables["age"], generator="ChatGPT", subject_gender="female", expression="neutral"
    )
    assert neutral["mean_age"] == pytest.approx(30.0) and neutral["mean_age_delta"] is None
    happy = _one(tables["age"], generator="ChatGPT", subject_gender="female", expression="happy")
    assert happy["mean_age"] == pytest.approx(32.0) and happy["n_age"] == 2
    assert happy["mean_age_delta"] == pytest.approx(2.0)
    no_reference = _one(
        tables["identity"], generator="Copilot", subject_gender="male", expression="sad"
    )
    assert no_reference["n_images"] == 1 and no_reference["mean_identity_similarity"] is None
    assert _one(tables["identity"], generator="Gemini", subject_gender="female", expression="sad")[
        "share_same_identity"
    ] == pytest.approx(1.0)


def test_leaderboard_matches_hand_computation(built) -> None:
    _, tables = built
    board = tables["leaderboard"]
    chatgpt = _one(board, scorer="fer", generator="ChatGPT")
    # non-neutral: anna 0.95, 0.85 + 5 x 0.9; ben 6 x 0.7 -> 10.5 / 13
    assert chatgpt["mean_target_prob"] == pytest.approx(10.5 / 13)
    assert chatgpt["top1_accuracy"] == pytest.approx(1.0)
    assert chatgpt["n_images"] == 15 and chatgpt["n_missing_cells"] == 0
    copilot = _one(board, scorer="fer", generator="Copilot")
    # anna: 5 scored non-neutral at 0.4 (disgust had no face); ben: 6 at 0.2
    assert copilot["mean_target_prob"] == pytest.approx((5 * 0.4 + 6 * 0.2) / 11)
    # 12 scored images, the two 'sad' ones read as fear
    assert copilot["top1_accuracy"] == pytest.approx(10 / 12)
    assert (copilot["n_images"], copilot["n_no_face"], copilot["n_missing_cells"]) == (13, 1, 1)
    assert _one(board, scorer="fer", generator="Gemini")["n_missing_cells"] == 1
    ages = _one(board, scorer="agegender", generator="Copilot")
    assert ages["gender_match_rate"] == pytest.approx(0.5)  # ben read as female
    assert ages["mean_abs_age_delta"] == pytest.approx(3.0)
    assert ages["mean_target_prob"] is None
    identity = _one(board, scorer="dlib", generator="Copilot")
    assert identity["mean_identity_similarity"] == pytest.approx(0.5)
    order = [r["generator"] for r in _rows(board, scorer="fer")]
    assert order == ["ChatGPT", "Gemini", "Copilot"]  # best mean_target_prob first


def test_confusion_counts(built) -> None:
    _, tables = built
    confusion = tables["confusion"]
    sad = _rows(confusion, scorer="fer", generator="Copilot", expression="sad")
    assert [(r["top1"], r["n"], r["share"]) for r in sad] == [("fear", 2, 1.0)]
    happy = _one(confusion, scorer="fer", generator="ChatGPT", expression="happy")
    assert (happy["top1"], happy["n"]) == ("happy", 3)
    # Gemini fear: only anna's image exists; ben's missing cell adds nothing, not a zero row
    assert [
        (r["top1"], r["n"])
        for r in _rows(confusion, scorer="fer", generator="Gemini", expression="fear")
    ] == [("fear", 1)]


def test_database_and_csv_hold_every_table(built) -> None:
    root, tables = built
    assert set(tables) == set(TABLE_NAMES)
    with duckdb.connect(str(root / "tables.duckdb"), read_only=True) as con:
        stored = {row[0] for row in con.sql("SHOW TABLES").fetchall()}
        assert stored == set(TABLE_NAMES)
        assert con.sql("SELECT count(*) FROM leaderboard").fetchall() == [(9,)]
    assert sorted(p.name for p in (root / "csv").iterdir()) == sorted(
        f"{name}.csv" for name in TABLE_NAMES
    )
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging left


def test_t_interval_beyond_the_table_uses_the_expansion() -> None:
    stats = import_or_missing("scipy.stats", "scipy is a dependency: pip install -e '.[dev]'")
    with duckdb.connect() as con:
        macro = next(sql for sql in _setup_sql("unused", Path("unused")) if "MACRO t975" in sql)
        con.execute(macro)
        for df in (1, 7, 30, 31, 45, 200):
            got = con.sql(f"SELECT t975({df})").fetchall()[0][0]
            assert got == pytest.approx(stats.t.ppf(0.975, df), abs=1e-5), df


def test_metrics_summary_and_plot_frames(built) -> None:
    _, tables = built
    summary = metrics_summary(tables)
    assert set(summary) == {"ChatGPT/4o", "Gemini/2.5", "Copilot/10"}
    assert summary["ChatGPT/4o"]["fer"]["mean_target_prob"] == pytest.approx(10.5 / 13, 1e-5)
    assert "mean_target_prob" not in summary["ChatGPT/4o"]["agegender"]
    json.dumps(summary, allow_nan=False)
    frames = plot_frames(tables)
    target = frames["target_prob"].to_pylist()
    assert not [r for r in target if r["mean_target_prob"] is None]
    gemini_fear = _one(frames["target_prob"], generator_version="Gemini 2.5", expression="fear")
    assert gemini_fear["n_target_prob"] == 1  # only anna: ben's fear is missing


def test_in_memory_build_and_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NoScoresError, match="no scores Parquet files"):
        compute_tables(str(tmp_path / "nothing" / "*.parquet"))
    partial = make_scores().drop(columns=["age_delta"])
    partial.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="age_delta"):
        compute_tables(str(tmp_path / "bad.parquet"))
    glob = write_scores(make_scores(), tmp_path / "scores")
    in_memory = compute_tables(glob)
    assert in_memory["leaderboard"].equals(
        build_tables(glob, tmp_path / "t.duckdb", tmp_path / "csv")["leaderboard"]
    )


def test_bounded_build_matches_the_in_memory_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_tables (DuckDB under a small memory limit, per-image tables checked and
    written in batches, the bootstrap fed one group at a time across tiny batches,
    subject cells grouped in several passes) gives the same tables and CSVs as
    everything in memory at once."""
    from benchmarks.synthetic_scores import write_corpus
    from exprbench import aggregate, duckdb_memory, table_intervals

    write_corpus(tmp_path, 2000, generators=2, versions=2)
    scores = tmp_path / "scores" / "scores.parquet"
    expected = compute_tables(str(scores), (5, 50))
    monkeypatch.setattr(table_intervals, "GROUP_BATCH_ROWS", 7)  # groups span batches
    monkeypatch.setattr(aggregate, "CSV_BATCH_ROWS", 5)
    monkeypatch.setattr(duckdb_memory, "ROWS_PER_PASS", 300)  # a pass or two per run
    monkeypatch.setattr(table_intervals, "INTERVAL_ROWS_PER_PASS", 500)
    built = build_tables(
        scores, tmp_path / "t.duckdb", tmp_path / "csv", (5, 50), DuckdbSettings("32MB")
    )
    assert set(built) == set(expected)
    for name in expected:
        assert built[name].equals(expected[name]), name
        csv = (tmp_path / "csv" / f"{name}.csv").read_bytes()
        whole = pa.BufferOutputStream()
        pacsv.write_csv(expected[name], whole)
        assert csv == whole.getvalue().to_pybytes(), name
    assert any(r["boot95_low"] is not None for r in expected["run_intervals"].to_pylist())
    assert expected["image_agreement"].num_rows > 100


@pytest.mark.parametrize(
    ("batch_rows", "rows_per_pass"), [(3, 1_000_000), (65_536, 1_000_000), (3, 40)]
)
def test_table_intervals_are_the_bootstrap_of_each_groups_rows(
    batch_rows: int, rows_per_pass: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fill_intervals streams the rows from DuckDB (groups and subjects across batches,
    groups in several passes when there are many rows) and stores, per group, exactly
    `bootstrap_means` of that group's rows with the group's own stream; a NULL group key
    is a group, rows without any value take no part (a subject with only such rows is
    not counted)."""
    import numpy as np

    from exprbench import table_intervals
    from exprbench.table_intervals import IntervalSource, fill_intervals
    from exprbench.uncertainty import bootstrap_means, group_rng

    monkeypatch.setattr(table_intervals, "GROUP_BATCH_ROWS", batch_rows)
    monkeypatch.setattr(table_intervals, "INTERVAL_ROWS_PER_PASS", rows_per_pass)
    rng = np.random.default_rng(3)
    rows = []
    for i in range(120):
        group = ["g1", "g2", None][int(rng.integers(0, 3))]
        a, b = rng.random(), rng.random()
        rows.append((group, f"s{rng.integers(0, 9)}", a, None if i % 5 == 0 else b))
    rows += [("g1", "empty", None, None), ("g2", "s1", None, None)]
    con = duckdb.connect()
    con.execute("CREATE TABLE src (g VARCHAR, subject VARCHAR, v0 DOUBLE, v1 DOUBLE)")
    con.executemany("INSERT INTO src VALUES (?, ?, ?, ?)", rows)
    con.execute(
        "CREATE TABLE tab AS SELECT DISTINCT g, NULL::DOUBLE AS boot95_low_a, "
        "NULL::DOUBLE AS boot95_high_a, NULL::DOUBLE AS boot95_low_b, "
        "NULL::DOUBLE AS boot95_high_b FROM src"
    )
    source = IntervalSource(("g",), "SELECT * FROM src", ("a", "b"))
    assert fill_intervals(con, "tab", source, seed=4, resamples=150) == 3
    stored = {r[0]: r[1:] for r in con.sql("SELECT * FROM tab").fetchall()}
    for group in ("g1", "g2", None):
        mine = [r for r in rows if r[0] == group]
        values = np.array([[np.nan if v is None else v for v in r[2:]] for r in mine])
        low, high = bootstrap_means(
            values, [r[1] for r in mine], resamples=150, rng=group_rng(4, ("tab", group))
        )
        assert stored[group] == pytest.approx((low[0], high[0], low[1], high[1]), abs=1e-12)


def test_databases_open_within_the_bounds(tmp_path: Path) -> None:
    """The stages' DuckDB databases get params duckdb's limit, threads and spill folder
    when they open (a limit set later leaves what a default-sized database cached)."""
    from exprbench.duckdb_memory import connect

    bounds = DuckdbSettings("48MiB", threads=1)
    with connect(tmp_path / "t.duckdb", bounds, spill=tmp_path / "spill") as con:
        [(limit, threads, spill)] = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'),"
            " current_setting('temp_directory')"
        ).fetchall()
    assert (limit, threads, spill) == ("48.0 MiB", 1, str(tmp_path / "spill"))
    with connect(tmp_path / "t.duckdb", DuckdbSettings("1GiB", threads=2), read_only=True) as con:
        assert con.execute("SELECT current_setting('threads')").fetchall() == [(2,)]


def test_large_tables_are_sorted_a_pass_of_whole_runs_at_a_time() -> None:
    """Runs are batched in their order, a pass closing once it holds the rows asked for
    (a run larger than that is a pass of its own); a pass order must start with the run
    columns, or the passes would not concatenate in order."""
    from exprbench.aggregate import RunSorted
    from exprbench.duckdb_memory import run_passes

    runs = [(("a", "1"), 40), (("a", "2"), 70), (("b", "1"), 250), (("c", "1"), 5)]
    assert run_passes(runs, 100) == [[("a", "1"), ("a", "2")], [("b", "1")], [("c", "1")]]
    assert run_passes(runs, 1000) == [[r for r, _ in runs]]
    assert run_passes([], 100) == []
    with pytest.raises(ValueError, match="must begin with the runs"):
        RunSorted("SELECT 1", "subject, generator, version")


def test_pass_conditions_take_every_row_once_in_sort_order() -> None:
    """Each pass's condition (a range of runs, or the list of its runs where one has a
    NULL) holds exactly its runs' rows; the passes, each sorted, concatenate in order."""
    from exprbench.duckdb_memory import run_conditions

    con = duckdb.connect()
    con.execute(
        """CREATE TABLE t AS SELECT CASE WHEN i % 11 = 0 THEN NULL ELSE 'g' || (i % 3) END AS g,
               'v' || (i % 4) AS v, i FROM range(500) r(i)"""
    )
    conditions = run_conditions(con, "SELECT * FROM t", ("g", "v"), rows_per_pass=60)
    assert len(conditions) > 3 and any("IS NOT DISTINCT" in c for c in conditions)
    parts = [
        con.sql(f"SELECT g, v, i FROM t WHERE {c} ORDER BY g, v, i").fetchall() for c in conditions
    ]
    assert [row for part in parts for row in part] == con.sql(
        "SELECT g, v, i FROM t ORDER BY g, v, i"
    ).fetchall()


def test_a_pass_reads_only_the_parquet_row_groups_of_its_runs(tmp_path: Path) -> None:
    """A pass condition carries plain comparisons DuckDB hands to the Parquet reader (a
    row-value range alone is filtered after reading every row group: each pass of a
    sorted copy would read the whole scores file)."""
    from exprbench.duckdb_memory import run_conditions

    con = duckdb.connect()
    source = tmp_path / "t.parquet"
    con.execute(  # 5 g x 10 v runs of 1,200 rows; 30 row groups of 2,048
        f"""COPY (SELECT 'g' || (i // 12000) AS g, 'v' || (i // 1200 % 10) AS v, i
                  FROM range(60000) r(i) ORDER BY g, v, i)
            TO '{source}' (FORMAT parquet, ROW_GROUP_SIZE 2048)"""
    )
    query = f"SELECT * FROM read_parquet('{source}')"
    conditions = run_conditions(con, query, ("g", "v"), rows_per_pass=2400)
    assert len(conditions) == 25
    for condition in conditions:
        plan = con.sql(f"EXPLAIN ANALYZE SELECT count(*) FROM ({query}) WHERE {condition}")
        scanned = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan.fetchall()[0][1])
        assert scanned, plan
        # a pass's 2,400 rows span 2-3 row groups; a group is skipped by each column's
        # min/max alone, so a neighbour straddling two g values may be read too
        assert int(scanned.group(1)) <= 6 and int(scanned.group(2)) == 30, condition
