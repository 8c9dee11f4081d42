"""conftest's missing-prerequisite helpers: a failure under CI, a skip locally."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import conftest
import pytest
from conftest import import_or_missing, missing_prerequisite, npm_harness, pip_target, require

FAILED = pytest.fail.Exception
SKIPPED = pytest.skip.Exception


def outcome(call: Callable[[], object]) -> tuple[str, str]:
    """('failed' | 'skipped' | 'passed', message) of `call`, caught here, so that a broken
    helper fails these tests instead of skipping them."""
    try:
        call()
    except FAILED as error:
        return "failed", str(error)
    except SKIPPED as error:
        return "skipped", str(error)
    return "passed", ""


def assert_outcome(expected: str, call: Callable[[], object], pattern: str) -> None:
    got, message = outcome(call)
    assert got == expected, f"{got} (expected {expected}): {message}"
    assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


@pytest.fixture(params=["true", "1", "TRUE", "yes"])
def ci(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", request.param)


@pytest.fixture(params=[None, "", "0", "false"])
def local(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", request.param)


def test_ci_fails_with_the_message(ci: None) -> None:
    message = "node is missing: install Node.js 20"
    assert_outcome("failed", lambda: missing_prerequisite(message), re.escape(message))
    assert_outcome("failed", lambda: require(lambda: False, "weights missing"), "weights missing")
    assert_outcome("failed", lambda: require(0, "weights missing"), "weights missing")
    assert_outcome(
        "failed",
        lambda: import_or_missing("exprbench_no_such_module", "pip install it"),
        "exprbench_no_such_module.*pip install it",
    )


def test_local_skips_with_the_message(local: None) -> None:
    message = "node is missing: install Node.js 20"
    assert_outcome("skipped", lambda: missing_prerequisite(message), re.escape(message))
    assert_outcome("skipped", lambda: require(False, "weights missing"), "weights missing")
    assert_outcome(
        "skipped",
        lambda: import_or_missing("exprbench_no_such_module", "pip install it"),
        "exprbench_no_such_module.*pip install it",
    )


def test_met_prerequisites_pass_even_under_ci(ci: None) -> None:
    assert_outcome("passed", lambda: require(True, "unused"), "")
    assert_outcome("passed", lambda: require(lambda: "truthy", "unused"), "")
    assert import_or_missing("json", "unused") is __import__("json")


def _failed_run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found")


def test_pip_target_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: None) -> None:
    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", _failed_run)
    pattern = r"refpkg==1\.0.*No matching distribution"
    assert_outcome("failed", lambda: pip_target("refpkg", "refpkg==1.0"), pattern)
    monkeypatch.delenv("CI")
    assert_outcome("skipped", lambda: pip_target("refpkg", "refpkg==1.0"), pattern)


def test_npm_harness_without_node_or_with_failing_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: None
) -> None:
    (tmp_path / "package-lock.json").write_text("{}")
    with monkeypatch.context() as mp:
        mp.setattr(shutil, "which", lambda name: None)
        assert_outcome("failed", lambda: npm_harness(tmp_path), r"Node\.js \(`node`\) is not on")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", _failed_run)
    assert_outcome("failed", lambda: npm_harness(tmp_path), "`npm ci` failed in")


def test_a_missing_prerequisite_fails_a_real_pytest_run_only_under_ci(tmp_path: Path) -> None:
    """End to end: pytest's exit code and report, CI=true vs CI unset."""
    (tmp_path / "test_needs_it.py").write_text(
        "from conftest import missing_prerequisite\n\n\n"
        "def test_needs_it():\n"
        "    missing_prerequisite('THING-42 is missing: provide it with make thing')\n"
    )
    tests_dir = str(Path(conftest.__file__).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_dir, env.get("PYTHONPATH")]))

    def run(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
        return subprocess.run(
            [*cmd, "test_needs_it.py"],
            cwd=tmp_path,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    under_ci = run({"CI": "true"})
    assert under_ci.returncode == 1, under_ci.stdout + under_ci.stderr
    assert "1 failed" in under_ci.stdout
    assert "THING-42 is missing: provide it with make thing" in under_ci.stdout

    local = run({})
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 skipped" in local.stdout
    assert "SKIPPED" in local.stdout
    assert "THING-42 is missing: provide it with make thing" in local.stdout
