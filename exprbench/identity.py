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


def _runs(
    files: Sequence[str], database: duckdb.DuckDBPyConnection | None
) -> Iterator[list[dict[str, Any]]]:
    """The identity rows of each generator/version (expression images with a face and a
    distance to their neutral), one generator/version in memory at a time, in file order."""
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
                .to_pylist()
            )


def _share_below(values: np.ndarray, threshold: float | None) -> float | None:
    if threshold is None or values.size == 0:
        return None
    return float((values < threshold).mean())


def _summary_row(
    scorer: str,
    run: tuple[str, str],
    members: str,
    genuine: np.ndarray,
    impostor: np.ndarray,
    impostor_sets: np.ndarray,
    rank1: list[bool],
    margin: list[float],
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
        "rank1_rate": float(np.mean(rank1)) if rank1 else None,
        "mean_margin": float(np.mean(margin)) if margin else None,
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
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    out = []
    for kind, values in (("genuine", genuine), ("impostor", impostor)):
        counts, _ = np.histogram(values, bins=edges)
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


def _standardise(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per key, (x - mean) / sd over all of that key's values (genuine and impostor)."""
    out = {}
    for key, array in values.items():
        sd = float(array.std()) if array.size > 1 else 0.0
        out[key] = (array - array.mean()) / (sd if sd > 0 else 1.0)
    return out


def _ensemble(
    by_run: Mapping[tuple[str, str], list[dict[str, Any]]],
) -> dict[tuple[str, str], tuple[str, np.ndarray, np.ndarray, list[bool], list[float]]]:
    """Per run with >= 2 identity scorers: the ensemble's genuine/impostor values (z-units),
    rank-1 outcomes and margins, over the images and impostors every member measured."""
    out = {}
    for run, rows in by_run.items():
        scorers = sorted({r["scorer"] for r in rows})
        if len(scorers) < 2:
            continue
        per_image: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in rows:
            per_image[row["path"]][row["scorer"]] = row
        # each scorer's distances in this run, for its standardisation
        pooled = {
            s: np.concatenate(
                [
                    np.r_[r["identity_distance"], np.asarray(r["impostor_distances"] or [])]
                    for r in rows
                    if r["scorer"] == s
                ]
            )
            for s in scorers
        }
        stats = {s: (v.mean(), v.std() if v.std() > 0 else 1.0) for s, v in pooled.items()}
        genuine, impostor, rank1, margin = [], [], [], []
        for by_scorer in per_image.values():
            if set(by_scorer) != set(scorers):
                continue
            maps = {
                s: dict(zip(r["impostor_ids"] or [], r["impostor_distances"] or [], strict=True))
                for s, r in by_scorer.items()
            }
            shared = sorted(set.intersection(*(set(m) for m in maps.values())))
            own = float(
                np.mean(
                    [
                        (by_scorer[s]["identity_distance"] - stats[s][0]) / stats[s][1]
                        for s in scorers
                    ]
                )
            )
            others = np.array(
                [
                    np.mean([(maps[s][i] - stats[s][0]) / stats[s][1] for s in scorers])
                    for i in shared
                ]
            )
            genuine.append(own)
            impostor.extend(others.tolist())
            if others.size:
                rank1.append(bool((others > own).all()))
                margin.append(float(others.min() - own))
        out[run] = ("+".join(scorers), np.array(genuine), np.array(impostor), rank1, margin)
    return out


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
    rows: Sequence[dict[str, Any]],
    per_scorer: Mapping[str, float],
    default: float | None,
    summary: list[dict[str, Any]],
    histogram: list[dict[str, Any]],
) -> None:
    """Append one generator/version's summary and histogram rows (scorers, then the
    ensemble)."""
    by_run_scorer: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    by_run: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_run_scorer[(row["generator"], row["version"], row["scorer"])].append(row)
        if row.get("impostor_ids"):
            by_run[(row["generator"], row["version"])].append(row)
    for (generator, version, scorer), measured in sorted(by_run_scorer.items()):
        run = (generator, version)
        genuine = np.array([r["identity_distance"] for r in measured], dtype=np.float64)
        impostor = np.array(
            [d for r in measured for d in (r["impostor_distances"] or [])], dtype=np.float64
        )
        sets = np.array(
            [
                d
                for r in measured
                for i, d in zip(r["impostor_ids"] or [], r["impostor_distances"] or [], strict=True)
                if i.startswith(SUBJECT_PREFIX)
            ],
            dtype=np.float64,
        )
        rank1 = [bool(r["identity_rank1"]) for r in measured if r["identity_rank1"] is not None]
        margin = [float(r["identity_margin"]) for r in measured if r["identity_margin"] is not None]
        summary.append(
            _summary_row(
                scorer,
                run,
                scorer,
                genuine,
                impostor,
                sets,
                rank1,
                margin,
                per_scorer.get(scorer, default),
            )
        )
        histogram += _histograms(scorer, run, genuine, impostor)
    for run, (members, genuine, impostor, rank1, margin) in sorted(_ensemble(by_run).items()):
        row = _summary_row(
            ENSEMBLE, run, members, genuine, impostor, np.array([]), rank1, margin, None
        )
        singles = [
            s["auc"]
            for s in summary
            if (s["generator"], s["version"]) == run
            and s["scorer"] != ENSEMBLE
            and s["auc"] is not None
        ]
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
