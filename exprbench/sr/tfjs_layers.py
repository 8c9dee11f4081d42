"""Run a TensorFlow.js *layers* model (model.json + binary weight shards) in torch.

The UpscalerJS ESRGAN packages (`@upscalerjs/esrgan-slim|medium|thick`) ship Keras 2
functional models converted to tfjs. `TfjsLayersModel` reads the `modelTopology` and the
`weightsManifest`, builds the convolutions in torch (NCHW) and executes the graph in the
topological order of the layer list, dropping every intermediate tensor after its last use
so that memory stays bounded on the wide dense blocks.

Supported layer classes (everything these packages use; anything else raises):
InputLayer, Conv2D (stride 1, dilation 1, groups 1, 'same' or 'valid', linear or relu),
Activation (linear, relu), Add, Concatenate (channel axis), UpSampling2D (nearest),
and the two custom classes the package registers in its `setup` (see
`dist/*/packages/shared/src/esrgan/esrgan.js`): `MultiplyBeta` (x * 0.2) and
`PixelShuffle{r}x` (`tf.depthToSpace(x, r, 'NHWC')`, i.e. DCR channel order, which is not
torch's `pixel_shuffle` order).

Memory: an UpSampling2D (nearest, factor s) whose only consumer is a 'same' Conv2D is fused
with it into one low-resolution convolution with s*s phase kernels followed by a pixel
shuffle (`fuse_nearest_upsample_conv`). The result is the same up to float rounding, but the
wide upsampled tensor (192 channels at the output size for the RDN x8 models) is never
built: the RDN x8 models on a 256x256 input peak at about 0.5 GB instead of 6.7 GB.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_DTYPES = {"float32": np.dtype("<f4")}


class TfjsFormatError(ValueError):
    """model.json or its shards are malformed or use an unsupported feature."""


def read_weights(model_json: Mapping[str, Any], shard_dir: Path) -> dict[str, np.ndarray]:
    """All weights of a tfjs model, name -> array in the manifest's (Keras) shape."""
    weights: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        buffer = b"".join((shard_dir / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if "quantization" in spec:
                raise TfjsFormatError(f"{spec['name']}: quantized tfjs weights are not supported")
            dtype = _DTYPES.get(spec["dtype"])
            if dtype is None:
                raise TfjsFormatError(f"{spec['name']}: dtype {spec['dtype']} is not supported")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            size = count * dtype.itemsize
            if offset + size > len(buffer):
                raise TfjsFormatError(f"weight shards end before {spec['name']}")
            array = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset)
            weights[spec["name"]] = array.reshape(spec["shape"]).astype(np.float32)
            offset += size
        if offset != len(buffer):
            raise TfjsFormatError(
                f"weight group {group['paths']} has {len(buffer) - offset} extra bytes"
            )
    return weights


def depth_to_space_nchw(x: torch.Tensor, block: int) -> torch.Tensor:
    """tf.nn.depth_to_space (DCR order) for an NCHW tensor."""
    n, c, h, w = x.shape
    out_c = c // (block * block)
    x = x.view(n, block, block, out_c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(n, out_c, h * block, w * block)


def fuse_nearest_upsample_conv(conv: nn.Conv2d, scale: int) -> tuple[nn.Conv2d, tuple[int, ...]]:
    """An LR conv (+ its F.pad widths) equivalent to conv(nearest_upsample(x, scale)).

    Output pixel (s*h + i, s*w + j) of the upsampled conv reads input row h + (i + dy) // s
    for kernel row offset dy, so for each phase (i, j) the kernel taps that land on the same
    input pixel are summed. The phases become output channels in torch pixel_shuffle order
    (c*s*s + i*s + j); zero padding at the border is the same in both forms.
    """
    if isinstance(conv.padding, str):
        raise ValueError(f"expected explicit padding widths, got padding={conv.padding!r}")
    rh, rw = conv.padding  # 'same', odd kernel: radius
    weight = conv.weight.detach()
    out_ch, in_ch = weight.shape[:2]
    lo_h, hi_h = (-rh) // scale, (scale - 1 + rh) // scale
    lo_w, hi_w = (-rw) // scale, (scale - 1 + rw) // scale
    kh, kw = hi_h - lo_h + 1, hi_w - lo_w + 1
    fused = torch.zeros(out_ch, scale, scale, in_ch, kh, kw)
    for i in range(scale):
        for j in range(scale):
            for dy in range(-rh, rh + 1):
                for dx in range(-rw, rw + 1):
                    a, b = (i + dy) // scale - lo_h, (j + dx) // scale - lo_w
                    fused[:, i, j, :, a, b] += weight[:, :, dy + rh, dx + rw]
    layer = nn.Conv2d(in_ch, out_ch * scale * scale, (kh, kw), bias=conv.bias is not None)
    with torch.no_grad():
        layer.weight.copy_(fused.reshape(out_ch * scale * scale, in_ch, kh, kw))
        if conv.bias is not None and layer.bias is not None:  # both or neither
            layer.bias.copy_(conv.bias.detach().repeat_interleave(scale * scale))
    return layer, (-lo_w, hi_w, -lo_h, hi_h)


def _inbound(layer: Mapping[str, Any]) -> list[str]:
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise TfjsFormatError(f"layer {layer['name']} is called more than once (shared layer)")
    return [entry[0] for entry in nodes[0]] if nodes else []


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, list | tuple) else (value, value)


class TfjsLayersModel(nn.Module):
    """A tfjs layers model (Keras functional, channels_last) run NCHW in torch."""

    def __init__(self, model_json: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> None:
        super().__init__()
        topology = model_json["modelTopology"]
        config = topology.get("model_config", topology)
        if config.get("class_name") not in ("Functional", "Model"):
            raise TfjsFormatError(f"model class {config.get('class_name')} is not supported")
        graph = config["config"]
        self.layers: list[dict[str, Any]] = []
        self.convs: nn.ModuleDict = nn.ModuleDict()  # layer name -> nn.Conv2d
        for layer in graph["layers"]:
            self.layers.append(self._prepare(layer, weights))
        inputs = graph["input_layers"]
        outputs = graph["output_layers"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise TfjsFormatError("only single-input, single-output models are supported")
        self.input_name = inputs[0][0]
        self.output_name = outputs[0][0]
        self._fuse_upsampling()
        # index of the last layer that reads each tensor, so it can be freed right after
        self._last_use: dict[str, int] = {}
        for index, layer in enumerate(self.layers):
            for name in layer["inputs"]:
                self._last_use[name] = index
        self.eval()

    def _prepare(self, layer: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> dict:
        kind, cfg, name = layer["class_name"], layer["config"], layer["name"]
        spec: dict[str, Any] = {"kind": kind, "name": name, "inputs": _inbound(layer)}
        if kind == "Conv2D":
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise TfjsFormatError(f"{name}: only channels_last is supported")
            if _pair(cfg["strides"]) != (1, 1) or _pair(cfg.get("dilation_rate", 1)) != (1, 1):
                raise TfjsFormatError(f"{name}: only stride 1, dilation 1 is supported")
            if cfg.get("groups", 1) != 1:
                raise TfjsFormatError(f"{name}: grouped convolution is not supported")
            kh, kw = _pair(cfg["kernel_size"])
            if cfg["padding"] == "same":
                if kh % 2 == 0 or kw % 2 == 0:
                    raise TfjsFormatError(f"{name}: 'same' padding with an even kernel")
                padding = (kh // 2, kw // 2)
            elif cfg["padding"] == "valid":
                padding = (0, 0)
            else:
                raise TfjsFormatError(f"{name}: padding {cfg['padding']!r} is not supported")
            kernel = weights[f"{name}/kernel"]  # (kh, kw, in, out)
            conv = nn.Conv2d(
                kernel.shape[2], kernel.shape[3], (kh, kw), padding=padding,
                bias=bool(cfg.get("use_bias", True)),
            )  # fmt: skip
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
                if conv.bias is not None:
                    conv.bias.copy_(torch.from_numpy(weights[f"{name}/bias"]))
            self.convs[name] = conv
            spec["activation"] = self._activation(name, cfg.get("activation", "linear"))
        elif kind == "Activation":
            spec["activation"] = self._activation(name, cfg["activation"])
        elif kind == "Concatenate":
            if cfg.get("axis", -1) not in (-1, 3):
                raise TfjsFormatError(f"{name}: only channel concatenation is supported")
        elif kind == "UpSampling2D":
            if cfg.get("interpolation", "nearest") != "nearest":
                raise TfjsFormatError(f"{name}: only nearest upsampling is supported")
            spec["size"] = _pair(cfg["size"])
        elif kind == "MultiplyBeta":
            spec["beta"] = float(cfg.get("beta", 0.2))
        elif (match := re.fullmatch(r"PixelShuffle(\d+)x", kind)) is not None:
            spec["kind"] = "PixelShuffle"
            spec["block"] = int(cfg.get("scale", match.group(1)))
        elif kind not in ("InputLayer", "Add"):
            raise TfjsFormatError(f"{name}: layer class {kind} is not supported")
        return spec

    def _fuse_upsampling(self) -> None:
        """Fold each nearest UpSampling2D into the 'same' Conv2D that alone consumes it."""
        consumers: dict[str, list[dict[str, Any]]] = {}
        for spec in self.layers:
            for name in spec["inputs"]:
                consumers.setdefault(name, []).append(spec)
        for spec in self.layers:
            users = consumers.get(spec["name"], [])
            if spec["kind"] != "UpSampling2D" or spec["name"] == self.output_name:
                continue
            scale = spec["size"][0]
            if spec["size"][1] != scale or scale < 2 or len(users) != 1:
                continue
            conv_spec = users[0]
            if conv_spec["kind"] != "Conv2D" or len(conv_spec["inputs"]) != 1:
                continue
            conv = self.convs[conv_spec["name"]]
            assert isinstance(conv, nn.Conv2d)  # convs holds only Conv2d layers
            if conv.padding != (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2):
                continue  # only 'same' convs fold exactly
            fused, pad = fuse_nearest_upsample_conv(conv, scale)
            self.convs[conv_spec["name"]] = fused
            conv_spec["fused"] = (scale, pad)
            spec["kind"] = "Deferred"  # passes its input through; the conv upsamples

    @staticmethod
    def _activation(name: str, activation: str) -> str:
        if activation not in ("linear", "relu"):
            raise TfjsFormatError(f"{name}: activation {activation!r} is not supported")
        return activation

    def _run(self, spec: Mapping[str, Any], args: list[torch.Tensor]) -> torch.Tensor:
        kind = spec["kind"]
        if kind == "Conv2D":
            if "fused" in spec:
                scale, pad = spec["fused"]
                out = F.pixel_shuffle(self.convs[spec["name"]](F.pad(args[0], pad)), scale)
            else:
                out = self.convs[spec["name"]](args[0])
            return torch.relu_(out) if spec["activation"] == "relu" else out
        if kind == "Activation":
            return torch.relu(args[0]) if spec["activation"] == "relu" else args[0]
        if kind == "Concatenate":
            return torch.cat(args, dim=1)
        if kind == "Add":
            out = args[0] + args[1]
            for extra in args[2:]:
                out = out + extra
            return out
        if kind == "MultiplyBeta":
            return args[0] * spec["beta"]
        if kind == "Deferred":
            return args[0]
        if kind == "UpSampling2D":
            sh, sw = spec["size"]
            return args[0].repeat_interleave(sh, dim=2).repeat_interleave(sw, dim=3)
        if kind == "PixelShuffle":
            return depth_to_space_nchw(args[0], spec["block"])
        raise TfjsFormatError(f"cannot run layer class {kind}")  # InputLayer never runs

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW float input (in the model's own input range) -> NCHW output."""
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for index, spec in enumerate(self.layers):
            if spec["kind"] == "InputLayer":
                continue
            values[spec["name"]] = self._run(spec, [values[name] for name in spec["inputs"]])
            for name in spec["inputs"]:
                if self._last_use.get(name) == index and name != self.output_name:
                    values.pop(name, None)
        return values[self.output_name]


def load_tfjs_layers_model(model_json_path: str | os.PathLike[str]) -> TfjsLayersModel:
    """Load model.json and the shards it names (from the same directory)."""
    path = Path(model_json_path)
    model_json = json.loads(path.read_text())
    if model_json.get("format") != "layers-model":
        raise TfjsFormatError(f"{path}: format {model_json.get('format')!r} is not 'layers-model'")
    return TfjsLayersModel(model_json, read_weights(model_json, path.parent))
