"""The architecture zoo: the families DeepRed compared, and slitnet's successor, all keeping position along the dispersion.

A slitless cutout's redshift is where its lines land along x, so every backbone here
ends in a `PositionNeck` (mean over the rows, a 1x1 convolution to a few channels, then
the positions flattened for the head) instead of global pooling, and none strides along
x by more than 4 before it:

- ``resnet18``: ResNet-18's BasicBlocks [2, 2, 2, 2] at a quarter of its widths (16-128
  channels: a CPU trains it); stride 2 in both axes in the stem and the second stage,
  then along y only (x: 480 -> 120 positions).
- ``efficientnet``: EfficientNet-B0's MBConv blocks (1x1 expansion, depthwise 3x3,
  squeeze-and-excitation, 1x1 projection, SiLU) in its first five stages, slimmed for
  a CPU (half width, expansion 4, at most 2 blocks a stage); the same strides.
- ``vit``: a Vision Transformer whose patches are strips spanning every row and
  `patch_width` columns (120 tokens along the dispersion), learned position embeddings,
  pre-norm encoder layers, no class token: the tokens, in order, go to the neck.
- ``mixer``: MLP-Mixer on the same strip patches: token-mixing and channel-mixing MLPs.
- ``slitnet2``: slitnet's first layer (a learned 2D filter over the central rows), then
  residual 1D blocks with dilations 1, 2, 4, 8, ... at full resolution (no pooling at
  all), so that the head reads where a line lies to a fraction of a pixel.

They are written here in plain torch, after timm's definitions, not built with timm:
timm imports torchvision, and PyPI's torchvision fails to import beside the CPU build of
torch that CI installs ("operator torchvision::nms does not exist"). No weights are
downloaded; every architecture ends in the head of `slitcli.nn.layers.make_head`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from slitcli.nn.architectures import T_MAX, CentralRows, RedshiftNet
from slitcli.nn.layers import make_head
from slitcli.nn.registry import register_model

__all__ = ["PositionNeck", "ResNet18Config", "EfficientNetConfig", "ViTConfig", "MixerConfig", "SlitNet2Config"]


class PositionNeck(nn.Module):
    """[N, C, H, W] (or [N, C, W]) -> mean over H -> 1x1 conv to `channels`, GELU -> [N, channels * W]."""

    def __init__(self, n_in: int, channels: int):
        super().__init__()
        self.reduce = nn.Conv1d(n_in, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.mean(2)
        return F.gelu(self.reduce(x)).flatten(1)


def _out_width(backbone: nn.Module, in_channels: int, height: int, width: int) -> tuple[int, int]:
    """(channels, positions along x) of `backbone`'s output for one input of this size."""
    with torch.no_grad():
        out = backbone.eval()(torch.zeros(1, in_channels, height, width))
    return out.shape[1], out.shape[-1]


def _finish(backbone: nn.Module, config) -> RedshiftNet:
    channels, positions = _out_width(backbone, config.in_channels, config.height, config.width)
    backbone.train()
    return RedshiftNet(nn.Sequential(backbone, PositionNeck(channels, config.neck_channels)), make_head(config.neck_channels * positions, config))


@dataclass(frozen=True)
class _ZooConfig:
    """What every zoo architecture takes: the input, the neck's channels and the head's options (`slitcli.nn.layers.make_head`)."""

    in_channels: int = 2
    height: int = 40
    width: int = 480
    neck_channels: int = 32
    head_hidden: tuple[int, ...] = (256, 128)
    p_dropout: float = 0.1
    head: str = "gaussian"
    pdf_bins: int = 1100
    t_max: float = T_MAX


# ---------------------------------------------------------------- ResNet-18


@dataclass(frozen=True)
class ResNet18Config(_ZooConfig):
    base: int = 16
    layers: tuple[int, ...] = (2, 2, 2, 2)


class _Basic(nn.Module):
    def __init__(self, n_in: int, n_out: int, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.down = None if stride == (1, 1) and n_in == n_out else nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.down is None else self.down(x)))


#: Stage strides (y, x) after the stem's (2, 2): x strides 4 in all.
_STAGE_STRIDES = ((1, 1), (2, 2), (2, 1), (2, 1))


@register_model("resnet18", ResNet18Config)
def build_resnet18(config: ResNet18Config) -> RedshiftNet:
    layers = [nn.Conv2d(config.in_channels, config.base, 5, 2, 2, bias=False), nn.BatchNorm2d(config.base), nn.ReLU()]
    n_in = config.base
    for i, (n_blocks, stride) in enumerate(zip(config.layers, _STAGE_STRIDES, strict=False)):
        n_out = config.base * 2**i
        for b in range(n_blocks):
            layers.append(_Basic(n_in, n_out, stride if b == 0 else (1, 1)))
            n_in = n_out
    return _finish(nn.Sequential(*layers), config)


# ---------------------------------------------------------------- EfficientNet-B0


@dataclass(frozen=True)
class EfficientNetConfig(_ZooConfig):
    #: Per stage: expansion, channels and blocks; EfficientNet-B0's first five stages at half
    #: width, expansion 4 and at most 2 blocks (depthwise convolutions are slow on a CPU).
    expansions: tuple[int, ...] = (1, 4, 4, 4, 4)
    channels: tuple[int, ...] = (8, 12, 20, 40, 56)
    blocks: tuple[int, ...] = (1, 2, 2, 2, 2)


class _MBConv(nn.Module):
    def __init__(self, n_in: int, n_out: int, expand: int, stride):
        super().__init__()
        mid = n_in * expand
        self.expand = nn.Identity() if expand == 1 else nn.Sequential(nn.Conv2d(n_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
        squeeze = max(1, n_in // 4)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, squeeze, 1), nn.SiLU(), nn.Conv2d(squeeze, mid, 1), nn.Sigmoid())
        self.project = nn.Sequential(nn.Conv2d(mid, n_out, 1, bias=False), nn.BatchNorm2d(n_out))
        self.residual = stride == (1, 1) and n_in == n_out

    def forward(self, x):
        h = self.depthwise(self.expand(x))
        h = self.project(h * self.se(h))
        return x + h if self.residual else h


@register_model("efficientnet", EfficientNetConfig)
def build_efficientnet(config: EfficientNetConfig) -> RedshiftNet:
    if not len(config.expansions) == len(config.channels) == len(config.blocks) <= len(_STAGE_STRIDES) + 1:
        msg = f"need one expansion, channel count and block count per stage, at most {len(_STAGE_STRIDES) + 1} stages"
        raise ValueError(msg)
    stem = config.channels[0] * 2
    layers = [nn.Conv2d(config.in_channels, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.SiLU()]
    n_in = stem
    strides = ((1, 1), *_STAGE_STRIDES)
    for expand, n_out, n_blocks, stride in zip(config.expansions, config.channels, config.blocks, strides, strict=False):
        for b in range(n_blocks):
            layers.append(_MBConv(n_in, n_out, expand, stride if b == 0 else (1, 1)))
            n_in = n_out
    backbone = nn.Sequential(*layers)
    for m in backbone.modules():  # EfficientNet's initialisation (timm's, torchvision's): fan-out normal
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return _finish(backbone, config)


# ---------------------------------------------------------------- strip patches: ViT and MLP-Mixer


class _StripPatches(nn.Module):
    """Patches spanning all rows and `patch_width` columns, embedded linearly: [N, B, H, W] -> [N, W / patch_width, dim]."""

    def __init__(self, in_channels: int, height: int, width: int, patch_width: int, dim: int):
        super().__init__()
        if width % patch_width:
            msg = f"the cutout width {width} is not a multiple of patch_width {patch_width}"
            raise ValueError(msg)
        self.embed = nn.Conv2d(in_channels, dim, (height, patch_width), (height, patch_width))
        self.n_tokens = width // patch_width

    def forward(self, x):
        return self.embed(x).flatten(2).transpose(1, 2)


class _TokensToChannels(nn.Module):
    """[N, tokens, dim] -> [N, dim, tokens] for the neck."""

    def forward(self, x):
        return x.transpose(1, 2)


@dataclass(frozen=True)
class ViTConfig(_ZooConfig):
    patch_width: int = 4
    dim: int = 128
    depth: int = 6
    heads: int = 4
    mlp_ratio: int = 2


class _ViTBackbone(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.patches = _StripPatches(config.in_channels, config.height, config.width, config.patch_width, config.dim)
        self.position = nn.Parameter(torch.zeros(1, self.patches.n_tokens, config.dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(config.dim, config.heads, config.dim * config.mlp_ratio, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, x):
        return self.norm(self.encoder(self.patches(x) + self.position)).transpose(1, 2)


@register_model("vit", ViTConfig)
def build_vit(config: ViTConfig) -> RedshiftNet:
    return _finish(_ViTBackbone(config), config)


@dataclass(frozen=True)
class MixerConfig(_ZooConfig):
    patch_width: int = 4
    dim: int = 128
    depth: int = 6
    token_hidden: int = 128
    channel_hidden: int = 256


class _MixerBlock(nn.Module):
    def __init__(self, n_tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tokens = nn.Sequential(nn.Linear(n_tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, n_tokens))
        self.channels = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x):  # [N, tokens, dim]
        x = x + self.tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channels(self.norm2(x))


@register_model("mixer", MixerConfig)
def build_mixer(config: MixerConfig) -> RedshiftNet:
    patches = _StripPatches(config.in_channels, config.height, config.width, config.patch_width, config.dim)
    blocks = [_MixerBlock(patches.n_tokens, config.dim, config.token_hidden, config.channel_hidden) for _ in range(config.depth)]
    return _finish(nn.Sequential(patches, *blocks, nn.LayerNorm(config.dim), _TokensToChannels()), config)


# ---------------------------------------------------------------- slitnet's successor


@dataclass(frozen=True)
class SlitNet2Config(_ZooConfig):
    rows: int = 24
    channels: int = 64
    kernel: int = 5
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    neck_channels: int = 8


class _DilatedBlock(nn.Module):
    """x + BN(conv_d(GELU(BN(conv_d(x))))), 1D, 'same' padding: resolution kept."""

    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        pad = dilation * (kernel // 2)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)

    def forward(self, x):
        return F.gelu(x + self.bn2(self.conv2(F.gelu(self.bn1(self.conv1(x))))))


@register_model("slitnet2", SlitNet2Config)
def build_slitnet2(config: SlitNet2Config) -> RedshiftNet:
    if not 1 <= config.rows <= config.height:
        msg = "need 1 <= rows <= height"
        raise ValueError(msg)
    k = config.kernel
    layers = [
        CentralRows(config.height, config.rows),
        nn.Conv1d(config.in_channels * config.rows, config.channels, k, padding=k // 2, bias=False),
        nn.BatchNorm1d(config.channels),
        nn.GELU(),
        *(_DilatedBlock(config.channels, k, d) for d in config.dilations),
    ]
    return _finish(nn.Sequential(*layers), config)
