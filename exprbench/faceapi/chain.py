"""The full face-api.js chain in Python: detection, landmarks, expressions, age/gender and
descriptors, reproducing

    faceapi.detectAllFaces(tensor, options).withFaceLandmarks().withFaceExpressions()
        .withAgeAndGender().withFaceDescriptors()

for an int32 [h, w, 3] image tensor in Node (tfjs wasm backend), including how face-api.js
cuts its crops:

- landmarks: the detection box, floored and clipped to the image;
- expressions and age/gender: the landmarks' bounding box padded by 20% (`alignedRect`);
- descriptor: FaceLandmarks.alignDlib's square around the eyes and mouth.

In a browser face-api.js draws images and crops through a canvas, which resamples
differently, so browser results differ slightly from these (and from Node's).
Models are loaded once per process (`FaceApi` shares them); `detect_all` does no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from exprbench.faceapi import boxes as bx
from exprbench.faceapi.age_gender import AgeGenderNet, gender_from_probabilities
from exprbench.faceapi.expression import (
    CANONICAL,
    FACEAPI_LABELS,
    FaceExpressionNet,
    to_canonical,
)
from exprbench.faceapi.landmark68 import FaceLandmark68Net, postprocess, to_pixels
from exprbench.faceapi.preprocess import normalize, to_batch_tensor
from exprbench.faceapi.recognition import FaceRecognitionNet
from exprbench.faceapi.ssd_mobilenetv1 import Detection, SsdMobilenetv1
from exprbench.faceapi.tiny_face_detector import TinyFaceDetector
from exprbench.faceapi.weights import NetworkWeights
from exprbench.imagecheck import check_rgb_image

Detector = Literal["ssd", "tiny"]
FACE_INPUT_SIZE = 112  # landmarks, expressions, age/gender
DESCRIPTOR_INPUT_SIZE = 150


class FaceApiError(RuntimeError):
    """face-api.js's chain cannot produce a result for this input."""


@dataclass(frozen=True)
class FaceApiOptions:
    """Detector options, with face-api.js's defaults.

    detector: 'ssd' (SsdMobilenetv1, what face-api.js's detectAllFaces uses by default)
    or 'tiny' (TinyFaceDetector). min_confidence/max_results apply to 'ssd',
    input_size/score_threshold to 'tiny'. threads: onnxruntime intra-op threads per
    network (None: one per core); the networks run one after another, each using them.
    """

    detector: Detector = "ssd"
    min_confidence: float = 0.5
    max_results: int = 100
    input_size: int = 416
    score_threshold: float = 0.5
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.detector not in ("ssd", "tiny"):
            raise ValueError(f"detector must be 'ssd' or 'tiny', got {self.detector!r}")
        if not 0 < self.min_confidence < 1:
            raise ValueError(f"min_confidence must be in (0, 1), got {self.min_confidence}")
        if not 0 < self.score_threshold < 1:
            raise ValueError(f"score_threshold must be in (0, 1), got {self.score_threshold}")
        if self.input_size <= 0 or self.input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {self.input_size}")
        if self.max_results < 1:
            raise ValueError(f"max_results must be >= 1, got {self.max_results}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")


@dataclass(frozen=True)
class FaceApiResult:
    """One face as face-api.js reports it, in the input image's pixel coordinates.

    expressions uses exprbench's canonical names (neutral, happy, sad, angry, surprise,
    fear, disgust); `expressions_faceapi` the same values under face-api.js's labels.
    """

    box: tuple[float, float, float, float]  # detection box (x, y, width, height)
    score: float
    landmarks68: np.ndarray  # (68, 2) float64 x, y
    expressions: dict[str, float]
    age: float
    gender: str  # 'female' | 'male'
    gender_probability: float  # probability of `gender`
    descriptor: np.ndarray  # (128,) float32
    aligned_box: tuple[float, float, float, float] = field(repr=False)  # expression/age crop
    descriptor_box: tuple[float, float, float, float] = field(repr=False)  # recognition crop

    @property
    def expressions_faceapi(self) -> dict[str, float]:
        return {label: self.expressions[CANONICAL[label]] for label in FACEAPI_LABELS}


_FACTORIES: dict[str, tuple[type, str]] = {
    "ssd": (SsdMobilenetv1, "ssd_mobilenetv1"),
    "tiny": (TinyFaceDetector, "tiny_face_detector"),
    "landmarks": (FaceLandmark68Net, "face_landmark_68"),
    "expression": (FaceExpressionNet, "face_expression"),
    "age_gender": (AgeGenderNet, "age_gender"),
    "recognition": (FaceRecognitionNet, "face_recognition"),
}
_MODELS: dict[tuple[str, int | None], Any] = {}
_LOCK = threading.Lock()


def _load(name: str, threads: int | None = None) -> Any:
    """Load (once per process and thread count) and return one network."""
    with _LOCK:
        key = (name, threads)
        if key not in _MODELS:
            factory, network = _FACTORIES[name]
            _MODELS[key] = factory(NetworkWeights(network), threads)
        return _MODELS[key]


def _face_batch(crops: list[np.ndarray], size: int) -> np.ndarray:
    """toBatchTensor(size, centred) + normalize(meanRgb) / 255 for several crops."""
    return normalize(np.stack([to_batch_tensor(c, size, center=True) for c in crops]))


class FaceApi:
    """face-api.js's networks and processing; the weights load once per process.

    Needs the weight files fetched by `exprbench fetch-models` (else
    ModelUnavailableError, whose message says so).
    """

    def __init__(self, options: FaceApiOptions | Mapping[str, object] | None = None) -> None:
        if options is None:
            options = FaceApiOptions()
        elif not isinstance(options, FaceApiOptions):
            options = FaceApiOptions(**options)  # type: ignore[arg-type]
        self.options = options
        threads = options.threads
        ssd = options.detector == "ssd"
        self.ssd: SsdMobilenetv1 | None = _load("ssd", threads) if ssd else None
        self.tiny: TinyFaceDetector | None = None if ssd else _load("tiny", threads)
        self.landmarks: FaceLandmark68Net = _load("landmarks", threads)
        self.expression: FaceExpressionNet = _load("expression", threads)
        self.age_gender: AgeGenderNet = _load("age_gender", threads)
        self.recognition: FaceRecognitionNet = _load("recognition", threads)

    def detect_faces(self, image: np.ndarray) -> list[Detection]:
        """detectAllFaces(image, options) only: the detector's faces, best score first."""
        image = check_rgb_image(image, "FaceApi.detect_faces")
        opts = self.options
        if self.ssd is not None:
            return self.ssd.locate_faces(image, opts.min_confidence, opts.max_results)
        assert self.tiny is not None
        return self.tiny.locate_faces(image, opts.input_size, opts.score_threshold)

    def detect_all(self, image: np.ndarray) -> list[FaceApiResult]:
        """Every face with landmarks, expressions, age, gender and descriptor, in
        face-api.js's order (detector score, best first)."""
        image = check_rgb_image(image, "FaceApi.detect_all")
        height, width = image.shape[:2]
        detections = self.detect_faces(image)
        if not detections:
            return []

        # withFaceLandmarks: crops of the detection boxes; like face-api.js, results are
        # paired with detections by position after empty crops are dropped.
        crops, sizes = [], []
        for det in detections:
            bounds = bx.clip_at_image_borders(bx.for_size(det.box, width, height), width, height)
            if bounds[2] > 0 and bounds[3] > 0:
                crops.append(bx.crop(image, bounds))
                sizes.append((bounds[3], bounds[2]))
        detections = detections[: len(crops)]
        if not crops:
            return []
        raw = self.landmarks.forward(_face_batch(crops, FACE_INPUT_SIZE))
        relative = postprocess(raw, sizes)
        landmarks, aligned, dlib_boxes = [], [], []
        for det, rel, (crop_h, crop_w) in zip(detections, relative, sizes, strict=True):
            points = to_pixels(rel, crop_h, crop_w, (det.box[0], det.box[1]))
            landmarks.append(points)
            rect = bx.min_bbox_padded(points)
            aligned.append(bx.for_size(bx.for_size(rect, width, height), width, height))
            dlib_boxes.append(bx.align_dlib(points, crop_w, crop_h))

        # withFaceExpressions + withAgeAndGender: the same aligned crops feed both nets.
        face_crops = self._crops(image, aligned)
        face_input = _face_batch(face_crops, FACE_INPUT_SIZE)
        expressions = self.expression.forward(face_input)
        ages, genders = self.age_gender.forward(face_input)

        # withFaceDescriptors: FaceLandmarks.alignDlib crops.
        desc_crops = self._crops(image, dlib_boxes)
        descriptors = self.recognition.forward(_face_batch(desc_crops, DESCRIPTOR_INPUT_SIZE))

        results = []
        for i, det in enumerate(detections):
            gender, gender_prob = gender_from_probabilities(genders[i])
            results.append(
                FaceApiResult(
                    box=det.box,
                    score=det.score,
                    landmarks68=landmarks[i],
                    expressions=to_canonical(expressions[i]),
                    age=float(ages[i]),
                    gender=gender,
                    gender_probability=gender_prob,
                    descriptor=np.array(descriptors[i], dtype=np.float32),
                    aligned_box=aligned[i],
                    descriptor_box=dlib_boxes[i],
                )
            )
        return results

    @staticmethod
    def _crops(image: np.ndarray, rects: list[bx.Box]) -> list[np.ndarray]:
        height, width = image.shape[:2]
        crops = []
        for rect in rects:
            bounds = bx.clip_at_image_borders(rect, width, height)
            if bounds[2] <= 0 or bounds[3] <= 0:
                # face-api.js would silently pair the remaining results with the wrong faces
                raise FaceApiError(
                    f"faceapi: face crop {rect} lies outside the {width}x{height} image"
                )
            crops.append(bx.crop(image, bounds))
        return crops
