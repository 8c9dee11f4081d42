"""Image quality metrics: no-reference quality and perceptual distance to the neutral image.

One module per metric, each with pure functions on H x W x 3 uint8 RGB arrays; all but
PIQE need parameter files from `exprbench fetch-models` (without them they raise
ModelUnavailableError naming that command):

- `exprbench.quality.brisque.brisque(rgb)`: BRISQUE, about 0 (best) .. 100 (worst),
  unbounded (brisque 0.2.0 model).
- `exprbench.quality.niqe.niqe(rgb)`: NIQE distance >= 0 on scikit-video's scale (not
  MATLAB's); needs >= 192 px a side, unreliable below 384 px (`niqe_reliable(rgb)`).
- `exprbench.quality.piqe.piqe(rgb)`: PIQE in [0, 100], lower is better (pypiqe/MATLAB
  port, no parameters).
- `exprbench.quality.STLPIPS(net="vgg" | "alex").distance(a, b)`: shift-tolerant LPIPS
  (not comparable to published LPIPS values, hence the name ST-LPIPS in every output); by
  default both images are resized to 256 x 256 first.

This package module imports no model code (torch, scipy): the score columns, ranges and
directions (`QUALITY_METRICS`) and the weight keys are cheap to import; the metrics load
on first use. The functions are not re-exported under the module names on purpose (a
function `brisque` would shadow the module `exprbench.quality.brisque`); use
`no_reference_metrics()` for a column -> function map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from exprbench.quality.specs import (
    DISTANCE_METRICS,
    NIQE_MIN_SIDE,
    NIQE_RELIABLE_SIDE,
    NO_REFERENCE_METRICS,
    QUALITY_METRICS,
    WEIGHT_KEYS,
)

if TYPE_CHECKING:
    from exprbench.quality.niqe import niqe_reliable
    from exprbench.quality.stlpips import STLPIPS


def no_reference_metrics() -> dict[str, Callable[[np.ndarray], float]]:
    """Column -> function(rgb) -> float for the no-reference metrics."""
    from exprbench.quality.brisque import brisque
    from exprbench.quality.niqe import niqe
    from exprbench.quality.piqe import piqe

    return {"brisque": brisque, "niqe": niqe, "piqe": piqe}


def __getattr__(name: str) -> Any:
    # on first use: torch and scipy are slow imports
    if name == "STLPIPS":
        from exprbench.quality.stlpips import STLPIPS

        return STLPIPS
    if name == "niqe_reliable":
        from exprbench.quality.niqe import niqe_reliable

        return niqe_reliable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DISTANCE_METRICS",
    "NIQE_MIN_SIDE",
    "NIQE_RELIABLE_SIDE",
    "NO_REFERENCE_METRICS",
    "QUALITY_METRICS",
    "STLPIPS",
    "WEIGHT_KEYS",
    "niqe_reliable",
    "no_reference_metrics",
]
