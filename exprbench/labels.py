"""Canonical expression vocabulary and the synonyms users write in file names."""

from __future__ import annotations

EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust")
NEUTRAL = "neutral"
GENDERS: tuple[str, ...] = ("female", "male")

# Lower-case synonym -> canonical name. Folder/file names are normalised before lookup
# (lower-cased, '_' and ' ' folded to '-').
_SYNONYMS: dict[str, str] = {
    "neutral": "neutral",
    "calm": "neutral",
    "none": "neutral",
    "neutrality": "neutral",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "joyful": "happy",
    "smile": "happy",
    "smiling": "happy",
    "sad": "sad",
    "sadness": "sad",
    "unhappy": "sad",
    "sorrow": "sad",
    "angry": "angry",
    "anger": "angry",
    "mad": "angry",
    "rage": "angry",
    "surprise": "surprise",
    "surprised": "surprise",
    "surprising": "surprise",
    "astonished": "surprise",
    "astonishment": "surprise",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "fright": "fear",
    "disgust": "disgust",
    "disgusted": "disgust",
    "disgusting": "disgust",
}

_GENDER_SYNONYMS: dict[str, str] = {
    "female": "female",
    "f": "female",
    "woman": "female",
    "women": "female",
    "girl": "female",
    "male": "male",
    "m": "male",
    "man": "male",
    "men": "male",
    "boy": "male",
}


def _normalise(label: str) -> str:
    return label.strip().lower().replace("_", "-").replace(" ", "-")


def canonical_expression(label: str) -> str | None:
    """Map a user label (file stem without its ``-<n>`` suffix) to a canonical expression.

    Returns None when the label is not a known expression or synonym.
    """
    return _SYNONYMS.get(_normalise(label))


def canonical_gender(label: str | None) -> str | None:
    """Map 'woman', 'F', 'female' ... to 'female'/'male'; None when unknown or empty."""
    if label is None:
        return None
    return _GENDER_SYNONYMS.get(_normalise(str(label)))
