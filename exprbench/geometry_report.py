"""The report's "Geometry profiles" section: what each expression moved, and fear vs surprise.

Pure functions from score rows (dicts, as the report stage reads scores.parquet) to the
context of the template partial `templates/_geometry.html.j2`; nothing here reads files.

* Profiles: per scorer x generator x version, one row per requested expression and one
  column per measure of `exprbench.expression_geometry.MEASURES`: the mean displacement
  from the subject's neutral (IOD) over the images with a value, with n. A mean whose sign
  is the one the expression's EMFACS prototype expects is marked, one against it is marked
  the other way; a mean from fewer than `min_n` images is grey and unmarked.
* Fear vs surprise: every image that asked for fear or surprise, or that any expression
  recognizer's top-1 reads as fear or surprise, with each recognizer's top-1, the
  geometry's score and verdict, and the reading `resolve_fear_surprise` gives; per
  generator/version, how often the geometry verdict and each recognizer's top-1 equal the
  requested label on the fear and surprise images the geometry measured.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exprbench.expression_geometry import (
    COLUMNS,
    FEAR_VS_SURPRISE,
    MEASURES,
    PROTOTYPES,
    VERDICT_MARGIN,
    Verdict,
    moves_as_expected,
    verdict,
)
from exprbench.labels import EXPRESSIONS, NEUTRAL

Row = Mapping[str, Any]
TEMPLATE = "_geometry.html.j2"  # the partial report.html.j2 includes (named here for DVC deps)
LOOK_ALIKES = ("fear", "surprise")


def _value(row: Row, column: str) -> float | None:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


@dataclass(frozen=True)
class Reading:
    """How a fear-or-surprise image is read: `label` (None: nobody can tell) and `how`."""

    label: str | None
    how: str


def resolve_fear_surprise(top1s: Iterable[str | None], geometry: Verdict | None) -> Reading:
    """Combine the recognizers' top-1 labels with the geometry verdict (pure rule).

    * Recognizers split (some read fear, others surprise): the geometry decides, when its
      verdict is fear or surprise; otherwise the image stays undecided.
    * Recognizers that read fear or surprise all agree: their label stands; a geometry
      verdict for the other one is reported as a contradiction (a look-alike warning).
    * No recognizer reads either: the geometry verdict is the only reading.
    """
    votes = {label for label in top1s if label in LOOK_ALIKES}
    decided = geometry if geometry in LOOK_ALIKES else None
    if len(votes) == 2:
        if decided is None:
            return Reading(None, "recognizers split; geometry undecided")
        return Reading(decided, "recognizers split; geometry decides")
    if votes:
        (label,) = votes
        if decided is not None and decided != label:
            return Reading(label, f"recognizers agree; geometry reads {decided}")
        return Reading(label, "recognizers agree" + ("; geometry agrees" if decided else ""))
    return Reading(decided, "geometry only" if decided else "no reading")


def geometry_scorers(scores: Sequence[Row]) -> list[str]:
    """Scorers whose rows carry a geometry measure."""
    return sorted(
        {
            str(row["scorer"])
            for row in scores
            if any(_value(row, column) is not None for column in COLUMNS)
        }
    )


def _profile_cell(values: list[float], column: str, expression: str, min_n: int) -> dict:
    n = len(values)
    mean = sum(values) / n if n else None
    expected = moves_as_expected(expression, column, mean) if n >= min_n else None
    mark = {True: "as expected", False: "against the prototype", None: ""}[expected]
    return {
        "text": "–" if mean is None else f"{mean:+.3f}",
        "n": n,
        "cls": "fewn" if 0 < n < min_n else ("novalue" if n == 0 else ""),
        "mark": {True: "✓", False: "✗", None: ""}[expected],
        "title": mark,
    }


def profiles(scores: Sequence[Row], min_n: int, scorers: Sequence[str] | None = None) -> list[dict]:
    """One block per geometry scorer x generator x version (see the module docstring);
    `measured` is False when no image of the run has a value (no neutral, no expression).
    `scorers`: the geometry scorers (default: those with a value in `scores`)."""
    blocks = []
    for scorer in geometry_scorers(scores) if scorers is None else scorers:
        groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for row in scores:
            if row["scorer"] == scorer:
                groups[(str(row["generator"]), str(row["version"]))].append(row)
        for (generator, version), members in sorted(groups.items()):
            lines: list[dict[str, Any]] = []
            measured = False
            for expression in EXPRESSIONS:
                if expression == NEUTRAL:
                    continue
                rows = [r for r in members if r["expression"] == expression]
                if not rows:
                    continue
                values = {
                    column: [v for r in rows if (v := _value(r, column)) is not None]
                    for column in (*COLUMNS, FEAR_VS_SURPRISE)
                }
                prototype = PROTOTYPES.get(expression)
                measured = measured or any(values.values())
                lines.append(
                    {
                        "expression": expression,
                        "aus": prototype.aus if prototype else "",
                        "images": len(rows),
                        "cells": [
                            _profile_cell(values[c], c, expression, min_n)
                            for c in (*COLUMNS, FEAR_VS_SURPRISE)
                        ],
                    }
                )
            blocks.append(
                {
                    "scorer": scorer,
                    "generator": generator,
                    "version": version,
                    "lines": lines,
                    "measured": measured,
                }
            )
    return blocks


def _recognizers(scores: Iterable[Row]) -> list[str]:
    return sorted({str(r["scorer"]) for r in scores if r.get("top1") is not None})


def fear_surprise(
    scores: Sequence[Row],
    scorers: Sequence[str] | None = None,
    recognizers: Sequence[str] | None = None,
) -> tuple[list[dict], list[dict]]:
    """(image rows, per-generator/version agreement rows); see the module docstring.
    `scorers`, `recognizers`: the geometry and expression scorers (default: from `scores`)."""
    scorers = geometry_scorers(scores) if scorers is None else scorers
    if not scorers:
        return [], []
    geometry = scorers[0]
    by_path: dict[str, list[Row]] = defaultdict(list)
    for row in scores:
        by_path[str(row["path"])].append(row)
    recognizers = _recognizers(scores) if recognizers is None else recognizers
    images = []
    for path, rows in sorted(by_path.items()):
        first = rows[0]
        top1 = {str(r["scorer"]): r.get("top1") for r in rows if r.get("top1") is not None}
        if first["expression"] not in LOOK_ALIKES and not set(top1.values()) & set(LOOK_ALIKES):
            continue
        geo = next((r for r in rows if r["scorer"] == geometry), None)
        score = None if geo is None else _value(geo, FEAR_VS_SURPRISE)
        geo_verdict = verdict(score)
        reading = resolve_fear_surprise(top1.values(), geo_verdict)
        images.append(
            {
                "path": path,
                "generator": first["generator"],
                "version": first["version"],
                "subject": first["subject"],
                "requested": first["expression"],
                "top1": [top1.get(name) for name in recognizers],
                "score": "–" if score is None else f"{score:+.3f}",
                "verdict": geo_verdict or "not measured",
                "why": "" if geo is None or score is not None else (geo.get("note") or ""),
                "reading": reading.label or "–",
                "how": reading.how,
                "agrees": None
                if first["expression"] not in LOOK_ALIKES or geo_verdict is None
                else geo_verdict == first["expression"],
            }
        )
    return images, _agreement(images, recognizers)


def _agreement(images: Sequence[dict], recognizers: Sequence[str]) -> list[dict]:
    """Per generator/version: on requested fear/surprise images the geometry measured, how
    often its verdict, and each recognizer's top-1, equals the requested label."""
    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for image in images:
        if image["agrees"] is not None:
            runs[(str(image["generator"]), str(image["version"]))].append(image)
    rows = []
    for (generator, version), measured in sorted(runs.items()):
        n = len(measured)
        hits = sum(bool(image["agrees"]) for image in measured)
        per_recognizer = [
            sum(image["top1"][i] == image["requested"] for image in measured)
            for i in range(len(recognizers))
        ]
        rows.append(
            {
                "generator": generator,
                "version": version,
                "n": n,
                "geometry": f"{hits}/{n}",
                "undecided": sum(image["verdict"] == "undecided" for image in measured),
                "recognizers": [f"{k}/{n}" for k in per_recognizer],
            }
        )
    return rows


def geometry_section(scores: Sequence[Row], min_n: int) -> dict | None:
    """The template partial's context, or None when no geometry scorer ran."""
    scorers = geometry_scorers(scores)
    return geometry_section_by_run([scores], scorers, _recognizers(scores), min_n)


def geometry_section_by_run(
    runs: Iterable[Sequence[Row]],
    scorers: Sequence[str],
    recognizers: Sequence[str],
    min_n: int,
    max_images: int | None = None,
) -> dict | None:
    """`geometry_section` from one generator/version's rows at a time (`runs`), given the
    geometry scorers and expression recognizers of all of them; at most `max_images`
    fear/surprise images are listed (`n_images` says how many there are)."""
    if not scorers:
        return None
    blocks: list[dict] = []
    images: list[dict] = []
    agreement: list[dict] = []
    n_images = 0
    for rows in runs:
        blocks += profiles(rows, min_n, scorers)
        run_images, run_agreement = fear_surprise(rows, scorers, recognizers)
        n_images += len(run_images)
        images = sorted(images + run_images, key=lambda i: i["path"])[:max_images]
        agreement += run_agreement
    blocks.sort(key=lambda b: (b["scorer"], b["generator"], b["version"]))
    agreement.sort(key=lambda r: (r["generator"], r["version"]))
    return {
        "template": TEMPLATE,
        "measures": [
            {"column": m.column, "aus": m.aus, "title": m.title, "description": m.description}
            for m in MEASURES
        ],
        "profiles": blocks,
        "images": images,
        "n_images": n_images,
        "agreement": agreement,
        "recognizers": list(recognizers),
        "margin": VERDICT_MARGIN,
        "min_n": min_n,
    }
