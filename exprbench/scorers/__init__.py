"""Scorer registry: see `exprbench.scorers.base`. One module per scorer."""

from exprbench.scorers.base import (
    ModelUnavailableError,
    PairScorer,
    ScoreOutput,
    Scorer,
    ScorerFoundNoFaceError,
    available_scorers,
    get_scorer_class,
    register,
)

__all__ = [
    "ModelUnavailableError",
    "PairScorer",
    "ScoreOutput",
    "Scorer",
    "ScorerFoundNoFaceError",
    "available_scorers",
    "get_scorer_class",
    "register",
]
