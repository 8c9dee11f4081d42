"""Pure functions that turn scorer outputs into scores rows and compare with the neutral.

`score_rows` is the score stage's whole logic: one row per image and scorer, the notes that
say why a value is missing, and the measures against each set's neutral image. It does no
I/O: the stage passes in `run` and `compare`, which fetch a scorer's (cached) outputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from exprbench.agreement import add_weights, age_prompt_columns
from exprbench.judgement_specs import DEFAULT_TAU, IMAGE_CONFIDENCE
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.schema import KEY_COLUMNS
from exprbench.scorers.base import PairScorer, ScoreOutput, Scorer
from exprbench.unavailable import COLUMN as UNAVAILABLE
from exprbench.unavailable import encode as encode_unavailable
from exprbench.unavailable import note as unavailable_note

NO_NEUTRAL = "no neutral image with a face for this generator/version/subject"
IS_REFERENCE = "reference neutral image"


def _append_note(row: dict, note: str) -> None:
    row["note"] = f"{row['note']}; {note}" if row.get("note") else note


def output_columns(output: ScoreOutput, expression: str, subject_gender: str | None) -> dict:
    """Score columns from one scorer output for an image that requested `expression`."""
    columns: dict = {}
    if output.probabilities is not None:
        probs = [float(output.probabilities[name]) for name in EXPRESSIONS]
        columns.update({f"p_{name}": p for name, p in zip(EXPRESSIONS, probs, strict=True)})
        best = int(np.argmax(probs))
        columns.update(
            target_prob=probs[EXPRESSIONS.index(expression)],
            top1=EXPRESSIONS[best],
            top1_prob=probs[best],
        )
    if output.age is not None:
        columns["age"] = float(output.age)
    if output.gender is not None:
        columns.update(
            gender=output.gender,
            gender_prob=output.gender_prob,
            gender_match=None if subject_gender is None else output.gender == subject_gender,
        )
    if output.descriptor is not None:
        columns["descriptor"] = np.asarray(output.descriptor, dtype=np.float32).tolist()
    if output.metrics is not None:
        columns.update(output.metrics)
    if output.unavailable:
        columns[UNAVAILABLE] = encode_unavailable(output.unavailable)
    return columns


def output_to_dict(output: ScoreOutput) -> dict:
    """JSON-able form of a ScoreOutput (for the per-image cache)."""
    return {
        "probabilities": output.probabilities,
        "age": output.age,
        "gender": output.gender,
        "gender_prob": output.gender_prob,
        "descriptor": None
        if output.descriptor is None
        else np.asarray(output.descriptor, dtype=np.float32).tolist(),
        "metrics": output.metrics,
        "unavailable": output.unavailable,
    }


def output_from_dict(data: dict) -> ScoreOutput:
    descriptor = data.get("descriptor")
    return ScoreOutput(
        probabilities=data.get("probabilities"),
        age=data.get("age"),
        gender=data.get("gender"),
        gender_prob=data.get("gender_prob"),
        descriptor=None if descriptor is None else np.asarray(descriptor, dtype=np.float32),
        metrics=data.get("metrics"),
        unavailable=data.get("unavailable"),
    )


def _identity_columns(row: dict, reference: dict, threshold: float) -> dict:
    distance = float(
        np.linalg.norm(np.asarray(row["descriptor"]) - np.asarray(reference["descriptor"]))
    )
    return {
        "identity_distance": distance,
        "identity_similarity": max(0.0, 1.0 - distance),
        "same_identity": distance < threshold,
    }


def identity_thresholds(scorers: Mapping[str, type[Scorer]], default: float) -> dict[str, float]:
    """Each scorer's same-identity threshold: its own, else score.same_identity_threshold."""
    return {
        name: default if cls.same_identity_threshold is None else cls.same_identity_threshold
        for name, cls in scorers.items()
    }


def neutral_reference(members: Iterable[dict], output: str) -> dict | None:
    """The reference of one generator/version/subject/scorer: its neutral image with a face
    and `output` (lowest replicate), or None."""
    neutrals = sorted(
        (r for r in members if r["expression"] == NEUTRAL and r["face_found"]),
        key=lambda r: r["replicate"],
    )
    return next((r for r in neutrals if r.get(output) is not None), None)


def _groups(rows: Iterable[dict]) -> dict[tuple, list[dict]]:
    """Rows by set and scorer: (generator, version, subject, scorer)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["generator"], row["version"], row["subject"], row["scorer"])].append(row)
    return groups


def add_relative_measures(
    rows: Iterable[dict],
    same_identity_threshold: float,
    pair_measures: Mapping[str, Callable[[dict, dict], dict]] | None = None,
    thresholds: Mapping[str, float] | None = None,
    neutrals: Iterable[dict] | None = None,
) -> list[dict]:
    """Fill identity_*, age_delta and pair-scorer columns against each set's neutral image.

    The reference is the neutral image (lowest replicate) of the same generator, version,
    subject and scorer that has a face and the needed output. Rows without one get nulls and
    a note saying why; the reference row itself gets nulls and is marked as the reference.
    `pair_measures` maps a pair scorer's name to a function (row, reference row) -> columns;
    its rows are compared through their aligned crops (`crop_sha256`). `thresholds` maps a
    scorer to its own same-identity threshold (default: `same_identity_threshold`).
    `neutrals`: the rows the references are chosen from when `rows` are one batch of the
    corpus (the rows of its sets' neutral images); default: `rows` themselves.
    """

    # (label in notes, the output compared, columns from (row, reference))
    def measures(threshold: float) -> tuple[tuple[str, str, Callable[[dict, dict], dict]], ...]:
        return (
            ("identity", "descriptor", lambda row, ref: _identity_columns(row, ref, threshold)),
            ("age_delta", "age", lambda row, ref: {"age_delta": row["age"] - ref["age"]}),
        )

    rows = list(rows)
    groups = _groups(rows)
    candidates = groups if neutrals is None else _groups(neutrals)
    for key, members in groups.items():
        scorer = key[-1]
        group_measures = measures((thresholds or {}).get(scorer, same_identity_threshold))
        if pair_measures and scorer in pair_measures:
            group_measures = (("perceptual", "crop_sha256", pair_measures[scorer]),)
        for label, output, compare in group_measures:
            reference = neutral_reference(candidates.get(key, ()), output)
            for row in members:
                if not row["face_found"] or row.get(output) is None:
                    continue
                if reference is None:
                    _append_note(row, f"{label}: {NO_NEUTRAL}")
                elif row is reference or ("path" in row and row["path"] == reference["path"]):
                    # (a batch holds a copy of its neutrals' rows: one per image and scorer)
                    _append_note(row, f"{label}: {IS_REFERENCE}")
                else:
                    row.update(compare(row, reference))
    return rows


# (scorer name, faces-table row) -> the scorer's outputs as `output_to_dict` gives them,
# or {"no_face": message} when a scorer with its own detector found no matching face.
RunScorer = Callable[[str, Mapping[str, Any]], dict]
# (pair scorer name, scores row, its neutral's scores row) -> outputs (`output_to_dict`).
ComparePair = Callable[[str, Mapping[str, Any], Mapping[str, Any]], dict]


def _scorer_rows(
    face_row: Mapping[str, Any],
    upscale_row: Mapping[str, Any],
    subject_gender: str | None,
    scorers: Mapping[str, type[Scorer]],
    versions: Mapping[str, str],
    run: RunScorer,
    subject_age: str | None = None,
) -> list[dict]:
    """One row per scorer for one image."""
    base = {k: face_row[k] for k in KEY_COLUMNS}
    base.update(
        subject_gender=subject_gender,
        subject_age=subject_age,
        face_found=face_row["face_found"],
        face_count=face_row["face_count"],
        upscale_method=upscale_row["upscale_method"],
        upscale_factor=upscale_row["upscale_factor"],
    )
    rows = []
    for name, cls in scorers.items():
        row = {**base, "scorer": name, "scorer_version": versions[name], "scorer_crop": cls.crop}
        rows.append(row)
        if not face_row["face_found"]:
            row["note"] = face_row["face_reason"] or "no face detected"
            continue
        if face_row["face_count"] > 1:
            row["note"] = f"{face_row['face_count']} faces in image; scored the primary"
        if issubclass(cls, PairScorer):
            # measured against the neutral's crop once every row exists (add_relative_measures)
            row["crop_sha256"] = face_row["crop_sha256"]
            continue
        result = run(name, face_row)
        if "no_face" in result:
            row.update(face_found=False, note=result["no_face"])
            continue
        output = output_from_dict(result)
        row.update(output_columns(output, row["expression"], subject_gender))
        if output.unavailable:
            _append_note(row, unavailable_note(name, output.unavailable))
        age_columns, age_note = age_prompt_columns(row.get("age"), subject_age)
        row.update(age_columns)
        if age_note:
            _append_note(row, age_note)
        _note_unmeasured(row, name, result)
    return rows


def _note_unmeasured(row: dict, name: str, result: Mapping[str, Any]) -> None:
    """Say which of a scorer's measures came back null (validation needs the reason)."""
    unmeasured = [k for k, v in (result.get("metrics") or {}).items() if v is None]
    if unmeasured:
        _append_note(row, f"{name}: {', '.join(unmeasured)} not measurable on this image")


def image_rows(
    faces: Sequence[Mapping[str, Any]],
    upscale_by_path: Mapping[str, Mapping[str, Any]],
    gender_by_path: Mapping[str, str | None],
    scorers: Mapping[str, type[Scorer]],
    run: RunScorer,
    progress: Callable[[Sequence[Mapping[str, Any]]], Iterable[Mapping[str, Any]]] = iter,
    age_by_path: Mapping[str, str | None] | None = None,
    tau: float = DEFAULT_TAU,
    versions: Mapping[str, str] | None = None,
) -> list[dict]:
    """The scores rows (image x scorer) of `faces` with the judgements on each image
    (`exprbench.agreement.add_weights`: lambda_weight, ambiguous; age against the subject's
    requested age in `age_by_path`), before the measures against the neutral. Each image's
    rows depend on that image alone. `versions`: each scorer's `code_version()`, when the
    caller has them (they take a while to derive)."""
    if versions is None:
        versions = {name: cls.code_version() for name, cls in scorers.items()}
    rows = [
        row
        for face_row in progress(faces)
        for row in _scorer_rows(
            face_row,
            upscale_by_path[face_row["path"]],
            gender_by_path.get(face_row["path"]),
            scorers,
            versions,
            run,
            (age_by_path or {}).get(face_row["path"]),
        )
    ]
    judges = [n for n, c in scorers.items() if IMAGE_CONFIDENCE.column in c.filled_columns()]
    return add_weights(rows, tau, judges)


def score_rows(
    faces: Sequence[Mapping[str, Any]],
    upscale_by_path: Mapping[str, Mapping[str, Any]],
    gender_by_path: Mapping[str, str | None],
    scorers: Mapping[str, type[Scorer]],
    run: RunScorer,
    compare: ComparePair,
    same_identity_threshold: float,
    progress: Callable[[Sequence[Mapping[str, Any]]], Iterable[Mapping[str, Any]]] = iter,
    age_by_path: Mapping[str, str | None] | None = None,
    tau: float = DEFAULT_TAU,
    neutrals: Sequence[dict] | None = None,
    versions: Mapping[str, str] | None = None,
) -> list[dict]:
    """Every scores row (image x scorer) for the faces table (`image_rows`), measured
    against the neutrals.

    `neutrals`: when `faces` is one batch of the corpus, the `image_rows` of every neutral
    image of its generator/versions (computed first): the references, and the rows of the
    batch's own neutral images (copied, not computed again). Batch by batch, the rows are
    the same as for the whole faces table at once.
    """
    known: dict[str, list[dict]] = defaultdict(list)
    for row in neutrals or ():
        known[row["path"]].append(dict(row))
    fresh: dict[str, list[dict]] = defaultdict(list)
    todo = [face for face in faces if face["path"] not in known]
    args = (upscale_by_path, gender_by_path, scorers, run, progress, age_by_path, tau, versions)
    for row in image_rows(todo, *args):
        fresh[row["path"]].append(row)
    rows = [row for face in faces for row in known.get(face["path"]) or fresh[face["path"]]]

    def pair_measure(name: str) -> Callable[[dict, dict], dict]:
        def measure(row: dict, reference: dict) -> dict:
            result = compare(name, row, reference)
            _note_unmeasured(row, name, result)
            output = output_from_dict(result)
            if output.unavailable:
                _append_note(row, unavailable_note(name, output.unavailable))
            return output_columns(output, row["expression"], row["subject_gender"])

        return measure

    pair_measures = {
        name: pair_measure(name) for name, cls in scorers.items() if issubclass(cls, PairScorer)
    }
    thresholds = identity_thresholds(scorers, same_identity_threshold)
    return add_relative_measures(rows, same_identity_threshold, pair_measures, thresholds, neutrals)
