import json
import pickle
from pathlib import Path

import pytest
import torch

from slitcli.errors import InputError
from slitcli.nn import create_model
from slitcli.nn.modelfile import FORMAT, ModelBundle, load_model, save_model

TINY = {"height": 16, "width": 96, "rows": 8, "channels": (8, 8), "kernels": (3, 3), "head_hidden": (16,)}


def tiny_bundle():
    torch.manual_seed(0)
    card = {
        "name": "tiny",
        "architecture": "slitnet",
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()},
        "input": {"bands": ["GV", "GI"], "height": 16, "width": 96, "scale_e_s": {"GV": 0.03, "GI": 0.03}},
        "calibration": {"temperature": 1.0},
    }
    return ModelBundle(create_model("slitnet", **TINY).eval(), card)


def test_round_trip_gives_the_same_outputs(tmp_path):
    bundle = tiny_bundle()
    save_model(bundle, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = torch.randn(3, 2, 16, 96)
    assert torch.equal(bundle.model(x)[0], loaded.model(x)[0])
    assert loaded.bands == ("GV", "GI") and loaded.shape == (16, 96)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["format"] == FORMAT
    assert len(loaded.weights_sha256) == 64
    with pytest.raises(FileExistsError):
        save_model(bundle, tmp_path / "m")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickled_weights_are_refused_unread(tmp_path, how):
    save_model(tiny_bundle(), tmp_path / "m")
    marker = tmp_path / "pwned"
    weights = tmp_path / "m" / "model.safetensors"
    if how == "pickle":
        weights.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"state": _Payload(marker)}, weights)
    with pytest.raises(InputError, match="not a safetensors file.*never unpickles"):
        load_model(tmp_path / "m")
    assert not marker.exists()


def test_card_and_weights_must_agree(tmp_path):
    save_model(tiny_bundle(), tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    card["config"]["channels"] = [16, 16]
    (tmp_path / "m" / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="weights do not fit architecture slitnet"):
        load_model(tmp_path / "m")


def test_missing_model_directory(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nope")


def _del(*keys):
    def edit(card):
        node = card
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
        return card

    return edit


def _set(value, *keys):
    def edit(card):
        node = card
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
        return card

    return edit


# Each broken card: what the message must say after "<dir>/model.json: ".
BROKEN_CARDS = {
    "no config": (_del("config"), "missing key config (an object of the architecture's settings)"),
    "no input": (_del("input"), "missing key input (an object)"),
    "no input.bands": (_del("input", "bands"), "missing key input.bands (a list of band names)"),
    "a list, not an object": (lambda card: [card], "expected a JSON object with keys format, name, architecture, config, input"),
    "input a list": (_set(["GV", "GI"], "input"), "input: expected an object, got a list [\"GV\", \"GI\"]"),
    "config a list": (_set([8, 8], "config"), "config: expected an object of the architecture's settings, got a list [8, 8]"),
    "unknown architecture": (_set("resnet9", "architecture"), "architecture: unknown architecture 'resnet9'; known: "),
    "unknown top-level key": (_set(1, "extra"), "unknown key(s) extra; valid keys are format, name, architecture"),
    "unknown input key": (_set(2, "input", "scale"), "unknown key(s) input.scale; valid keys are input.bands"),
    "unknown config key": (_set(3, "config", "depth"), "config: unknown key(s) depth; valid keys are in_channels"),
    "bands a number": (_set(3, "input", "bands"), "input.bands: expected a list of band names, got 3"),
    "bands repeated": (_set(["GI", "GI"], "input", "bands"), "input.bands: expected a list of band names, got a list [\"GI\", \"GI\"]"),
    "height a string": (_set("16", "input", "height"), "input.height: expected a positive number of pixels, got \"16\""),
    "config type": (_set(3, "config", "channels"), "config.channels: expected a list, got 3"),
    "temperature negative": (_set(-1.0, "calibration", "temperature"), "calibration.temperature: expected a positive number, got -1.0"),
    "calibration a list": (_set([], "calibration"), "calibration: expected an object, got a list []"),
    "z_range reversed": (_set({"z_range": [2.0, 0.1]}, "training"), "training.z_range: expected a list [z_min, z_max], got a list [2.0, 0.1]"),
    "scale missing a band": (_set({"GV": 0.03}, "input", "scale_e_s"), "input.scale_e_s: no scale for band(s) GI of input.bands"),
    "one band, two channels": (_set(["GV"], "input", "bands"), "config.in_channels is 2 but the input has 1 (len(input.bands))"),
    "size disagrees": (_set(20, "input", "height"), "config.height is 16 but the input has 20 (input.height)"),
    "builder refuses": (_set(99, "config", "rows"), "config: need 1 <= rows <= height"),
    "old format": (_set("slitcli-model/0", "format"), "format: 'slitcli-model/0' is not 'slitcli-model/1'"),
    "per-bin list without edges": (_set({"template_temperature": [1.0, 2.0]}, "calibration"), "calibration.template_temperature: 2 per-bin values need a calibration.template_snr_edges list"),
    "per-bin list of another length": (_set({"hybrid_snr_edges": [0.0, 3.0, 10.0], "hybrid_temperature": [64.0, 2.0, 1.0], "hybrid_field_error_floor": [0.0, 0.0004]}, "calibration"), "calibration.hybrid_field_error_floor: 2 per-bin values need 3 values, one per edge of calibration.hybrid_snr_edges"),
}


@pytest.mark.parametrize("case", list(BROKEN_CARDS))
def test_card_schema_errors_name_the_card_and_the_key(tmp_path, case):
    edit, expected = BROKEN_CARDS[case]
    save_model(tiny_bundle(), tmp_path / "m")
    card_path = tmp_path / "m" / "model.json"
    card_path.write_text(json.dumps(edit(json.loads(card_path.read_text()))))
    with pytest.raises(InputError) as err:
        load_model(tmp_path / "m")
    message = str(err.value)
    assert message.startswith(f"{card_path}: {expected}"), message
    assert "\n" not in message


def test_shipped_card_fits_the_schema():
    from slitcli.nn.modelfile import CARD_SCHEMA, check_card, default_model_dir

    card = json.loads((default_model_dir() / "model.json").read_text())
    check_card(card, "model.json")
    assert set(card) <= set(CARD_SCHEMA)  # strict at the top level without refusing the shipped card
    assert set(card["input"]) <= set(CARD_SCHEMA["input"][1])
