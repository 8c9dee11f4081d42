"""face-api.js (0.22.2's networks, as shipped by @vladmandic/face-api 1.7.15) in Python.

`FaceApi().detect_all(rgb)` reproduces face-api.js's

    detectAllFaces(tensor).withFaceLandmarks().withFaceExpressions()
        .withAgeAndGender().withFaceDescriptors()

in Node with the tfjs wasm backend (the instrument of the study exprbench reproduces):
SsdMobilenetv1 (or TinyFaceDetector) detection, FaceLandmark68Net, FaceExpressionNet,
AgeGenderNet and FaceRecognitionNet, with face-api.js's own resizing, padding and crops,
built as ONNX graphs and run in onnxruntime. tests/test_faceapi_parity.py checks it
against face-api.js itself.
Weights: `exprbench fetch-models` (npm package @vladmandic/face-api, MIT).
"""

from exprbench.faceapi.chain import (
    FaceApi,
    FaceApiError,
    FaceApiOptions,
    FaceApiResult,
)
from exprbench.faceapi.expression import CANONICAL, FACEAPI_LABELS
from exprbench.faceapi.ssd_mobilenetv1 import Detection

__all__ = [
    "CANONICAL",
    "FACEAPI_LABELS",
    "Detection",
    "FaceApi",
    "FaceApiError",
    "FaceApiOptions",
    "FaceApiResult",
]
