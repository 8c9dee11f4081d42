"""The scorer contract and registry.

A scorer turns one detected face into any of: expression probabilities, age, gender,
an identity descriptor. Each declares its name, version, outputs and the range and
direction of every metric it fills, so tables, validation and the report need no
per-scorer code. Adding a scorer = adding one module to this package that calls
`register`.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from exprbench.geometry import Face
from exprbench.labels import EXPRESSIONS
from exprbench.metrics import MetricSpec
from exprbench.quality.specs import DISTANCE_METRICS, NO_REFERENCE_METRICS

Output = Literal["expression", "age", "gender", "identity", "quality", "perceptual"]


# The columns each kind of output fills; the range/direction are properties of the
# column, so they are declared once here rather than by every scorer.
OUTPUT_METRICS: dict[str, tuple[MetricSpec, ...]] = {
    "expression": (
        *(MetricSpec(f"p_{e}", 0.0, 1.0, None, f"probability of {e}") for e in EXPRESSIONS),
        MetricSpec("target_prob", 0.0, 1.0, True, "probability of the requested expression"),
    ),
    "age": (
        MetricSpec("age", 0.0, 120.0, None, "apparent age in years"),
        MetricSpec("age_delta", -120.0, 120.0, None, "age minus the neutral image's age"),
    ),
    "gender": (MetricSpec("gender_prob", 0.0, 1.0, None, "probability of the predicted gender"),),
    "identity": (
        MetricSpec("identity_distance", 0.0, 4.0, False, "L2 distance to the neutral face"),
        MetricSpec("identity_similarity", 0.0, 1.0, True, "max(0, 1 - identity_distance)"),
    ),
    "quality": NO_REFERENCE_METRICS,  # no-reference image quality
    "perceptual": DISTANCE_METRICS,  # perceptual distance to the neutral image
}


@dataclass
class ScoreOutput:
    """One face's raw model outputs; None where the scorer has no such output."""

    probabilities: dict[str, float] | None = None  # canonical expression -> p, sums to 1
    age: float | None = None
    gender: str | None = None  # 'female' | 'male'
    gender_prob: float | None = None
    descriptor: np.ndarray | None = None  # identity embedding, float32
    metrics: dict[str, float | bool | None] | None = None  # quality columns by name


class ScorerFoundNoFaceError(LookupError):
    """A scorer with its own detector found no face matching the pipeline's primary face.

    The score stage records that (image, scorer) row as face_found = false with the message
    as its note, instead of failing the run.
    """


class ModelUnavailableError(RuntimeError):
    """A scorer's weights or runtime are missing; the message says how to get them."""


class Scorer(ABC):
    """Base class: subclasses set the class attributes and implement `score`."""

    name: ClassVar[str]
    version: ClassVar[str]  # bump whenever outputs could change: it keys the cache
    outputs: ClassVar[frozenset[Output]]
    description: ClassVar[str]
    crop: ClassVar[str]  # the pixels the model sees, recorded with every score row
    license: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @classmethod
    def metrics(cls) -> tuple[MetricSpec, ...]:
        return tuple(spec for out in sorted(cls.outputs) for spec in OUTPUT_METRICS[out])

    @abstractmethod
    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        """Score `face` in `image` (H x W x 3 uint8 RGB). Must not mutate `image`."""

    def score_batch(self, items: Sequence[tuple[np.ndarray, Face]]) -> list[ScoreOutput]:
        """Score several faces; override when the runtime batches efficiently."""
        return [self.score(image, face) for image, face in items]


class PairScorer(Scorer):
    """A scorer that compares an image's aligned face crop with its neutral image's crop.

    The score stage calls `compare` for every image whose set has a neutral reference; the
    crops are the faces stage's aligned crops (faces.align, faces.crop_size).
    """

    @abstractmethod
    def compare(self, crop: np.ndarray, reference: np.ndarray) -> ScoreOutput:
        """Outputs for `crop` (H x W x 3 uint8 RGB) measured against `reference`."""

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        raise TypeError(f"{self.name} compares two crops: call compare(crop, reference)")


_REGISTRY: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: add a scorer to the registry under its `name`."""
    for attr in ("name", "version", "outputs", "description", "crop"):
        if not hasattr(cls, attr):
            raise TypeError(f"scorer {cls.__qualname__} must declare {attr!r}")
    unknown = set(cls.outputs) - set(OUTPUT_METRICS)
    if unknown:
        raise TypeError(f"scorer {cls.name!r} declares unknown outputs {sorted(unknown)}")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise TypeError(f"scorer name {cls.name!r} is taken by {existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    # Importing every module of the package runs its `register` decorator.
    import exprbench.scorers as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"{package.__name__}.{info.name}")


def available_scorers() -> dict[str, type[Scorer]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_scorer_class(name: str) -> type[Scorer]:
    scorers = available_scorers()
    if name not in scorers:
        raise KeyError(f"unknown scorer {name!r}; registered: {', '.join(scorers)}")
    return scorers[name]
