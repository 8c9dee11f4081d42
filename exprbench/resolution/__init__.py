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

Three modules: `fidelity` (PSNR, SSIM), `study` (`analyse_face(...).rows` holds one row
per (method, size, scorer) with the raw and reference outputs and the per-row
comparisons; `summarise` averages them per (method, size, factor, scorer)) and `page`
(`montage` draws original / degraded / each method per size, `render_study_page` writes
the self-contained HTML page). Everything except the `upscale_seconds` column is
deterministic; nothing here reads or writes files except `render_study_page`.
"""

from exprbench.resolution.fidelity import gaussian_window, luminance, psnr, ssim
from exprbench.resolution.page import (
    FIDELITY_COLUMNS,
    MONTAGE_GAP,
    MONTAGE_HEADER,
    MONTAGE_ROW_LABEL,
    RECOGNITION_COLUMNS,
    montage,
    render_study_page,
)
from exprbench.resolution.study import (
    DEFAULT_CROP_PX,
    DEFAULT_MARGIN,
    DEFAULT_SIZES,
    ROW_COLUMNS,
    FaceStudy,
    analyse_face,
    context_crop,
    degrade,
    summarise,
)

__all__ = [
    "DEFAULT_CROP_PX",
    "DEFAULT_MARGIN",
    "DEFAULT_SIZES",
    "FIDELITY_COLUMNS",
    "MONTAGE_GAP",
    "MONTAGE_HEADER",
    "MONTAGE_ROW_LABEL",
    "RECOGNITION_COLUMNS",
    "ROW_COLUMNS",
    "FaceStudy",
    "analyse_face",
    "context_crop",
    "degrade",
    "gaussian_window",
    "luminance",
    "montage",
    "psnr",
    "render_study_page",
    "ssim",
    "summarise",
]
