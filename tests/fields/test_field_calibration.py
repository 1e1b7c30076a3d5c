"""Field cutouts get their own template and hybrid calibration: calibrate writes it, predict applies it."""

import json
import shutil

import pytest
from astropy.table import Table
from conftest import invoke

from slitcli.nn.modelfile import default_model_dir


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """A small, crowded field's cutout file (CONTAM and DIRECT), and a copy of the shipped model."""
    root = tmp_path_factory.mktemp("fieldcal")
    assert invoke("simulate", "--field", "--size", "800x300", "--density", 600, "--seed", 7, "-q", "-o", root / "f").exit_code == 0
    f = root / "f"
    assert invoke("cutout", *sorted(f.glob("exposure_*.fits")), "--catalog", f / "catalog.fits", "--direct", f / "direct.fits", "-q", "-o", root / "s.fits").exit_code == 0
    shutil.copytree(default_model_dir(), root / "model")
    return root


def test_calibrate_on_field_cutouts_writes_only_the_field_pair(crowded):
    before = json.loads((crowded / "model" / "model.json").read_text())["calibration"]
    result = invoke("calibrate", crowded / "s.fits", "--template", "-m", crowded / "model", "-o", crowded / "model_f")
    assert result.exit_code == 0, result.output
    assert "for field cutouts" in result.output
    after = json.loads((crowded / "model_f" / "model.json").read_text())["calibration"]
    # One temperature and floor per SNR_GI bin of template_snr_edges.
    assert len(after["template_field_temperature"]) == len(after["template_field_error_floor"]) == len(after["template_snr_edges"])
    assert all(t > 0 for t in after["template_field_temperature"]) and all(f >= 0 for f in after["template_field_error_floor"])
    # The bins' edges are shared by both pairs: written with the field pair where the card had none.
    isolated = lambda cal: {k: v for k, v in cal.items() if "_field_" not in k and k != "template_snr_edges"}  # noqa: E731
    assert isolated(after) == isolated(before)  # the isolated calibration, prior and offset kept


def test_predict_applies_the_field_pair_to_field_cutouts_only(crowded, tmp_path, monkeypatch):
    """The template route fits a sample with a contamination model with the card's field pair,
    one without with the isolated pair; the catalogue names both."""
    import slitcli.classic.template_fit as template_fit
    from slitcli.routes import Route

    model = tmp_path / "model"
    shutil.copytree(crowded / "model", model)
    card = json.loads((model / "model.json").read_text())
    card["calibration"] |= {"template_field_temperature": 16.0, "template_field_error_floor": 0.0011}
    (model / "model.json").write_text(json.dumps(card))
    used = []
    monkeypatch.setattr(template_fit, "fit_sample", lambda sample, config, *a, **k: used.append(config))

    class Sample:
        def __init__(self, contamination_model):
            self.contamination_model = contamination_model

    route = Route("template", str(model))
    route.predict(Sample("FLAT_FLAMBDA"))
    route.predict(Sample("NONE"))
    assert (used[0].temperature, used[0].error_floor) == (16.0, 0.0011)
    as_card = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (per SNR bin: a list in the card)
    assert (as_card(used[1].temperature), as_card(used[1].error_floor)) == (card["calibration"]["template_temperature"], card["calibration"]["template_error_floor"])
    assert used[0].offset == used[1].offset == card["calibration"]["template_offset"] and used[0].nz_prior == used[1].nz_prior
    assert route.meta()["TMPLFTMP"] == 16.0 and route.meta()["TMPLFFLR"] == 0.0011
    monkeypatch.undo()
    assert invoke("predict", crowded / "s.fits", "-m", model, "--method", "template", "-q", "-o", tmp_path / "z.fits").exit_code == 0
    assert Table.read(tmp_path / "z.fits", hdu="REDSHIFTS").meta["TMPLFTMP"] == 16.0


def test_hybrid_calibration_on_field_cutouts_fits_a_prior_width_for_them_only(crowded):
    """calibrate --hybrid on field cutouts writes the field pair and a CNN prior width (one
    of PRIOR_WIDTHS), keeps the isolated calibration; predict widens the prior of field
    cutouts only (HYBFPRW names it)."""
    from slitcli.hybrid import PRIOR_WIDTHS
    from slitcli.routes import Route

    before = json.loads((crowded / "model" / "model.json").read_text())["calibration"]
    result = invoke("calibrate", crowded / "s.fits", "--hybrid", "-m", crowded / "model", "--n-mc", 8, "-o", crowded / "model_h")
    assert result.exit_code == 0, result.output
    assert "for field cutouts" in result.output and "CNN prior width" in result.output
    after = json.loads((crowded / "model_h" / "model.json").read_text())["calibration"]
    assert after["hybrid_field_prior_width"] in PRIOR_WIDTHS
    assert len(after["hybrid_field_temperature"]) == len(after["hybrid_snr_edges"])
    isolated = lambda cal: {k: v for k, v in cal.items() if "_field_" not in k}  # noqa: E731
    assert isolated(after) == isolated(before)
    route = Route("hybrid", str(crowded / "model_h"))
    assert route._hybrid_config(field=True).prior_width == after["hybrid_field_prior_width"] and route._hybrid_config().prior_width == 1.0
    assert route.meta()["HYBFPRW"] == after["hybrid_field_prior_width"]
