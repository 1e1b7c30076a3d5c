"""The Numba kernel against an independent NumPy implementation of the same mathematics."""

import numpy as np
import pytest

from slitcli.instrument import Order
from slitcli.sim.disperse import disperse, spectral_samples


def disperse_reference(direct, x_direct, y_direct, order, wave, rate_density, shape, oversample):
    """Plain NumPy: every (pixel, sample) pair, bilinear split, np.add.at."""
    hs, ws = direct.shape
    x0 = x_direct - 0.5 * (ws - 1)
    y0 = y_direct - 0.5 * (hs - 1)
    dx_lo = max(-x0 - ws - 1.0, float(order.offset_of_wavelength(wave[0])))
    dx_hi = min(shape[1] - x0 + 1.0, float(order.offset_of_wavelength(wave[-1])))
    dx, dy, rate = spectral_samples(order, wave, rate_density, dx_lo, dx_hi, oversample)
    rows, cols = np.nonzero(direct)
    w = direct[rows, cols]
    X = x0 + cols[:, None] + dx[None, :]
    Y = y0 + rows[:, None] + dy[None, :]
    ix, iy = np.floor(X).astype(int), np.floor(Y).astype(int)
    fx, fy = X - ix, Y - iy
    c = w[:, None] * rate[None, :]
    padded = np.zeros((shape[0] + 4, shape[1] + 4))
    for ddy, wy in ((0, 1 - fy), (1, fy)):
        for ddx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = iy + ddy, ix + ddx
            ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
            np.add.at(padded, (yy[ok] + 2, xx[ok] + 2), (c * wy * wx)[ok])
    return padded[2:-2, 2:-2]


@pytest.mark.parametrize(
    "dldp, dydx",
    [((4000.0, 5.25), (0.0,)), ((3950.0, 5.1, 2e-4), (0.3, 0.01, -2e-5))],
    ids=["linear-no-tilt", "curved-tilted"],
)
def test_kernel_equals_numpy_reference(dldp, dydx):
    rng = np.random.default_rng(3)
    order = Order(name="+1", enabled=True, dldp=dldp, dydx=dydx, throughput_scale=1.0)
    direct = rng.random((15, 17)) * (rng.random((15, 17)) > 0.3)
    direct /= direct.sum()
    wave = np.linspace(3800.0, 6600.0, 1401)
    rate_density = 1.0 + np.sin(wave / 50.0) ** 2 + 20 * np.exp(-0.5 * ((wave - 5000.0) / 3.0) ** 2)
    shape = (40, 480)
    got = disperse(direct, 30.3, 19.6, order, wave, rate_density, shape, oversample=5)
    ref = disperse_reference(direct, 30.3, 19.6, order, wave, rate_density, shape, 5)
    assert got.max() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * ref.max())


def test_samples_integrate_the_spectrum():
    order = Order(name="+1", enabled=True, dldp=(4000.0, 5.0), dydx=(0.0,), throughput_scale=1.0)
    wave = np.linspace(4000.0, 6000.0, 2001)
    density = np.full(wave.size, 2.0)
    _, _, rate = spectral_samples(order, wave, density, 0.0, 400.0, 5)
    assert rate.sum() == pytest.approx(2.0 * 2000.0, rel=1e-12)
