"""The prediction routes: a model directory changed in place (a calibration) is read again."""

from __future__ import annotations

import shutil

from slitcli.nn.modelfile import default_model_dir, load_model, save_model
from slitcli.routes import Route


def test_a_calibration_written_in_place_reaches_the_next_prediction(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    route = Route("template", str(model))
    assert route.meta()["TMPLTEMP"] == load_model(model).template_temperature
    bundle = load_model(model)
    bundle.card["calibration"] |= {"template_temperature": 7.5, "template_offset": 0.0007, "hybrid_offset": -0.0002}
    save_model(bundle, model, overwrite=True)
    assert route.meta()["TMPLTEMP"] == 7.5 and route.meta()["TMPLOFFS"] == 0.0007 and route._fit_config().offset == 0.0007
    hybrid = Route("hybrid", str(model))
    assert hybrid.meta()["HYBTEMP"] == bundle.hybrid_temperature and hybrid.meta()["HYBOFFS"] == -0.0002 and hybrid._hybrid_config().offset == -0.0002
    assert "TMPLTEMP" not in hybrid.meta() and "TMPLOFFS" not in hybrid.meta()
    assert hybrid._fit_config().offset == 0.0  # the hybrid's chi-square search: its own offset applies in the posterior
