"""CLIP zero-shot expression: prompt-ensembled class texts against the face crop.

No package on the reachable registries ships CLIP weights and model hubs are unreachable,
so this scorer reads a Hugging Face-format CLIP folder that the user names in params.yaml
(`score.options.clip.weights`; layout in `REQUIRED`) and never downloads anything: the Hub
client is switched offline before transformers is imported and every load passes
`local_files_only`. The model runs on transformers' `CLIPModel` (torch, CPU); the image
preprocessing is our own (PIL bicubic, CLIP's mean/std), because transformers' default CLIP
image processor needs torchvision, which has no CPU wheel here.

Each class is described by several prompts (`TEMPLATES` x `CLASS_WORDS`); the class
embedding is the renormalised mean of the L2-normalised prompt embeddings (prompt
ensembling, as in the CLIP paper), and the expression probabilities are the softmax over
the 7 classes of the model's logit scale times the cosine similarities.

The weights live outside `exprbench.weights`, so `cache_identity` hashes the user's files
itself (sha256, memoised per process by path, size, mtime and inode).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# Before transformers/huggingface_hub are imported (they read these once): never try a
# download or send telemetry, whatever path a user gives.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from PIL import Image

from exprbench.fingerprint import code_digest
from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.judgement_specs import IMAGE_CONFIDENCE
from exprbench.labels import EXPRESSIONS
from exprbench.metrics import MetricSpec
from exprbench.packaged import sha256_file
from exprbench.scorers.base import ModelUnavailableError, Output, ScoreOutput, Scorer, register
from exprbench.settings import ParamsError

OPTION = "score.options.clip"
# OpenAI CLIP's normalisation (also transformers' OPENAI_CLIP_MEAN/STD), used unless the
# folder's preprocessor_config.json says otherwise.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MARGIN = 0.25  # the square crop adds this fraction of the box's longer side on each side

# One word per canonical class, put into every template (options: classnames, templates).
CLASS_WORDS: dict[str, str] = {
    "neutral": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "surprise": "surprised",
    "fear": "fearful",
    "disgust": "disgusted",
}
TEMPLATES: tuple[str, ...] = (
    "a photo of a {} face.",
    "a close-up photo of a person looking {}.",
    "a face that looks {}.",
    "a photo of a {} person.",
    "a portrait of someone who looks {}.",
    "a {} facial expression.",
)
assert set(CLASS_WORDS) == set(EXPRESSIONS)

CONFIG = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))
OPTIONAL_FILES = (  # read by the tokenizer or the preprocessing when present
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
)
REQUIRED = (
    "a Hugging Face-format CLIP folder: config.json (model_type clip), the weights as "
    "model.safetensors or pytorch_model.bin (or a model.safetensors.index.json with its "
    "shards), and the tokenizer as vocab.json + merges.txt or tokenizer.json, e.g. a copy "
    "of openai/clip-vit-base-patch32"
)
WHY = (
    "no package on the reachable registries ships CLIP weights and exprbench never "
    "downloads them; see README 'CLIP zero-shot expression'"
)


def _unavailable(problem: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"clip: {problem}. Set {OPTION}.weights in params.yaml to {REQUIRED} ({WHY})"
    )


# ---------------------------------------------------------------- the weights folder


def weights_folder(options: Mapping[str, Any]) -> Path:
    """The folder named by the `weights` option, checked to exist and to be a folder."""
    value = options.get("weights")
    if not value:
        raise _unavailable("no CLIP weights given")
    folder = Path(str(value)).expanduser()
    if not folder.exists():
        raise _unavailable(f"{folder} does not exist")
    if folder.is_file():
        hint = (
            " (OpenAI's original TorchScript checkpoint such as ViT-B-32.pt is not read: "
            "use the Hugging Face conversion of the same model)"
            if folder.suffix == ".pt"
            else ""
        )
        raise _unavailable(f"{folder} is a file, not a folder{hint}")
    return folder


def model_files(folder: Path) -> list[Path]:
    """Every file of `folder` that determines the scorer's outputs, sorted by name.

    Raises ModelUnavailableError naming what is missing or wrong.
    """
    config_path = folder / CONFIG
    if not config_path.is_file():
        raise _unavailable(f"{folder} has no {CONFIG}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _unavailable(f"{config_path} is not readable JSON ({error})") from error
    if not isinstance(config, dict) or config.get("model_type") != "clip":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise _unavailable(f"{config_path} describes model_type {kind!r}, not 'clip'")
    files = [config_path]
    weights = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if weights:
        files.append(weights[0])  # transformers prefers model.safetensors, as listed
    elif (folder / SHARD_INDEX).is_file():
        try:
            shards = sorted(
                set(json.loads((folder / SHARD_INDEX).read_text())["weight_map"].values())
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise _unavailable(f"{folder / SHARD_INDEX} is not a shard index ({error})") from error
        missing = [name for name in shards if not (folder / name).is_file()]
        if missing:
            raise _unavailable(f"{folder} lacks the weight shard(s) {', '.join(missing)}")
        files += [folder / SHARD_INDEX, *(folder / name for name in shards)]
    else:
        raise _unavailable(f"{folder} has no weights ({' or '.join(WEIGHT_FILES)})")
    for group in TOKENIZER_FILES:
        if all((folder / name).is_file() for name in group):
            files += [folder / name for name in group]
            break
    else:
        options = " or ".join(" + ".join(group) for group in TOKENIZER_FILES)
        raise _unavailable(f"{folder} has no tokenizer ({options})")
    files += [folder / name for name in OPTIONAL_FILES if (folder / name).is_file()]
    return sorted(files, key=lambda path: path.name)


@functools.lru_cache(maxsize=64)
def _sha256_by_stat(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return sha256_file(path)


def file_sha256(path: Path) -> str:
    """sha256 of a file, hashed once per process while its size, mtime and inode stay."""
    stat = path.stat()
    return _sha256_by_stat(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def weights_digest(folder: Path) -> str:
    """sha256 over (file name, content sha256) of `model_files(folder)`: the weights' identity.

    A copy of the same files elsewhere has the same digest; any changed byte changes it.
    """
    listing = "".join(f"{path.name}\0{file_sha256(path)}\n" for path in model_files(folder))
    return sha256_text(listing)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- options


def prompt_options(options: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, str]]:
    """(templates, class words) from the options, defaults where not given; checked."""
    known = {"weights", "templates", "classnames", "margin"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ParamsError(
            f"params: unknown key(s) {', '.join(f'{OPTION}.{k}' for k in unknown)}; "
            f"the clip scorer takes {', '.join(sorted(known))}"
        )
    templates = options.get("templates", TEMPLATES)
    if (
        not isinstance(templates, list | tuple)
        or not templates
        or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates)
    ):
        raise ParamsError(
            f"params: {OPTION}.templates must be a non-empty list of strings, each with one "
            f"'{{}}' where the class word goes; got {templates!r}"
        )
    words = options.get("classnames") or {}
    bad = sorted(set(words) - set(EXPRESSIONS)) if isinstance(words, dict) else None
    if bad is None or bad or not all(isinstance(w, str) and w for w in words.values()):
        raise ParamsError(
            f"params: {OPTION}.classnames must map expressions ({', '.join(EXPRESSIONS)}) to "
            f"non-empty words; got {words!r}"
        )
    return tuple(templates), {**CLASS_WORDS, **words}


def margin_option(options: Mapping[str, Any]) -> float:
    margin = options.get("margin", MARGIN)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin <= 1:
        raise ParamsError(f"params: {OPTION}.margin must be a number in [0, 1]; got {margin!r}")
    return float(margin)


# ---------------------------------------------------------------- preprocessing


def face_square(
    image: np.ndarray, box: Sequence[float], margin: float, fill: Sequence[int]
) -> np.ndarray:
    """The square around the box's centre, side = longer box side x (1 + 2 margin).

    Pixels outside the image are `fill` (CLIP's mean colour: zero after normalisation).
    """
    image = check_rgb_image(image, "clip face_square")
    x, y, w, h = (float(v) for v in box)
    side = max(1, round(max(w, h) * (1 + 2 * margin)))
    # half-up rounding (not Python's half-to-even) of the top-left corner
    left, top = math.floor(x + w / 2 - side / 2 + 0.5), math.floor(y + h / 2 - side / 2 + 0.5)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[:] = np.asarray(fill, dtype=np.uint8)
    rows, cols = image.shape[:2]
    y0, y1, x0, x1 = max(top, 0), min(top + side, rows), max(left, 0), min(left + side, cols)
    if y0 >= y1 or x0 >= x1:
        raise ValueError(f"clip: face box {tuple(box)} lies outside the {cols}x{rows} image")
    out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def clip_pixels(
    image: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """CLIP's preprocessing of one uint8 RGB image -> (3, size, size) float32.

    As OpenAI's and transformers' CLIPImageProcessor: shorter side resized to `size` with
    PIL bicubic, centre crop to size x size, x / 255, (x - mean) / std.
    """
    rows, cols = image.shape[:2]
    if cols <= rows:
        new_cols, new_rows = size, int(size * rows / cols)
    else:
        new_cols, new_rows = int(size * cols / rows), size
    resized = np.asarray(
        Image.fromarray(image).resize((new_cols, new_rows), Image.Resampling.BICUBIC)
    )
    top, left = int((new_rows - size) / 2.0), int((new_cols - size) / 2.0)
    crop = resized[top : top + size, left : left + size].astype(np.float32) / np.float32(255.0)
    normalised = (crop - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def preprocessing(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) from the folder's preprocessor_config.json, else OpenAI CLIP's."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return CLIP_MEAN, CLIP_STD
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        mean = tuple(float(v) for v in config.get("image_mean", CLIP_MEAN))
        std = tuple(float(v) for v in config.get("image_std", CLIP_STD))
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise _unavailable(f"{path} is not a readable preprocessor config ({error})") from error
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise _unavailable(f"{path}: image_mean/image_std must be 3 numbers (std > 0)")
    return mean, std


# ---------------------------------------------------------------- scorer


@register
class ClipScorer(Scorer):
    """CLIP zero-shot over 7 expression classes with prompt ensembling (user's weights)."""

    name: ClassVar[str] = "clip"
    outputs: ClassVar[frozenset[Output]] = frozenset({"expression"})
    # The seed study's judge: CLIP's confidence in the requested expression sets every
    # recognizer's lambda weight on the image (exprbench.judgement_specs).
    extra_metrics: ClassVar[tuple[MetricSpec, ...]] = (IMAGE_CONFIDENCE,)
    crop: ClassVar[str] = (
        "square around the detector box's centre, side 1.5x the box's longer side (option "
        "margin, default 0.25 per side), outside the image filled with CLIP's mean colour, "
        "resized to the model's input size (PIL bicubic), CLIP mean/std"
    )
    description: ClassVar[str] = (
        "CLIP zero-shot: softmax over 7 expression classes of the logit-scaled cosine "
        "similarity to prompt-ensembled class texts; weights from the folder given in "
        "score.options.clip.weights (Hugging Face format, never downloaded)"
    )
    license: ClassVar[str] = (
        "that of the user's weights (OpenAI CLIP: MIT); transformers: Apache-2.0"
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.templates, self.words = prompt_options(self.options)
        self.margin = margin_option(self.options)
        folder = weights_folder(self.options)
        model_files(folder)  # missing pieces are named before transformers is imported
        self.mean, self.std = preprocessing(folder)
        self.fill = tuple(round(255 * m) for m in self.mean)
        self.model, self.tokenizer = load_clip(folder)
        self.size = int(self.model.config.vision_config.image_size)
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        self.class_embeddings = self.text_embeddings(self.templates, self.words)

    @classmethod
    def cache_identity(cls, options: Mapping[str, Any] | None) -> str:
        """Code, the sha256 of the weight folder's files (not its path), and the options."""
        options = dict(options or {})
        try:
            weights = weights_digest(weights_folder(options))
        except ModelUnavailableError as error:
            # nothing is computed (or cached) without weights: __init__ raises this error
            weights = f"unavailable: {error}"
        return sha256_text(
            json.dumps(
                [cls.name, code_digest(cls.__module__), weights, {**options, "weights": None}],
                sort_keys=True,
                default=str,
            )
        )

    def text_embeddings(self, templates: Sequence[str], words: Mapping[str, str]) -> Any:
        """(7, D) class embeddings in EXPRESSIONS order: each the renormalised mean of its
        L2-normalised prompt embeddings."""
        import torch
        import torch.nn.functional as F

        prompts = [template.format(words[name]) for name in EXPRESSIONS for template in templates]
        tokens = self.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=int(self.model.config.text_config.max_position_embeddings),
            return_tensors="pt",
        )
        with torch.inference_mode():
            features = self.model.get_text_features(**tokens).pooler_output
        per_prompt = F.normalize(features.float(), dim=-1)
        per_class = per_prompt.view(len(EXPRESSIONS), len(templates), -1).mean(dim=1)
        return F.normalize(per_class, dim=-1)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) CLIP inputs -> (N, 7) probabilities in EXPRESSIONS order (float64)."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            features = self.model.get_image_features(
                pixel_values=torch.from_numpy(pixels)
            ).pooler_output
            image = F.normalize(features.float(), dim=-1)
            logits = self.logit_scale * image @ self.class_embeddings.T
            probs = torch.softmax(logits.double(), dim=-1).numpy()
        return probs / probs.sum(axis=1, keepdims=True)

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        return self.score_batch([(image, face)])[0]

    def score_batch(self, items: Sequence[tuple[np.ndarray, Face]]) -> list[ScoreOutput]:
        if not items:
            return []
        pixels = np.stack(
            [
                clip_pixels(
                    face_square(image, face.box, self.margin, self.fill),
                    self.size,
                    self.mean,
                    self.std,
                )
                for image, face in items
            ]
        )
        return [
            ScoreOutput(probabilities=dict(zip(EXPRESSIONS, row.tolist(), strict=True)))
            for row in self.probabilities(pixels)
        ]


def load_clip(folder: Path) -> tuple[Any, Any]:
    """transformers' CLIPModel (float32, eval) and CLIPTokenizer from `folder`, offline.

    Any weight the files do not provide would be initialised randomly by transformers:
    that is refused, as is any load error, with the file and transformers' reason.
    """
    import torch
    from transformers import CLIPModel, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        # with output_loading_info, (model, info); its stubs only know the model
        loaded: Any = CLIPModel.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
        model, info = loaded
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # transformers/safetensors raise many kinds; all mean "unusable"
        raise _unavailable(
            f"{folder} could not be loaded ({type(error).__name__}: {error})"
        ) from error
    incomplete = {
        k: sorted(map(str, v)) for k in ("missing_keys", "mismatched_keys") if (v := info.get(k))
    }
    if incomplete:
        raise _unavailable(f"{folder}'s weights do not fit its config.json: {incomplete}")
    model.eval()
    return model, tokenizer
