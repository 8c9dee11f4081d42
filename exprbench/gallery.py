"""The impostor gallery: generated faces of people who do not exist, from a package.

The StyleGAN2 faces of npm `fake-avatars` 1.1.0 (`package/avatars/png/0..262.png`, 256 px,
mostly neutral or smiling), each pinned by sha256 (`exprbench.gallery_sums`). They are
never committed (NVIDIA's terms for StyleGAN2 outputs: treat as non-commercial): `exprbench
fetch-models` fetches them into the user cache with npm; the score stage only reads them
(`gallery_paths`, no download) and computes each identity scorer's descriptor of each face
once (`gallery_descriptor`, cached by the image's sha256 and the scorer's cache identity).
`exprbench.identity` uses them as impostors for every set. The real photos that ship in
packages (`exprbench.demo_sources`) are deliberately not in the gallery: the demo set and
the tests are made of them, so a gallery face could be the subject itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from exprbench.faces import FaceDetector, choose_primary
from exprbench.gallery_sums import FAKE_AVATARS_PNG_SHA256
from exprbench.packaged import PackagedFile, PackagedFileError, cache_home, ensure, ensure_all
from exprbench.scorers.base import Scorer, ScorerFoundNoFaceError
from exprbench.scoring import output_to_dict

GALLERY_LICENSE = (
    "fake-avatars 1.1.0 (package MIT); images are NVlabs StyleGAN2 outputs (NVIDIA's "
    "terms: non-commercial; fetched at run time, never committed)"
)
GALLERY: tuple[PackagedFile, ...] = tuple(
    PackagedFile("npm", "fake-avatars", "1.1.0", f"avatars/png/{i}.png", sha, GALLERY_LICENSE)
    for i, sha in enumerate(FAKE_AVATARS_PNG_SHA256)
)
GALLERY_PREFIX = "fake-avatars:"
# How a gallery face is found (256 px, one large frontal face): dlib HOG without
# upsampling (FaceDetector.detect's keywords), the primary face. Part of the cache key.
GALLERY_DETECTION: dict[str, Any] = {"upsample": 0, "min_score": 0.3}


def descriptor_cache_dir() -> Path:
    """Where each identity model's descriptors of the gallery faces are kept: the user cache,
    shared by every run and checkout (the gallery is the same pinned files for all, and each
    entry's key is what determines it: scorer code, weights and options, this module's code,
    the image's sha256, the detection settings)."""
    return cache_home() / "gallery-descriptors"


def gallery_items(size: int) -> list[PackagedFile]:
    """The first `size` gallery faces (0 <= size <= 263)."""
    if not 0 <= size <= len(GALLERY):
        raise ValueError(f"impostor gallery size must be in [0, {len(GALLERY)}]; got {size}")
    return list(GALLERY[:size])


def fetch_gallery(size: int = len(GALLERY)) -> list[Path]:
    """Fetch (once, with npm, into the user cache) and verify the first `size` faces."""
    return ensure_all(gallery_items(size))


def gallery_paths(size: int) -> tuple[list[tuple[str, Path, str]], str | None]:
    """[(id, local path, sha256)] of the fetched gallery faces, and None; or ([], why) when
    a file is missing (scoring never downloads: `exprbench fetch-models` fetches them)."""
    found = []
    for index, item in enumerate(gallery_items(size)):
        try:
            path = ensure(item, fetch=False)
        except PackagedFileError as error:
            return [], f"impostor gallery unavailable: {error}"
        found.append((f"{GALLERY_PREFIX}{index}", path, item.sha256))
    return found, None


def gallery_descriptor(detector: FaceDetector, scorer: Scorer, rgb: np.ndarray) -> dict:
    """`scorer`'s outputs (`output_to_dict`) for the primary face of a gallery image, or
    {"no_face": why}."""
    face = choose_primary(detector.detect(rgb, **GALLERY_DETECTION))
    if face is None:
        return {"no_face": "no face detected"}
    try:
        return output_to_dict(scorer.score(rgb, face))
    except ScorerFoundNoFaceError as error:
        return {"no_face": str(error)}
