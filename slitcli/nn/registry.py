"""The model registry: names to (config dataclass, builder)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from slitcli.config import from_mapping
from slitcli.errors import ConfigError

__all__ = ["register_model", "create_model", "list_models", "model_config"]

_REGISTRY: dict[str, tuple[type, Callable]] = {}


def register_model(name: str, config_cls: type):
    """Decorator: register `builder(config) -> nn.Module` under `name` with its config dataclass."""

    def wrap(builder):
        _REGISTRY[name] = (config_cls, builder)
        return builder

    return wrap


def _registry() -> dict[str, tuple[type, Callable]]:
    from slitcli.nn import architectures, zoo  # noqa: F401  (register the built-in architectures)

    return _REGISTRY


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_registry())


def model_config(name: str, **overrides):
    """The config dataclass of architecture `name` with `overrides` applied (checked)."""
    if name not in _registry():
        msg = f"unknown model architecture '{name}'; known: {', '.join(list_models())}"
        raise ConfigError(msg)
    config_cls, _ = _REGISTRY[name]
    base = dataclasses.asdict(config_cls())
    base.update(overrides)
    return from_mapping(config_cls, base, f"model {name}")


def create_model(name: str, **overrides):
    """Build architecture `name`, its config defaults overridden by `overrides`."""
    config = model_config(name, **overrides)
    _, builder = _REGISTRY[name]
    return builder(config)
