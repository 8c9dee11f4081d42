"""params.yaml as typed, validated settings: parsed once, every key checked up front.

Each section of params.yaml is a frozen dataclass; `Settings.from_params` checks every
key (unknown keys are typos and fail), type and allowed value, and names the key in its
message, before any stage does work. Stage tasks read `settings.<section>` only, which is
how `tests/test_invalidation.py` derives the params each DVC stage must declare.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml


class ParamsError(ValueError):
    """params.yaml is missing a key or has a value of the wrong kind."""


UpscaleMethod = Literal[
    "none",
    "nearest",
    "bilinear",
    "bicubic",
    "lanczos",
    "lanczos+unsharp",
    "realesrgan-x4plus",
    "esrgan-slim",
    "esrgan-medium",
    "esrgan-thick",
]
AlignMode = Literal["none", "similarity", "ffhq"]
RunnerKind = Literal["threads", "processes", "dask"]


@dataclass(frozen=True)
class PathsSettings:
    raw: str
    interim: str
    scores: str
    reports: str
    tables: str
    database: str
    cache: str


@dataclass(frozen=True)
class IngestSettings:
    extensions: tuple[str, ...]
    max_pixels: int
    # image sheets: largest grey-level standard deviation of a line that counts as uniform
    # (a gutter between cells, a border or a cell's frame); see exprbench/sheets.py
    sheet_uniform_std: float = 6.0


@dataclass(frozen=True)
class UpscaleSettings:
    method: UpscaleMethod
    min_face_px: int
    factor: Literal["auto", 2, 4, 8]
    max_factor: Literal[2, 4, 8]
    detect_upsample: int


@dataclass(frozen=True)
class FacesSettings:
    upsample: int
    min_score: float
    align: AlignMode
    crop_size: int


@dataclass(frozen=True)
class ScoreSettings:
    scorers: tuple[str, ...]
    same_identity_threshold: float
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the seed study's weighting: lambda = 1 if the image's confidence >= tau, else it
    tau: float = 0.6
    # first N StyleGAN2 faces of npm fake-avatars 1.1.0 as impostors (exprbench.identity)
    impostor_gallery: int = 64

    def __post_init__(self) -> None:
        if not 0.0 < self.tau <= 1.0:
            raise ParamsError(f"params: score.tau must lie in (0, 1]; got {self.tau}")
        if not 0 <= self.impostor_gallery <= 263:
            raise ParamsError(
                f"params: score.impostor_gallery must be in [0, 263]; got {self.impostor_gallery}"
            )

    def options_for(self, scorer: str) -> dict[str, Any]:
        return dict(self.options.get(scorer) or {})


@dataclass(frozen=True)
class ValidateSettings:
    max_failed_rows: int


@dataclass(frozen=True)
class ReportSettings:
    thumb_px: int
    min_n: int  # fewer images than this: a value is shown grey, never coloured or ranked
    sheet_page_size: int = 200  # images per contact-sheet page; more: page files, linked

    def __post_init__(self) -> None:
        if self.min_n < 1:
            raise ParamsError(f"params: report.min_n must be at least 1; got {self.min_n}")
        if self.sheet_page_size < 1:
            raise ParamsError(
                f"params: report.sheet_page_size must be at least 1; got {self.sheet_page_size}"
            )


DEFAULT_MEMORY_LIMIT = "48MB"  # params duckdb.memory_limit


@dataclass(frozen=True)
class DuckdbSettings:
    """Bounds of every DuckDB database the stages open (aggregate, report, compare): each
    holds at most `memory_limit` and spills to disk beyond it."""

    memory_limit: str = DEFAULT_MEMORY_LIMIT  # DuckDB's memory_limit, e.g. 512MB, 4GB
    # each thread keeps buffers of its own: more threads are faster and need a larger
    # memory_limit (the stages' queries pass at 48MB with 1 thread at 1M-3M score rows)
    threads: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ParamsError(
                f"params: duckdb.threads must be an integer >= 1; got {self.threads!r}"
            )


@dataclass(frozen=True)
class UncertaintySettings:
    """The seeded hierarchical bootstrap of every table mean (exprbench.uncertainty)."""

    seed: int
    resamples: int  # 0: no bootstrap intervals (the t-intervals remain)

    def __post_init__(self) -> None:
        if self.resamples < 0:
            raise ParamsError(
                f"params: uncertainty.resamples must be at least 0; got {self.resamples}"
            )


@dataclass(frozen=True)
class CompareSettings:
    """The regression rule of `exprbench compare` (exprbench.compare.RegressionRule)."""

    metrics: tuple[str, ...]  # metric columns watched (MetricSpec columns of the scores file)
    min_delta: float  # worse by more than this, in the metric's units and better direction
    interval_excludes_zero: bool  # ... and the paired bootstrap 95% interval excludes 0

    def __post_init__(self) -> None:
        if self.min_delta < 0:
            raise ParamsError(f"params: compare.min_delta must be at least 0; got {self.min_delta}")


@dataclass(frozen=True)
class ResolutionSettings:
    sizes: tuple[int, ...]
    crop_px: int
    methods: tuple[UpscaleMethod, ...]
    scorers: tuple[str, ...]
    max_faces: int


@dataclass(frozen=True)
class RunnerSettings:
    """How the per-image stages (upscale, faces, score) map over their images
    (tasks/runner.py): batches of `batch_size` images, run by `workers` threads, processes,
    or Dask workers (a LocalCluster of `workers` processes, or the cluster at `address`)."""

    kind: RunnerKind = "threads"
    workers: int = 1
    batch_size: int = 32
    address: str | None = None  # a Dask scheduler, e.g. tcp://10.0.0.5:8786 (kind: dask)

    def __post_init__(self) -> None:
        for key in ("workers", "batch_size"):
            if getattr(self, key) < 1:
                raise ParamsError(
                    f"params: runner.{key} must be at least 1; got {getattr(self, key)}"
                )
        if self.address is not None and self.kind != "dask":
            raise ParamsError(
                f"params: runner.address is a Dask scheduler; set runner.kind to dask "
                f"(got kind {self.kind!r})"
            )


def _check(value: Any, kind: Any, key: str) -> Any:
    """`value` converted to `kind` (lists become tuples), or ParamsError naming `key`."""
    origin = get_origin(kind)
    if kind is Any:
        return value
    if kind is type(None):
        if value is None:
            return None
        raise ParamsError(f"params: {key} must be null; got {value!r}")
    if origin is Literal:
        allowed = get_args(kind)
        if value in allowed and not isinstance(value, bool):
            return value
        raise ParamsError(
            f"params: {key} must be one of {', '.join(map(str, allowed))}; got {value!r}"
        )
    if origin is tuple:
        item_kind = get_args(kind)[0]
        if not isinstance(value, list | tuple):
            raise ParamsError(f"params: {key} must be a list; got {value!r}")
        return tuple(_check(item, item_kind, f"{key}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ParamsError(f"params: {key} must be a mapping; got {value!r}")
        _, value_kind = get_args(kind)
        return {str(k): _check(v or {}, value_kind, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(kind):
            try:
                return _check(value, option, key)
            except ParamsError as error:
                errors.append(str(error))
        raise ParamsError("; or ".join(errors))
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ParamsError(f"params: {key} must be a number; got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ParamsError(f"params: {key} must be true or false; got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ParamsError(f"params: {key} must be a whole number; got {value!r}")
    if kind is str:
        if isinstance(value, str) and value:
            return value
        raise ParamsError(f"params: {key} must be a non-empty string; got {value!r}")
    raise TypeError(f"settings: no check for {kind!r} ({key})")


def _section(cls: type, data: Any, name: str) -> Any:
    if not isinstance(data, dict):
        raise ParamsError(f"params: section {name!r} must be a mapping; got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ParamsError(
            f"params: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
            f"{name} takes {', '.join(sorted(known))}"
        )
    values = {}
    for item in fields(cls):
        key = f"{name}.{item.name}"
        if item.name not in data:
            if item.default is MISSING and item.default_factory is MISSING:
                raise ParamsError(f"params: missing key {key!r}")
            continue
        values[item.name] = _check(data[item.name], hints[item.name], key)
    return cls(**values)


@dataclass(frozen=True)
class Settings:
    """Every section of params.yaml (the resolution study's is optional)."""

    paths: PathsSettings
    ingest: IngestSettings
    upscale: UpscaleSettings
    faces: FacesSettings
    score: ScoreSettings
    validate: ValidateSettings
    report: ReportSettings
    uncertainty: UncertaintySettings
    compare: CompareSettings
    resolution: ResolutionSettings | None = None
    runner: RunnerSettings = RunnerSettings()  # optional section: these defaults
    duckdb: DuckdbSettings = DuckdbSettings()  # optional section: these defaults

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Settings:
        if not isinstance(params, dict):
            raise ParamsError(f"params: expected a mapping at the top level; got {params!r}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ParamsError(
                f"params: unknown section(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        values = {}
        for item in fields(cls):
            kind = hints[item.name]
            if get_origin(kind) in (typing.Union, types.UnionType):
                kind = next(k for k in get_args(kind) if k is not type(None))
                if item.name not in params:
                    continue
            elif item.name not in params and item.default is not MISSING:
                continue  # a section with defaults may be left out
            elif item.name not in params:
                raise ParamsError(f"params: missing section {item.name!r}")
            values[item.name] = _section(kind, params[item.name], item.name)
        return cls(**values)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The raw mapping of a params file (Settings.from_params checks it)."""
    source = Path(path)
    if not source.is_file():
        raise ParamsError(f"{source}: params file not found (run from the project root)")
    data = yaml.safe_load(source.read_text()) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level")
    return data


def load_settings(path: str | Path = "params.yaml") -> Settings:
    """Parse and check a params file once; errors name the file and the key."""
    try:
        return Settings.from_params(load_params(path))
    except ParamsError as error:
        raise ParamsError(f"{path}: {error}") from error
