"""The registered architectures.

- ``resnet34``: the paper's network. A ResNet-34 backbone (BasicBlocks [3, 4, 6, 3],
  64-512 channels) taking the bands as input channels, global average pooling to 512
  features, and the Bayesian head 512 -> 256 -> 128 with GELU and dropout p = 0.1.
- ``slitnet``: a compact network that trains on a CPU in minutes. The central rows
  of every band become the input channels of a 1D convolution along the dispersion,
  so the first layer is a learned 2D filter spanning the whole spatial profile (no
  extraction); four stages of conv, batch-norm, GELU and 2x max-pool follow, and the
  feature map is flattened with its positions kept: where a line lands along x is
  the redshift, which global pooling would throw away.

Each ends in a head chosen by ``head`` (`slitcli.nn.layers.HEADS`): "gaussian", the
paper's mean and log-variance of t = ln(1 + z), or "pdf", logits of p(t) at ``pdf_bins``
nodes from 0 to ``t_max`` (`slitcli.nn.pdf`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slitcli.nn.layers import make_head
from slitcli.nn.registry import register_model

__all__ = ["RedshiftNet", "ResNetConfig", "SlitNetConfig", "T_MAX"]

#: Last node of a p(z) head's grid: t = ln(1 + 2), the simulator's highest redshift.
T_MAX = 1.0986122886681098


class RedshiftNet(nn.Module):
    """Backbone (deterministic) + head; forward gives (mean_t, logvar_t) (Gaussian head) or logits of p(t) (p(z) head)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.backbone(x))


# ---------------------------------------------------------------- ResNet-34 (paper)


@dataclass(frozen=True)
class ResNetConfig:
    in_channels: int = 2
    layers: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64
    head_hidden: tuple[int, ...] = (256, 128)
    p_dropout: float = 0.1
    head: str = "gaussian"
    pdf_bins: int = 1100
    t_max: float = T_MAX


class BasicBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or n_in != n_out:
            self.down = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.down is None else self.down(x)))


@register_model("resnet34", ResNetConfig)
def build_resnet(config: ResNetConfig) -> RedshiftNet:
    w = config.width
    layers = [
        nn.Conv2d(config.in_channels, w, 7, 2, 3, bias=False),
        nn.BatchNorm2d(w),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    n_in = w
    for i, n_blocks in enumerate(config.layers):
        n_out = w * 2**i
        for b in range(n_blocks):
            layers.append(BasicBlock(n_in, n_out, 2 if (b == 0 and i > 0) else 1))
            n_in = n_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return RedshiftNet(nn.Sequential(*layers), make_head(n_in, config))


# ---------------------------------------------------------------- compact CPU network


@dataclass(frozen=True)
class SlitNetConfig:
    in_channels: int = 2
    height: int = 40
    width: int = 480
    rows: int = 24
    channels: tuple[int, ...] = (64, 64, 96, 128)
    kernels: tuple[int, ...] = (7, 5, 5, 3)
    head_hidden: tuple[int, ...] = (256, 128)
    p_dropout: float = 0.1
    head: str = "gaussian"
    pdf_bins: int = 1100
    t_max: float = T_MAX


class CentralRows(nn.Module):
    """Keep the central `rows` rows and fold bands x rows into channels: [N, B, H, W] -> [N, B*rows, W]."""

    def __init__(self, height: int, rows: int):
        super().__init__()
        self.start = (height - rows) // 2
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, self.start : self.start + self.rows, :]
        return x.reshape(x.shape[0], -1, x.shape[-1])


@register_model("slitnet", SlitNetConfig)
def build_slitnet(config: SlitNetConfig) -> RedshiftNet:
    if not 1 <= config.rows <= config.height or len(config.kernels) != len(config.channels):
        msg = "need 1 <= rows <= height and one kernel size per stage"
        raise ValueError(msg)
    # The first convolution spans every kept row of every band: a learned 2D filter, after
    # which the network works along the dispersion only, positions kept for the head.
    layers = [CentralRows(config.height, config.rows)]
    n_in, w = config.in_channels * config.rows, config.width
    for n_out, k in zip(config.channels, config.kernels):
        layers += [nn.Conv1d(n_in, n_out, k, padding=k // 2, bias=False), nn.BatchNorm1d(n_out), nn.GELU(), nn.MaxPool1d(2)]
        n_in, w = n_out, w // 2
    if w < 1:
        msg = f"width {config.width} is too small for {len(config.channels)} pooling stages"
        raise ValueError(msg)
    layers.append(nn.Flatten())
    return RedshiftNet(nn.Sequential(*layers), make_head(n_in * w, config))
