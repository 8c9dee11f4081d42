"""The report's paired comparison and its identity-against-impostors section.

Kept apart from `exprbench.report` (which calls these) so the summary's test and the
identity page can change without touching the page's other sections.

* `paired_lookup`: from the aggregate's `subject_cells` table (per scorer x
  generator/version x subject x expression: the mean of each run statistic), a function
  that compares two runs on their shared cells (`exprbench.uncertainty.paired_comparison`).
* `identity_section`: the genuine-vs-impostor table (rank-1, margin, AUC, shares under the
  threshold) and one small inline SVG histogram per scorer x generator/version, built from
  numbers only (the template draws them; nothing from the data becomes markup).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from exprbench.uncertainty import PairedComparison, paired_comparison

IDENTITY_TEMPLATE = "identity.html.j2"
Row = dict[str, Any]
# (scorer, statistic, best run's row, runner-up's row) -> the comparison, None: no shared cell
PairedLookup = Callable[[str, str, Row, Row], PairedComparison | None]
PLOT_WIDTH = 260
PLOT_HEIGHT = 70


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


RunCells = Callable[[str, str, str], list[Row]]  # (scorer, generator, version) -> its cells


def _run_rows(subject_cells: Sequence[Row] | pa.Table | RunCells) -> RunCells:
    """(scorer, generator, version) -> that run's subject cells; an Arrow table stays
    columnar and gives up one run's rows when asked (it grows with the subjects); a
    callable (e.g. a query of the aggregate's database) is asked as it is."""
    if callable(subject_cells):
        return subject_cells
    if isinstance(subject_cells, pa.Table):
        table = subject_cells

        def of_run(scorer: str, generator: str, version: str) -> list[Row]:
            mask = pc.and_(
                pc.and_(pc.equal(table["scorer"], scorer), pc.equal(table["generator"], generator)),
                pc.equal(table["version"], version),
            )
            return table.filter(mask).to_pylist()

        return of_run
    by_run: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in subject_cells:
        by_run[(row["scorer"], row["generator"], row["version"])].append(row)
    return lambda scorer, generator, version: by_run.get((scorer, generator, version), [])


def paired_lookup(
    subject_cells: Sequence[Row] | pa.Table | RunCells, seed: int, resamples: int
) -> PairedLookup | None:
    """None when the aggregate built no `subject_cells` (the summary then uses Welch)."""
    if not callable(subject_cells) and len(subject_cells) == 0:
        return None
    of_run = _run_rows(subject_cells)

    def cells(scorer: str, run: Row, statistic: str) -> dict[tuple[str, str], float]:
        return {
            (r["subject"], r["expression"]): float(r[statistic])
            for r in of_run(scorer, run["generator"], run["version"])
            if not _missing(r.get(statistic))
        }

    def lookup(scorer: str, statistic: str, a: Row, b: Row) -> PairedComparison | None:
        key = (scorer, statistic, a["generator"], a["version"], b["generator"], b["version"])
        return paired_comparison(
            cells(scorer, a, statistic),
            cells(scorer, b, statistic),
            seed=seed,
            resamples=resamples,
            key=key,
        )

    return lookup


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}"


def paired_sentence(head: str, c: PairedComparison, digits: int) -> tuple[str, bool | None]:
    """(the summary's sentence, significant or None when not testable)."""
    text = (
        f"{head}: paired on {c.n_cells} shared subject x expression cells "
        f"({c.n_subjects} subject{'s' if c.n_subjects != 1 else ''}), mean difference "
        f"{_signed(c.mean_diff, digits)}"
    )
    if c.effect_size is not None:
        text += f", d_z {c.effect_size:+.2f}"
    if c.low is None or c.high is None:
        return f"{text}; no interval (one shared cell).", None
    if c.low == c.high:
        return f"{text}; no interval (the differences do not vary).", None
    text += f", 95% bootstrap CI [{_signed(c.low, digits)}, {_signed(c.high, digits)}]"
    if c.low > 0 or c.high < 0:
        return f"{text}, significant.", True
    return f"{text} includes 0, not significant: not distinguishable on these cells.", False


def _fmt(value: Any, digits: int = 2) -> str:
    return "–" if _missing(value) else f"{value:.{digits}f}"


def _plot(bins: Sequence[Row], threshold: Any) -> Row:
    """Bars (x, width, height per kind) of one histogram, in SVG user units."""
    low = min(b["bin_low"] for b in bins)
    high = max(b["bin_high"] for b in bins)
    span = (high - low) or 1.0
    top = max((b["share"] for b in bins), default=0.0) or 1.0
    bars = []
    for b in sorted(bins, key=lambda b: (b["kind"], b["bin"])):
        height = PLOT_HEIGHT * b["share"] / top
        bars.append(
            {
                "kind": b["kind"],
                "x": round(PLOT_WIDTH * (b["bin_low"] - low) / span, 2),
                "width": round(PLOT_WIDTH * (b["bin_high"] - b["bin_low"]) / span, 2),
                "y": round(PLOT_HEIGHT - height, 2),
                "height": round(height, 2),
                "title": f"{b['kind']} {b['bin_low']:.2f}-{b['bin_high']:.2f}: "
                f"{b['count']} ({100 * b['share']:.0f}%)",
            }
        )
    line = None
    if not _missing(threshold) and low <= threshold <= high:
        line = round(PLOT_WIDTH * (threshold - low) / span, 2)
    return {
        "bars": bars,
        "threshold_x": line,
        "low": f"{low:.2f}",
        "high": f"{high:.2f}",
        "width": PLOT_WIDTH,
        "height": PLOT_HEIGHT,
    }


def identity_section(separability: Sequence[Row], histogram: Sequence[Row]) -> Row:
    """The identity-against-impostors section's table rows and plots."""
    bins: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in histogram:
        bins[(row["scorer"], row["generator"], row["version"])].append(row)
    rows = []
    plots: dict[str, list[Row]] = defaultdict(list)
    for row in separability:
        key = (row["scorer"], row["generator"], row["version"])
        better = row.get("better_than_members")
        rows.append(
            {
                "scorer": row["scorer"],
                "members": row["members"],
                "generator": row["generator"],
                "version": row["version"],
                "n_genuine": row["n_genuine"],
                "n_impostor_pairs": row["n_impostor_pairs"],
                "auc": _fmt(row["auc"], 3),
                "auc_sets": _fmt(row["auc_sets"], 3),
                "rank1_rate": _fmt(row["rank1_rate"]),
                "mean_margin": _fmt(row["mean_margin"], 3),
                "genuine_below": _fmt(row["genuine_below_threshold"]),
                "impostor_below": _fmt(row["impostor_below_threshold"], 3),
                "nearest_impostor": _fmt(row["nearest_impostor"], 3),
                "better": "–" if better is None else ("yes" if better else "no"),
            }
        )
        if bins.get(key):
            plots[row["scorer"]].append(
                {
                    "generator": row["generator"],
                    "version": row["version"],
                    "auc": _fmt(row["auc"], 3),
                    **_plot(bins[key], row.get("threshold")),
                }
            )
    threshold = next(
        (r["threshold"] for r in separability if not _missing(r.get("threshold"))), None
    )
    return {
        "rows": rows,
        "plots": sorted(plots.items()),
        "threshold": None if threshold is None else f"{threshold:g}",
    }
