"""Pure functions that turn scorer outputs into SCORES rows and compare with the neutral."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.scorers.base import ScoreOutput

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


def add_relative_measures(
    rows: Iterable[dict],
    same_identity_threshold: float,
    pair_measures: Mapping[str, Callable[[dict, dict], dict]] | None = None,
) -> list[dict]:
    """Fill identity_*, age_delta and pair-scorer columns against each set's neutral image.

    The reference is the neutral image (lowest replicate) of the same generator, version,
    subject and scorer that has a face and the needed output. Rows without one get nulls and
    a note saying why; the reference row itself gets nulls and is marked as the reference.
    `pair_measures` maps a pair scorer's name to a function (row, reference row) -> columns;
    its rows are compared through their aligned crops (`crop_sha256`).
    """
    measures = (  # (label in notes, the output compared, columns from (row, reference))
        (
            "identity",
            "descriptor",
            lambda row, ref: _identity_columns(row, ref, same_identity_threshold),
        ),
        ("age_delta", "age", lambda row, ref: {"age_delta": row["age"] - ref["age"]}),
    )
    rows = list(rows)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["generator"], row["version"], row["subject"], row["scorer"])].append(row)
    for (*_, scorer), members in groups.items():
        group_measures = measures
        if pair_measures and scorer in pair_measures:
            group_measures = (("perceptual", "crop_sha256", pair_measures[scorer]),)
        neutrals = sorted(
            (r for r in members if r["expression"] == NEUTRAL and r["face_found"]),
            key=lambda r: r["replicate"],
        )
        for label, output, compare in group_measures:
            reference = next((r for r in neutrals if r.get(output) is not None), None)
            for row in members:
                if not row["face_found"] or row.get(output) is None:
                    continue
                if reference is None:
                    _append_note(row, f"{label}: {NO_NEUTRAL}")
                elif row is reference:
                    _append_note(row, f"{label}: {IS_REFERENCE}")
                else:
                    row.update(compare(row, reference))
    return rows
