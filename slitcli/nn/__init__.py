"""Network architectures and their registry.

`create_model(name, **overrides)` is the only constructor; `@register_model` adds an
architecture. Every model maps a batch of slitless cutouts [N, bands, H, W] to the
mean and log-variance of t = ln(1 + z), through a `backbone` (deterministic, run once
per source) and a `head` (whose Monte Carlo dropout is the only stochastic part).
"""

from slitcli.nn.registry import create_model, list_models, register_model
from slitcli.nn import architectures as _architectures  # noqa: F401  (fills the registry)

__all__ = ["create_model", "list_models", "register_model"]
