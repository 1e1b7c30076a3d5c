"""The template route: its forward model against the simulator, NNLS, and redshift recovery."""

import numpy as np
import pytest
from conftest import gaussian_blob, make_source
from scipy.optimize import nnls

from slitcli.classic.template_fit import (
    BandGeometry,
    TemplateFitConfig,
    chi2_grid,
    dense_chi2,
    fit_redshift,
    point_spectra,
    smear,
    trim_kernel,
)
from slitcli.classic.templates import load_templates
from slitcli.extract import direct_profile, extract_optimal
from slitcli.sim.noise import noise_sigma
from slitcli.sim.simulate import (
    SimulateConfig,
    band_layout,
    direct_stamp,
    simulate_band,
)


def geometry(csst, band_name, shape=(40, 480), stamp_size=64):
    band = csst.band(band_name)
    lay = band_layout(band, shape)
    from slitcli.instrument import sensitivity

    wave = np.asarray(band.throughput.wave_aa)
    cols = np.nonzero((lay.wavelength(np.arange(shape[1])) >= band.wave_min_aa) & (lay.wavelength(np.arange(shape[1])) <= band.wave_max_aa))[0]
    sens = sensitivity(csst, band, band.first_order, wave)
    return lay, BandGeometry(band_name, shape[1], lay.crval1_aa, lay.cdelt1_aa, lay.crpix1, wave, sens, cols, stamp_size // 2 + 2)


def basis_flam(basis, coeffs, z, wave_aa):
    """Observed f_lambda of a basis combination, from the basis' own cumulative integrals."""
    edges = np.concatenate([[wave_aa[0] - 0.25], 0.5 * (wave_aa[1:] + wave_aa[:-1]), [wave_aa[-1] + 0.25]])
    per_bin = basis.integrate_observed(edges, np.array([z]))[0] / np.diff(edges)
    return coeffs @ per_bin


@pytest.mark.parametrize("band_name, z", [("GV", 0.31), ("GI", 0.8123)])
def test_template_model_matches_the_simulator(csst, band_name, z):
    """Extracting a noiseless simulated extended galaxy gives the template route's model, column by column."""
    basis = load_templates()
    coeffs = np.zeros(len(basis.names))
    coeffs[basis.names.index("Sbc_B2004a")] = 2e-17
    coeffs[basis.names.index("Halpha")] = 3e-16
    coeffs[basis.names.index("OIII")] = 2e-16
    wave = np.arange(3000.0, 11000.0, 0.25)
    source = make_source(basis_flam(basis, coeffs, z, wave), wave, gaussian_blob(41, 3.0, x_off=1.3, y_off=-0.7), pixel_scale_arcsec=0.074)
    cfg = SimulateConfig(bands=(band_name,))
    lay, geom = geometry(csst, band_name)
    stamp = direct_stamp(source, csst, cfg.stamp_size)
    image = simulate_band(stamp, source, csst, lay, cfg)
    profile_y, kernel_x = direct_profile(stamp, 40, 19.5)
    flux, _ = extract_optimal(image, noise_sigma(0 * image, csst, lay.band), np.zeros(image.shape, np.int32), np.repeat(profile_y[:, None], 480, axis=1))
    model = coeffs @ smear(point_spectra(basis, geom, np.array([z])), kernel_x, geom)[0, 0]
    data = flux[geom.columns]
    bright = data > 0.1 * data.max()
    assert model.sum() == pytest.approx(data.sum(), rel=0.005)
    np.testing.assert_allclose(model[bright], data[bright], rtol=0.02)


def test_smear_is_the_sum_over_stamp_columns(csst):
    basis = load_templates()
    _, geom = geometry(csst, "GV", shape=(16, 96), stamp_size=8)
    spectra = point_spectra(basis, geom, np.array([0.2, 0.5]))
    kernel = np.array([0.0, 0.1, 0.3, 0.4, 0.15, 0.05, 0.0, 0.0])
    out = smear(spectra, kernel, geom)[0]
    ref = np.zeros_like(out, dtype=np.float64)
    offset = kernel.size - 1 + 2 * geom.margin
    for i, col in enumerate(geom.columns):
        for j, w in enumerate(kernel):
            ref[..., i] += w * spectra[..., 2 * col + offset - 2 * j]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_nnls_chi2_equals_the_direct_solution():
    rng = np.random.default_rng(3)
    models = np.abs(rng.normal(size=(4, 5, 60)))
    models[2, 3] = 0.0  # a template with no light at this z
    flux = rng.normal(size=60) + models[1].T @ np.array([1.0, 0.0, 2.0, 0.5, 0.0])
    ivar = rng.uniform(0.5, 2.0, size=60)
    chi2, coeffs = chi2_grid(models, flux, ivar)
    assert np.all(coeffs >= 0) and coeffs[2, 3] == 0.0
    for z in range(4):
        w = np.sqrt(ivar)
        c, rnorm = nnls((models[z] * w).T, flux * w)
        assert chi2[z] == pytest.approx(rnorm**2, rel=1e-6)
        np.testing.assert_allclose(coeffs[z], c, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("z_true", [0.4567, 0.8123, 1.3805])
def test_noiseless_basis_spectrum_is_recovered(csst, z_true):
    """A spectrum built from the basis at an off-grid z, extended source, both bands: z to 1e-4."""
    basis = load_templates()
    geoms = [geometry(csst, b)[1] for b in ("GV", "GI")]
    kernel = trim_kernel(gaussian_blob(64, 2.5).sum(axis=0))
    coeffs = np.zeros(len(basis.names))
    coeffs[basis.names.index("Scd_B2004a")] = 1.0
    coeffs[basis.names.index("El_B2004a")] = 0.4
    coeffs[basis.names.index("OII")] = 20.0
    coeffs[basis.names.index("Hbeta")] = 8.0
    config = TemplateFitConfig(z_min=0.2, z_max=1.6)
    t_grid = config.grid()
    assert np.abs(t_grid - np.log1p(z_true)).min() > 0.2 * config.step  # between grid points

    def model_fn(index):
        return np.concatenate([smear(point_spectra(basis, g, np.expm1(t_grid[index])), kernel, g)[0] for g in geoms], axis=-1)

    truth = np.concatenate([coeffs @ smear(point_spectra(basis, g, np.array([z_true])), kernel, g)[0, 0] for g in geoms])
    ivar = np.full(truth.size, 1.0 / (0.01 * truth.max()) ** 2)
    fit = fit_redshift(dense_chi2(model_fn, truth, ivar), t_grid, truth.size, config)
    assert abs(fit.z - z_true) < 1e-4
    assert fit.chi2 < 0.01 * fit.delta_chi2  # the grid misses the exact z by a fraction of a step only
    assert fit.quantiles[0.16] <= fit.z <= fit.quantiles[0.84]
    assert fit.delta_chi2 > 9 and not fit.at_limit


def test_a_per_bin_temperature_applies_each_source_its_own_bins(tmp_path):
    """A fit calibrated per SNR_GI bin gives each source the PDF of its own bin's temperature
    and floor: with T = 1 below SNR_GI 5 and T = 16 (floor 0.001) above, every row equals
    the row of a one-temperature fit at its bin's values, and the bright rows are wider."""
    from conftest import invoke

    from slitcli.classic.template_fit import fit_sample
    from slitcli.errors import ConfigError
    from slitcli.io.samplefile import SampleReader

    sample = tmp_path / "s.fits"
    assert invoke("simulate", "-n", 12, "--seed", 7, "--mag-max", 22.0, "-q", "-o", sample).exit_code == 0
    prior = (1.7, 0.36)
    binned = TemplateFitConfig(temperature=(1.0, 1.0, 16.0, 16.0), error_floor=(0.0, 0.0, 0.001, 0.001), snr_edges=(0.0, 3.0, 5.0, 10.0), nz_prior=prior)
    faint, bright = TemplateFitConfig(nz_prior=prior), TemplateFitConfig(temperature=16.0, error_floor=0.001, nz_prior=prior)
    with SampleReader(sample, ("GV", "GI")) as reader:
        rows = {name: fit_sample(reader, config, pdf=True) for name, config in (("binned", binned), ("faint", faint), ("bright", bright))}
    is_bright = rows["binned"]["SNR_GI"] >= 5.0
    assert 0 < is_bright.sum() < len(is_bright)  # both bins in the sample
    for column in ("Z", "Z160", "Z840", "ZERR", "ZPDF"):
        expected = np.where(is_bright[:, None] if column == "ZPDF" else is_bright, rows["bright"][column], rows["faint"][column])
        np.testing.assert_array_equal(rows["binned"][column], expected)
    assert np.all(rows["bright"]["ZERR"][is_bright] > rows["faint"]["ZERR"][is_bright])
    with pytest.raises(ConfigError, match="one temperature and one error floor per SNR bin"):
        TemplateFitConfig(temperature=(1.0, 2.0), snr_edges=(0.0, 3.0, 5.0))
