"""The learned route: the Bayesian CNN from cutouts to redshifts.

Architectures and their registry (`architectures`, `layers`, `registry`; `create_model`
is the only constructor), model files without pickle (`modelfile`), spatial
augmentations (`augment`), the training loop (`train`), Monte Carlo dropout inference
(`predict`) and temperature scaling of the uncertainties (`calibration`). Every model
maps cutouts [N, bands, H, W] to the mean and log-variance of t = ln(1 + z), through a
deterministic `backbone` run once per source and a `head` whose dropout is the only
stochastic part.
"""

__all__ = ["create_model", "list_models", "register_model"]


def __getattr__(name: str):
    # Torch loads only when a model is asked for, so that e.g. `slitcli augment` stays light.
    if name in __all__:
        from slitcli.nn import registry

        return getattr(registry, name)
    raise AttributeError(name)
