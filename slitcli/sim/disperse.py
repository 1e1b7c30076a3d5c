"""Dispersion of a direct image into a slitless cutout.

Each pixel of the direct image (a fraction w of the source's flux, at its own
position) disperses the source's count-rate spectrum along the order's trace. The
spectrum is cut into samples at sub-pixel column offsets (``oversample`` per pixel);
a sample's counts land at (x_pixel + dx, y_pixel + dy(dx)) and are shared between
the four detector pixels that this position straddles with bilinear weights, which
is exact flux conservation: every count that lands on the cutout is kept, and the
centroid of a monochromatic line is where the dispersion puts it.

Arrays are [y, x]; dispersion runs along +x. Count rates are in e-/s.
"""

from __future__ import annotations

import numba
import numpy as np

from slitcli.instrument import Order

__all__ = ["spectral_samples", "disperse", "disperse_kernel"]


def spectral_samples(
    order: Order,
    wave_aa: np.ndarray,
    rate_density: np.ndarray,
    dx_min_pix: float,
    dx_max_pix: float,
    oversample: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a count-rate spectrum into samples along the dispersion.

    Parameters
    ----------
    order : Order
        The spectral order (dispersion and trace polynomials).
    wave_aa : array
        Increasing wavelength grid [Angstrom].
    rate_density : array
        Count-rate density f_lambda x S(lambda) on `wave_aa` [e-/s/Angstrom].
    dx_min_pix, dx_max_pix : float
        Range of column offsets from the direct position to sample [pixel].
    oversample : int
        Samples per pixel along the dispersion.

    Returns
    -------
    dx_pix, dy_pix : array
        Column and row offset of each sample from the direct position [pixel].
    rate_e_s : array
        Count rate of each sample [e-/s]: the integral of `rate_density` over the
        wavelengths between the sample's edges.
    """
    n = max(int(np.ceil((dx_max_pix - dx_min_pix) * oversample)), 1)
    edges = dx_min_pix + np.arange(n + 1) / oversample
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (rate_density[1:] + rate_density[:-1]) * np.diff(wave_aa))])
    at_edges = np.interp(order.wavelength(edges), wave_aa, cumulative)
    dx = 0.5 * (edges[1:] + edges[:-1])
    return dx, order.trace(dx), np.diff(at_edges)


@numba.njit(cache=True, nogil=True)
def disperse_kernel(rows, cols, weights, x0, y0, dx, dy, rate, out):  # pragma: no cover - compiled
    """Add the dispersed light of direct-image pixels into `out` (in place).

    Parameters
    ----------
    rows, cols : int64 arrays
        Pixel indices of the lit direct-image pixels within their stamp.
    weights : float64 array
        Fraction of the source flux in each of those pixels.
    x0, y0 : float
        Cutout position [pixel] of the stamp's pixel (0, 0).
    dx, dy : float64 arrays
        Offsets of the spectral samples from the direct position [pixel].
    rate : float64 array
        Count rate of each spectral sample [e-/s].
    out : float64 array [ny, nx]
        Cutout to add into [e-/s].
    """
    ny, nx = out.shape
    for k in range(rate.size):
        c = rate[k]
        if c == 0.0:
            continue
        xk = x0 + dx[k]
        yk = y0 + dy[k]
        ix = int(np.floor(xk))
        iy = int(np.floor(yk))
        fx = xk - ix
        fy = yk - iy
        w00 = (1.0 - fx) * (1.0 - fy) * c
        w01 = fx * (1.0 - fy) * c
        w10 = (1.0 - fx) * fy * c
        w11 = fx * fy * c
        for p in range(weights.size):
            x = ix + cols[p]
            y = iy + rows[p]
            if x < -1 or x >= nx or y < -1 or y >= ny:
                continue
            w = weights[p]
            if y >= 0:
                if x >= 0:
                    out[y, x] += w * w00
                if x + 1 < nx:
                    out[y, x + 1] += w * w01
            if y + 1 < ny:
                if x >= 0:
                    out[y + 1, x] += w * w10
                if x + 1 < nx:
                    out[y + 1, x + 1] += w * w11


def disperse(
    direct: np.ndarray,
    x_direct_pix: float,
    y_direct_pix: float,
    order: Order,
    wave_aa: np.ndarray,
    rate_density: np.ndarray,
    shape: tuple[int, int],
    *,
    oversample: int = 5,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Disperse a direct image with one spectrum into a cutout.

    Parameters
    ----------
    direct : array [hs, ws]
        Direct image, each pixel the fraction of the source flux it holds (unit sum
        for the whole source), at the detector's pixel scale.
    x_direct_pix, y_direct_pix : float
        Cutout position [pixel, 0-based] of the stamp's centre, (ws - 1)/2 and (hs - 1)/2.
    order : Order
        Spectral order to disperse into.
    wave_aa, rate_density : array
        Count-rate density f_lambda x S(lambda) [e-/s/Angstrom] on an increasing grid [Angstrom].
    shape : (ny, nx)
        Cutout shape.
    oversample : int
        Spectral samples per pixel.
    out : array, optional
        Cutout to add into (float64, `shape`); a new zero one if None.

    Returns
    -------
    array [ny, nx]
        Expected count rate [e-/s] per cutout pixel.
    """
    hs, ws = direct.shape
    ny, nx = shape
    if out is None:
        out = np.zeros(shape, dtype=np.float64)
    x0 = x_direct_pix - 0.5 * (ws - 1)
    y0 = y_direct_pix - 0.5 * (hs - 1)
    # Only offsets that can land on the cutout, and wavelengths the grid covers.
    dx_lo = max(-x0 - ws - 1.0, float(order.offset_of_wavelength(wave_aa[0])))
    dx_hi = min(nx - x0 + 1.0, float(order.offset_of_wavelength(wave_aa[-1])))
    if dx_hi <= dx_lo:
        return out
    dx, dy, rate = spectral_samples(order, wave_aa, rate_density, dx_lo, dx_hi, oversample)
    rows, cols = np.nonzero(direct)
    weights = np.ascontiguousarray(direct[rows, cols], dtype=np.float64)
    disperse_kernel(rows.astype(np.int64), cols.astype(np.int64), weights, float(x0), float(y0), dx, dy, rate, out)
    return out
