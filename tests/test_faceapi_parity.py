"""exprbench.faceapi against face-api.js itself (Node, tfjs wasm backend), face by face.

tests/parity/harness.mjs runs face-api.js's
detectAllFaces().withFaceLandmarks().withFaceExpressions().withAgeAndGender()
.withFaceDescriptors() on the same pixels, and every face must agree within:
box 0.5 px, each expression probability 1e-3, age 0.1 years, gender probability 1e-3
(same gender), descriptor L2 1e-3, same face count (landmarks are also held to 0.5 px).

Same pixels: JPEG decoders differ (jpeg-js, which the harness uses, and libjpeg-turbo,
which Pillow uses, disagree by up to ~45 grey levels on these photos), and that is not
face-api.js's processing. So JPEG photos are decoded once by exprbench (`load_rgb`) and
handed to the harness as lossless PNGs; the PNG photo (astronaut) goes to both as is.

Needs Node.js and npm; the harness's packages are installed with `npm ci`
(tests/parity/package-lock.json) when node_modules is missing or older than the lockfile.
Without them the tests skip locally and fail under CI (conftest.missing_prerequisite).

The worst difference per quantity, with the case and face it occurred on, is written to
`<artifacts>/faceapi_parity.json` (conftest.artifacts_dir; .ci/run prints it), also when
the test fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import record_artifact, run_node_harness
from PIL import Image

from exprbench.faceapi import FaceApi, FaceApiOptions
from exprbench.imageio import encode_png, load_rgb

pytestmark = pytest.mark.node

TOLERANCE = {
    "box": 0.5,
    "landmarks": 0.5,
    "expressions": 1e-3,
    "age": 0.1,
    "gender_probability": 1e-3,
    "descriptor": 1e-3,
}
# (photo, scale): several faces (feat_multi_face: 5), sizes from ~250 to 2333 px,
# portrait and landscape, JPEG and PNG.
SSD_CASES = [
    ("astronaut", 1.0),  # PNG, 512 x 512, passed to the harness as is
    ("grace_hopper", 1.0),  # JPEG 512 x 600
    ("obama", 1.0),  # JPEG 910 x 1137
    ("biden", 1.0),  # JPEG 970 x 2204
    ("feat_multi_face", 1.0),  # JPEG 1000 x 667, 5 faces
    ("feat_multi_face", 0.6),  # downscaled copy, 600 x 400
    ("franck_02045", 1.0),  # JPEG 720 x 576
    ("feat_happy", 1.0),  # JPEG 512 x 512
    ("obama", 0.3),  # downscaled copy, 273 x 341
    ("feat_no_face", 0.5),  # no face at all
]
TINY_CASES = [("feat_multi_face", 1.0), ("obama2", 1.0)]


def run_harness(paths: list[Path], *extra: str) -> dict[str, dict]:
    """face-api.js's results per image path (see harness.mjs)."""
    out = run_node_harness("harness.mjs", *extra, *map(str, paths))
    assert out["backend"] == "wasm", out["backend"]
    return {image["path"]: image for image in out["images"]}


def prepare(photos: dict[str, Path], cases: list[tuple[str, float]], root: Path):
    """(harness input path, RGB pixels, label) per case; JPEGs become lossless PNGs."""
    prepared = []
    for name, scale in cases:
        source = photos[name]
        rgb = load_rgb(source)
        label = f"{name}@{scale:g}"
        if scale != 1.0:
            h, w = rgb.shape[:2]
            size = (round(w * scale), round(h * scale))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
        if scale == 1.0 and source.suffix.lower() == ".png":
            path = source
        else:
            path = root / f"{name}-{scale:g}.png"
            path.write_bytes(encode_png(rgb))
        prepared.append((path, rgb, label))
    return prepared


def face_differences(mine, ref: dict) -> dict[str, float]:
    expressions = mine.expressions_faceapi
    return {
        "box": float(np.abs(np.asarray(mine.box) - np.asarray(ref["box"])).max()),
        "landmarks": float(np.abs(mine.landmarks68 - np.asarray(ref["landmarks"])).max()),
        "expressions": max(abs(expressions[k] - v) for k, v in ref["expressions"].items()),
        "age": abs(mine.age - ref["age"]),
        "gender_probability": abs(mine.gender_probability - ref["genderProbability"]),
        "descriptor": float(np.linalg.norm(mine.descriptor - np.asarray(ref["descriptor"]))),
    }


def check_parity(api: FaceApi, prepared, reference: dict[str, dict], chain: str) -> dict[str, dict]:
    """Compare face by face; record the worst difference per quantity, then assert."""
    worst = {key: {"value": 0.0, "tolerance": tol, "case": None} for key, tol in TOLERANCE.items()}
    failures = []
    faces = 0
    for path, rgb, label in prepared:
        ref = reference[str(path)]
        assert (ref["height"], ref["width"]) == rgb.shape[:2], label
        mine = api.detect_all(rgb)
        if len(mine) != len(ref["faces"]):
            failures.append(f"{label}: {len(mine)} faces here, {len(ref['faces'])} in face-api.js")
            continue
        for i, (face, ref_face) in enumerate(zip(mine, ref["faces"], strict=True)):
            faces += 1
            if face.gender != ref_face["gender"]:
                failures.append(f"{label} face {i}: gender {face.gender} != {ref_face['gender']}")
            for key, value in face_differences(face, ref_face).items():
                if value >= worst[key]["value"]:
                    worst[key] |= {"value": value, "case": f"{label} face {i}"}
                if value > TOLERANCE[key]:
                    failures.append(f"{label} face {i}: {key} differs by {value:.3g}")
    record_artifact(
        "faceapi_parity",
        chain,
        {
            "units": "box, landmarks: px; expressions, gender_probability: probability; "
            "age: years; descriptor: L2 distance",
            "cases": [label for _, _, label in prepared],
            "faces_compared": faces,
            "worst": worst,
            "failures": failures,
        },
    )
    print("max differences:", {k: f"{v['value']:.3g} ({v['case']})" for k, v in worst.items()})
    assert not failures, "\n".join(failures)
    return worst


@pytest.mark.usefixtures("models")
def test_ssd_chain_matches_faceapi_js(photos, tmp_path):
    prepared = prepare(photos, SSD_CASES, tmp_path)
    reference = run_harness([p for p, _, _ in prepared])
    counts = [len(reference[str(p)]["faces"]) for p, _, _ in prepared]
    assert max(counts) >= 5 and min(counts) == 0  # the multi-face and the no-face photo
    check_parity(FaceApi(FaceApiOptions(detector="ssd")), prepared, reference, "ssd")


@pytest.mark.usefixtures("models")
def test_tiny_detector_chain_matches_faceapi_js(photos, tmp_path):
    prepared = prepare(photos, TINY_CASES, tmp_path)
    reference = run_harness([p for p, _, _ in prepared], "--detector", "tiny")
    check_parity(FaceApi(FaceApiOptions(detector="tiny")), prepared, reference, "tiny")
