"""Where every stage reads and writes (params.yaml's `paths`, or one output folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exprbench.settings import PathsSettings


@dataclass(frozen=True)
class Layout:
    """Where every stage reads and writes."""

    input_dir: Path
    interim: Path
    scores_dir: Path
    reports: Path
    tables: Path
    database: Path
    cache: Path

    @classmethod
    def from_paths(cls, paths: PathsSettings, root: Path = Path()) -> Layout:
        return cls(
            *(
                root / getattr(paths, key)
                for key in ("raw", "interim", "scores", "reports", "tables", "database", "cache")
            )
        )

    @classmethod
    def for_output(cls, input_dir: Path, output: Path, cache: Path | None = None) -> Layout:
        """The `exprbench run` layout: everything under one output folder."""
        return cls(
            input_dir,
            output / "interim",
            output / "scores",
            output / "report",
            output / "tables",
            output / "exprbench.duckdb",
            cache or output / "cache",
        )

    def resolve(self, ref: str) -> Path:
        """Map a stored image reference ('input:<rel>' or 'interim:<rel>') to a path."""
        scheme, _, rel = ref.partition(":")
        bases = {"input": self.input_dir, "interim": self.interim}
        if scheme not in bases or not rel:
            raise ValueError(
                f"bad image reference {ref!r}; expected input:<path> or interim:<path>"
            )
        return bases[scheme] / rel

    images = property(lambda self: self.interim / "images.parquet")
    quarantine = property(lambda self: self.interim / "quarantine.parquet")
    cells_dir = property(lambda self: self.interim / "cells")  # cut from image sheets
    upscale_table = property(lambda self: self.interim / "upscale.parquet")
    upscaled_dir = property(lambda self: self.interim / "upscaled")
    faces_table = property(lambda self: self.interim / "faces.parquet")
    crops_dir = property(lambda self: self.interim / "crops")
    scores = property(lambda self: self.scores_dir / "scores.parquet")
    validation_dir = property(lambda self: self.reports / "validation")
    validation_json = property(lambda self: self.reports / "validation.json")
    report_html = property(lambda self: self.reports / "index.html")
    metrics_json = property(lambda self: self.reports / "metrics.json")  # headline, DVC
    deltas_json = property(lambda self: self.reports / "deltas.json")  # newest vs previous, DVC
    leaderboard_json = property(lambda self: self.reports / "leaderboard.json")  # per run
    plots_dir = property(lambda self: self.reports / "plots")
