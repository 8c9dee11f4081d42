"""The scorer contract and registry.

A scorer turns one detected face into any of: expression probabilities, age, gender,
an identity descriptor, or measures of its own. Each declares its name, outputs, weight
files and (through `OUTPUT_METRICS` and its `extra_metrics`) the spec of every metric it
fills, so the schema, validation, tables and the report need no per-scorer code. Adding a
scorer = adding one module to this package that calls `register`; its cache identity and
version are derived from its code and weights (`Scorer.cache_identity`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from exprbench.fingerprint import code_digest
from exprbench.geometry import Face
from exprbench.judgement_specs import JUDGEMENT_METRICS, JUDGEMENT_TABLES
from exprbench.labels import EXPRESSIONS
from exprbench.metrics import Heatmap, Leaderboard, MetricSpec, StudyTable, merge_specs
from exprbench.quality.specs import DISTANCE_METRICS, NIQE_RELIABLE, NO_REFERENCE_METRICS

Output = Literal["expression", "age", "gender", "identity", "quality", "perceptual"]

# The columns each kind of output fills; a column's meaning (range, direction, table,
# heatmap, leaderboard place) is a property of the column, so it is declared once here
# rather than by every scorer. A scorer with a measure of its own declares it in its
# `metrics` class attribute instead.
OUTPUT_METRICS: dict[str, tuple[MetricSpec, ...]] = {
    "expression": (
        *(MetricSpec(f"p_{e}", 0.0, 1.0, None, f"probability of {e}") for e in EXPRESSIONS),
        MetricSpec(
            "target_prob",
            0.0,
            1.0,
            True,
            "probability of the requested expression",
            table="expression_fidelity",
            heatmap=Heatmap("Expression fidelity", "mean probability of the requested expression"),
            leaderboard=Leaderboard(
                "mean_target_prob", "mean target p (non-neutral)", include_neutral=False, rank=True
            ),
            plot=True,
            caption="p",
        ),
        MetricSpec("top1_prob", 0.0, 1.0, None, "probability of the top-1 expression"),
        MetricSpec(
            "top1_correct",
            0.0,
            1.0,
            True,
            "the top-1 expression is the requested one",
            dtype="bool",
            table="expression_fidelity",
            leaderboard=Leaderboard("top1_accuracy", "top-1 accuracy"),
            sql="(top1 = expression)",
        ),
    ),
    "age": (
        MetricSpec(
            "age",
            0.0,
            120.0,
            None,
            "apparent age in years",
            unit="years",
            table="age",
            digits=1,
            heatmap=Heatmap(
                "Age",
                "mean apparent age; Δ = mean drift from the subject's neutral image (colour)",
                colour_by="age_delta",
                delta="age_delta",
            ),
            caption="age",
            caption_digits=0,
        ),
        MetricSpec(
            "age_delta",
            -120.0,
            120.0,
            None,
            "age minus the neutral image's age",
            unit="years",
            relative_to_neutral=True,
            table="age",
            abs_mean=True,
            digits=1,
            leaderboard=Leaderboard("mean_abs_age_delta", "mean |age Δ|", statistic="mean_abs"),
        ),
    ),
    "gender": (
        MetricSpec("gender_prob", 0.0, 1.0, None, "probability of the predicted gender"),
        MetricSpec(
            "gender_match",
            0.0,
            1.0,
            True,
            "predicted gender equals the gender subjects.csv asked for",
            dtype="bool",
            nullable="yes",  # no subject gender given
            table="gender",
            leaderboard=Leaderboard("gender_match_rate", "gender match"),
        ),
    ),
    "identity": (
        MetricSpec(
            "identity_distance",
            0.0,
            4.0,
            False,
            "L2 distance to the neutral face",
            relative_to_neutral=True,
            table="identity",
        ),
        # Against impostors (exprbench.identity): first, so the summary's identity verdict
        # is the rank-1 rate, not a fixed threshold.
        MetricSpec(
            "identity_rank1",
            0.0,
            1.0,
            True,
            "the own neutral is nearer than every impostor (other subjects' neutrals of the "
            "generator/version and the impostor gallery): rank-1 identification",
            dtype="bool",
            relative_to_neutral=True,
            table="identity",
            leaderboard=Leaderboard("identity_rank1_rate", "rank-1 id. vs impostors"),
        ),
        MetricSpec(
            "identity_margin",
            -4.0,
            4.0,
            True,
            "nearest impostor's distance minus the own neutral's (> 0: own neutral nearer)",
            relative_to_neutral=True,
            table="identity",
            heatmap=Heatmap(
                "Margin against impostors",
                "mean of (nearest impostor's distance - own neutral's distance); > 0 means "
                "the model tells this subject from the others and from the impostor gallery",
            ),
            leaderboard=Leaderboard("mean_identity_margin", "mean identity margin"),
        ),
        MetricSpec(
            "identity_rank",
            1.0,
            1_000_000.0,
            False,
            "rank of the own neutral among own + impostors by distance (1 = nearest)",
            relative_to_neutral=True,
            table="identity",
            digits=1,
        ),
        MetricSpec(
            "impostor_distance",
            0.0,
            4.0,
            True,
            "L2 distance to the nearest impostor",
            relative_to_neutral=True,
        ),
        MetricSpec(
            "identity_n_impostors",
            1.0,
            1_000_000.0,
            None,
            "how many impostors the image was compared with",
            relative_to_neutral=True,
            digits=0,
        ),
        MetricSpec(
            "identity_similarity",
            0.0,
            1.0,
            True,
            "max(0, 1 - identity_distance)",
            relative_to_neutral=True,
            table="identity",
            heatmap=Heatmap(
                "Identity",
                "mean identity similarity to the subject's neutral image (neutral is the "
                "reference)",
            ),
            leaderboard=Leaderboard("mean_identity_similarity", "mean identity sim."),
            caption="id",
        ),
        MetricSpec(
            "same_identity",
            0.0,
            1.0,
            True,
            "identity_distance below the scorer's threshold (score.same_identity_threshold "
            "unless the scorer declares its own)",
            dtype="bool",
            relative_to_neutral=True,
            table="identity",
            leaderboard=Leaderboard("share_same_identity", "same identity"),
        ),
    ),
    "quality": (*NO_REFERENCE_METRICS, NIQE_RELIABLE),  # no-reference image quality
    "perceptual": DISTANCE_METRICS,  # perceptual distance to the neutral image
}

# Titles of the study tables the built-in metrics name (a new table gets a default title).
STUDY_TABLES: tuple[StudyTable, ...] = (
    StudyTable("expression_fidelity", "Expression fidelity", order=1),
    StudyTable("age", "Age", order=2),
    StudyTable("gender", "Gender match", order=3),
    StudyTable("identity", "Identity", order=4),
    StudyTable("quality", "Image quality", order=5),
    StudyTable("perceptual", "Perceptual distance", order=6),
    # the geometry scorer's table: its headline is the fear-vs-surprise agreement
    StudyTable("geometry", "Expression geometry (fear vs surprise)", order=7),
    *JUDGEMENT_TABLES,
)

# Score columns that are not metrics: labels and raw outputs filled by some output kinds.
OUTPUT_EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {
    "expression": ("top1",),
    "gender": ("gender",),
}

BUILTIN_METRICS: tuple[MetricSpec, ...] = merge_specs(OUTPUT_METRICS.values())


@dataclass
class ScoreOutput:
    """One face's raw model outputs; None where the scorer has no such output."""

    probabilities: dict[str, float] | None = None  # canonical expression -> p, sums to 1
    age: float | None = None
    gender: str | None = None  # 'female' | 'male'
    gender_prob: float | None = None
    descriptor: np.ndarray | None = None  # identity embedding, float32
    metrics: dict[str, float | bool | None] | None = None  # quality columns by name
    # output kind -> why it was not measured (a model file missing), see exprbench.unavailable
    unavailable: dict[str, str] | None = None


class ScorerFoundNoFaceError(LookupError):
    """A scorer with its own detector found no face matching the pipeline's primary face.

    The score stage records that (image, scorer) row as face_found = false with the message
    as its note, instead of failing the run.
    """


class ModelUnavailableError(RuntimeError):
    """A scorer's weights or runtime are missing; the message says how to get them.

    Raised while building or running a scorer, the score stage records that scorer's rows
    with null outputs and this message (exprbench.unavailable) and the run goes on.
    """


class Scorer(ABC):
    """Base class: subclasses set the class attributes and implement `score`.

    There is no version to bump: `code_version()` is derived from the source of the
    scorer's module and every project module it imports, and the sha256 of the weight
    files it declares in `weights`; `cache_identity(options)` adds its options.
    """

    name: ClassVar[str]
    outputs: ClassVar[frozenset[Output]]
    description: ClassVar[str]
    crop: ClassVar[str]  # the pixels the model sees, recorded with every score row
    license: ClassVar[str] = ""
    weights: ClassVar[tuple[str, ...]] = ()  # keys of exprbench.weights.WEIGHTS it loads
    # Measures of its own beyond the output kinds' (each declared once, here).
    extra_metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    # Identity scorers: the L2 distance below which two of this model's descriptors are the
    # same person; None: score.same_identity_threshold (dlib's and face-api.js's 0.6).
    same_identity_threshold: ClassVar[float | None] = None

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @classmethod
    def metrics(cls) -> tuple[MetricSpec, ...]:
        """Every metric this scorer fills: its output kinds', the judgements built on
        them (exprbench.judgement_specs, filled by exprbench.scoring) and its own."""
        return merge_specs(
            [
                *(OUTPUT_METRICS[out] for out in sorted(cls.outputs)),
                *(JUDGEMENT_METRICS.get(out, ()) for out in sorted(cls.outputs)),
                cls.extra_metrics,
            ]
        )

    @classmethod
    def filled_columns(cls) -> list[str]:
        """The scores columns this scorer fills on a face: stored metrics and raw outputs."""
        extras = [c for out in sorted(cls.outputs) for c in OUTPUT_EXTRA_COLUMNS.get(out, ())]
        return [spec.column for spec in cls.metrics() if spec.stored] + extras

    @classmethod
    def weight_digests(cls) -> dict[str, str]:
        """Declared weight key -> pinned sha256 (the file is verified against it on load)."""
        from exprbench.weights import WEIGHTS  # imports this module: not at the top

        unknown = [key for key in cls.weights if key not in WEIGHTS]
        if unknown:
            raise TypeError(f"scorer {cls.name!r} declares unknown weights {unknown}")
        return {key: WEIGHTS[key].sha256 for key in cls.weights}

    @classmethod
    def code_version(cls) -> str:
        """12 hex digits of sha256(code closure, weights' sha256): the scorer_version column."""
        payload = json.dumps([code_digest(cls.__module__), cls.weight_digests()])
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @classmethod
    def cache_identity(cls, options: Mapping[str, Any] | None) -> str:
        """What determines this scorer's output for a given input: code, weights, options."""
        payload = json.dumps(
            [cls.name, code_digest(cls.__module__), cls.weight_digests(), dict(options or {})],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

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
    for attr in ("name", "outputs", "description", "crop"):
        if not hasattr(cls, attr):
            raise TypeError(f"scorer {cls.__qualname__} must declare {attr!r}")
    unknown = set(cls.outputs) - set(OUTPUT_METRICS)
    if unknown:
        raise TypeError(f"scorer {cls.name!r} declares unknown outputs {sorted(unknown)}")
    try:
        cls.metrics()
    except ValueError as error:
        raise TypeError(f"scorer {cls.name!r}: {error}") from error
    clash = {spec.column for spec in cls.extra_metrics} & {spec.column for spec in BUILTIN_METRICS}
    if clash:
        raise TypeError(f"scorer {cls.name!r} redeclares built-in metrics {sorted(clash)}")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise TypeError(f"scorer name {cls.name!r} is taken by {existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a scorer (for scorers defined in tests)."""
    _REGISTRY.pop(name, None)


def _discover() -> None:
    # Importing every module of the package runs its `register` decorator.
    import exprbench.scorers as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"{package.__name__}.{info.name}")


def available_scorers() -> dict[str, type[Scorer]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def _named_like(scorer: str, module: str) -> bool:
    return module == scorer or module.startswith(f"{scorer}_") or scorer.startswith(f"{module}_")


def get_scorer_class(name: str) -> type[Scorer]:
    # The modules named like the scorer first (faceapi -> faceapi, dlib -> dlib_identity,
    # human_faceres -> human): a command with a few scorers then skips importing every
    # scorer's stack (torch, cv2, ...).
    if name not in _REGISTRY and name != "base":
        import exprbench.scorers as package

        for info in pkgutil.iter_modules(package.__path__):
            if name in _REGISTRY:
                break
            if info.name != "base" and _named_like(name, info.name):
                importlib.import_module(f"{package.__name__}.{info.name}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    scorers = available_scorers()
    if name not in scorers:
        raise KeyError(f"unknown scorer {name!r}; registered: {', '.join(scorers)}")
    return scorers[name]
