"""What a scheduled run evaluates: the generator/versions that are new or changed since the
versions already evaluated, which comparison to make for each generator, and the message
that names a regression. Pure: `flows/schedule.py` reads the input folder, the record of
evaluated versions and the scores, and writes them back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exprbench.compare import Comparison

UNLABELLED = "?"  # a manifest row leaving generator or version to the file's metadata


@dataclass(frozen=True)
class SeenFile:
    """One input file as the scheduled check sees it (no image is decoded)."""

    version: str  # "generator/version" as declared (UNLABELLED parts: filled from metadata)
    path: str  # relative to the input folder
    size: int
    mtime_ns: int
    labels: str  # what the folder or manifest declares for it (subject, expression, sheet)


def version_key(generator: str, version: str) -> str:
    return f"{generator or UNLABELLED}/{version or UNLABELLED}"


def fingerprints(files: Iterable[SeenFile]) -> dict[str, str]:
    """generator/version -> sha256 over its files' paths, sizes, modification times and
    declared labels, whatever order they come in: it changes when a file is added,
    removed, replaced, touched or relabelled."""
    lines: dict[str, list[str]] = {}
    for seen in files:
        line = f"{seen.path}\0{seen.size}\0{seen.mtime_ns}\0{seen.labels}"
        lines.setdefault(seen.version, []).append(line)
    return {
        version: hashlib.sha256("\n".join(sorted(found)).encode()).hexdigest()
        for version, found in sorted(lines.items())
    }


@dataclass(frozen=True)
class Changes:
    """The input's generator/versions against those already evaluated."""

    new: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.new or self.changed or self.removed)

    @property
    def to_evaluate(self) -> tuple[str, ...]:
        return tuple(sorted(self.new + self.changed))

    def summary(self) -> str:
        if not self:
            return (
                f"nothing new: {len(self.unchanged)} generator/version(s) already evaluated, "
                "none added or changed"
            )
        parts = [
            f"{what}: {', '.join(keys)}"
            for what, keys in (
                ("new", self.new),
                ("changed", self.changed),
                ("removed", self.removed),
            )
            if keys
        ]
        return "; ".join(parts)


def detect(current: Mapping[str, str], evaluated: Mapping[str, str]) -> Changes:
    """Compare the input's fingerprints with those recorded when it was last evaluated."""
    return Changes(
        new=tuple(sorted(k for k in current if k not in evaluated)),
        changed=tuple(sorted(k for k in current if k in evaluated and evaluated[k] != current[k])),
        removed=tuple(sorted(k for k in evaluated if k not in current)),
        unchanged=tuple(sorted(k for k in current if evaluated.get(k) == current[k])),
    )


@dataclass(frozen=True)
class Step:
    """The comparison to post for one generator: its latest new or changed version (`head`)
    against the version before it in the declared order (`base`; None: head is its first)."""

    generator: str
    base: str | None
    head: str


def steps(evaluate: Iterable[tuple[str, str]], orders: Mapping[str, Sequence[str]]) -> list[Step]:
    """One Step per generator with a version in `evaluate`, (generator, version) pairs;
    `orders` gives each generator's versions oldest first."""
    wanted: dict[str, set[str]] = {}
    for generator, version in evaluate:
        wanted.setdefault(generator, set()).add(version)
    found = []
    for generator in sorted(wanted):
        order = list(orders.get(generator, ()))
        known = [v for v in order if v in wanted[generator]]
        if not known:
            raise ValueError(
                f"{generator}: versions {sorted(wanted[generator])} are not in its version "
                f"order {order}"
            )
        head = known[-1]
        position = order.index(head)
        found.append(Step(generator, order[position - 1] if position else None, head))
    return found


def regression_message(comparisons: Iterable[Comparison], limit: int = 12) -> str | None:
    """The flow run's Failed message naming every regressed cell (per comparison the first
    `limit`, then how many more), or None without a regression."""
    parts = []
    total = 0
    for comparison in comparisons:
        found = comparison.regressions()
        if not found:
            continue
        total += len(found)
        named = [
            cell.where + ("" if cell.delta is None else f" ({cell.delta:+.3f})")
            for cell in found[:limit]
        ]
        more = f" and {len(found) - limit} more" if len(found) > limit else ""
        parts.append(
            f"{comparison.generator} {comparison.head} vs {comparison.base}: "
            f"{', '.join(named)}{more}"
        )
    return f"regression in {total} cell(s): " + "; ".join(parts) if parts else None
