"""Deep ensembles: several trained networks whose predictive distributions are mixed.

An ensemble of M members predicts, for each source, the mixture of the members'
predictive distributions: every member runs its T Monte Carlo dropout passes
(`slitcli.nn.predict.mc_predict`, `mc_pdf`) and the M x T passes are pooled. For the
Gaussian head, Z is their mean and ZERR_EPI their spread, which now holds the members'
disagreement as well as dropout's; for the p(z) head, the PDF is the mean of the
members' mixtures. The members must take the same input (bands, cutout size,
normalisation) and end in the same kind of head (for p(z) heads, on the same grid).

An ensemble is itself a model: ``calibrate -m A -m B ... -o DIR`` fits the calibration
to the ensemble's pooled distribution and writes DIR as a model directory whose card
has architecture ``ensemble`` and one entry per member in ``config.members``
(architecture, config, name, weights SHA-256 of the member's file), and whose weights
file holds every member's weights (keys ``members.<i>.``). ``predict -m DIR`` then
uses it as any model; ``predict -m A -m B`` pools uncalibrated members (temperature 1).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from slitcli.errors import InputError

__all__ = ["ENSEMBLE", "Ensemble", "make_ensemble", "build_ensemble"]

#: The card's architecture of an ensemble.
ENSEMBLE = "ensemble"


class Ensemble(nn.Module):
    """Member networks (`slitcli.nn.architectures.RedshiftNet`), predicted together by pooling their passes."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def head(self) -> nn.Module:
        """The first member's head: the kind (and, for p(z), the grid) every member shares."""
        return self.members[0].head

    def forward(self, x):
        msg = "an ensemble has no single output: predict it with slitcli.nn.predict.mc_predict or mc_pdf"
        raise TypeError(msg)


def _head_kind(model) -> tuple:
    from slitcli.nn.layers import PDFHead

    head = model.head
    return ("pdf", head.n_bins, head.t_max) if isinstance(head, PDFHead) else ("gaussian",)


def make_ensemble(bundles, name: str = ""):
    """The ensemble of loaded models `bundles` (`ModelBundle`, two or more) as a `ModelBundle`, uncalibrated.

    Raises
    ------
    InputError
        Fewer than two members, or members with different inputs or heads (naming them).
    """
    from slitcli.nn.modelfile import ModelBundle

    if len(bundles) < 2:
        msg = "an ensemble needs at least two models"
        raise InputError(msg)
    first = bundles[0]
    for b in bundles[1:]:
        for what, mine, theirs in (("bands", first.bands, b.bands), ("cutout size", first.shape, b.shape), ("head", _head_kind(first.model), _head_kind(b.model))):
            if mine != theirs:
                msg = f"ensemble members {first.path} and {b.path} differ in {what} ({mine} and {theirs}); members must take the same input and end in the same head"
                raise InputError(msg)
        if not np.allclose(first.scales, b.scales, rtol=1e-6):
            msg = f"ensemble members {first.path} and {b.path} normalise their input differently (input.scale_e_s); members must be trained on inputs of the same scale"
            raise InputError(msg)
    members = [{"architecture": b.card["architecture"], "config": b.card["config"], "name": b.name, "weights_sha256": b.weights_sha256} for b in bundles]
    card = {
        "name": name or f"ensemble of {', '.join(b.name for b in bundles)}",
        "architecture": ENSEMBLE,
        "config": {"members": members},
        "input": dict(first.card["input"]),
        "calibration": {"temperature": 1.0, "fitted_on": None},
        "training": {"members": [{"name": b.name, "path": str(b.path) if b.path else None} for b in bundles]},
        "metrics": {},
    }
    return ModelBundle(Ensemble([b.model for b in bundles]), card)


def build_ensemble(config: dict, where) -> Ensemble:
    """The (untrained) `Ensemble` of a card's ``config`` (``{"members": [...]}``); `InputError` naming `where` if it does not fit."""
    from slitcli.nn import create_model

    members = config.get("members") if isinstance(config, dict) else None
    if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, dict) and {"architecture", "config"} <= set(m) for m in members):
        msg = f"{where}: config.members: expected a list of two or more members, each with architecture and config"
        raise InputError(msg)
    try:
        return Ensemble([create_model(m["architecture"], **m["config"]) for m in members])
    except (ValueError, TypeError) as err:
        msg = f"{where}: config.members: {err}"
        raise InputError(msg) from None
