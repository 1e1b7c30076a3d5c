"""Model files: ``model.safetensors`` (weights only) and ``model.json`` (everything else).

A model directory holds the weights as safetensors (which cannot carry code) and a JSON
card: architecture and its config, input layout (instrument, bands, cutout size),
normalisation, calibration temperature, training provenance and metrics. The JSON also
rides in the safetensors metadata, less its run times (`run_independent`), so that two
identical training runs give identical weight files. Loading never unpickles, and
happens on the CPU before any move to a device, so a model trained on a GPU loads anywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slitcli.errors import InputError
from slitcli.io.files import atomic_output, check_output_path, output_directory
from slitcli.nn import create_model
from slitcli.nn.ensemble import ENSEMBLE, build_ensemble

__all__ = ["ModelBundle", "save_model", "load_model", "default_model_dir", "run_independent", "check_card", "CARD_SCHEMA", "FORMAT"]

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
    def hybrid_temperature(self) -> float | tuple[float, ...]:
        """Scale of the template likelihood in the hybrid route (`slitcli.hybrid`), one per SNR_GI bin of `snr_edges("hybrid")` where the card has bins; 1 before `calibrate --hybrid`."""
        return _one_or_per_bin(self.card.get("calibration", {}).get("hybrid_temperature", 1.0))

    def error_floor(self, route: str) -> float | tuple[float, ...]:
        """Error floor [ln(1+z)] of the "template" or "hybrid" route's likelihood (`calibrate --template` / `--hybrid`), one per SNR_GI bin where the card has bins; 0 before."""
        return _one_or_per_bin(self.card.get("calibration", {}).get(f"{route}_error_floor", 0.0))

    @property
    def hybrid_point_temperature(self) -> float | tuple[float | None, ...] | None:
        """Temperature of the posterior the hybrid's Z is read from (`slitcli.hybrid.HybridConfig.point_temperature`; card ``hybrid_point_temperature``, one per SNR_GI bin of ``hybrid_snr_edges`` where a list); None: the calibrated one."""
        value = self.card.get("calibration", {}).get("hybrid_point_temperature")
        if isinstance(value, list):
            return tuple(None if v is None else float(v) for v in value)
        return None if value is None else float(value)

    def hybrid_prior_width(self, field: bool = False) -> float:
        """Factor on the width of the hybrid's CNN prior (`slitcli.hybrid.HybridConfig.prior_width`): with `field`, card ``hybrid_field_prior_width`` (`calibrate --hybrid` on field cutouts), else 1."""
        return float(self.card.get("calibration", {}).get("hybrid_field_prior_width", 1.0)) if field else 1.0

    def snr_edges(self, route: str) -> tuple[float, ...]:
        """Lower edges of the SNR_GI bins of the route's per-bin temperature and floor (card ``<route>_snr_edges``); empty: one for all."""
        return tuple(float(e) for e in self.card.get("calibration", {}).get(f"{route}_snr_edges", ()))

    def likelihood_scale(self, route: str, field: bool = False) -> tuple[float | tuple[float, ...], float | tuple[float, ...]]:
        """(temperature, error floor) of the "template" or "hybrid" route; with `field`, for
        cutouts of exposures with a contamination model, the pair `calibrate` fitted on such
        cutouts (``<route>_field_temperature``, ``<route>_field_error_floor``) where the card has it.
        Tuples where the card has them per SNR_GI bin (`snr_edges`)."""
        cal = self.card.get("calibration", {})
        if field and f"{route}_field_temperature" in cal:
            return _one_or_per_bin(cal[f"{route}_field_temperature"]), _one_or_per_bin(cal.get(f"{route}_field_error_floor", 0.0))
        temperature = self.hybrid_temperature if route == "hybrid" else self.template_temperature
        return temperature, self.error_floor(route)

    def offset(self, route: str) -> float:
        """The template basis's redshift offset [ln(1+z)] in the "template" or "hybrid" route's likelihood (`calibrate --template` / `--hybrid`); 0 before."""
        return float(self.card.get("calibration", {}).get(f"{route}_offset", 0.0))

    @property
    def template_nz_prior(self) -> tuple[float, float] | None:
        """(alpha, z0) of the template route's n(z) prior (`slitcli.classic.nz_prior`); None (flat) before `calibrate --template`."""
        cal = self.card.get("calibration", {})
        return (float(cal["template_nz_alpha"]), float(cal["template_nz_z0"])) if "template_nz_alpha" in cal and "template_nz_z0" in cal else None

    @property
    def ood_thresholds(self) -> tuple[float, float]:
        """Thresholds of the hybrid route's out-of-distribution score (`slitcli.hybrid.ood_score`); infinite before `calibrate --hybrid`."""
        cal = self.card.get("calibration", {})
        return float(cal.get("ood_disagreement", np.inf)), float(cal.get("ood_epistemic", np.inf))

    @property
    def hybrid_max_widen_ood(self) -> float:
        """Cap of the hybrid route's widening of flagged sources (`slitcli.hybrid.widening`; card ``hybrid_max_widen_ood``, 10 where absent)."""
        return float(self.card.get("calibration", {}).get("hybrid_max_widen_ood", 10.0))

    @property
    def template_temperature(self) -> float | tuple[float, ...]:
        """Scale of the template route's PDF (`slitcli.classic.posterior`), one per SNR_GI bin of `snr_edges("template")` where the card has bins; 1 before `calibrate --template`."""
        return _one_or_per_bin(self.card.get("calibration", {}).get("template_temperature", 1.0))

    @property
    def snr_power(self) -> float:
        """Power p of the SNR-dependent uncertainty scale (clip(SNR_GI, 1, 30) / 3)^p; 0 before calibration."""
        return float(self.card.get("calibration", {}).get("snr_power", 0.0) or 0.0)

    @property
    def pdf_point(self) -> str:
        """What a p(z) head's Z is read as: "median" (default) or "mode" (card ``calibration.pdf_point``)."""
        return str(self.card.get("calibration", {}).get("pdf_point") or "median")

    @property
    def pit_map(self):
        """The p(z) head's PIT recalibration (`slitcli.nn.pit_map.PITMap`, card ``calibration.pit_map``), or None."""
        from slitcli.nn.pit_map import PITMap

        value = self.card.get("calibration", {}).get("pit_map")
        return None if value is None else PITMap.from_card(value)

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


def run_independent(card):
    """`card` without its run times: every key named ``wall_s`` or ending in ``_wall_s``, at any depth.

    Wall times differ between identical runs; they stay in ``model.json``, and this copy
    rides in the weights' metadata.
    """
    if isinstance(card, dict):
        return {k: run_independent(v) for k, v in card.items() if not (k == "wall_s" or k.endswith("_wall_s"))}
    if isinstance(card, list):
        return [run_independent(v) for v in card]
    return card


def save_model(bundle: ModelBundle, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into `directory`, atomically each."""
    from safetensors.torch import save

    directory = check_output_path(directory, overwrite, directory=True, files=(WEIGHTS, CARD))
    card = dict(bundle.card, format=FORMAT)
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    weights = save(state, metadata={"slitcli": json.dumps(run_independent(card))})
    # The directory only when needed (removed again if this call made it and writing fails); weights published first.
    with output_directory(directory), atomic_output(directory / CARD, overwrite) as tmp_c, atomic_output(directory / WEIGHTS, overwrite) as tmp_w:
        tmp_w.write_bytes(weights)
        tmp_c.write_text(json.dumps(card, indent=2) + "\n")
    bundle.weights_sha256 = _sha256(directory / WEIGHTS)
    bundle.path = directory
    return directory


def _pit_map(value) -> bool:
    from slitcli.nn.pit_map import PITMap

    try:
        PITMap.from_card(value)
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v) -> bool:
    return _number(v) and v > 0


def _per_bin(v, check) -> bool:
    """A value that passes `check`, or a non-empty list of them (one per SNR bin)."""
    return check(v) or (isinstance(v, list) and len(v) > 0 and all(check(x) for x in v))


def _snr_edges(v) -> bool:
    return isinstance(v, list) and all(_number(e) for e in v) and all(a < b for a, b in zip(v, v[1:]))


def _one_or_per_bin(v) -> float | tuple[float, ...]:
    return tuple(float(x) for x in v) if isinstance(v, list) else float(v)


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _band_names(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(b, str) and b for b in v) and len(set(v)) == len(v)


#: The card's schema: key -> (required, check, what is expected). A nested dict checks
#: an object's keys; ``...`` as a key allows keys not listed (provenance, free-form).
CARD_SCHEMA = {
    "format": (True, lambda v: isinstance(v, str), "a string"),
    "name": (False, lambda v: isinstance(v, str), "a string"),
    "architecture": (True, lambda v: isinstance(v, str), "the name of a registered architecture"),
    "config": (True, lambda v: isinstance(v, dict), "an object of the architecture's settings"),
    "input": (True, {
        "bands": (True, _band_names, "a list of band names"),
        "height": (True, _positive_int, "a positive number of pixels"),
        "width": (True, _positive_int, "a positive number of pixels"),
        "scale_e_s": (True, lambda v: isinstance(v, dict) and all(_positive(x) for x in v.values()), "an object of band -> positive scale [e-/s]"),
        "instrument": (False, lambda v: isinstance(v, str), "a string"),
        "normalisation": (False, lambda v: isinstance(v, str), "a string"),
        "target": (False, lambda v: isinstance(v, str), "a string"),
    }, "an object"),
    "calibration": (False, {
        "temperature": (False, _positive, "a positive number"),
        "tail_dof": (False, lambda v: v is None or _positive(v), "a positive number, or null (Gaussian)"),
        "snr_power": (False, lambda v: v is None or _number(v), "a number or null"),
        "hybrid_temperature": (False, lambda v: _per_bin(v, _positive), "a positive number, or a list of them (one per SNR bin)"),
        "hybrid_point_temperature": (False, lambda v: _per_bin(v, lambda x: x is None or _positive(x)), "a positive number or null (Z from the calibrated posterior), or a list of them (one per SNR bin)"),
        "hybrid_snr_edges": (False, _snr_edges, "a list of increasing SNR_GI edges"),
        "template_temperature": (False, lambda v: _per_bin(v, _positive), "a positive number, or a list of them (one per SNR bin)"),
        "template_error_floor": (False, lambda v: _per_bin(v, lambda x: _number(x) and x >= 0), "a number >= 0, or a list of them (one per SNR bin)"),
        "template_snr_edges": (False, _snr_edges, "a list of increasing SNR_GI edges"),
        "hybrid_error_floor": (False, lambda v: _per_bin(v, lambda x: _number(x) and x >= 0), "a number >= 0, or a list of them (one per SNR bin)"),
        "hybrid_field_temperature": (False, lambda v: _per_bin(v, _positive), "a positive number, or a list of them (one per SNR bin)"),
        "template_field_temperature": (False, lambda v: _per_bin(v, _positive), "a positive number, or a list of them (one per SNR bin)"),
        "hybrid_field_prior_width": (False, lambda v: _number(v) and v >= 1, "a number >= 1"),
        "hybrid_field_error_floor": (False, lambda v: _per_bin(v, lambda x: _number(x) and x >= 0), "a number >= 0, or a list of them (one per SNR bin)"),
        "template_field_error_floor": (False, lambda v: _per_bin(v, lambda x: _number(x) and x >= 0), "a number >= 0, or a list of them (one per SNR bin)"),
        "template_nz_alpha": (False, _positive, "a positive number"),
        "template_nz_z0": (False, _positive, "a positive number"),
        "template_offset": (False, lambda v: _number(v) and abs(v) < 0.05, "a number between -0.05 and 0.05"),
        "hybrid_offset": (False, lambda v: _number(v) and abs(v) < 0.05, "a number between -0.05 and 0.05"),
        "ood_disagreement": (False, _positive, "a positive number"),
        "ood_epistemic": (False, _positive, "a positive number"),
        "hybrid_max_widen_ood": (False, lambda v: _number(v) and v >= 1, "a number >= 1"),
        "pdf_point": (False, lambda v: v in ("median", "mode"), "median or mode"),
        "pit_map": (False, _pit_map, "an object with snr_edges, levels and knots (slitcli.nn.pit_map)"),
        ...: None,
    }, "an object"),
    "training": (False, {
        "z_range": (False, lambda v: isinstance(v, list) and len(v) == 2 and all(_number(z) for z in v) and v[0] <= v[1], "a list [z_min, z_max]"),
        "config": (False, {"min_snr": (False, _number, "a number"), ...: None}, "an object"),
        ...: None,
    }, "an object"),
    "metrics": (False, lambda v: isinstance(v, dict), "an object"),
}


def _shown(value) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        text = json.dumps(value)
        return f"a list {text if len(text) <= 40 else text[:37] + '...'}"
    return json.dumps(value)


def _check_object(data, schema: dict, where: str, prefix: str) -> None:
    keys = [k for k in schema if k is not ...]
    if ... not in schema:
        unknown = [k for k in data if k not in schema]
        if unknown:
            msg = f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)}; valid keys are {', '.join(prefix + k for k in keys)}"
            raise InputError(msg)
    for key in keys:
        required, check, what = schema[key]
        if key not in data:
            if required:
                msg = f"{where}: missing key {prefix + key} ({what}); a model card needs {', '.join(prefix + k for k in keys if schema[k][0])}"
                raise InputError(msg)
            continue
        value = data[key]
        if isinstance(check, dict):
            if not isinstance(value, dict):
                msg = f"{where}: {prefix + key}: expected {what}, got {_shown(value)}"
                raise InputError(msg)
            _check_object(value, check, where, f"{prefix}{key}.")
        elif not check(value):
            msg = f"{where}: {prefix + key}: expected {what}, got {_shown(value)}"
            raise InputError(msg)


def check_card(card, where) -> None:
    """Check a model card (the content of ``model.json``) against `CARD_SCHEMA` and itself.

    Unknown keys are refused at the top level and in ``input``; ``calibration`` and
    ``training`` may hold more than the keys the code reads. The architecture must be
    registered and ``config`` must fit it (`slitcli.nn.registry.model_config`); its
    input size must match ``input``. Raises `InputError` naming `where` (the card's
    file) and the key path, e.g. ``model.json: input.bands: expected a list of band
    names, got 3``.
    """
    from slitcli.nn.registry import list_models, model_config

    if not isinstance(card, dict):
        msg = f"{where}: expected a JSON object with keys {', '.join(k for k in CARD_SCHEMA)}, got {_shown(card)}"
        raise InputError(msg)
    _check_object(card, CARD_SCHEMA, where, "")
    if card["format"] != FORMAT:
        msg = f"{where}: format: {card['format']!r} is not {FORMAT!r}; this slitcli reads {FORMAT} cards"
        raise InputError(msg)
    arch, bands, inp = card["architecture"], card["input"]["bands"], card["input"]
    if arch not in (*list_models(), ENSEMBLE):
        msg = f"{where}: architecture: unknown architecture {arch!r}; known: {', '.join(list_models())} (and {ENSEMBLE})"
        raise InputError(msg)
    missing = [b for b in bands if b not in inp["scale_e_s"]]
    if missing:
        msg = f"{where}: input.scale_e_s: no scale for band(s) {', '.join(missing)} of input.bands"
        raise InputError(msg)
    if arch == ENSEMBLE:
        build_ensemble(card["config"], where)  # its checks
        members = [(m["architecture"], m["config"], f"config.members[{i}].") for i, m in enumerate(card["config"]["members"])]
    else:
        members = [(arch, card["config"], "config.")]
    for member_arch, member_config, prefix in members:
        try:
            config = model_config(member_arch, **member_config)
        except ValueError as err:  # ConfigError included: "model <arch>.key: ..." -> "config.key: ..."
            text, head = str(err), f"model {member_arch}"
            text = prefix.rstrip(".") + text[len(head):] if text.startswith(head) else f"{prefix.rstrip('.')}: {text}"
            raise InputError(f"{where}: {text}") from None
        for key, want in (("in_channels", len(bands)), ("height", inp["height"]), ("width", inp["width"])):
            have = getattr(config, key, want)
            if have != want:
                msg = f"{where}: {prefix}{key} is {have} but the input has {want} ({'len(input.bands)' if key == 'in_channels' else 'input.' + key})"
                raise InputError(msg)
    _check_per_bin_lengths(card.get("calibration", {}), where)


def _check_per_bin_lengths(cal: dict, where) -> None:
    """A route's per-SNR-bin lists (temperatures, floors, Z's temperatures) hold one value per edge of ``<route>_snr_edges``."""
    for route in ("template", "hybrid"):
        edges = cal.get(f"{route}_snr_edges")
        for key in (f"{route}_temperature", f"{route}_error_floor", f"{route}_field_temperature", f"{route}_field_error_floor", f"{route}_point_temperature"):
            value = cal.get(key)
            if isinstance(value, list) and (edges is None or len(value) != len(edges)):
                want = f"{len(edges)} values, one per edge of calibration.{route}_snr_edges" if edges is not None else f"a calibration.{route}_snr_edges list of as many SNR_GI edges"
                msg = f"{where}: calibration.{key}: {len(value)} per-bin values need {want}"
                raise InputError(msg)


def load_model(directory: str | Path | None = None) -> ModelBundle:
    """Load a model directory (the shipped default when None), on the CPU, in eval mode.

    Raises
    ------
    InputError
        If the files are missing, the card is not valid JSON or does not fit its schema
        (`check_card`), the weights are not safetensors (a pickle is refused unread), or
        weights and card disagree.
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
    check_card(card, card_path)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        msg = f"{weights}: not a safetensors file ({str(err)[:80]}); slitcli never unpickles model weights"
        raise InputError(msg) from None
    try:
        model = build_ensemble(card["config"], card_path) if card["architecture"] == ENSEMBLE else create_model(card["architecture"], **card["config"])
    except (ValueError, TypeError) as err:  # the builder's own checks, past the config's types
        msg = f"{card_path}: config: {err}"
        raise InputError(msg) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        msg = f"{weights}: weights do not fit architecture {card['architecture']} ({str(err).splitlines()[0][:100]})"
        raise InputError(msg) from None
    model.eval()
    return ModelBundle(model, card, directory, _sha256(weights))
