"""The fused Numba chi-square against the step-by-step model (smear, chi2_grid) and scipy's NNLS."""

import numpy as np
import pytest
from conftest import gaussian_blob
from scipy.optimize import nnls
from test_template_fit import geometry

from slitcli.classic.chisq import lit_ranges, nnls_gram
from slitcli.classic.template_fit import (
    FileModels,
    TemplateFitConfig,
    chi2_grid,
    fit_redshift,
    pack_spectra,
    point_spectra,
    smear,
    trim_kernel,
)
from slitcli.classic.templates import load_templates


@pytest.mark.parametrize("seed", range(6))
def test_nnls_on_the_normal_equations_equals_scipy(seed):
    """Random problems: some true coefficients 0, some columns nearly collinear, one all negative."""
    rng = np.random.default_rng(seed)
    a = np.abs(rng.normal(size=(200, 10))) + np.linspace(0, 1, 200)[:, None] * rng.random(10)
    a[:, 3] = a[:, 2] * 1.001 + 1e-3 * rng.random(200)  # nearly collinear pair
    truth = np.where(rng.random(10) < 0.5, 0.0, rng.random(10))
    b = a @ truth + rng.normal(0, 0.3, 200)
    if seed == 0:
        b = -np.abs(b)  # nothing fits: every coefficient 0
    a /= np.linalg.norm(a, axis=0)
    x = nnls_gram(a.T @ a, a.T @ b)
    ref, rnorm = nnls(a, b)
    assert np.all(x >= 0)
    assert np.sum((b - a @ x) ** 2) == pytest.approx(rnorm**2, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(x, ref, atol=1e-6 * max(1.0, ref.max()))


def test_lit_ranges_bound_the_non_zero_values():
    packed = np.zeros((2, 3, 10), np.float32)
    packed[0, 0, 2:5] = 1.0  # band 0 (first 6 positions)
    packed[0, 1, 7] = 2.0  # band 1
    packed[1, 2, :] = 1.0
    lit = lit_ranges(packed, [6, 4])
    assert tuple(lit[0, 0, 0]) == (2, 4) and lit[0, 0, 1, 1] < lit[0, 0, 1, 0]
    assert tuple(lit[0, 1, 1]) == (7, 7) and lit[0, 1, 0, 1] < lit[0, 1, 0, 0]
    assert tuple(lit[1, 2, 0]) == (0, 5) and tuple(lit[1, 2, 1]) == (6, 9)


@pytest.mark.parametrize("stamp_size", [64, 33])
def test_fused_chi2_equals_smear_then_chi2_grid(csst, stamp_size):
    """Both bands, three sources of different extent, bad pixels: the fused chi-square equals
    the step-by-step one to float32 rounding of the smeared models, for either parity of the stamp width."""
    basis = load_templates()
    geoms = [geometry(csst, b, stamp_size=stamp_size)[1] for b in ("GV", "GI")]
    config = TemplateFitConfig(z_min=0.1, z_max=1.5, step=0.01)
    t_grid = config.grid()
    packed, lit = pack_spectra(basis, geoms, t_grid, (stamp_size - 1) % 2)
    models = FileModels(("GV", "GI"), geoms, t_grid, packed, lit, stamp_size, 40)
    rng = np.random.default_rng(1)
    kernels = [trim_kernel(gaussian_blob(stamp_size, s, x_off=o).sum(axis=0)) for s, o in ((1.0, 0.0), (3.0, 2.5), (6.0, -4.0))]
    index = np.array([0, 7, 30, 31, 60, t_grid.size - 1])
    n_pix = sum(g.columns.size for g in geoms)
    data, reference = [], []
    for kernel in kernels:
        dense = np.concatenate([smear(point_spectra(basis, g, np.expm1(t_grid[index])), kernel, g)[0] for g in geoms], axis=-1)
        truth = dense[2].T @ np.array([1.0, 0, 0.5, 0, 0, 0, 3.0, 0, 0, 1.0, 2.0, 1.0, 0, 0])
        flux = truth * 30.0 / truth.max() + rng.normal(0, 1.0, n_pix)  # peak SNR 30 per pixel
        ivar = np.ones(n_pix)
        ivar[rng.random(n_pix) < 0.05] = 0.0
        data.append((flux, ivar))
        reference.append(chi2_grid(dense, flux, ivar)[0])
        fused = models.chi2_fn(kernel, flux, ivar)(index)
        # Float32 smearing in both: the chi-square agrees to ~1e-7 of sum(ivar flux^2).
        bb = float(np.sum(ivar * flux**2))
        assert reference[-1][2] < 2 * n_pix < reference[-1].max()
        np.testing.assert_allclose(fused, reference[-1], rtol=1e-6, atol=1e-6 * bb)
    # The chunk's batched passes (coarse, then the fine windows as jobs) fit as one source at a time does.
    batched = models.fit_chunk(np.array(kernels), data, config)
    for kernel, (flux, ivar), fit in zip(kernels, data, batched, strict=True):
        single = fit_redshift(models.chi2_fn(kernel, flux, ivar), t_grid, int((ivar > 0).sum()), config)
        np.testing.assert_array_equal(fit.search.known, single.search.known)
        np.testing.assert_array_equal(fit.search.chi2, single.search.chi2)
        assert fit.z == single.z


def test_sky_offset_adds_a_constant_of_either_sign_per_band(csst):
    """With sky_offset the fused chi-square equals chi2_grid over the templates plus, per band,
    a +1 and a -1 constant on its columns; a sky level left in the data (positive in GV,
    negative in GI) then costs nothing at the true redshift, while without it the fit is poor."""
    basis = load_templates()
    geoms = [geometry(csst, b)[1] for b in ("GV", "GI")]
    config = TemplateFitConfig(z_min=0.1, z_max=1.5, step=0.01)
    t_grid = config.grid()
    packed, lit = pack_spectra(basis, geoms, t_grid, 1)
    plain = FileModels(("GV", "GI"), geoms, t_grid, packed, lit, 64, 40)
    with_sky = FileModels(("GV", "GI"), geoms, t_grid, packed, lit, 64, 40, sky_offset=True)
    kernel = trim_kernel(gaussian_blob(64, 2.0).sum(axis=0))
    index = np.array([5, 30, 31, 60])
    dense = np.concatenate([smear(point_spectra(basis, g, np.expm1(t_grid[index])), kernel, g)[0] for g in geoms], axis=-1)
    sizes = [g.columns.size for g in geoms]
    constants = np.zeros((4, sum(sizes)))
    constants[0, : sizes[0]], constants[1, : sizes[0]] = 1.0, -1.0
    constants[2, sizes[0] :], constants[3, sizes[0] :] = 1.0, -1.0
    truth = dense[1].T @ np.array([1.0, 0, 0.5, 0, 0, 0, 3.0, 0, 0, 1.0, 2.0, 1.0, 0, 0])
    rng = np.random.default_rng(4)
    flux = truth * 30.0 / truth.max() + rng.normal(0, 1.0, truth.size)
    flux[: sizes[0]] += 3.0  # sky left in GV: 3 sigma per pixel
    flux[sizes[0] :] -= 2.0  # sky over-subtracted in GI
    ivar = np.ones(flux.size)
    reference = chi2_grid(np.concatenate([dense, np.broadcast_to(constants, (len(index), *constants.shape))], axis=1), flux, ivar)[0]
    fused = with_sky.chi2_fn(kernel, flux, ivar)(index)
    np.testing.assert_allclose(fused, reference, rtol=1e-6, atol=1e-6 * float(np.sum(flux**2)))
    assert fused[1] < 1.2 * flux.size  # the offsets absorbed: chi-square ~ N at the true z
    assert plain.chi2_fn(kernel, flux, ivar)(index)[1] > 3 * flux.size
