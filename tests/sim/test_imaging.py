"""Direct-image operations: the separable resample-and-convolve against the two-step FFT path."""

import numpy as np
import pytest

from slitcli.sim.imaging import convolve_psf, gaussian_psf, resample_convolve, resample_flux


@pytest.mark.parametrize(("n_in", "scale_in", "fwhm_pix"), [(19, 0.138, 4.05), (95, 0.05, 4.05), (31, 0.2, 2.5), (64, 0.074, 0.0)])
def test_resample_convolve_equals_resample_then_fft_convolution(n_in, scale_in, fwhm_pix):
    rng = np.random.default_rng(n_in)
    image = rng.uniform(0, 1, (n_in, n_in + 3)) * np.exp(-0.5 * ((np.arange(n_in)[:, None] - n_in / 2) ** 2) / (n_in / 5) ** 2)
    two_step = resample_flux(image, scale_in, 0.074, (64, 64))
    if fwhm_pix > 0:
        two_step = convolve_psf(two_step, gaussian_psf(fwhm_pix))
    one_step = resample_convolve(image, scale_in, 0.074, (64, 64), fwhm_pix)
    assert np.abs(one_step - two_step).max() < 1e-12 * two_step.max()


@pytest.mark.parametrize("fwhm_pix", [0.0, 4.05])
def test_resample_convolve_conserves_the_flux_of_a_compact_source(fwhm_pix):
    """A source well inside the stamp keeps all its flux (the PSF profile has unit sum)."""
    yy, xx = np.mgrid[:25, :25] - 12.0
    image = np.exp(-0.5 * (xx**2 + yy**2) / 2.0**2)
    stamp = resample_convolve(image, 0.138, 0.074, (64, 64), fwhm_pix)
    assert stamp.sum() == pytest.approx(image.sum(), rel=1e-12)
