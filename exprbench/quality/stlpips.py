"""ST-LPIPS: shift-tolerant LPIPS perceptual distance (full reference; 0 = identical).

Ghildyal and Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022. The networks
are rebuilt here in plain torch (no torchvision, which has no CPU build on exprbench's
machines) and load the complete state dicts shipped in `stlpips-pytorch` 0.0.2
(`weights/vST0.0/{vgg,alex}_shift_tolerant.pth`, BSD-2-Clause): backbone, anti-aliasing
filters, linear heads and input scaling. The forward pass is that package's
`LPIPS(net=..., variant="shift_tolerant")` (version 0.1: inputs in [-1, 1] shifted and
scaled per channel; per-layer channel-normalised features; squared differences weighted by
the 1x1 linear heads, averaged over space and summed over the 5 layers).

The values are NOT comparable to published LPIPS numbers (different backbones: stride-1
convolutions with blur-pool downsampling, reflection padding, and heads trained for shift
tolerance), hence the name ST-LPIPS in every output.

Resize policy: by default both images are resized to SIZE x SIZE (256; Pillow's
antialiased bicubic, aspect ratio not kept, the same warp for both), so that distances
of tools that render at different resolutions are comparable and d(a, b) == d(b, a).
With size=None the images are compared at their own resolution; if their shapes differ
the second is resized to the first's shape (then the distance is not symmetric).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from exprbench.imagecheck import check_rgb_image
from exprbench.quality.specs import STLPIPS_ALEX, STLPIPS_VGG

Net = Literal["vgg", "alex"]
NETS: tuple[Net, ...] = ("vgg", "alex")
SIZE = 256
MIN_SIDE = 32  # below this the reflection padding of the deepest layers has no room

SPECS = {"vgg": STLPIPS_VGG, "alex": STLPIPS_ALEX}


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 2, depthwise [1 2 1]^2/16 filter."""

    filt: torch.Tensor  # buffer

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = a[:, None] * a[None, :]
        self.register_buffer("filt", (filt / filt.sum())[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReflectionPad2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


def _slice(layers: dict[int, nn.Module]) -> nn.Sequential:
    # Module names are the indices in the original feature stack, so state-dict keys match.
    return nn.Sequential(OrderedDict((str(i), m) for i, m in layers.items()))


def _vgg_slices() -> list[nn.Sequential]:
    """VGG16 'D' with max-pool(2, stride 1) + blur-pool in place of each max-pool."""
    cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]  # "M": max-pool
    cfg += [512, 512, 512, "M", 512, 512, 512]
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=1), BlurPool(channels)]
        else:
            layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU()]
            channels = int(v)
    bounds = [(0, 4), (4, 10), (10, 18), (18, 26), (26, 34)]
    return [_slice({i: layers[i] for i in range(a, b)}) for a, b in bounds]


def _alex_slices() -> list[nn.Sequential]:
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=2),
        BlurPool(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=1),
        BlurPool(64),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=1),
        BlurPool(192),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
    ]
    bounds = [(0, 3), (3, 7), (7, 11), (11, 13), (13, 15)]
    return [_slice({i: layers[i] for i in range(a, b)}) for a, b in bounds]


class _Backbone(nn.Module):
    def __init__(self, net: Net) -> None:
        super().__init__()
        slices = _vgg_slices() if net == "vgg" else _alex_slices()
        for k, s in enumerate(slices, start=1):
            self.add_module(f"slice{k}", s)
        self.n_slices = len(slices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for k in range(1, self.n_slices + 1):
            x = getattr(self, f"slice{k}")(x)
            outs.append(x)
        return outs


class _Linear(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        # index 0 was a Dropout (inactive in eval mode); the 1x1 conv keeps the name "1"
        self.model = nn.Sequential(OrderedDict([("1", nn.Conv2d(channels, 1, 1, bias=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_CHANNELS: dict[str, tuple[int, ...]] = {
    "vgg": (64, 128, 256, 512, 512),
    "alex": (64, 192, 384, 256, 256),
}


class STLPIPSNet(nn.Module):
    """The ST-LPIPS network; takes N x 3 x H x W tensors in [-1, 1]."""

    shift: torch.Tensor  # buffers
    scale: torch.Tensor

    def __init__(self, net: Net) -> None:
        super().__init__()
        if net not in _CHANNELS:
            raise ValueError(f"unknown ST-LPIPS net {net!r}; choose from {NETS}")
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))
        self.net = _Backbone(net)
        for k, c in enumerate(_CHANNELS[net]):
            self.add_module(f"lin{k}", _Linear(c))

    def load_package_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a stlpips-pytorch state dict (strictly: every tensor must be used)."""
        renamed = {
            k.replace("scaling_layer.", "", 1) if k.startswith("scaling_layer.") else k: v
            for k, v in state.items()
        }
        self.load_state_dict(renamed, strict=True)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised features of each of the 5 layers."""
        outs = self.net((x - self.shift) / self.scale)
        return [f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + 1e-10) for f in outs]

    def distance_from_features(
        self, feats0: Sequence[torch.Tensor], feats1: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        total = None
        for k, (f0, f1) in enumerate(zip(feats0, feats1, strict=True)):
            layer = getattr(self, f"lin{k}")((f0 - f1) ** 2).mean(dim=(2, 3), keepdim=True)
            total = layer if total is None else total + layer
        assert total is not None
        return total.flatten()

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        return self.distance_from_features(self.features(in0), self.features(in1))


def load_network(net: Net, path: str | Path | None = None) -> STLPIPSNet:
    """The ST-LPIPS network with the packaged weights (or those at `path`), in eval mode."""
    if path is None:
        from exprbench.weights import weight_path

        path = weight_path(f"stlpips-{net}")
    model = STLPIPSNet(net)
    model.load_package_state(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


def resize_rgb(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to (height, width) with Pillow's antialiased bicubic."""
    if rgb.shape[:2] == tuple(shape):
        return rgb
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BICUBIC))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float32 in [-1, 1]."""
    array = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1)[None]
    return array.float() / 127.5 - 1.0


class STLPIPS:
    """ST-LPIPS distance between RGB images (lower = more similar; 0 for identical images).

    `size`: both images are resized to size x size (default 256); None keeps the first
    image's resolution (the second is resized to it if needed). See the module notes.
    """

    def __init__(
        self,
        net: Net = "vgg",
        *,
        size: int | None = SIZE,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if net not in NETS:
            raise ValueError(f"unknown ST-LPIPS net {net!r}; choose from {NETS}")
        if size is not None and size < MIN_SIDE:
            raise ValueError(f"size must be at least {MIN_SIDE} px, got {size}")
        self.net_name = net
        self.size = size
        self.spec = SPECS[net]
        self.device = torch.device(device)
        self.model = load_network(net, weights).to(self.device)

    def _prepare(self, rgb: np.ndarray, shape: tuple[int, int] | None = None) -> torch.Tensor:
        image = check_rgb_image(rgb, "ST-LPIPS", min_side=1 if self.size else MIN_SIDE)
        if shape is None:
            shape = (self.size, self.size) if self.size else image.shape[:2]
        return to_tensor(resize_rgb(image, shape)).to(self.device)

    @torch.inference_mode()
    def distance(self, rgb_a: np.ndarray, rgb_b: np.ndarray) -> float:
        """ST-LPIPS distance between two H x W x 3 uint8 RGB images."""
        a = self._prepare(rgb_a)
        b = self._prepare(rgb_b, (a.shape[2], a.shape[3]))
        return float(self.model(a, b)[0])

    @torch.inference_mode()
    def distances(self, reference: np.ndarray, images: Iterable[np.ndarray]) -> list[float]:
        """Distance of each image to `reference` (the reference's features computed once)."""
        ref = self._prepare(reference)
        ref_feats = self.model.features(ref)
        out = []
        for rgb in images:
            feats = self.model.features(self._prepare(rgb, (ref.shape[2], ref.shape[3])))
            out.append(float(self.model.distance_from_features(ref_feats, feats)[0]))
        return out
