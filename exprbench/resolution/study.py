"""The resolution study itself: crop, degrade, upscale back, rescore, summarise.

See the package docstring (`exprbench.resolution`) for the method.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from exprbench import upscale as up
from exprbench.align import align
from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.resolution.fidelity import psnr, ssim
from exprbench.resolution.page import montage
from exprbench.scorers.base import OUTPUT_METRICS, ScoreOutput, Scorer, ScorerFoundNoFaceError
from exprbench.scoring import output_columns

DEFAULT_CROP_PX = 192
DEFAULT_SIZES = (48, 24)
DEFAULT_MARGIN = 1.6
MIN_CROP_PX = 16
WARMUP_PX = 16  # side of the untimed warm-up input of each (method, factor)


UpscaleFn = Callable[[np.ndarray, int], np.ndarray]
Row = dict[str, Any]

# Columns a row has for every scorer (None where the scorer has no such output), in order:
# every per-image metric of the recognizers' output kinds (those measured against a
# neutral image have no meaning here: the study compares with its own full-resolution
# crop), then the raw outputs.
_OUTPUT_KEYS = (
    *(
        spec.column
        for kind in ("expression", "age", "gender", "identity")
        for spec in OUTPUT_METRICS[kind]
        if spec.stored and not spec.relative_to_neutral
    ),
    "top1",
    "gender",
    "descriptor",
)
ROW_COLUMNS: tuple[str, ...] = (
    "method",
    "method_description",
    "size",
    "factor",
    "crop_px",
    "margin",
    "face_px",
    "crop_square",
    "scorer",
    "scorer_version",
    "face_found",
    "ref_face_found",
    "note",
    "psnr",
    "ssim",
    "upscale_seconds",
    "target",
    "target_source",
    *_OUTPUT_KEYS,
    *(f"ref_{k}" for k in _OUTPUT_KEYS),
    "top1_agrees",
    "delta_target_prob",
    "identity_distance",
    "age_delta",
    "gender_agrees",
)


# --------------------------------------------------------------------------- images


def context_crop(
    image: np.ndarray,
    face: Face,
    crop_px: int = DEFAULT_CROP_PX,
    margin: float = DEFAULT_MARGIN,
) -> tuple[np.ndarray, Face, list[int]]:
    """(crop, face in crop coordinates, [x0, y0, side] of the square in the image).

    The square is `margin` times the longer box side about the box centre (align "none"
    with the grown box: edge-replicated outside the image, INTER_AREA when shrinking).
    """
    if not (isinstance(margin, int | float) and math.isfinite(margin) and margin >= 1.0):
        raise ValueError(f"context_crop: margin must be a number >= 1, got {margin!r}")
    x, y, w, h = (float(v) for v in face.box)
    side = margin * max(w, h)
    grown = replace(face, box=(x + w / 2 - side / 2, y + h / 2 - side / 2, side, side))
    crop = align(image, grown, "none", crop_px)
    # Box corners are pixel *starts*: the left edge x - 0.5 maps to (new x) - 0.5.
    corner = crop.map_points(np.array([[x - 0.5, y - 0.5]]))[0] + 0.5
    scale = float(crop.matrix[0, 0])
    crop_face = Face(
        box=(float(corner[0]), float(corner[1]), w * scale, h * scale),
        score=face.score,
        landmarks5=crop.map_points(face.landmarks5).astype(np.float32),
        landmarks68=crop.map_points(face.landmarks68).astype(np.float32),
    )
    return crop.image, crop_face, [int(v) for v in crop.details["square"]]


def degrade(crop: np.ndarray, size: int) -> np.ndarray:
    """The crop shrunk to size x size by area averaging (cv2 INTER_AREA)."""
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))


def check_sizes(crop_px: int, sizes: Iterable[int]) -> list[tuple[int, int]]:
    """[(size, factor)] for sizes that divide crop_px by 2, 4 or 8; ValueError otherwise."""
    if isinstance(crop_px, bool) or not isinstance(crop_px, int) or crop_px < MIN_CROP_PX:
        raise ValueError(f"crop_px must be an integer >= {MIN_CROP_PX}, got {crop_px!r}")
    checked: list[tuple[int, int]] = []
    for size in sizes:
        ok = isinstance(size, int) and not isinstance(size, bool) and size > 0
        if not ok or crop_px % size or crop_px // size not in up.ALLOWED_FACTORS:
            allowed = ", ".join(str(crop_px // f) for f in up.ALLOWED_FACTORS)
            raise ValueError(
                f"degraded size {size!r} must be crop_px ({crop_px}) / 2, 4 or 8: one of {allowed}"
            )
        if size in (s for s, _ in checked):
            raise ValueError(f"degraded size {size} is listed twice")
        checked.append((size, crop_px // size))
    if not checked:
        raise ValueError("no degraded sizes given")
    return checked


def _resolve_methods(methods: Sequence[str] | Mapping[str, UpscaleFn]) -> dict[str, UpscaleFn]:
    if isinstance(methods, Mapping):
        resolved = dict(methods)
    else:
        if isinstance(methods, str):
            raise ValueError("methods must be a list of method names, not one string")
        unknown = [m for m in methods if m not in up.METHODS]
        if unknown:
            raise ValueError(
                f"unknown upscaling methods {unknown}; known: {', '.join(sorted(up.METHODS))}"
            )
        if len(set(methods)) != len(methods):
            raise ValueError(f"a method is listed twice: {list(methods)}")
        resolved = {m: up.METHODS[m] for m in methods}
    if not resolved:
        raise ValueError("no upscaling methods given")
    return resolved


def _describe(method: str, factor: int) -> str:
    if method in up.METHODS:
        return up.describe(method, factor)
    return f"{method} x{factor} (custom function)"


def _timed_upscale(
    method: str, fn: UpscaleFn, small: np.ndarray, factor: int, target: int
) -> tuple[np.ndarray, float]:
    if method in up.SR_METHOD_NAMES:  # untimed warm-up: loads the model once
        fn(np.ascontiguousarray(small[:WARMUP_PX, :WARMUP_PX]), factor)
    start = time.perf_counter()
    big = fn(small, factor)
    seconds = time.perf_counter() - start
    big = np.ascontiguousarray(np.asarray(big, dtype=np.uint8))
    if big.shape != (target, target, 3):
        raise ValueError(
            f"upscaling {small.shape[:2]} x{factor} gave shape {big.shape}, "
            f"expected ({target}, {target}, 3)"
        )
    return big, seconds


# --------------------------------------------------------------------------- study


@dataclass
class FaceStudy:
    """Everything one face's study made: rows and the images (for montages).

    original: the crop; crop_face: the Face in crop coordinates; degraded: size -> d x d
    image; upscaled: (method, size) -> crop_px image.
    """

    rows: list[Row]
    original: np.ndarray
    crop_face: Face
    degraded: dict[int, np.ndarray] = field(default_factory=dict)
    upscaled: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def montage(self, labels: bool | Sequence[str] = True) -> np.ndarray:
        return montage(self.original, self.degraded, self.upscaled, labels)


def _score(scorer: Scorer, image: np.ndarray, face: Face) -> tuple[ScoreOutput | None, str | None]:
    try:
        return scorer.score(image, face), None
    except ScorerFoundNoFaceError as error:
        return None, f"no face: {error}"


def _columns(output: ScoreOutput | None, target: str | None) -> Row:
    """The _OUTPUT_KEYS of one output (None where absent); target_prob only with a target."""
    columns = dict.fromkeys(_OUTPUT_KEYS)
    if output is not None:
        found = output_columns(output, target or NEUTRAL, None)
        columns.update({k: v for k, v in found.items() if k in columns})
        if target is None:
            columns["target_prob"] = None
    return columns


def _compare(row: Row) -> Row:
    """Per-row comparisons of the upscaled outputs with the reference outputs."""
    both = row["face_found"] and row["ref_face_found"]

    def has(key: str) -> bool:
        return both and row[key] is not None and row[f"ref_{key}"] is not None

    out: Row = dict.fromkeys(
        ("top1_agrees", "delta_target_prob", "identity_distance", "age_delta", "gender_agrees")
    )
    if has("top1"):
        out["top1_agrees"] = row["top1"] == row["ref_top1"]
        out["delta_target_prob"] = row["target_prob"] - row["ref_target_prob"]
    if has("descriptor"):
        diff = np.asarray(row["descriptor"], np.float64) - np.asarray(row["ref_descriptor"])
        out["identity_distance"] = float(np.linalg.norm(diff))
    if has("age"):
        out["age_delta"] = row["age"] - row["ref_age"]
    if has("gender"):
        out["gender_agrees"] = row["gender"] == row["ref_gender"]
    return out


def analyse_face(
    image: np.ndarray,
    face: Face,
    scorers: Mapping[str, Scorer],
    methods: Sequence[str] | Mapping[str, UpscaleFn] = tuple(up.METHODS),
    sizes: Sequence[int] = DEFAULT_SIZES,
    crop_px: int = DEFAULT_CROP_PX,
    *,
    margin: float = DEFAULT_MARGIN,
    expression: str | None = None,
) -> FaceStudy:
    """Run the study on one face (see the module docstring); rows plus the images.

    `.rows`: one row per (method, degraded size, scorer), columns ROW_COLUMNS. Raw outputs
    (p_*, top1, target_prob, age, gender, descriptor as a list) and the reference's
    (ref_*); comparisons top1_agrees, delta_target_prob (upscaled - reference),
    identity_distance (descriptor L2), age_delta (upscaled - reference), gender_agrees,
    each None unless both the upscaled and the reference crop had a face and the scorer has
    that output; psnr (dB), ssim, upscale_seconds, method_description, face_px (the face
    box's longer side at the degraded size).

    methods: names from exprbench.upscale.METHODS, or name -> fn(rgb, factor) (e.g. a test
    double). expression: the requested expression, whose probability is target_prob; None
    makes each expression scorer's full-resolution top-1 the target (target_source says
    which). Raises ValueError for bad sizes, methods, scorers or expression.
    """
    image = check_rgb_image(image, "analyse_face")
    pairs = check_sizes(crop_px, sizes)
    fns = _resolve_methods(methods)
    if not scorers:
        raise ValueError("no scorers given")
    if expression is not None and expression not in EXPRESSIONS:
        raise ValueError(f"expression must be one of {', '.join(EXPRESSIONS)}, got {expression!r}")

    original, crop_face, square = context_crop(image, face, crop_px, margin)
    study = FaceStudy(rows=[], original=original, crop_face=crop_face)

    references: dict[str, tuple[Row, str | None, str | None, str | None]] = {}
    for name, scorer in scorers.items():
        output, note = _score(scorer, original, crop_face)
        target, source = None, None
        if "expression" in getattr(scorer, "outputs", ()):
            if expression is not None:
                target, source = expression, "requested"
            else:
                target = _columns(output, None)["top1"]
                source = None if target is None else "reference top-1"
        references[name] = (_columns(output, target), note, target, source)

    for size, factor in pairs:
        small = degrade(original, size)
        study.degraded[size] = small
        for method, fn in fns.items():
            big, seconds = _timed_upscale(method, fn, small, factor, crop_px)
            study.upscaled[(method, size)] = big
            image_columns = {
                "method": method,
                "method_description": _describe(method, factor),
                "size": size,
                "factor": factor,
                "crop_px": crop_px,
                "margin": float(margin),
                "face_px": max(crop_face.box[2], crop_face.box[3]) * size / crop_px,
                "crop_square": list(square),
                "psnr": psnr(original, big),
                "ssim": ssim(original, big),
                "upscale_seconds": seconds,
            }
            for name, scorer in scorers.items():
                ref_columns, ref_note, target, source = references[name]
                output, note = _score(scorer, big, crop_face)
                columns = _columns(output, target)
                notes = [n for n in (note, ref_note and f"reference {ref_note}") if n]
                row: Row = {
                    **image_columns,
                    "scorer": name,
                    "scorer_version": str(getattr(scorer, "version", "")),
                    "face_found": output is not None,
                    "ref_face_found": ref_note is None,
                    "note": "; ".join(notes) or None,
                    "target": target,
                    "target_source": source,
                    **columns,
                    **{f"ref_{k}": v for k, v in ref_columns.items()},
                }
                row.update(_compare(row))
                study.rows.append({key: row[key] for key in ROW_COLUMNS})
    return study


# --------------------------------------------------------------------------- summary

SUMMARY_KEYS = ("method", "size", "factor", "scorer")


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarise(rows: Iterable[Row]) -> list[Row]:
    """One row per (method, size, factor, scorer), in order of first appearance.

    n: rows (faces); n_scored: rows where the scorer found the face in both the
    reference and the upscaled crop; face_found_rate: share of rows whose reference had
    a face where the upscaled crop had one too; top1_agreement, gender_agreement: share
    of scored rows agreeing with the full-resolution prediction; top1_kept_rate: share of
    rows with a full-resolution top-1 whose upscaled crop had a face *and* agreed (a lost
    face counts against it); mean_abs_delta_target_prob
    and mean_delta_target_prob; mean_identity_distance; mean_abs_age_delta and
    mean_age_delta; mean_psnr, mean_ssim, mean_seconds over all rows. A mean with no
    values is None.
    """
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in SUMMARY_KEYS), []).append(row)
    summary = []
    for key, members in groups.items():

        def values(column: str, of: list[Row] = members) -> list[float]:
            return [float(r[column]) for r in of if r.get(column) is not None]

        with_ref = [r for r in members if r["ref_face_found"]]
        with_ref_top1 = [r for r in with_ref if r.get("ref_top1") is not None]
        deltas = values("delta_target_prob")
        ages = values("age_delta")
        summary.append(
            {
                **dict(zip(SUMMARY_KEYS, key, strict=True)),
                "method_description": members[0]["method_description"],
                "n": len(members),
                "n_scored": sum(bool(r["face_found"] and r["ref_face_found"]) for r in members),
                "face_found_rate": _mean([float(r["face_found"]) for r in with_ref]),
                "top1_agreement": _mean(values("top1_agrees")),
                "top1_kept_rate": _mean([float(r["top1_agrees"] is True) for r in with_ref_top1]),
                "mean_abs_delta_target_prob": _mean([abs(v) for v in deltas]),
                "mean_delta_target_prob": _mean(deltas),
                "mean_identity_distance": _mean(values("identity_distance")),
                "mean_abs_age_delta": _mean([abs(v) for v in ages]),
                "mean_age_delta": _mean(ages),
                "gender_agreement": _mean(values("gender_agrees")),
                "mean_psnr": _mean(values("psnr")),
                "mean_ssim": _mean(values("ssim")),
                "mean_seconds": _mean(values("upscale_seconds")),
            }
        )
    return summary
