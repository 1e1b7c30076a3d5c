"""Model files: ``model.safetensors`` (weights only) and ``model.json`` (everything else).

A model directory holds the weights as safetensors (which cannot carry code) and a JSON
card: architecture and its config, input layout (instrument, bands, cutout size),
normalisation, calibration temperature, training provenance and metrics. The JSON also
rides in the safetensors metadata. Loading never unpickles, and happens on the CPU
before any move to a device, so a model trained on a GPU loads anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slitcli.errors import InputError, OutputExistsError
from slitcli.nn import create_model

__all__ = ["ModelBundle", "save_model", "load_model", "default_model_dir", "FORMAT"]

FORMAT = "slitcli-model/1"
WEIGHTS, CARD = "model.safetensors", "model.json"


@dataclass
class ModelBundle:
    """A network with its card.

    Attributes
    ----------
    model : torch.nn.Module
    card : dict
        The ``model.json`` content.
    path : Path or None
        Directory it was loaded from.
    weights_sha256 : str
        SHA-256 of the weights file (or of the state when not saved yet).
    """

    model: torch.nn.Module
    card: dict
    path: Path | None = None
    weights_sha256: str = ""

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.card["input"]["bands"])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.card["input"]["height"]), int(self.card["input"]["width"]))

    @property
    def scales(self) -> np.ndarray:
        """Normalisation scale per band [e-/s]: inputs are asinh(SCI / scale)."""
        return np.array([self.card["input"]["scale_e_s"][b] for b in self.bands], dtype=np.float32)

    @property
    def temperature(self) -> float:
        return float(self.card.get("calibration", {}).get("temperature", 1.0))

    @property
    def snr_power(self) -> float:
        """Power p of the SNR-dependent uncertainty scale (clip(SNR_GI, 1, 30) / 3)^p; 0 before calibration."""
        return float(self.card.get("calibration", {}).get("snr_power", 0.0) or 0.0)

    @property
    def tail_dof(self) -> float:
        """Degrees of freedom of the Student t predictive distribution (inf: Gaussian)."""
        dof = self.card.get("calibration", {}).get("tail_dof")
        return float("inf") if dof is None else float(dof)

    @property
    def name(self) -> str:
        return self.card.get("name", "")


def default_model_dir() -> Path:
    """The model shipped in the repository's ``models/`` directory."""
    return Path(__file__).resolve().parents[2] / "models" / "slitnet-csst-default"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(bundle: ModelBundle, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into `directory`, atomically each."""
    from safetensors.torch import save_file

    directory = Path(directory)
    for name in (WEIGHTS, CARD):
        if (directory / name).exists() and not overwrite:
            msg = f"{directory / name}: exists; use --overwrite to replace it"
            raise OutputExistsError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    card = dict(bundle.card, format=FORMAT)
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    tmp_w, tmp_c = directory / f".{WEIGHTS}.tmp", directory / f".{CARD}.tmp"
    try:
        save_file(state, str(tmp_w), metadata={"slitcli": json.dumps(card)})
        tmp_c.write_text(json.dumps(card, indent=2) + "\n")
        os.chmod(tmp_w, 0o644)  # safetensors creates its file private
        os.replace(tmp_w, directory / WEIGHTS)
        os.replace(tmp_c, directory / CARD)
    finally:
        tmp_w.unlink(missing_ok=True)
        tmp_c.unlink(missing_ok=True)
    bundle.weights_sha256 = _sha256(directory / WEIGHTS)
    bundle.path = directory
    return directory


def load_model(directory: str | Path | None = None) -> ModelBundle:
    """Load a model directory (the shipped default when None), on the CPU, in eval mode.

    Raises
    ------
    InputError
        If the files are missing, the weights are not safetensors (a pickle is refused
        unread), or weights and card disagree.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = default_model_dir() if directory is None else Path(directory)
    weights, card_path = directory / WEIGHTS, directory / CARD
    for p in (weights, card_path):
        if not p.is_file():
            msg = f"{p}: not found; a model directory holds {WEIGHTS} and {CARD}"
            raise InputError(msg)
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        msg = f"{card_path}: not valid JSON"
        raise InputError(msg) from None
    if card.get("format") != FORMAT:
        msg = f"{card_path}: format is {card.get('format')!r}, expected {FORMAT!r}"
        raise InputError(msg)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        msg = f"{weights}: not a safetensors file ({str(err)[:80]}); slitcli never unpickles model weights"
        raise InputError(msg) from None
    model = create_model(card["architecture"], **card["config"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        msg = f"{weights}: weights do not fit architecture {card['architecture']} ({str(err).splitlines()[0][:100]})"
        raise InputError(msg) from None
    model.eval()
    return ModelBundle(model, card, directory, _sha256(weights))
