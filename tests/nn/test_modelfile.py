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
