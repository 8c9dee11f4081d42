"""Identity against impostors: does "same person" mean anything for this model and set?

A distance to the own neutral image alone says little: on generated faces some models
put *different* people under the same-person threshold too. So every expression image
with an identity descriptor is also compared with impostors:

* the neutral references (the same rule as `exprbench.scoring.neutral_reference`) of the
  other subjects of the same generator/version, by the same scorer; and
* an impostor gallery of generated faces of people who do not exist (the StyleGAN2 faces
  of npm `fake-avatars` 1.1.0, first `score.impostor_gallery` of them), whose descriptors
  each identity scorer computes once per face in the score stage (cached by the image's
  sha256 and the scorer's cache identity). The gallery serves every set, so a set with a
  single subject still has impostors, and sets with several get extra ones.

Per image (`add_impostor_measures`): the nearest impostor's distance, the margin (nearest
impostor minus own neutral: > 0 when the own neutral is nearer), the rank of the own
neutral among own + impostors (1 = identified; ties count against it), rank-1 as a yes/no
outcome, how many impostors it was compared with, and every impostor distance with its id
(list columns `impostor_ids`, `impostor_distances`).

Per generator/version and identity scorer (`identity_tables`, in the aggregate stage):
genuine (image vs own neutral) against impostor distances: ROC AUC by Mann-Whitney (over
all impostors, and over the set's own other subjects only), rank-1 rate, mean margin, the
share of genuine and of impostor pairs under the same-person threshold, and histograms of
both distributions for the report. An ensemble of the identity scorers (the mean of each
scorer's distances standardised over all its distances in that generator/version, on the
images and impostors every member measured) is reported beside them, with whether its AUC
beats the best single member.
"""

from __future__ import annotations

import glob
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exprbench.labels import NEUTRAL
from exprbench.schema import THRESHOLD_METADATA_KEY, THRESHOLDS_METADATA_KEY
from exprbench.scoring import neutral_reference
from exprbench.uncertainty import auc_mann_whitney

SUBJECT_PREFIX = "subject:"
ENSEMBLE = "ensemble"
# Written by the score stage (tasks/score.py) into scores.parquet's schema metadata.
HISTOGRAM_BINS = 24

NO_IMPOSTORS = (
    "identity impostors: none (the only subject with a neutral in its generator/version, "
    "and no impostor gallery)"
)


def _append_note(row: dict, note: str) -> None:
    row["note"] = f"{row['note']}; {note}" if row.get("note") else note


References = Mapping[tuple[str, str, str], Sequence[tuple[str, str, np.ndarray]]]


def impostor_references(rows: Iterable[dict]) -> dict[tuple, list[tuple[str, str, np.ndarray]]]:
    """(generator, version, scorer) -> [(subject, id, descriptor)] of every subject's neutral
    reference among `rows` (subjects in sorted order); the neutral images' rows suffice."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["generator"], row["version"], row["subject"], row["scorer"])].append(row)
    references: dict[tuple, list[tuple[str, str, np.ndarray]]] = defaultdict(list)
    for (generator, version, subject, scorer), members in sorted(groups.items()):
        reference = neutral_reference(members, "descriptor")
        if reference is not None:
            references[(generator, version, scorer)].append(
                (subject, f"{SUBJECT_PREFIX}{subject}", np.asarray(reference["descriptor"]))
            )
    return references


def add_impostor_measures(
    rows: Iterable[dict],
    gallery: Mapping[str, Sequence[tuple[str, Sequence[float]]]],
    gallery_note: str | None = None,
    references: References | None = None,
) -> list[dict]:
    """Fill the impostor columns of every row that has an identity distance to its neutral.

    `gallery`: scorer -> [(impostor id, descriptor)] of the gallery faces it found;
    `gallery_note` (why the gallery is missing) is added to the rows it would have served.
    `references`: `impostor_references` of the whole corpus when `rows` are one batch of
    it; default: those of `rows`.
    """
    rows = list(rows)
    if references is None:
        references = impostor_references(rows)
    stacks: dict[tuple, tuple[list[str], list[str], np.ndarray | None]] = {}
    for row in rows:
        if row.get("identity_distance") is None or row.get("descriptor") is None:
            continue
        run = (row["generator"], row["version"], row["scorer"])
        if run not in stacks:
            own = references.get(run, [])
            extra = list(gallery.get(row["scorer"], ()))
            subjects = [s for s, _, _ in own] + [""] * len(extra)
            ids = [i for _, i, _ in own] + [i for i, _ in extra]
            vectors = [d for _, _, d in own] + [np.asarray(d) for _, d in extra]
            stacks[run] = (ids, subjects, np.stack(vectors) if vectors else None)
        ids, subjects, matrix = stacks[run]
        others = [k for k, subject in enumerate(subjects) if subject != row["subject"]]
        if matrix is None or not others:
            _append_note(row, gallery_note or NO_IMPOSTORS)
            continue
        if gallery_note:
            _append_note(row, gallery_note)
        distances = np.linalg.norm(matrix[others] - np.asarray(row["descriptor"]), axis=1)
        own_distance = float(row["identity_distance"])
        nearest = float(distances.min())
        rank = 1 + int((distances <= own_distance).sum())
        row.update(
            identity_rank=float(rank),
            identity_rank1=rank == 1,
            identity_margin=nearest - own_distance,
            impostor_distance=nearest,
            identity_n_impostors=float(len(others)),
            impostor_ids=[ids[k] for k in others],
            impostor_distances=distances.astype(np.float32).tolist(),
        )
    return rows


# --------------------------------------------------------------------------- aggregate

_COLUMNS = (
    "path",
    "scorer",
    "generator",
    "version",
    "subject",
    "expression",
    "face_found",
    "identity_distance",
    "identity_rank1",
    "identity_margin",
    "impostor_ids",
    "impostor_distances",
)


def _identity_files(scores_glob: str) -> tuple[list[str], dict[str, float], float | None]:
    """The scores files that carry impostor distances, each scorer's same-person threshold
    and the global one.

    The threshold is the one each scorer's `same_identity` was computed with (a scorer may
    declare its own, e.g. human_faceres 0.9), from the files' metadata; a scorer not listed
    there (files from before per-scorer thresholds) falls back to the global one.
    """
    files = []
    per_scorer: dict[str, float] = {}
    default = None
    for path in sorted(glob.glob(scores_glob, recursive=True)):
        schema = pq.read_schema(path)
        metadata = schema.metadata or {}
        raw = metadata.get(THRESHOLD_METADATA_KEY)
        if raw is not None:
            default = float(raw)
        declared = metadata.get(THRESHOLDS_METADATA_KEY)
        if declared is not None:
            per_scorer.update({k: float(v) for k, v in json.loads(declared).items()})
        if "impostor_distances" in schema.names:
            files.append(path)
    return files, per_scorer, default


def _runs(files: Sequence[str], database: duckdb.DuckDBPyConnection | None) -> Iterator[pa.Table]:
    """The identity rows of each generator/version (expression images with a face and a
    distance to their neutral) as one Arrow table, one generator/version in memory at a
    time, in file order."""
    if not files:
        return
    paths = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    columns = ", ".join(_COLUMNS)
    with database.cursor() if database is not None else duckdb.connect() as con:
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW identity_rows AS
                SELECT {columns}, filename, file_row_number
                FROM read_parquet({paths}, hive_partitioning = false, union_by_name = true,
                                  filename = true, file_row_number = true)
                WHERE identity_distance IS NOT NULL AND expression <> '{NEUTRAL}'
                  AND face_found"""
        )
        runs = con.execute(
            "SELECT DISTINCT generator, version FROM identity_rows ORDER BY ALL"
        ).fetchall()
        for generator, version in runs:
            yield (
                con.sql(
                    f"""SELECT {columns} FROM identity_rows
                    WHERE generator IS NOT DISTINCT FROM ? AND version IS NOT DISTINCT FROM ?
                    ORDER BY filename, file_row_number""",
                    params=[generator, version],
                )
                .to_arrow_table()
                .combine_chunks()
            )


def _share_below(values: np.ndarray, threshold: float | None) -> float | None:
    if threshold is None or values.size == 0:
        return None
    return float((values < threshold).mean())


def _floats(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def _summary_row(
    scorer: str,
    run: tuple[str, str],
    members: str,
    genuine: np.ndarray,
    impostor: np.ndarray,
    impostor_sets: np.ndarray,
    rank1: np.ndarray,
    margin: np.ndarray,
    threshold: float | None,
) -> dict[str, Any]:
    return {
        "scorer": scorer,
        "generator": run[0],
        "version": run[1],
        "members": members,
        "n_genuine": int(genuine.size),
        "n_impostor_pairs": int(impostor.size),
        "n_impostor_pairs_sets": int(impostor_sets.size),
        "auc": auc_mann_whitney(genuine, impostor),
        "auc_sets": auc_mann_whitney(genuine, impostor_sets),
        "rank1_rate": float(rank1.mean()) if rank1.size else None,
        "mean_margin": float(margin.mean()) if margin.size else None,
        "mean_genuine": float(genuine.mean()) if genuine.size else None,
        "mean_impostor": float(impostor.mean()) if impostor.size else None,
        "nearest_impostor": float(impostor.min()) if impostor.size else None,
        "genuine_below_threshold": _share_below(genuine, threshold),
        "impostor_below_threshold": _share_below(impostor, threshold),
        "threshold": threshold,
        "better_than_members": None,
    }


def _histograms(
    scorer: str, run: tuple[str, str], genuine: np.ndarray, impostor: np.ndarray
) -> list[dict[str, Any]]:
    both = np.concatenate([genuine, impostor])
    if both.size == 0:
        return []
    low, high = float(both.min()), float(both.max())
    low = min(low, 0.0) if low >= 0 else low
    if high <= low:
        high = low + 1.0
    out = []
    for kind, values in (("genuine", genuine), ("impostor", impostor)):
        # equal bins given by number and range: numpy bins them a block at a time (the
        # edges as an array would sort a copy of every value); same edges, same counts
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))
        for k, count in enumerate(counts):
            out.append(
                {
                    "scorer": scorer,
                    "generator": run[0],
                    "version": run[1],
                    "kind": kind,
                    "bin": k,
                    "bin_low": float(edges[k]),
                    "bin_high": float(edges[k + 1]),
                    "count": int(count),
                    "share": float(count / values.size) if values.size else 0.0,
                }
            )
    return out


def _impostor_pairs(rows: pa.Table) -> pa.Table:
    """One row per (image row, impostor): the row's index, the impostor's id and distance."""
    ids = rows["impostor_ids"].combine_chunks()
    distances = rows["impostor_distances"].combine_chunks()
    if not pc.all(pc.equal(pc.list_value_length(ids), pc.list_value_length(distances))).as_py():
        raise ValueError("identity rows: impostor_ids and impostor_distances differ in length")
    return pa.table(
        {
            "row": pc.list_parent_indices(ids),
            "impostor_id": pc.list_flatten(ids),
            "distance": pc.cast(pc.list_flatten(distances), pa.float64()),
        }
    )


def _ensemble(
    rows: pa.Table,
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """One run's ensemble of its identity scorers (>= 2): genuine and impostor values in
    z-units (each scorer's distances standardised over all of its genuine and impostor
    distances in the run, population sd), averaged over the members on the images and
    impostors every member measured; rank-1 outcomes and margins per image with an
    impostor. None with fewer than two scorers."""
    if pc.count_distinct(rows["scorer"]).as_py() < 2:
        return None  # before filtering: that copies the run's rows
    rows = rows.filter(pc.greater(pc.list_value_length(rows["impostor_ids"]), 0))
    scorers = sorted(pc.unique(rows["scorer"]).to_pylist())
    if len(scorers) < 2:
        return None
    own_parts, pair_parts = [], []
    for scorer in scorers:
        measured = rows.filter(pc.equal(rows["scorer"], scorer))
        genuine = _floats(measured["identity_distance"])
        pairs = _impostor_pairs(measured)
        impostor = _floats(pairs["distance"])
        pooled = np.concatenate([genuine, impostor])
        mean, sd = pooled.mean(), pooled.std()
        sd = sd if sd > 0 else 1.0
        paths = measured["path"]
        own_parts.append(
            pa.table({"path": paths, "scorer": measured["scorer"], "z": (genuine - mean) / sd})
        )
        pair_parts.append(
            pa.table(
                {
                    "path": pc.take(paths, pairs["row"]),
                    "impostor_id": pairs["impostor_id"],
                    "scorer": pc.take(measured["scorer"], pairs["row"]),
                    "z": (impostor - mean) / sd,
                }
            )
        )
    complete = len(scorers)
    own = (
        pa.concat_tables(own_parts)
        .group_by("path", use_threads=False)
        .aggregate([("scorer", "count_distinct"), ("z", "mean")])
    )
    own = own.filter(pc.equal(own["scorer_count_distinct"], complete))
    pairs = (
        pa.concat_tables(pair_parts)
        .group_by(["path", "impostor_id"], use_threads=False)
        .aggregate([("scorer", "count_distinct"), ("z", "mean")])
    )
    pairs = pairs.filter(pc.equal(pairs["scorer_count_distinct"], complete))
    nearest = pairs.group_by("path", use_threads=False).aggregate([("z_mean", "min")])
    judged = own.join(nearest, "path", join_type="inner", use_threads=False)
    own_z, nearest_z = _floats(judged["z_mean"]), _floats(judged["z_mean_min"])
    return (
        "+".join(scorers),
        _floats(own["z_mean"]),
        _floats(pairs["z_mean"]),
        nearest_z > own_z,
        nearest_z - own_z,
    )


def identity_tables(
    scores_glob: str, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, pa.Table]:
    """`identity_separability` and `identity_histogram` from the scores files, read with
    a cursor of `con` (the aggregate's DuckDB: its memory limit) or a DuckDB of its own."""
    files, per_scorer, default = _identity_files(scores_glob)
    summary: list[dict[str, Any]] = []
    histogram: list[dict[str, Any]] = []
    for rows in _runs(files, con):
        _run_tables(rows, per_scorer, default, summary, histogram)
    summary.sort(key=lambda r: (r["scorer"] == ENSEMBLE, r["generator"], r["version"], r["scorer"]))
    histogram.sort(
        key=lambda r: (r["scorer"] == ENSEMBLE, r["generator"], r["version"], r["scorer"])
    )
    return {
        "identity_separability": pa.Table.from_pylist(summary, schema=SEPARABILITY_SCHEMA),
        "identity_histogram": pa.Table.from_pylist(histogram, schema=HISTOGRAM_SCHEMA),
    }


def _run_tables(
    rows: pa.Table,
    per_scorer: Mapping[str, float],
    default: float | None,
    summary: list[dict[str, Any]],
    histogram: list[dict[str, Any]],
) -> None:
    """Append one generator/version's summary and histogram rows (scorers, then the
    ensemble)."""
    if rows.num_rows == 0:
        return
    run = (rows["generator"][0].as_py(), rows["version"][0].as_py())
    members = []
    scorers = sorted(pc.unique(rows["scorer"]).to_pylist())
    for scorer in scorers:
        # one scorer's rows; the run's own table when it is the only one (no copy)
        measured = rows if len(scorers) == 1 else rows.filter(pc.equal(rows["scorer"], scorer))
        genuine = _floats(measured["identity_distance"])
        pairs = _impostor_pairs(measured)
        impostor = _floats(pairs["distance"])
        in_sets = np.asarray(pc.starts_with(pairs["impostor_id"], SUBJECT_PREFIX), dtype=bool)
        del pairs  # the impostor ids: as many as the distances, and strings
        sets = impostor[in_sets]
        row = _summary_row(
            scorer,
            run,
            scorer,
            genuine,
            impostor,
            sets,
            np.asarray(measured["identity_rank1"].drop_null(), dtype=bool),
            _floats(measured["identity_margin"].drop_null()),
            per_scorer.get(scorer, default),
        )
        summary.append(row)
        members.append(row)
        histogram += _histograms(scorer, run, genuine, impostor)
    ensemble = _ensemble(rows)
    if ensemble is None:
        return
    names, genuine, impostor, rank1, margin = ensemble
    row = _summary_row(ENSEMBLE, run, names, genuine, impostor, np.array([]), rank1, margin, None)
    singles = [s["auc"] for s in members if s["auc"] is not None]
    if row["auc"] is not None and singles:
        row["better_than_members"] = bool(row["auc"] > max(singles))
    summary.append(row)
    histogram += _histograms(ENSEMBLE, run, genuine, impostor)


SEPARABILITY_SCHEMA = pa.schema(
    [
        ("scorer", pa.string()),
        ("generator", pa.string()),
        ("version", pa.string()),
        ("members", pa.string()),
        ("n_genuine", pa.int64()),
        ("n_impostor_pairs", pa.int64()),
        ("n_impostor_pairs_sets", pa.int64()),
        ("auc", pa.float64()),
        ("auc_sets", pa.float64()),
        ("rank1_rate", pa.float64()),
        ("mean_margin", pa.float64()),
        ("mean_genuine", pa.float64()),
        ("mean_impostor", pa.float64()),
        ("nearest_impostor", pa.float64()),
        ("genuine_below_threshold", pa.float64()),
        ("impostor_below_threshold", pa.float64()),
        ("threshold", pa.float64()),
        ("better_than_members", pa.bool_()),
    ]
)
HISTOGRAM_SCHEMA = pa.schema(
    [
        ("scorer", pa.string()),
        ("generator", pa.string()),
        ("version", pa.string()),
        ("kind", pa.string()),
        ("bin", pa.int64()),
        ("bin_low", pa.float64()),
        ("bin_high", pa.float64()),
        ("count", pa.int64()),
        ("share", pa.float64()),
    ]
)


IDENTITY_TABLES: tuple[str, ...] = ("identity_separability", "identity_histogram")
LEADERBOARD_AUC = "identity_auc"


def add_leaderboard_auc(con: duckdb.DuckDBPyConnection) -> None:
    """The leaderboard's identity verdict beside rank-1: each scorer's genuine-vs-impostor
    AUC for that generator/version (NULL for a scorer without identity)."""
    con.execute(f"ALTER TABLE leaderboard ADD COLUMN {LEADERBOARD_AUC} DOUBLE")
    con.execute(
        f"""UPDATE leaderboard AS l SET {LEADERBOARD_AUC} = s.auc
            FROM identity_separability AS s
            WHERE l.scorer = s.scorer AND l.generator = s.generator
              AND l.version = s.version"""
    )
