"""params.yaml: loading, validation with messages that name the key, and the output layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """params.yaml is missing a key or has a value of the wrong kind."""


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    source = Path(path)
    if not source.is_file():
        raise ParamsError(f"{source}: params file not found (run from the project root)")
    data = yaml.safe_load(source.read_text()) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level")
    return data


def get(params: dict[str, Any], dotted: str, kind: type | tuple[type, ...]) -> Any:
    """params['a']['b'] for 'a.b', checked against `kind`; errors name the key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"params: missing key {dotted!r}")
        node = node[part]
    if isinstance(node, bool) and kind in (int, float, (int, float)):
        raise ParamsError(f"params: {dotted} must be a number, got {node!r}")
    if not isinstance(node, kind):
        raise ParamsError(f"params: {dotted} must be {kind}, got {node!r}")
    return node


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
    def from_params(cls, params: dict[str, Any], root: Path = Path()) -> Layout:
        return cls(
            *(
                root / get(params, f"paths.{key}", str)
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
    upscale_table = property(lambda self: self.interim / "upscale.parquet")
    upscaled_dir = property(lambda self: self.interim / "upscaled")
    faces_table = property(lambda self: self.interim / "faces.parquet")
    crops_dir = property(lambda self: self.interim / "crops")
    scores = property(lambda self: self.scores_dir / "scores.parquet")
    validation_dir = property(lambda self: self.reports / "validation")
    validation_json = property(lambda self: self.reports / "validation.json")
    report_html = property(lambda self: self.reports / "index.html")
    metrics_json = property(lambda self: self.reports / "metrics.json")
    plots_dir = property(lambda self: self.reports / "plots")
