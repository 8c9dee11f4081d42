"""exprbench.human against Human's own code and tfjs 4.22 (Node, wasm backend).

tests/parity/human_harness.mjs loads the package's graph model with tfjs's
loadGraphModel, cuts each face with Human 3.3.6's own crop code (enlargeBox, squarifyBox,
cutAndResize at 192 px, then faceres.ts `enhance` / mobilefacenet.ts's resize) and runs
the model on that input and on exprbench's input for the same face. Checked, per face:

- the model on the same input tensor: every output (descriptor / embedding elements,
  gender sigmoid, each age-bin probability) within 1e-3 (max abs difference);
- the crop (box enlarged 1.55x, the scorer's setting): exprbench's model input against
  Human's, within 1e-2 grey levels (faceres,
  0..255) or 1e-4 (mobilefacenet, 0..1), and the scorer's age and gender derived from
  tfjs's outputs equal to ours.

Real faces: JPEG photos decoded once by exprbench and handed over as lossless PNGs (as
tests/test_faceapi_parity.py does); boxes from exprbench's detector, and one box moved
past the image's corner. Worst differences are
written to `<artifacts>/human_parity.json`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import missing_prerequisite, record_artifact, run_node_harness

from exprbench.faces import FaceDetector
from exprbench.human import (
    DLIB_BOX_SCALE,
    FACERES_AGE,
    FACERES_DESCRIPTOR,
    FACERES_GENDER,
    MOBILEFACENET_EMBEDDING,
    FaceRes,
    MobileFaceNet,
    age_from_bins,
    face_tensor,
    faceres_input,
    mobilefacenet_input,
)
from exprbench.imageio import encode_png, load_rgb
from exprbench.packaged import PackagedFileError
from exprbench.weights import reference_path, weight_path

pytestmark = pytest.mark.node

PHOTOS = ["astronaut", "grace_hopper", "obama", "biden", "feat_multi_face", "franck_02045"]
MODEL_TOLERANCE = 1e-3
CROP_TOLERANCE = {"faceres": 1e-2, "mobilefacenet": 1e-4}


def _cases(photos: dict[str, Path], root: Path) -> list[dict]:
    detector = FaceDetector()
    cases = []
    for name in PHOTOS:
        rgb = load_rgb(photos[name])
        png = root / f"{name}.png"
        png.write_bytes(encode_png(rgb))
        faces = detector.detect(rgb, min_score=0.3)  # the faces stage's default
        assert faces, f"{name}: no face detected"
        for i, face in enumerate(faces):
            cases.append({"label": f"{name} face {i}", "rgb": rgb, "face": face, "png": png})
    # a crop reaching past the image's top-left corner (cropAndResize fills zeros there)
    first = cases[0]
    w, h = first["face"].box[2:]
    corner = replace(first["face"], box=(-w / 3, -h / 4, w, h))
    cases.append({**first, "label": f"{first['label']} moved past the corner", "face": corner})
    return cases


def _run_harness(job: dict, root: Path) -> dict:
    path = root / f"job-{job['model']}.json"
    path.write_text(json.dumps(job))
    out = run_node_harness("human_harness.mjs", str(path))
    assert out["backend"] == "wasm" and out["versions"]["human"] == "3.3.6", out["versions"]
    return out


def _check(kind: str, photos: dict[str, Path], root: Path) -> None:
    cases = _cases(photos, root)
    if kind == "faceres":
        model = FaceRes(weight_path("human-faceres.json"), weight_path("human-faceres.bin"))
        make_input = faceres_input
        size, model_json = 224, None  # the harness reads @vladmandic/human's own files
    else:
        try:  # a reference file: fetched on first use, not by `exprbench fetch-models`
            paths = [reference_path(f"human-mobilefacenet.{ext}") for ext in ("json", "bin")]
        except PackagedFileError as error:
            missing_prerequisite(str(error))
        model = MobileFaceNet(*paths)  # type: ignore[assignment]
        make_input = mobilefacenet_input
        size, model_json = 112, str(paths[0])
    inputs = []
    # the scorer's enlargement of the dlib box (Human's own 1.4 is the harness's default)
    job: dict = {"model": kind, "cases": [], "scale": DLIB_BOX_SCALE}
    if model_json:
        job["modelJson"] = model_json
    for n, case in enumerate(cases):
        x = make_input(face_tensor(case["rgb"], case["face"].box, DLIB_BOX_SCALE))
        inputs.append(x)
        (root / f"in{n}.f32").write_bytes(np.ascontiguousarray(x, dtype="<f4").tobytes())
        job["cases"].append(
            {
                "image": str(case["png"]),
                "box": [float(v) for v in case["face"].box],
                "input": str(root / f"in{n}.f32"),
                "dumpInput": str(root / f"ref{n}.f32"),
            }
        )
    reference = _run_harness(job, root)
    worst: dict[str, dict] = {}
    failures: list[str] = []

    def note(key: str, value: float, tolerance: float, label: str) -> None:
        entry = worst.setdefault(key, {"value": 0.0, "tolerance": tolerance, "case": None})
        if value >= entry["value"]:
            entry.update(value=value, case=label)
        if value > tolerance:
            failures.append(f"{label}: {key} differs by {value:.3g} (tolerance {tolerance:g})")

    for n, (case, ref) in enumerate(zip(cases, reference["cases"], strict=True)):
        label = case["label"]
        ref_input = np.fromfile(root / f"ref{n}.f32", dtype="<f4").reshape(1, size, size, 3)
        note("crop", float(np.abs(inputs[n] - ref_input).max()), CROP_TOLERANCE[kind], label)
        given = {k: np.asarray(v, dtype=np.float32) for k, v in ref["given"].items()}
        if kind == "faceres":
            (mine,) = model.run(inputs[n])  # type: ignore[misc]
            ours = {
                FACERES_DESCRIPTOR: mine.descriptor,
                FACERES_GENDER: np.float32([mine.gender_sigmoid]),
                FACERES_AGE: mine.age_bins,
            }
            own_age = age_from_bins(np.asarray(ref["own"][FACERES_AGE]))
            own_male = ref["own"][FACERES_GENDER][0] > 0.5
            mine_own = model.run(ref_input)[0]  # type: ignore[index]
            if abs(own_age - mine_own.age) > 0.1 + 1e-9:
                failures.append(f"{label}: age {mine_own.age} here, {own_age} from tfjs")
            if own_male != (mine_own.gender_sigmoid > 0.5):
                failures.append(f"{label}: gender differs from tfjs's")
        else:
            ours = {MOBILEFACENET_EMBEDDING: model.run(inputs[n])[0]}  # type: ignore[index]
        for key, value in ours.items():
            diff = float(np.abs(np.asarray(value).reshape(-1) - given[key].reshape(-1)).max())
            note(key, diff, MODEL_TOLERANCE, label)
    record_artifact(
        "human_parity",
        kind,
        {
            "units": "max abs difference: model outputs (same input tensor); crop: model "
            "input values",
            "cases": [c["label"] for c in cases],
            "worst": worst,
            "failures": failures,
        },
    )
    print("max differences:", {k: f"{v['value']:.3g} ({v['case']})" for k, v in worst.items()})
    assert not failures, "\n".join(failures)


def test_faceres_matches_tfjs(photos, tmp_path):
    _check("faceres", photos, tmp_path)


def test_mobilefacenet_matches_tfjs(photos, tmp_path):
    _check("mobilefacenet", photos, tmp_path)
