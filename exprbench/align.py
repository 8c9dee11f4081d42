"""Face alignment for the recognizers: `none`, `similarity` (5 points) or `ffhq` (68 points).

`align(image, face, mode, size)` returns an `AlignedCrop`: the size x size uint8 RGB crop,
the mode, and the 2 x 3 affine `matrix` that maps image pixel centres (x, y) to crop pixel
centres, so landmarks can be carried into the crop (`AlignedCrop.map_points`). Everything
is pure: no I/O, no model, the same inputs give the same bytes.

Coordinates: pixel centres are integers (the convention of dlib landmarks and
cv2.warpAffine); pixel (i, j) covers [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5].

Modes
-----
none
    The detector box, grown to a square about its centre (side = the longer box side,
    rounded to whole pixels), cut out with edge-replicated borders where it leaves the
    image, and resized to size (cv2 INTER_AREA when shrinking, bilinear when enlarging).
    No rotation.

similarity
    The least-squares similarity transform (Umeyama 1991, no reflection) that takes the
    5 dlib landmarks onto `similarity_template(size, padding)`, applied with
    cv2.warpAffine (bilinear, BORDER_REPLICATE). The template is dlib's own 5-point chip
    template (`dlib.get_face_chip_details`, dlib/image_transforms/interpolation.h), so with
    the default padding 0.25 this is the geometry of `dlib.get_face_chip(image, shape5, size)`
    (dlib's chip sits 0.3-0.8 px off it, dlib's own pixel convention), with a transform that is
    known and stored. The 5-point fit levels the eye corners only as far as the nose point
    lets it (0.1-2.9 degrees left on the demo photos, 6.5 on a head turned 45 degrees).
    Why this template and not the ArcFace 112 x 112 one: ArcFace's template is for eye
    centres, nose tip and mouth corners, points dlib's 5-point model does not give (it
    gives eye corners and the base of the nose); fitting them to each other would need
    guessed correspondences. Note: warpAffine does not prefilter, so a face many times
    larger than `size` aliases a little.

ffhq
    NVlabs' FFHQ crop (ffhq-dataset, download_ffhq.py, `recreate_aligned_images` with
    its defaults rotate_level=True, random_shift=0), re-implemented from its description:

    1. eye_left / eye_right = means of iBUG points 36-41 / 42-47, mouth = midpoint of
       points 48 and 54; eye_to_eye, eye_to_mouth.
    2. x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1], normalised, times
       max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|); y = x turned 90 degrees;
       c = eye_avg + 0.1 eye_to_mouth; quad = c -x -y, c -x +y, c +x +y, c +x -y.
    3. shrink: when shrink = floor(qsize / size / 2) > 1 (the quad is 4x the output size
       or more), Lanczos-downscale the image by that integer factor.
    4. crop to the quad's bounding box plus a border of max(rint(0.1 qsize), 3) px.
    5. pad (kept, NVlabs' `enable_padding`): where the quad leaves the image, reflect-pad by
       at least rint(0.3 qsize), blur the padding (Gaussian, sigma 0.02 qsize) and fade it
       to the per-channel median, exactly as NVlabs' mask formulas do.
    6. transform the quad to a transform_size square (PIL QUAD, bilinear) and, when
       transform_size > size, Lanczos-downscale to size.

    Kept as NVlabs has them: every step above, including the float32 blur/blend padding,
    the rint/floor/ceil roundings and the +0.5 handed to PIL's QUAD transform.
    Changed: the Gaussian blur of step 5 is cv2.GaussianBlur (kernel radius
    int(4 sigma + 0.5), BORDER_REFLECT) in place of scipy.ndimage.gaussian_filter
    (truncate 4.0, mode 'reflect'): the same kernel and border rule, without needing scipy;
    transform_size defaults to 4 x size (NVlabs: 4096 for 1024, the same 4x supersampling)
    instead of a fixed 4096; the shrunk size is kept at >= 1 px (NVlabs would crash).
    The eye line comes out level when eye_to_mouth is perpendicular to eye_to_eye; in
    general the crop's x axis is the sum of eye_to_eye and the eye-mouth line turned 90
    degrees, so the eye line keeps the share |eye_to_mouth| / (|eye_to_eye| +
    |eye_to_mouth|), about half, of their skew (`ffhq_geometry(...).residual_tilt_deg`).
    Canonical positions: the crop's centre (size / 2 - 0.5) is c; when the eyes set the
    scale (2.0 |eye_to_eye| >= 1.8 |eye_to_mouth|, most faces) the eyes are size / 4 apart,
    and their midpoint sits 0.1 |eye_to_mouth| (scaled) above the centre, i.e. at
    y = size (0.5 - 0.025 |eye_to_mouth| / |eye_to_eye|) - 0.5, between 0.472 and 0.5 of
    the size (`ffhq_geometry(...).eye_targets(size)` gives both eye centres).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

import cv2
import numpy as np
from PIL import Image

from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.settings import AlignMode

ALIGN_MODES: tuple[str, ...] = get_args(AlignMode)  # declared with the faces.align param

MIN_SIZE = 8  # smallest output side accepted, in px
MIN_FFHQ_QUAD_PX = 4.0  # smallest FFHQ quad side in the source image, in px

# dlib's 5-point chip template (dlib.get_face_chip_details), in dlib's landmark order:
# right eye outer, right eye inner, left eye outer, left eye inner, base of the nose;
# fractions of an unpadded chip.
DLIB_CHIP_TEMPLATE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
DEFAULT_SIMILARITY_PADDING = 0.25  # as dlib.get_face_chip's default


@dataclass(frozen=True, eq=False)
class AlignedCrop:
    """One aligned face crop and how it was made.

    image: size x size x 3 uint8 RGB. matrix: 2 x 3 float64 affine taking image pixel
    centres (x, y) to crop pixel centres. landmarks: how many landmarks (0 = the box)
    chose the crop. details: mode-specific facts (JSON-able), e.g. whether FFHQ padded.
    """

    image: np.ndarray
    mode: AlignMode
    size: int
    matrix: np.ndarray
    landmarks: int
    details: dict[str, Any] = field(default_factory=dict)

    def map_points(self, points: np.ndarray) -> np.ndarray:
        """Image (x, y) points, shape (n, 2), in crop coordinates (float64)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse_matrix(self) -> np.ndarray:
        """2 x 3 affine from crop pixel centres back to image pixel centres."""
        return cv2.invertAffineTransform(self.matrix)

    def describe(self) -> str:
        """One line for tables and reports, e.g. 'ffhq 256 px from 68 landmarks'."""
        if self.mode == "none":
            return f"none {self.size} px from the detector box (squared, no rotation)"
        text = f"{self.mode} {self.size} px from {self.landmarks} landmarks"
        if self.mode == "similarity":
            return text + f" (dlib chip template, padding {self.details['padding']:g})"
        return text + (" (blur-padded)" if self.details.get("padded") else "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record of how the crop was made (no pixels)."""
        return {
            "mode": self.mode,
            "size": self.size,
            "landmarks": self.landmarks,
            "matrix": [[float(v) for v in row] for row in self.matrix],
            "describe": self.describe(),
            **self.details,
        }


def align(image: np.ndarray, face: Face, mode: AlignMode, size: int) -> AlignedCrop:
    """Crop `face` out of the H x W x 3 uint8 RGB `image` as a size x size crop.

    mode: "none" (squared detector box), "similarity" (5 landmarks onto dlib's chip
    template, padding 0.25) or "ffhq" (NVlabs' FFHQ crop from the 68 landmarks). See the
    module docstring for each. Raises ValueError for a bad image, mode, size or face.
    """
    image = check_rgb_image(image, "align")
    if mode not in ALIGN_MODES:
        raise ValueError(f"align: mode must be one of {', '.join(ALIGN_MODES)}; got {mode!r}")
    size = _check_size(size, "align")
    if not isinstance(face, Face):
        raise ValueError(f"align: expected a Face, got {type(face).__name__}")
    if mode == "none":
        return align_box(image, face.box, size)
    if mode == "similarity":
        return align_similarity(image, face.landmarks5, size)
    return align_ffhq(image, face.landmarks68, size)


# --- none ---------------------------------------------------------------------------------


def align_box(image: np.ndarray, box: tuple[float, float, float, float], size: int) -> AlignedCrop:
    """The (x, y, w, h) box grown to a square about its centre, resized to size x size."""
    image = check_rgb_image(image, "align_box")
    size = _check_size(size, "align_box")
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.isfinite(values).all() or min(values[2:]) <= 0:
        raise ValueError(f"align_box: box must be finite (x, y, width > 0, height > 0), got {box}")
    x, y, w, h = values
    side = max(1, round(max(w, h)))
    x0 = round(x + w / 2 - side / 2)
    y0 = round(y + h / 2 - side / 2)
    height, width = image.shape[:2]
    if x0 >= width or y0 >= height or x0 + side <= 0 or y0 + side <= 0:
        raise ValueError(f"align_box: box {box} lies outside the {width} x {height} image")
    # cut [x0, x0 + side) x [y0, y0 + side), repeating edge pixels outside the image
    inside = image[max(y0, 0) : min(y0 + side, height), max(x0, 0) : min(x0 + side, width)]
    pads = (
        (max(-y0, 0), max(y0 + side - height, 0)),
        (max(-x0, 0), max(x0 + side - width, 0)),
        (0, 0),
    )
    square = np.pad(inside, pads, mode="edge") if any(any(p) for p in pads) else inside
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(np.ascontiguousarray(square), (size, size), interpolation=interpolation)
    scale = size / side  # cv2.resize: out + 0.5 = (in + 0.5) * scale
    matrix = np.array(
        [[scale, 0.0, (0.5 - x0) * scale - 0.5], [0.0, scale, (0.5 - y0) * scale - 0.5]]
    )
    return AlignedCrop(
        image=np.ascontiguousarray(crop, dtype=np.uint8),
        mode="none",
        size=size,
        matrix=matrix,
        landmarks=0,
        details={"square": [x0, y0, side]},
    )


# --- similarity ---------------------------------------------------------------------------


def similarity_template(size: int, padding: float = DEFAULT_SIMILARITY_PADDING) -> np.ndarray:
    """dlib's 5-point chip template for a size x size crop with `padding` (5, 2) float64.

    Same placement as dlib.get_face_chip_details: (padding + p) / (1 + 2 padding) * size.
    """
    return (padding + DLIB_CHIP_TEMPLATE_5) / (1.0 + 2.0 * padding) * float(size)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection)
    taking points src onto dst, both (n, 2); returns the 2 x 3 matrix (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = (src_c**2).sum() / len(src)
    if not var_src > 1e-12:
        raise ValueError("umeyama: the source points coincide")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) >= 0 else -1.0])
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / var_src)
    translation = mu_dst - scale * rotation @ mu_src
    return np.hstack([scale * rotation, translation[:, None]])


def align_similarity(
    image: np.ndarray,
    landmarks5: np.ndarray,
    size: int,
    padding: float = DEFAULT_SIMILARITY_PADDING,
) -> AlignedCrop:
    """5 dlib landmarks onto `similarity_template(size, padding)`, cv2.warpAffine bilinear."""
    image = check_rgb_image(image, "align_similarity")
    size = _check_size(size, "align_similarity")
    if not (np.isfinite(padding) and padding >= 0):
        raise ValueError(f"align_similarity: padding must be >= 0, got {padding}")
    points = _check_landmarks(landmarks5, 5, "align_similarity")
    spread = float(np.ptp(points, axis=0).max())
    if spread < 2.0:
        raise ValueError(
            f"align_similarity: the 5 landmarks span {spread:.2f} px; they do not describe a face"
        )
    matrix = umeyama(points, similarity_template(size, padding))
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return AlignedCrop(
        image=np.ascontiguousarray(crop, dtype=np.uint8),
        mode="similarity",
        size=size,
        matrix=matrix,
        landmarks=5,
        details={"padding": float(padding), "template": "dlib get_face_chip 5-point"},
    )


# --- ffhq ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FfhqGeometry:
    """NVlabs' FFHQ crop square for one face, in source-image pixel coordinates.

    quad: (4, 2) corners c -x -y, c -x +y, c +x +y, c +x -y (top-left, bottom-left,
    bottom-right, top-right of the crop); qsize: its side (2 |x|).
    """

    eye_left: np.ndarray  # image-left eye (iBUG 36-41: the person's right eye)
    eye_right: np.ndarray
    mouth: np.ndarray
    centre: np.ndarray
    x: np.ndarray
    y: np.ndarray
    quad: np.ndarray
    qsize: float

    @property
    def residual_tilt_deg(self) -> float:
        """Angle of the eye line in the crop (degrees, + is clockwise on screen)."""
        eye_to_eye = self.eye_right - self.eye_left
        angle = np.arctan2(eye_to_eye[1], eye_to_eye[0]) - np.arctan2(self.x[1], self.x[0])
        return float(np.degrees((angle + np.pi) % (2 * np.pi) - np.pi))

    def eye_targets(self, size: int) -> np.ndarray:
        """Where the two eye centres (image-left first) land in a size x size FFHQ crop,
        from the construction alone; (2, 2) crop pixel centres."""
        basis = np.stack([self.x, self.y]) / np.hypot(*self.x)  # rows: crop x, y axes
        eyes = np.stack([self.eye_left, self.eye_right]) - self.centre
        return eyes @ basis.T * (size / self.qsize) + (size / 2 - 0.5)


def ffhq_geometry(landmarks68: np.ndarray) -> FfhqGeometry:
    """The FFHQ crop square (step 1-2 of the module docstring) from 68 iBUG landmarks."""
    lm = _check_landmarks(landmarks68, 68, "ffhq_geometry")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth - eye_avg
    scale = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    if not scale * 2.0 >= MIN_FFHQ_QUAD_PX:
        raise ValueError(
            f"ffhq_geometry: the face is too small or degenerate (eyes {np.hypot(*eye_to_eye):.2f}"
            f" px apart, eye-mouth {np.hypot(*eye_to_mouth):.2f} px)"
        )
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    # A real face has the mouth below the eye line: eye_to_eye and eye_to_mouth turned
    # 90 degrees clockwise agree. If they oppose, the landmarks are mirrored or scrambled.
    if np.dot(eye_to_eye, -np.flipud(eye_to_mouth) * [-1, 1]) <= 0 or not np.hypot(*x) > 0:
        raise ValueError(
            "ffhq_geometry: eyes and mouth are not arranged like a face (mirrored or"
            " mislabelled landmarks?); expected 68 points in iBUG 300-W order"
        )
    x = x / np.hypot(*x) * scale
    y = np.flipud(x) * [-1, 1]
    centre = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    return FfhqGeometry(eye_left, eye_right, mouth, centre, x, y, quad, float(np.hypot(*x) * 2))


def align_ffhq(
    image: np.ndarray,
    landmarks68: np.ndarray,
    size: int,
    *,
    transform_size: int | None = None,
    enable_padding: bool = True,
) -> AlignedCrop:
    """NVlabs' FFHQ crop (see the module docstring) at size x size.

    transform_size: side of the intermediate bilinear warp before the Lanczos downscale
    (default 4 x size, NVlabs' 4096 -> 1024 ratio). enable_padding: NVlabs' blur padding;
    without it the parts of the square outside the image come back black.
    """
    image = check_rgb_image(image, "align_ffhq")
    size = _check_size(size, "align_ffhq")
    transform_size = 4 * size if transform_size is None else transform_size
    if _check_size(transform_size, "align_ffhq: transform_size") < size:
        raise ValueError(
            f"align_ffhq: transform_size must be >= size ({size}), got {transform_size}"
        )
    geometry = ffhq_geometry(landmarks68)
    quad = geometry.quad.copy()
    qsize = geometry.qsize
    height, width = image.shape[:2]
    lo, hi = quad.min(axis=0), quad.max(axis=0)
    if hi[0] <= 0 or hi[1] <= 0 or lo[0] >= width or lo[1] >= height:
        raise ValueError(
            f"align_ffhq: the face's crop square lies outside the {width} x {height} image"
        )
    img = Image.fromarray(image, "RGB")
    # `to_work` tracks where image pixel centres are in the working image (3 x 3 affine).
    to_work = np.eye(3)

    # Shrink.
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (
            max(1, int(np.rint(float(img.size[0]) / shrink))),
            max(1, int(np.rint(float(img.size[1]) / shrink))),
        )
        sx, sy = rsize[0] / img.size[0], rsize[1] / img.size[1]
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink
        # PIL resize: out + 0.5 = (in + 0.5) * scale
        to_work = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]]) @ to_work

    # Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = _bounds(quad)
    crop = (
        max(crop[0] - border, 0),
        max(crop[1] - border, 0),
        min(crop[2] + border, img.size[0]),
        min(crop[3] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
        to_work = _shift(-crop[0], -crop[1]) @ to_work

    # Pad.
    pad = _bounds(quad)
    pad = (
        max(-pad[0] + border, 0),
        max(-pad[1] + border, 0),
        max(pad[2] - img.size[0] + border, 0),
        max(pad[3] - img.size[1] + border, 0),
    )
    padded = bool(enable_padding and max(pad) > border - 4)
    if padded:
        widths = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = Image.fromarray(_blur_pad(np.asarray(img), widths, qsize), "RGB")
        quad += widths[:2]
        to_work = _shift(widths[0], widths[1]) @ to_work

    # Transform, then downscale.
    img = img.transform(
        (transform_size, transform_size),
        Image.Transform.QUAD,
        tuple((quad + 0.5).flatten()),
        Image.Resampling.BILINEAR,
    )
    if size < transform_size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    crop_image = np.asarray(img, dtype=np.uint8)

    # PIL's QUAD puts the crop's edges on the quad's corners (pixel-centre coordinates,
    # NVlabs' +0.5): work = q0 + [u v] (out + 0.5) / size, u = q3 - q0, v = q1 - q0.
    edges = np.stack([quad[3] - quad[0], quad[1] - quad[0]], axis=1) / size
    to_crop = np.linalg.inv(edges)
    from_work = np.eye(3)
    from_work[:2, :2] = to_crop
    from_work[:2, 2] = -to_crop @ quad[0] - 0.5
    matrix = (from_work @ to_work)[:2]
    return AlignedCrop(
        image=np.ascontiguousarray(crop_image),
        mode="ffhq",
        size=size,
        matrix=matrix,
        landmarks=68,
        details={
            "padded": padded,
            "shrink": shrink if shrink > 1 else 1,
            "transform_size": transform_size,
            "residual_tilt_deg": geometry.residual_tilt_deg,
        },
    )


def _blur_pad(img: np.ndarray, pad: np.ndarray, qsize: float) -> np.ndarray:
    """NVlabs' reflect padding with a blurred, median-faded border (float32 throughout)."""
    work = np.pad(img.astype(np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = work.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    mask = np.maximum(
        1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
        1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]),
    )
    blur = qsize * 0.02
    radius = int(4.0 * blur + 0.5)  # scipy.ndimage.gaussian_filter's truncate=4.0
    if radius > 0:
        # sigmas by keyword: the 4th positional parameter of cv2.GaussianBlur is `dst`
        blurred = cv2.GaussianBlur(
            work,
            (2 * radius + 1, 2 * radius + 1),
            sigmaX=blur,
            sigmaY=blur,
            borderType=cv2.BORDER_REFLECT,
        )
    else:
        blurred = work
    work += (blurred - work) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    work += (np.median(work, axis=(0, 1)) - work) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(work), 0, 255).astype(np.uint8)


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (
        int(np.floor(min(quad[:, 0]))),
        int(np.floor(min(quad[:, 1]))),
        int(np.ceil(max(quad[:, 0]))),
        int(np.ceil(max(quad[:, 1]))),
    )


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


# --- checks -------------------------------------------------------------------------------


def _check_size(size: object, where: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < MIN_SIZE:
        name = "" if ":" in where else "size "
        raise ValueError(f"{where}: {name}must be an integer >= {MIN_SIZE}, got {size!r}")
    return int(size)


def _check_landmarks(points: object, count: int, where: str) -> np.ndarray:
    try:
        marks = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: landmarks are not numbers ({error})") from None
    if marks.shape != (count, 2):
        raise ValueError(
            f"{where}: expected {count} landmarks of shape ({count}, 2), got {marks.shape}"
        )
    if not np.isfinite(marks).all():
        raise ValueError(f"{where}: landmarks contain NaN or infinity")
    return marks
