"""Dispersion as a Torch convolution against the Numba kernel, the analytic flux and the WCS."""

import numpy as np
import pytest
import torch
from conftest import expected_rate_e_s, gaussian_blob

from slitcli.instrument import Order, sensitivity
from slitcli.io.layout import band_layout
from slitcli.sim.convolve import disperse_batch, is_straight
from slitcli.sim.disperse import disperse

WAVE = np.linspace(3800.0, 6600.0, 1401)
ORDERS = {
    "straight": Order(name="+1", enabled=True, dldp=(4000.0, 5.25), dydx=(0.0,), throughput_scale=1.0),
    "straight-offset": Order(name="+1", enabled=True, dldp=(4000.0, 5.25), dydx=(0.37,), throughput_scale=1.0),
    "tilted-curved": Order(name="+1", enabled=True, dldp=(3950.0, 5.1, 2e-4), dydx=(0.3, 0.01, -2e-5), throughput_scale=1.0),
    "steep": Order(name="+1", enabled=True, dldp=(3950.0, 5.1), dydx=(-12.0, 0.06), throughput_scale=1.0),
}


def batch_inputs(n=4, shape=(15, 17), seed=3):
    """Random sparse stamps (unit sum) and spectra with a continuum and one narrow line each."""
    rng = np.random.default_rng(seed)
    stamps = rng.random((n, *shape)) * (rng.random((n, *shape)) > 0.3)
    stamps /= stamps.sum(axis=(1, 2), keepdims=True)
    density = np.stack([
        1.0 + np.sin(WAVE / (30.0 + 10 * k)) ** 2 + 20 * np.exp(-0.5 * ((WAVE - 4500.0 - 300 * k) / 3.0) ** 2)
        for k in range(n)
    ])
    return stamps, density


def numba_batch(stamps, x_direct, y_direct, order, density, shape):
    x = np.broadcast_to(x_direct, (len(stamps),))
    return np.stack([disperse(s, x[k], y_direct, order, WAVE, density[k], shape, oversample=5) for k, s in enumerate(stamps)])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("x_direct", [30.3, np.array([30.3, 31.05, -40.0, 400.7])], ids=["shared-x", "per-source-x"])
@pytest.mark.parametrize("name", list(ORDERS))
def test_convolution_equals_numba_kernel(name, x_direct, dtype):
    order = ORDERS[name]
    assert is_straight(order) == name.startswith("straight")
    stamps, density = batch_inputs()
    shape = (40, 480)
    ref = numba_batch(stamps, x_direct, 19.6, order, density, shape)
    got = disperse_batch(torch.tensor(stamps, dtype=dtype), x_direct, 19.6, order, WAVE, torch.tensor(density), shape).double().numpy()
    assert got.dtype == np.float64 and got.shape == ref.shape
    for g, r in zip(got, ref):
        assert r.max() > 0
        assert np.abs(g - r).max() <= 1e-4 * r.max()
        assert g.sum() == pytest.approx(r.sum(), rel=1e-5)


def test_light_that_misses_the_cutout_gives_zeros():
    stamps, density = batch_inputs(n=2)
    order = ORDERS["tilted-curved"]
    # Direct position far to the right: every sample lands beyond the last column.
    got = disperse_batch(torch.tensor(stamps), 2000.0, 19.6, order, WAVE, torch.tensor(density), (40, 480))
    assert torch.count_nonzero(got) == 0
    # Far below: the trace passes under the cutout.
    got = disperse_batch(torch.tensor(stamps), 30.3, -200.0, order, WAVE, torch.tensor(density), (40, 480))
    assert torch.count_nonzero(got) == 0


@pytest.mark.parametrize("name", ["straight", "tilted-curved"])
def test_flux_equals_the_integral_of_flux_times_sensitivity(csst, name):
    """A point source with all its light inside the cutout: counts = integral f_lambda S dlambda."""
    band = csst.band("GV")
    order = ORDERS[name]
    layout = band_layout(band, (40, 480))
    wave = np.arange(3000.0, 11000.0, 0.5)
    flam = np.where((wave >= 4300.0) & (wave <= 5900.0), 3e-17, 0.0)
    stamp = np.zeros((1, 9, 9))
    stamp[0, 4, 4] = 1.0
    density = torch.tensor(flam * sensitivity(csst, band, order, wave))[None]
    image = disperse_batch(torch.tensor(stamp), layout.x_direct_pix, 15.0, order, wave, density, layout.shape)
    expected = expected_rate_e_s(csst, band, wave, flam, 4300.0, 5900.0)
    assert float(image.sum()) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("band_name, line_aa", [("GV", 4861.0), ("GI", 9500.0)])
@pytest.mark.parametrize("x_off", [0.0, 3.3, -7.6])
def test_emission_line_lands_where_the_wcs_says(csst, band_name, line_aa, x_off):
    band = csst.band(band_name)
    layout = band_layout(band, (40, 480))
    wave = np.arange(3000.0, 11000.0, 0.5)
    flam = 1e-15 * np.exp(-0.5 * (wave - line_aa) ** 2) / np.sqrt(2 * np.pi)
    stamp = torch.tensor(gaussian_blob(21, 0.8, x_off, 0.0))[None]
    density = torch.tensor(flam * sensitivity(csst, band, band.first_order, wave))[None]
    image = disperse_batch(stamp, layout.x_direct_pix, layout.y_direct_pix, band.first_order, wave, density, layout.shape)[0].numpy()
    profile = image.sum(axis=0)
    column = (profile * np.arange(profile.size)).sum() / profile.sum()
    predicted = layout.crpix1 - 1.0 + (line_aa - layout.crval1_aa) / layout.cdelt1_aa + x_off
    assert column == pytest.approx(predicted, abs=0.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_equals_cpu():
    stamps, density = batch_inputs()
    order = ORDERS["tilted-curved"]
    args = (30.3, 19.6, order, WAVE)
    cpu = disperse_batch(torch.tensor(stamps), *args, torch.tensor(density), (40, 480))
    gpu = disperse_batch(torch.tensor(stamps, device="cuda"), *args, torch.tensor(density, device="cuda"), (40, 480))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0.0, atol=1e-10 * float(cpu.max()))
