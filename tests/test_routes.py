"""The prediction routes: a model directory changed in place (a calibration) is read again."""

from __future__ import annotations

import shutil

from slitcli.nn.modelfile import default_model_dir, load_model, save_model
from slitcli.routes import Route
from slitcli.snr_bins import header_text


def test_a_calibration_written_in_place_reaches_the_next_prediction(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    route = Route("template", str(model))
    assert route.meta()["TMPLTEMP"] == header_text(load_model(model).template_temperature)  # per SNR bin: comma-separated
    bundle = load_model(model)
    bundle.card["calibration"] |= {"template_temperature": 7.5, "template_error_floor": 0.0003, "template_offset": 0.0007, "hybrid_offset": -0.0002, "template_nz_alpha": 1.7, "template_nz_z0": 0.35}
    save_model(bundle, model, overwrite=True)
    assert route.meta()["TMPLTEMP"] == 7.5 and route.meta()["TMPLOFFS"] == 0.0007 and route._fit_config().offset == 0.0007
    assert route._fit_config().nz_prior == (1.7, 0.35) and (route.meta()["TMPLNZA"], route.meta()["TMPLNZ0"]) == (1.7, 0.35)
    hybrid = Route("hybrid", str(model))
    assert hybrid._hybrid_config().temperature == bundle.hybrid_temperature and hybrid.meta()["HYBOFFS"] == -0.0002 and hybrid._hybrid_config().offset == -0.0002
    temperature = bundle.hybrid_temperature  # per SNR bin in the shipped card: comma-separated in the header
    assert hybrid.meta()["HYBTEMP"] == (",".join(f"{t:.6g}" for t in temperature) if isinstance(temperature, tuple) else temperature)
    assert not any(key.startswith("TMPL") for key in hybrid.meta())
    assert hybrid._fit_config().offset == 0.0 and hybrid._fit_config().nz_prior is None  # its offset applies in its posterior, its prior is the CNN's
