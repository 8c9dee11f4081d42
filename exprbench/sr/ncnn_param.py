"""Read ncnn models (`.param` text + `.bin` weights) and load Real-ESRGAN x4plus into RRDBNet.

Only the parts of the ncnn formats that the Real-ESRGAN files use are read, and anything
else fails loudly rather than being guessed:

- `.param`: magic 7767517, a `layer_count blob_count` line, then one line per layer:
  `Type Name n_in n_out in... out... key=value ...`; keys <= -23300 are arrays
  (`-23310=1,2.0e-01` is array key 10 with one value).
- `.bin`: for each layer with weights, in layer order, `Convolution` stores its weight blob
  with a 4-byte tag (0x01306B47: float16, padded to 4 bytes; 0: raw float32) followed by its
  bias as raw float32 (no tag). Weights are [out][in][kh][kw], the torch layout.

`realesrgan_state_dict` maps the 351 convolutions, in file order, onto `RRDBNet`'s
parameters, after checking that the graph is the Real-ESRGAN x4plus topology.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from exprbench.sr.rrdbnet import RRDBNet

NCNN_MAGIC = 7767517
_TAG_FP16 = 0x01306B47
_TAG_FP32 = 0x00000000
_ARRAY_KEY_BASE = -23300


class NcnnFormatError(ValueError):
    """The .param/.bin pair is malformed or uses a feature this reader does not support."""


@dataclass
class NcnnLayer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, int | float | list[int | float]]
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def param(self, key: int, default: int | float | list[int | float] | None = None):
        return self.params.get(key, default)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_param(text: str) -> list[NcnnLayer]:
    """Parse the text of an ncnn .param file into layers (no weights yet)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != str(NCNN_MAGIC):
        raise NcnnFormatError(f"not an ncnn .param file (first line {lines[:1]!r})")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError) as error:
        raise NcnnFormatError(f"bad ncnn header line {lines[1:2]!r}") from error
    layers: list[NcnnLayer] = []
    for line in lines[2:]:
        parts = line.split()
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        bottoms = parts[4 : 4 + n_in]
        tops = parts[4 + n_in : 4 + n_in + n_out]
        params: dict[int, int | float | list[int | float]] = {}
        for item in parts[4 + n_in + n_out :]:
            key_text, _, value = item.partition("=")
            key = int(key_text)
            if key <= _ARRAY_KEY_BASE:
                count, *values = value.split(",")
                if int(count) != len(values):
                    raise NcnnFormatError(f"{name}: array {item!r} has a wrong count")
                params[_ARRAY_KEY_BASE - key] = [_number(v) for v in values]
            else:
                params[key] = _number(value)
        layers.append(NcnnLayer(kind, name, bottoms, tops, params))
    if len(layers) != layer_count:
        raise NcnnFormatError(f"header says {layer_count} layers, file has {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise NcnnFormatError(f".bin ended early (needed {size} bytes at {self.pos})")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def tagged(self, count: int) -> np.ndarray:
        """A weight blob with a 4-byte storage tag (ncnn ModelBin::load type 0)."""
        tag = int.from_bytes(self.take(4), "little")
        if tag == _TAG_FP16:
            raw = self.take((count * 2 + 3) // 4 * 4)
            return np.frombuffer(raw[: count * 2], dtype="<f2").astype(np.float32)
        if tag == _TAG_FP32:
            return self.raw_f32(count)
        raise NcnnFormatError(f"unsupported ncnn weight storage tag 0x{tag:08x} at {self.pos - 4}")

    def raw_f32(self, count: int) -> np.ndarray:
        """Raw float32 values (ncnn ModelBin::load type 1)."""
        return np.frombuffer(self.take(count * 4), dtype="<f4").astype(np.float32)


_WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"}


def load_ncnn(
    param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str]
) -> list[NcnnLayer]:
    """Layers of an ncnn model with their weights attached (float32 numpy arrays)."""
    layers = parse_param(Path(param_path).read_text())
    reader = _Reader(Path(bin_path).read_bytes())
    for layer in layers:
        if layer.type in _WEIGHTLESS:
            continue
        if layer.type != "Convolution":
            raise NcnnFormatError(f"layer type {layer.type} ({layer.name}) is not supported")
        out_ch = int(layer.param(0, 0))
        kw = int(layer.param(1, 0))
        kh = int(layer.param(11, kw))
        size = int(layer.param(6, 0))
        if size % (out_ch * kh * kw):
            raise NcnnFormatError(
                f"{layer.name}: weight size {size} does not fit {out_ch}x{kh}x{kw}"
            )
        in_ch = size // (out_ch * kh * kw)
        weight = reader.tagged(size).reshape(out_ch, in_ch, kh, kw)
        layer.weights["weight"] = weight
        if int(layer.param(5, 0)):
            layer.weights["bias"] = reader.raw_f32(out_ch)
    if reader.pos != len(reader.data):
        raise NcnnFormatError(f".bin has {len(reader.data) - reader.pos} unread bytes")
    return layers


def _check_conv(layer: NcnnLayer, kernel: int, leaky: bool) -> None:
    stride = int(layer.param(3, 1))
    pad = int(layer.param(4, 0))
    dilation = int(layer.param(2, 1))
    activation = int(layer.param(9, 0))
    ok = stride == 1 and dilation == 1 and pad == kernel // 2 and "bias" in layer.weights
    expected_activation = (2, [0.2]) if leaky else (0, None)  # 2: leaky ReLU, slope 0.2
    ok = ok and (activation, layer.param(10)) == expected_activation
    if not ok or layer.weights["weight"].shape[-1] != kernel:
        raise NcnnFormatError(f"{layer.name}: unexpected convolution settings {layer.params}")


def realesrgan_state_dict(layers: list[NcnnLayer], model: RRDBNet) -> dict[str, torch.Tensor]:
    """Map the ncnn convolutions (file order) onto `model`'s parameters, checking the graph."""
    convs = [layer for layer in layers if layer.type == "Convolution"]
    names = [n[: -len(".weight")] for n, _ in model.named_parameters() if n.endswith(".weight")]
    if len(convs) != len(names):
        raise NcnnFormatError(
            f"ncnn graph has {len(convs)} convolutions; RRDBNet({model.num_block} blocks) "
            f"has {len(names)}: not the Real-ESRGAN x4plus topology"
        )
    interps = [layer for layer in layers if layer.type == "Interp"]
    if len(interps) != 2 or any(
        layer.param(0) != 1 or layer.param(1) != 2.0 or layer.param(2) != 2.0 for layer in interps
    ):
        raise NcnnFormatError("expected two nearest-neighbour x2 Interp layers")
    eltwise = [layer for layer in layers if layer.type == "Eltwise"]
    if any(layer.param(0) != 1 or layer.param(1) != [0.2, 1.0] for layer in eltwise):
        raise NcnnFormatError("expected Eltwise sums with coefficients (0.2, 1.0)")
    if len(eltwise) != model.num_block * 4:  # 3 RDB residuals + 1 RRDB residual per block
        raise NcnnFormatError(f"expected {model.num_block * 4} residual sums, got {len(eltwise)}")
    params = dict(model.named_parameters())
    state: dict[str, torch.Tensor] = {}
    for layer, name in zip(convs, names, strict=True):
        leaky = name.split(".")[-1] in {"conv1", "conv2", "conv3", "conv4"} or name in {
            "conv_up1",
            "conv_up2",
            "conv_hr",
        }
        _check_conv(layer, 3, leaky)
        for role in ("weight", "bias"):
            value = torch.from_numpy(layer.weights[role].copy())
            expected = params[f"{name}.{role}"].shape
            if value.shape != expected:
                raise NcnnFormatError(
                    f"{layer.name} -> {name}.{role}: shape {tuple(value.shape)}, "
                    f"expected {tuple(expected)}"
                )
            state[f"{name}.{role}"] = value
    return state


def load_realesrgan_x4plus(
    param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str]
) -> RRDBNet:
    """RRDBNet (23 blocks, 64 features, growth 32, x4) with the ncnn file's weights, eval mode."""
    model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32)
    model.load_state_dict(realesrgan_state_dict(load_ncnn(param_path, bin_path), model))
    return model.eval()
