"""Deep ensembles: pooled passes, checks on the members, the ensemble model directory and the command line."""

import json

import numpy as np
import pytest
import torch
from astropy.table import Table
from conftest import TINY_SIM_YAML, invoke, tiny_train_yaml

from slitcli.errors import InputError
from slitcli.nn import create_model
from slitcli.nn.ensemble import Ensemble, make_ensemble
from slitcli.nn.modelfile import ModelBundle, load_model, save_model
from slitcli.nn.predict import mc_pdf, mc_predict, summarise

SMALL = {"height": 16, "width": 96, "rows": 8, "channels": (8, 8), "kernels": (3, 3), "head_hidden": (16,)}


def bundle(seed, **overrides):
    torch.manual_seed(seed)
    config = {**SMALL, **overrides}
    model = create_model("slitnet", **config).eval()
    card = {"name": f"m{seed}", "architecture": "slitnet", "config": config, "input": {"bands": ["GV", "GI"], "height": 16, "width": 96, "scale_e_s": {"GV": 0.1, "GI": 0.1}}}
    return ModelBundle(model, card, weights_sha256=f"sha{seed}")


def test_members_passes_are_pooled():
    a, b = bundle(1, p_dropout=0.0), bundle(2, p_dropout=0.0)
    ens = make_ensemble([a, b])
    x = torch.randn(5, 2, 16, 96)
    mu, logvar = mc_predict(ens.model, x, n_mc=3)
    mu_a, _ = mc_predict(a.model, x, n_mc=3)
    mu_b, _ = mc_predict(b.model, x, n_mc=3)
    torch.testing.assert_close(mu, torch.cat([mu_a, mu_b]))
    # Without dropout each member's passes agree: the whole epistemic spread is the members' disagreement.
    stats = summarise(mu.double().numpy(), logvar.double().numpy())
    t_a, t_b = mu_a[0].double().numpy(), mu_b[0].double().numpy()
    np.testing.assert_allclose(np.log1p(stats["Z"]), 0.5 * (t_a + t_b), rtol=1e-6)
    np.testing.assert_allclose(stats["ZERR_EPI"] / (1 + stats["Z"]), np.abs(t_a - t_b) / 2 * np.sqrt(6 / 5), rtol=1e-5)


def test_pdf_members_mixtures_are_averaged():
    a, b = bundle(1, head="pdf", pdf_bins=40, p_dropout=0.0), bundle(2, head="pdf", pdf_bins=40, p_dropout=0.0)
    x = torch.randn(4, 2, 16, 96)
    probs, means, _ = mc_pdf(make_ensemble([a, b]).model, x, n_mc=2)
    expected = 0.5 * (mc_pdf(a.model, x, 2)[0] + mc_pdf(b.model, x, 2)[0])
    torch.testing.assert_close(probs, expected)
    assert means.shape == (4, 4)


@pytest.mark.parametrize(("other", "needle"), [({"head": "pdf"}, "differ in head"), ({"height": 8, "rows": 4}, "differ in cutout size")])
def test_members_that_do_not_fit_together_are_refused(other, needle):
    b = bundle(2, **other)
    if "height" in other:
        b.card["input"]["height"] = 8
    with pytest.raises(InputError, match=needle):
        make_ensemble([bundle(1), b])
    with pytest.raises(InputError, match="at least two"):
        make_ensemble([bundle(1)])
    c = bundle(3)
    c.card["input"]["scale_e_s"] = {"GV": 0.2, "GI": 0.1}
    with pytest.raises(InputError, match="normalise their input differently"):
        make_ensemble([bundle(1), c])


def test_ensemble_directory_round_trip(tmp_path):
    ens = make_ensemble([bundle(1), bundle(2)])
    save_model(ens, tmp_path / "e")
    back = load_model(tmp_path / "e")
    assert isinstance(back.model, Ensemble) and len(back.model.members) == 2
    card = json.loads((tmp_path / "e" / "model.json").read_text())
    assert card["architecture"] == "ensemble" and [m["weights_sha256"] for m in card["config"]["members"]] == ["sha1", "sha2"]
    x = torch.randn(3, 2, 16, 96)
    torch.manual_seed(0)
    one = mc_predict(ens.model, x, 4)
    torch.manual_seed(0)
    two = mc_predict(back.model, x, 4)
    torch.testing.assert_close(one, two)
    card["config"]["members"] = card["config"]["members"][:1]
    (tmp_path / "e" / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="config.members: expected a list of two or more"):
        load_model(tmp_path / "e")


def test_ensemble_through_the_command_line(tmp_path):
    d = tmp_path
    (d / "sim.yaml").write_text(TINY_SIM_YAML)
    (d / "train.yaml").write_text(tiny_train_yaml())
    for name, n, seed in (("train", 32, 1), ("val", 24, 2), ("test", 8, 3)):
        assert invoke("simulate", "-n", n, "--seed", seed, "--config", d / "sim.yaml", "-q", "-o", d / f"{name}.fits").exit_code == 0
    for seed in (1, 2):
        assert invoke("train", d / "train.fits", "--val", d / "val.fits", "--config", d / "train.yaml", "--seed", seed, "-o", d / f"m{seed}", "-q").exit_code == 0
    result = invoke("predict", d / "test.fits", "-m", d / "m1", "-m", d / "m2", "--n-mc", 4, "-o", d / "pooled.ecsv")
    assert result.exit_code == 0, result.output
    assert "an ensemble of 2 models, uncalibrated" in result.output
    assert Table.read(d / "pooled.ecsv").meta["NMEMBERS"] == 2
    result = invoke("calibrate", d / "val.fits", "-m", d / "m1", "-m", d / "m2", "-o", d / "ens", "--n-mc", 4, "--gaussian")
    assert result.exit_code == 0, result.output
    result = invoke("predict", d / "test.fits", "-m", d / "ens", "--n-mc", 4, "-o", d / "ens.ecsv", "-q")
    assert result.exit_code == 0, result.output
    z = Table.read(d / "ens.ecsv")
    assert z.meta["NMEMBERS"] == 2 and z.meta["TEMPERAT"] == json.loads((d / "ens" / "model.json").read_text())["calibration"]["temperature"]
    result = invoke("calibrate", d / "val.fits", "-m", d / "m1", "-m", d / "m2", "--in-place")
    assert result.exit_code != 0 and "new directory (-o DIR)" in result.output
