"""The report's judgement sections: agreement between recognizers (Fleiss' kappa with n),
the images they disagree on (thumbnails and every verdict), accuracy and structural
confusion rates beside each confusion matrix, raw vs lambda-weighted means, gender by
majority. Built from the aggregate's judgement tables (exprbench.aggregate,
`build_judgement_tables`); rendered by templates/judgements.html.j2, which report.html.j2
includes. Nothing here names a scorer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from exprbench.judgement_specs import PER_IMAGE_TABLES, SCR_PAIRS
from exprbench.labels import EXPRESSIONS

TEMPLATE_NAME = "judgements.html.j2"  # report.html.j2 includes it by this name
Row = dict[str, Any]
Thumbnail = Callable[[str], tuple[str | None, str | None]]  # path -> (data URI, error)
# disagreement images drawn per list (the report stays bounded; the run tables count all)
DISAGREEMENTS_SHOWN = 200


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def rate_key(scorer: str, generator: str, version: str) -> str:
    """The key of a confusion block's rates (the template looks them up with it)."""
    return f"{scorer}\x1f{generator}\x1f{version}"


def _agreement(rows: list[Row], min_n: int) -> list[Row]:
    out = []
    for row in rows:
        kappa = row["fleiss_kappa"]
        if row["n_raters"] < 2:
            why = "one recognizer: nothing to agree"
        elif kappa is None or (isinstance(kappa, float) and math.isnan(kappa)):
            why = "undefined: every label in one class" if row["n_images"] else "no image"
        else:
            why = ""
        out.append(
            row
            | {
                "kappa": _fmt(kappa),
                "why": why,
                "fewn": row["n_images"] < min_n,
                "agreement": _fmt(row["mean_agreement_rate"]),
                "unanimous": _fmt(row["share_unanimous"]),
            }
        )
    return out


def _rates(rows: list[Row]) -> dict[str, Row]:
    return {
        rate_key(r["scorer"], r["generator"], r["version"]): {
            "accuracy_7": _fmt(r["accuracy_7"]),
            "n_7": r["n_7"],
            "accuracy_6": _fmt(r["accuracy_6"]),
            "n_6": r["n_6"],
            "scr": [(f"{a}/{b}", _fmt(r[f"scr_{a}_{b}"])) for a, b in SCR_PAIRS],
            "mscr": _fmt(r["mscr"]),
        }
        for r in rows
    }


def _weighted(rows: list[Row]) -> list[Row]:
    """Per scorer: one line per generator/version, cells per expression then non-neutral."""
    grouped: dict[str, dict[tuple[str, str], dict[str, Row]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for row in rows:
        key = row["expression"] if row["scope"] == "expression" else "non-neutral"
        grouped[row["scorer"]][(row["generator"], row["version"])][key] = row
    columns = [*EXPRESSIONS, "non-neutral"]
    blocks = []
    for scorer, runs in sorted(grouped.items()):
        lines = []
        for (generator, version), cells in sorted(runs.items()):
            line: list[Row | None] = []
            for column in columns:
                cell = cells.get(column)
                if cell is None:
                    line.append(None)
                    continue
                line.append(
                    {
                        "raw": _fmt(cell["mean_target_prob"]),
                        "weighted": _fmt(cell["weighted_mean_target_prob"]),
                        "n": cell["n_target_prob"],
                        "ambiguous": cell["n_ambiguous"],
                    }
                )
            lines.append({"generator": generator, "version": version, "cells": line})
        blocks.append({"scorer": scorer, "columns": columns, "rows": lines})
    return blocks


def _disagreements(rows: list[Row]) -> tuple[list[Row], bool]:
    """The first DISAGREEMENTS_SHOWN rows the recognizers disagree on, and whether more exist."""
    found = [row for row in rows if not row["unanimous"]]
    return found[:DISAGREEMENTS_SHOWN], len(found) > DISAGREEMENTS_SHOWN


def disagreement_paths(tables: Mapping[str, list[Row]]) -> list[str]:
    """The images `judgement_context` draws (their thumbnails are looked up beforehand)."""
    return sorted(
        {
            row["path"]
            for name in PER_IMAGE_TABLES
            for row in _disagreements(tables.get(name, []))[0]
        }
    )


def _images(rows: list[Row], thumbnail: Thumbnail) -> Row:
    """The disagreement images drawn, with thumbnails, and whether more exist."""
    shown, more = _disagreements(rows)
    images = []
    for row in shown:
        src, error = thumbnail(row["path"])
        images.append(row | {"src": src, "thumb_error": error})
    return {"images": images, "more": more, "shown": DISAGREEMENTS_SHOWN}


def judgement_context(
    tables: Mapping[str, list[Row]], thumbnail: Thumbnail, tau: float | None, min_n: int
) -> Row:
    """What templates/judgements.html.j2 draws, from the judgement tables' rows."""
    return {
        "agreement": _agreement(tables.get("agreement", []), min_n),
        "disagreements": _images(tables.get("image_agreement", []), thumbnail),
        "rates": _rates(tables.get("confusion_summary", [])),
        "weighted": _weighted(tables.get("weighted_expression", [])),
        "gender_runs": [
            r
            | {
                "disagree": _fmt(r["share_gender_disagree"]),
                "match": _fmt(r["gender_majority_match_rate"]),
            }
            for r in tables.get("gender_runs", [])
        ],
        "gender_disagreements": _images(tables.get("gender_agreement", []), thumbnail),
        "tau": tau,
        "min_n": min_n,
        "template": TEMPLATE_NAME,
    }
