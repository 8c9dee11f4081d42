"""RRDBNet, the ESRGAN / Real-ESRGAN generator (Wang et al. 2018, 2021), written from the paper.

Residual-in-residual dense blocks at the input resolution, then x2 nearest-neighbour
upsampling + conv twice (x4). Real-ESRGAN x4plus: 23 blocks, 64 features, growth 32;
input RGB in [0, 1], output RGB nominally in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing all earlier outputs; output scaled by 0.2 plus input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.leaky_relu
        x1 = act(self.conv1(x), 0.2)
        x2 = act(self.conv2(torch.cat((x, x1), 1)), 0.2)
        x3 = act(self.conv3(torch.cat((x, x1, x2), 1)), 0.2)
        x4 = act(self.conv4(torch.cat((x, x1, x2, x3), 1)), 0.2)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Three dense blocks in a residual, output scaled by 0.2 plus input."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """x4 RRDB generator: NCHW float input -> NCHW output with 4x the height and width."""

    scale = 4

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        self.num_block = num_block
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor, tail_rows: int | None = 32) -> torch.Tensor:
        """x4 upscale. The high-resolution tail (upsampling convs) runs in strips of
        `tail_rows` input rows plus a 2-row halo, which is exact (the tail's receptive field
        is 1.25 input rows) and keeps memory at the input resolution; None: in one piece.
        """
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        height = feat.shape[2]
        if tail_rows is None or height <= tail_rows:
            return self._tail(feat)
        halo, out = 2, []
        for start in range(0, height, tail_rows):
            end = min(start + tail_rows, height)
            lo, hi = max(start - halo, 0), min(end + halo, height)
            strip = self._tail(feat[:, :, lo:hi])
            out.append(strip[:, :, (start - lo) * 4 : (end - lo) * 4])
        return torch.cat(out, dim=2)

    def _tail(self, feat: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
