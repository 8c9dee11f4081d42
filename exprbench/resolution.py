"""The resolution study: does a face degraded to FER2013's size (48 px) or below (24 px),
then upscaled back, still get the expressions, identity and age of the original?

Per face (`analyse_face`):

1. context crop: the detector box grown to a square `margin` (1.6) times its longer side
   about its centre, cut with `align(..., "none", crop_px)` (crop_px = 192 by default); the
   5 and 68 landmarks and the box are mapped into the crop with the crop's matrix, giving a
   `Face` in crop coordinates. This crop is the full-resolution reference: every scorer
   scores it once (the "reference" outputs).
2. degrade: the crop is shrunk to d x d for each d in `sizes` with cv2 INTER_AREA (an
   exact box average, since crop_px / d is an integer). Note that d is the side of the
   *crop*: the face box in it is d / margin px (30 px at d = 48 with the default margin).
3. upscale back: every method of `exprbench.upscale.METHODS` at factor f = crop_px / d,
   which must be 2, 4 or 8. The result is crop_px x crop_px again, pixel-centre aligned
   with the crop (Pillow, cv2 and the SR ports all resample about pixel centres), so the
   crop-space Face applies unchanged (the factor ratio d * f / crop_px is exactly 1).
   Each call is timed with time.perf_counter; a learned method first gets an untimed
   warm-up call on a 16 px piece, so loading its model is not counted as upscaling time.
4. rescore: every scorer scores every upscaled crop with the crop-space Face. A scorer
   that raises ScorerFoundNoFaceError (faceapi: its own detector found no matching face)
   gives a row with face_found = False and the message as its note; nothing is raised.
5. image fidelity against the crop: `psnr` and `ssim` (Wang et al. 2004: Gaussian window
   11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, mean over the 'valid' window positions) on
   the BT.601 luminance Y = 0.299 R + 0.587 G + 0.114 B (float, range 0-255).

`analyse_face(...).rows` holds one row per (method, size, scorer) with the raw and reference
outputs and the per-row comparisons; `summarise` averages them per (method, size,
factor, scorer). `montage` draws original / degraded / each method per size, and
`render_study_page` writes the self-contained HTML page. Everything except the
`upscale_seconds` column is deterministic; nothing here reads or writes files except
`render_study_page`.
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from exprbench import upscale as up
from exprbench.align import align
from exprbench.faces import check_rgb_image
from exprbench.fileio import atomic_write_text
from exprbench.geometry import Face
from exprbench.labels import EXPRESSIONS, NEUTRAL
from exprbench.report import _environment, _fmt
from exprbench.scorers.base import ScoreOutput, Scorer, ScorerFoundNoFaceError
from exprbench.scoring import output_columns

TEMPLATE_NAME = "resolution.html.j2"
DEFAULT_CROP_PX = 192
DEFAULT_SIZES = (48, 24)
DEFAULT_MARGIN = 1.6
MIN_CROP_PX = 16
WARMUP_PX = 16  # side of the untimed warm-up input of each (method, factor)

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 255.0
BT601 = np.array([0.299, 0.587, 0.114])

UpscaleFn = Callable[[np.ndarray, int], np.ndarray]
Row = dict[str, Any]

# Columns a row has for every scorer (None where the scorer has no such output), in order.
_OUTPUT_KEYS = (
    *(f"p_{e}" for e in EXPRESSIONS),
    "top1",
    "top1_prob",
    "target_prob",
    "age",
    "gender",
    "gender_prob",
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


# --------------------------------------------------------------------------- image fidelity


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B of a uint8 RGB image, float64 0-255."""
    return np.asarray(rgb, dtype=np.float64) @ BT601


def _pair(a: np.ndarray, b: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    a = check_rgb_image(a, where)
    b = check_rgb_image(b, where)
    if a.shape != b.shape:
        raise ValueError(f"{where}: images differ in shape, {a.shape} vs {b.shape}")
    return luminance(a), luminance(b)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of `test` against `reference` on luminance Y,
    peak 255; inf when they are identical."""
    x, y = _pair(reference, test, "psnr")
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of `size` taps (MATLAB fspecial('gaussian') along one axis)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with taps along both axes."""
    n = len(taps)
    rows = np.lib.stride_tricks.sliding_window_view(image, n, axis=1) @ taps
    return np.lib.stride_tricks.sliding_window_view(rows, n, axis=0) @ taps


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) of two uint8 RGB images of the
    same shape, on BT.601 luminance: Gaussian window 11 x 11, sigma 1.5, K1 0.01,
    K2 0.03, L 255, population (weighted) variances, averaged over the window positions
    that lie wholly inside the image."""
    x, y = _pair(reference, test, "ssim")
    if min(x.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim: images must be at least {SSIM_WINDOW} px, got {x.shape}")
    g = gaussian_window()
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x**2
    var_y = _filter_valid(y * y, g) - mu_y**2
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())


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


# --------------------------------------------------------------------------- montage

MONTAGE_GAP = 4
MONTAGE_HEADER = 22
MONTAGE_ROW_LABEL = 64
_BACKGROUND = 255
_MISSING = 200
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _put_text(canvas: np.ndarray, text: str, x: int, y: int, width: int, height: int) -> None:
    """Black text centred in the box (x, y, width, height), shrunk to fit its width."""
    scale = 0.45
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    if tw > width - 4:
        scale *= (width - 4) / tw
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    origin = (x + max(0, (width - tw) // 2), y + (height + th) // 2)
    cv2.putText(canvas, text, origin, _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def montage(
    original: np.ndarray,
    degraded_by_size: Mapping[int, np.ndarray],
    upscaled_by_method_size: Mapping[tuple[str, int], np.ndarray],
    labels: bool | Sequence[str] = True,
) -> np.ndarray:
    """A grid image, uint8 RGB: one row per degraded size (in the mapping's order),
    columns original / degraded (nearest-enlarged to the original's size) / each method
    (in order of first appearance in upscaled_by_method_size). Cells are the original's
    size, separated by MONTAGE_GAP px of white; a (method, size) with no image is grey.

    labels: True draws column headings (original, degraded, method names) in a
    MONTAGE_HEADER px strip and "<size> px" in a MONTAGE_ROW_LABEL px strip left of each
    row; a sequence gives the column headings instead (2 + number of methods); False
    draws neither strip.
    """
    original = check_rgb_image(original, "montage")
    cell = original.shape[0]
    if original.shape[1] != cell:
        raise ValueError(f"montage: the original must be square, got {original.shape}")
    sizes = list(degraded_by_size)
    methods = list(dict.fromkeys(m for m, _ in upscaled_by_method_size))
    if labels is True:
        headings = ["original", "degraded", *methods]
    elif labels is False:
        headings = []
    else:
        headings = [str(text) for text in labels]
        if len(headings) != 2 + len(methods):
            raise ValueError(
                f"montage: {len(headings)} labels for {2 + len(methods)} columns"
                f" (original, degraded, {', '.join(methods)})"
            )
    left = MONTAGE_ROW_LABEL if headings else 0
    top = MONTAGE_HEADER if headings else 0
    columns = 2 + len(methods)
    step = cell + MONTAGE_GAP
    height = top + len(sizes) * step - MONTAGE_GAP if sizes else top
    width = left + columns * step - MONTAGE_GAP
    canvas = np.full((max(height, 1), width, 3), _BACKGROUND, dtype=np.uint8)
    for j, text in enumerate(headings):
        _put_text(canvas, text, left + j * step, 0, cell, top)
    for i, size in enumerate(sizes):
        y = top + i * step
        small = check_rgb_image(degraded_by_size[size], "montage")
        enlarged = cv2.resize(small, (cell, cell), interpolation=cv2.INTER_NEAREST)
        tiles = [original, enlarged]
        for method in methods:
            big = upscaled_by_method_size.get((method, size))
            if big is None:
                tiles.append(np.full((cell, cell, 3), _MISSING, dtype=np.uint8))
            elif big.shape != original.shape:
                raise ValueError(
                    f"montage: {method} at {size} px has shape {big.shape}, "
                    f"expected {original.shape}"
                )
            else:
                tiles.append(big)
        for j, tile in enumerate(tiles):
            canvas[y : y + cell, left + j * step : left + j * step + cell] = tile
        if headings:
            _put_text(canvas, f"{size} px", 0, y, left, cell)
    return canvas


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class _Column:
    key: str
    heading: str
    better: str | None  # "high", "low" or None (not highlighted)
    digits: int = 2
    sign: bool = False
    scale: float = 1.0  # shown as value * scale


RECOGNITION_COLUMNS = (
    _Column("n", "faces", None, 0),
    _Column("n_scored", "scored", None, 0),
    _Column("face_found_rate", "face found", "high"),
    _Column("top1_agreement", "top-1 agreement", "high"),
    _Column("top1_kept_rate", "top-1 kept", "high"),
    _Column("mean_abs_delta_target_prob", "mean |Δ target p|", "low", 3),
    _Column("mean_delta_target_prob", "mean Δ target p", None, 3, True),
    _Column("mean_identity_distance", "mean identity distance", "low", 3),
    _Column("mean_abs_age_delta", "mean |age Δ|", "low", 1),
    _Column("mean_age_delta", "mean age Δ", None, 1, True),
    _Column("gender_agreement", "gender agreement", "high"),
)
FIDELITY_COLUMNS = (
    _Column("mean_psnr", "PSNR (dB)", "high"),
    _Column("mean_ssim", "SSIM", "high", 3),
    _Column("mean_seconds", "ms", "low", 1, scale=1000.0),
)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _best(rows: list[Row], column: _Column) -> float | None:
    values = [v for v in (_number(r.get(column.key)) for r in rows) if v is not None]
    if column.better is None or len(values) < 2 or min(values) == max(values):
        return None
    return max(values) if column.better == "high" else min(values)


def _cell_text(value: Any, column: _Column) -> str:
    number = _number(value)
    if number is None:
        return "–"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if column.digits == 0:
        return str(int(number))
    return _fmt(number * column.scale, column.digits, column.sign)


def _table(rows: list[Row], columns: Sequence[_Column]) -> Row:
    """Rows grouped by size; the best value per column within a size is marked."""
    used = [c for c in columns if any(_number(r.get(c.key)) is not None for r in rows)]
    groups = []
    for size in dict.fromkeys(r["size"] for r in rows):
        members = [r for r in rows if r["size"] == size]
        best = {c.key: _best(members, c) for c in used}
        lines = []
        for row in members:
            cells = [
                {
                    "text": _cell_text(row.get(c.key), c),
                    "best": best[c.key] is not None and _number(row.get(c.key)) == best[c.key],
                }
                for c in used
            ]
            lines.append(
                {
                    "method": row["method"],
                    "description": row["method_description"],
                    "factor": row["factor"],
                    "cells": cells,
                }
            )
        groups.append({"size": size, "rows": lines})
    return {"headings": [c.heading for c in used], "groups": groups}


def png_data_uri(rgb: np.ndarray) -> str:
    """A lossless PNG data URI of a uint8 RGB array (montages: JPEG would blur the very
    pixels being compared; report.thumbnail_data_uri reads a file path, not an array)."""
    buffer = io.BytesIO()
    Image.fromarray(check_rgb_image(rgb, "png_data_uri"), "RGB").save(
        buffer, format="PNG", optimize=True
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_study_page(
    summary_rows: Sequence[Row],
    montages: Mapping[str, np.ndarray],
    run_info: Mapping[str, Any],
    out_html: Path,
) -> Path:
    """Write the resolution study page to `out_html` (atomically) and return its path.

    One image-fidelity table (method x size: PSNR, SSIM, seconds, taken from the first
    scorer's summary rows, which cover the same faces) and one recognition table per
    scorer (method x size, the columns that scorer fills); in each, the best value per
    column among the methods at the same size is highlighted. Then one montage per
    subject label. Self-contained: inline CSS, PNG data URIs, nothing external.
    """
    rows = [dict(r) for r in summary_rows]
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    fidelity_rows = [r for r in rows if scorers and r["scorer"] == scorers[0]]
    context = {
        "timestamp": str(
            run_info.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds")
        ),
        "info": {str(k): v for k, v in run_info.items() if k != "timestamp"},
        "fidelity": _table(fidelity_rows, FIDELITY_COLUMNS),
        "recognition": [
            {
                "scorer": name,
                **_table([r for r in rows if r["scorer"] == name], RECOGNITION_COLUMNS),
            }
            for name in scorers
        ],
        "montages": [{"label": str(k), "src": png_data_uri(v)} for k, v in montages.items()],
    }
    html = _environment().get_template(TEMPLATE_NAME).render(**context)
    atomic_write_text(out_html, html)
    return out_html
