"""Building blocks: Monte Carlo dropout and the Bayesian regression head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MCDropout", "BayesianHead", "set_mc_dropout", "LOGVAR_MIN", "LOGVAR_MAX"]

LOGVAR_MIN, LOGVAR_MAX = -10.0, 10.0


class MCDropout(nn.Module):
    """Dropout that stays on at inference when `sampling` is set.

    Unlike switching the whole model to train mode (which also changes batch-norm),
    this makes dropout the only stochastic part of the network.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.sampling = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=self.training or self.sampling)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def set_mc_dropout(model: nn.Module, sampling: bool) -> None:
    """Switch Monte Carlo sampling of every `MCDropout` in `model` on or off."""
    for m in model.modules():
        if isinstance(m, MCDropout):
            m.sampling = sampling


class BayesianHead(nn.Module):
    """Blocks of [Linear, GELU, MCDropout], then a mean and a log-variance output.

    Outputs t = ln(1 + z) and log sigma_t^2, the latter clamped to [-10, 10] as the paper.
    """

    def __init__(self, n_in: int, hidden: tuple[int, ...], p_dropout: float):
        super().__init__()
        layers = []
        for n_out in hidden:
            layers += [nn.Linear(n_in, n_out), nn.GELU(), MCDropout(p_dropout)]
            n_in = n_out
        self.blocks = nn.Sequential(*layers)
        self.mean = nn.Linear(n_in, 1)
        self.logvar = nn.Linear(n_in, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sampled(self.deterministic(features))

    def deterministic(self, features: torch.Tensor) -> torch.Tensor:
        """The layers before the first dropout (the first Linear and GELU): the same in every Monte Carlo pass."""
        return self.blocks[:2](features)

    def sampled(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From the first dropout to the outputs (mean, log-variance) of `deterministic`'s output."""
        h = self.blocks[2:](h)
        logvar = self.logvar(h).squeeze(-1).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return self.mean(h).squeeze(-1), logvar
