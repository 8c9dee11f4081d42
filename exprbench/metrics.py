"""What a score column means: its range and which direction is better.

Kept apart from the scorer registry so metric packages (exprbench.quality) can declare their
columns without importing the registry, and the registry can import them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One score column: its value range and which direction is better."""

    column: str
    low: float
    high: float
    higher_is_better: bool | None  # None: no direction (e.g. an age)
    description: str
