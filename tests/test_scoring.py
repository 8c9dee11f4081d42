"""Score rows: columns from scorer outputs and identity/age against the neutral."""

from __future__ import annotations

import numpy as np

from exprbench.labels import EXPRESSIONS
from exprbench.scorers.base import ScoreOutput
from exprbench.scoring import (
    IS_REFERENCE,
    NO_NEUTRAL,
    add_relative_measures,
    output_columns,
    output_from_dict,
    output_to_dict,
)


def _row(subject, expression, *, descriptor=None, age=None, face=True, replicate=1):
    return {
        "generator": "g",
        "version": "1",
        "subject": subject,
        "expression": expression,
        "replicate": replicate,
        "scorer": "s",
        "face_found": face,
        "descriptor": descriptor,
        "age": age,
    }


def test_output_columns_target_and_top1():
    probs = dict.fromkeys(EXPRESSIONS, 0.05)
    probs.update(happy=0.6, sad=0.1)
    cols = output_columns(
        ScoreOutput(probabilities=probs, gender="female", gender_prob=0.9), "sad", "male"
    )
    assert cols["target_prob"] == 0.1
    assert (cols["top1"], cols["top1_prob"]) == ("happy", 0.6)
    assert cols["gender_match"] is False
    assert (
        output_columns(ScoreOutput(gender="male", gender_prob=0.7), "sad", None)["gender_match"]
        is None
    )


def test_identity_and_age_against_the_neutral():
    d0 = [0.0] * 128
    d1 = [0.0] * 127 + [0.3]
    d2 = [0.0] * 127 + [0.8]
    rows = add_relative_measures(
        [
            _row("a", "neutral", descriptor=d0, age=30.0),
            _row("a", "happy", descriptor=d1, age=33.5),
            _row("a", "sad", descriptor=d2, age=None),
            _row("a", "angry", face=False),
            _row("b", "happy", descriptor=d1, age=40.0),  # no neutral for b
        ],
        same_identity_threshold=0.6,
    )
    neutral, happy, sad, angry, orphan = rows
    assert IS_REFERENCE in neutral["note"] and neutral.get("identity_distance") is None
    assert np.isclose(happy["identity_distance"], 0.3)
    assert np.isclose(happy["identity_similarity"], 0.7) and happy["same_identity"] is True
    assert np.isclose(sad["identity_distance"], 0.8) and sad["same_identity"] is False
    assert np.isclose(sad["identity_similarity"], 0.2)
    assert happy["age_delta"] == 3.5
    assert angry.get("identity_distance") is None and angry.get("note") is None
    assert orphan.get("identity_distance") is None and NO_NEUTRAL in orphan["note"]


def test_similarity_is_floored_at_zero():
    rows = add_relative_measures(
        [
            _row("a", "neutral", descriptor=[0.0] * 128),
            _row("a", "fear", descriptor=[0.0] * 127 + [1.5]),
        ],
        same_identity_threshold=0.6,
    )
    assert rows[1]["identity_similarity"] == 0.0


def test_cache_round_trip_keeps_float32_descriptor():
    output = ScoreOutput(age=31.2, descriptor=np.linspace(0, 1, 128, dtype=np.float32))
    back = output_from_dict(output_to_dict(output))
    assert back.age == 31.2 and back.descriptor.dtype == np.float32
    assert np.array_equal(back.descriptor, output.descriptor)
