"""Outputs a scorer could not measure because a model is unavailable, and why.

A scorer whose weights or runtime are missing raises `ModelUnavailableError`; a scorer
that works in part (deepface: identity always, analyze only with the user's weights)
returns `ScoreOutput.unavailable` (output kind -> reason). Either way the score stage
writes the row with null outputs, and the `unavailable` column holds a JSON object
`{output kind: reason}` (`ALL` for the whole scorer). Validation excuses exactly those
nulls (`excused_columns`), the run goes on, and the report lists each unavailable
recognizer/output once with its reason (`summary`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from exprbench.judgement_specs import JUDGEMENT_METRICS
from exprbench.scorers.base import OUTPUT_EXTRA_COLUMNS, OUTPUT_METRICS

COLUMN = "unavailable"
ALL = "*"  # the key for "every output of the scorer"


def encode(unavailable: Mapping[str, str] | None) -> str | None:
    """The `unavailable` column's value (None: everything was measured)."""
    if not unavailable:
        return None
    return json.dumps(dict(sorted(unavailable.items())), sort_keys=True)


def decode(value: Any) -> dict[str, str]:
    """Output kind (or ALL) -> reason, from a cell (null/NaN: {})."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError(f"{COLUMN} must hold a JSON object, got {value!r}")
    return {str(k): str(v) for k, v in data.items()}


def whole_scorer(error: BaseException) -> dict[str, str]:
    return {ALL: str(error)}


def kind_columns(kind: str) -> set[str]:
    """The scores columns an output kind fills, with the judgements built on it (lambda)."""
    specs = (*OUTPUT_METRICS.get(kind, ()), *JUDGEMENT_METRICS.get(kind, ()))
    return {s.column for s in specs if s.stored} | set(OUTPUT_EXTRA_COLUMNS.get(kind, ()))


def excused_columns(value: Any, filled: Collection[str]) -> set[str]:
    """Of the columns a scorer fills (`filled`), those a row's `unavailable` excuses."""
    kinds = decode(value)
    if ALL in kinds:
        return set(filled)
    return {c for kind in kinds for c in kind_columns(kind)} & set(filled)


def describe(kinds: Iterable[str]) -> str:
    names = sorted(kinds)
    return "every output" if ALL in names else ", ".join(names)


def note(scorer: str, unavailable: Mapping[str, str]) -> str:
    """The row's note: what was not measured (the reason is in the `unavailable` column)."""
    return f"{scorer}: {describe(unavailable)} not measured: model unavailable"


def summary(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (scorer, reason): the outputs it left unmeasured and on how many rows."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        for kind, reason in decode(row.get(COLUMN)).items():
            entry = seen.setdefault(
                (str(row["scorer"]), reason),
                {"scorer": str(row["scorer"]), "reason": reason, "kinds": set(), "rows": set()},
            )
            entry["kinds"].add(kind)
            entry["rows"].add(row.get("path"))
    return [
        {
            "scorer": entry["scorer"],
            "outputs": describe(entry["kinds"]),
            "reason": entry["reason"],
            "rows": len(entry["rows"]),
        }
        for _, entry in sorted(seen.items())
    ]
