"""What code a result depends on, derived from the source: module closures and their hash.

A cache identity must change whenever the code that produced the result changes, without
anyone remembering to bump a version. `module_closure("exprbench.scorers.fer_expression")`
follows every import of this project's packages (top-level and inside functions, absolute
and relative) by reading the source with `ast`, so it needs no import of the code and
sees lazy imports too. `code_digest` hashes the files of a closure.

Two files are deliberately not followed, because what they carry is hashed by value where
it matters: `exprbench/weights.py` is a table of pinned weight files (a scorer's identity
includes the sha256 of the weights it declares), and a package `__init__` is only included
when it is imported itself (importing `exprbench.scorers.fer_expression` does not make a
result depend on every other scorer in the package).

The DVC test (`tests/test_invalidation.py`) uses the same closures to check that each
stage in dvc.yaml depends on all the code it runs.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("exprbench", "tasks", "flows")
# Hashed by value (weights' sha256), not as code: see the module docstring.
NOT_FOLLOWED = frozenset({"exprbench.weights"})


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    """The source file of a project module (package -> its __init__.py), or None."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(module: str, root: Path) -> bool:
    return (root.joinpath(*module.split(".")) / "__init__.py").is_file()


def _imported_modules(module: str, source: str, root: Path) -> set[str]:
    """Project modules `source` imports (by name; `from pkg import mod` counts mod)."""
    package = module if _is_package(module, root) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from exprbench.scorers import base` imports the submodule `base`.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {
        name
        for name in found
        if name.split(".")[0] in PROJECT_PACKAGES and module_file(name, root) is not None
    }


def _source_file(module: str, root: Path) -> Path:
    """A project module's file, or the file of an imported module from elsewhere (e.g. a
    scorer defined in a test), which then counts as code with its own project imports."""
    path = module_file(module, root)
    if path is None:
        loaded = sys.modules.get(module)
        origin = getattr(loaded, "__file__", None)
        if origin is None:
            raise ModuleNotFoundError(f"{module}: not a module under {root}, nor an imported one")
        path = Path(origin).resolve()
    return path


def module_closure(
    module: str, root: Path = REPO_ROOT, skip: frozenset[str] = NOT_FOLLOWED
) -> dict[str, Path]:
    """`module` and every project module it imports, transitively: name -> file.

    `skip`: modules not followed (by default those hashed by value, see above).
    """
    found: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in found or name in skip:
            continue
        path = _source_file(name, root)
        found[name] = path
        pending.extend(_imported_modules(name, path.read_text(encoding="utf-8"), root))
    return dict(sorted(found.items()))


def closure_files(
    *modules: str, root: Path = REPO_ROOT, skip: frozenset[str] = NOT_FOLLOWED
) -> list[Path]:
    """Source files of the closures of `modules`, sorted; relative to `root` when inside."""
    files = {path for module in modules for path in module_closure(module, root, skip).values()}
    return sorted(path.relative_to(root) if path.is_relative_to(root) else path for path in files)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_digest(*modules: str, root: Path = REPO_ROOT) -> str:
    """sha256 over (path, content sha256) of every file in the closures of `modules`."""
    digest = hashlib.sha256()
    for rel in closure_files(*modules, root=root):
        digest.update(f"{rel.as_posix()}\0{_file_digest(root / rel)}\n".encode())
    return digest.hexdigest()


def weight_digests(*prefixes: str) -> dict[str, str]:
    """Pinned sha256 of every weight file whose key starts with one of `prefixes`.

    The files are verified against these on load, so the pins identify the weights.
    """
    from exprbench.weights import WEIGHTS

    found = {k: v.sha256 for k, v in WEIGHTS.items() if k.startswith(prefixes)}
    if prefixes and not found:
        raise KeyError(f"no weight files start with {prefixes}")
    return found
