"""Dispersion as a convolution: batched slitless cutouts in Torch, on CPU or GPU.

Within one cutout every pixel of the direct stamp disperses the same spectrum along the
same trace, shifted by the pixel's own position, so the noiseless slitless image is the
stamp convolved with one kernel: the source's count-rate spectrum painted along the trace.

Sub-pixel positions. The spectrum is cut into the samples of the Numba kernel
(`slitcli.sim.disperse.spectral_samples`: ``oversample`` per pixel of column offset dx,
each the exact integral of the count-rate density between its edges). Sample k of the
stamp pixel (r, c) lands at (x0 + c + dx_k, y0 + r + dy_k) and is shared bilinearly
between the four pixels it straddles. Since c and r are integers, every stamp pixel
sees the same fractional position (the fractional parts of x0 + dx_k and y0 + dy_k);
only the integer part moves with the pixel. The kernel is therefore built once per
source and band by binning each sample's four bilinear weights onto the pixel grid of
the stamp's pixel (0, 0), and convolving the stamp with it gives, pixel by pixel, the
same sums as the Numba kernel (equal to round-off; the tests check 1e-4 of the peak and
flux to 1e-5). Nothing is interpolated or resampled: the only difference is the order
of the additions.

The convolution is a batched matrix product. For kernel row j (a row offset of the
trace) the stamp's rows that land on cutout row y are gathered, and the kernel row is
laid out as a Toeplitz matrix (an `unfold` of its ``nx + ws - 1`` columns):
``cutout[y, x] = sum_j sum_c stamp[y - j, c] K[j, x - c]``. A straight, untilted trace
(every dy equal, CSST's default) spreads each sample over two rows with the same
weights, so the stamp's rows are first mixed with those two weights and one 1D
convolution per row remains; a tilted or curved trace keeps one matrix product per
kernel row, fused into one.

Arrays are [batch, y, x]; dispersion runs along +x. Count rates are in e-/s.
"""

from __future__ import annotations

import numpy as np
import torch

from slitcli.instrument import Order

__all__ = ["spectral_samples_batch", "trace_kernel", "convolve_trace", "disperse_batch", "is_straight"]


def is_straight(order: Order) -> bool:
    """True when the trace is a constant row offset (no tilt, no curvature)."""
    return all(c == 0.0 for c in order.dydx[1:])


def _interp_rows(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """`numpy.interp` of each row of `fp` [B, nw] (on the shared grid `xp` [nw]) at `x` [1 or B, m]."""
    j = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, xp.numel() - 1) - 1
    t = ((x - xp[j]) / (xp[j + 1] - xp[j])).clamp(0.0, 1.0)
    if x.shape[0] == 1:  # one geometry for the whole batch
        f_lo, f_hi = fp.index_select(1, j[0]), fp.index_select(1, j[0] + 1)
    else:
        f_lo, f_hi = fp.gather(1, j), fp.gather(1, j + 1)
    return f_lo + t * (f_hi - f_lo)


def spectral_samples_batch(
    order: Order,
    wave_aa: np.ndarray,
    rate_density: torch.Tensor,
    dx_lo_pix: np.ndarray,
    dx_hi_pix: np.ndarray,
    oversample: int = 5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`slitcli.sim.disperse.spectral_samples` for a batch of spectra on one wavelength grid.

    Parameters
    ----------
    order : Order
    wave_aa : array [nw]
        Increasing wavelength grid shared by the batch [Angstrom].
    rate_density : tensor [B, nw]
        Count-rate densities [e-/s/Angstrom], float64.
    dx_lo_pix, dx_hi_pix : array [G]
        Range of column offsets to sample [pixel]: one range for the batch (G = 1) or
        one per source (G = B).
    oversample : int
        Samples per pixel.

    Returns
    -------
    dx_pix, dy_pix : tensor [G, n]
        Column and row offsets of the samples [pixel], float64.
    rate_e_s : tensor [B, n]
        Count rates [e-/s], float64; sources with fewer samples than the longest are
        padded with zero rates.
    """
    dev = rate_density.device
    counts = np.maximum(np.ceil((dx_hi_pix - dx_lo_pix) * oversample).astype(np.int64), 1)
    n = int(counts.max())
    edges = dx_lo_pix[:, None] + np.arange(n + 1)[None, :] / oversample
    edge_wave = order.wavelength(edges)
    # Integrate only the part of the grid that the samples span.
    lo = max(int(np.searchsorted(wave_aa, edge_wave.min(), side="right")) - 1, 0)
    hi = max(min(int(np.searchsorted(wave_aa, edge_wave.max(), side="left")), wave_aa.size - 1), lo + 1)
    wave = torch.as_tensor(wave_aa[lo : hi + 1], dtype=torch.float64, device=dev)
    density = rate_density[:, lo : hi + 1]
    trapezoid = 0.5 * (density[:, 1:] + density[:, :-1]) * torch.diff(wave)
    cumulative = torch.nn.functional.pad(torch.cumsum(trapezoid, dim=1), (1, 0))
    edge_wave = torch.as_tensor(edge_wave, dtype=torch.float64, device=dev)
    rate = torch.diff(_interp_rows(edge_wave, wave, cumulative), dim=1)
    if np.any(counts < n):
        rate = rate * torch.as_tensor(np.arange(n)[None, :] < counts[:, None], device=dev)
    dx = 0.5 * (edges[:, 1:] + edges[:, :-1])
    return torch.as_tensor(dx, device=dev), torch.as_tensor(order.trace(dx), dtype=torch.float64, device=dev), rate


def trace_kernel(
    x_pix: torch.Tensor,
    y_pix: torch.Tensor | None,
    rate_e_s: torch.Tensor,
    stamp_shape: tuple[int, int],
    cutout_shape: tuple[int, int],
) -> tuple[torch.Tensor, int]:
    """Bin spectral samples, with their bilinear weights, into per-source kernels.

    Parameters
    ----------
    x_pix, y_pix : tensor [G, n]
        Cutout position [pixel] of each sample's light from the stamp pixel (0, 0),
        x0 + dx and y0 + dy: one geometry for the batch (G = 1) or one per source
        (G = B). `y_pix` None bins along x only: the kernel of a straight trace, whose
        two rows are this profile times (1 - fy, fy).
    rate_e_s : tensor [B, n]
        Count rate of each sample [e-/s].
    stamp_shape : (hs, ws)
        The kernel holds the column offsets -(ws - 1) .. nx - 1 and the row offsets
        -(hs - 1) .. ny - 1 that can reach the cutout.
    cutout_shape : (ny, nx)

    Returns
    -------
    kernel : tensor [B, rows, nx + ws - 1]
        Count rate [e-/s] reaching each (row, column) offset from the stamp pixel
        (0, 0), rows only as many as the trace needs; one row when `y_pix` is None.
    row0 : int
        Row offset of the kernel's first row (0 when `y_pix` is None).
    """
    (hs, ws), (ny, nx) = stamp_shape, cutout_shape
    length = nx + ws - 1
    batch, geometries = rate_e_s.shape[0], x_pix.shape[0]
    ix = torch.floor(x_pix)
    x_corners = [(ix.long() + ws - 1, 1.0 - (x_pix - ix)), (ix.long() + ws, x_pix - ix)]
    row0, rows, y_corners = 0, 1, [(0, 1.0)]
    if y_pix is not None:
        iy = torch.floor(y_pix)
        fy = y_pix - iy
        iy = iy.long()
        lit = (rate_e_s != 0).any(dim=0, keepdim=True) & (ix >= -ws) & (ix < nx) & (iy >= -hs) & (iy < ny)
        if not bool(lit.any()):
            return rate_e_s.new_zeros((batch, 0, length)), 0
        lit_rows = iy.expand_as(lit)[lit]
        row0 = max(int(lit_rows.min()), -(hs - 1))
        rows = min(int(lit_rows.max()) + 1, ny - 1) - row0 + 1
        y_corners = [(iy - row0, 1.0 - fy), (iy - row0 + 1, fy)]
    kernel = rate_e_s.new_zeros((batch, rows * length))
    flat = kernel.view(-1)
    base = torch.arange(batch, device=kernel.device)[:, None] * (rows * length)
    for col, wx in x_corners:
        for row, wy in y_corners:
            ok = (col >= 0) & (col < length) & (row >= 0) & (row < rows)
            index, weight = row * length + col, wx * wy
            if geometries == 1:  # the same positions for every source: one index for the batch
                keep = ok[0]
                kernel.index_add_(1, index[0, keep], (weight * rate_e_s)[:, keep])
            else:
                flat.index_add_(0, (base + index)[ok], (weight * rate_e_s)[ok])
    return kernel.view(batch, rows, length), row0


def convolve_trace(stamps: torch.Tensor, kernel: torch.Tensor, row0: int, cutout_shape: tuple[int, int]) -> torch.Tensor:
    """Convolve stamps with their trace kernels onto the cutout grid.

    Parameters
    ----------
    stamps : tensor [B, hs, ws]
        Fraction of the source flux per stamp pixel.
    kernel : tensor [B, rows, nx + ws - 1]
        From `trace_kernel`, in the stamps' dtype.
    row0 : int
        Row offset of the kernel's first row.
    cutout_shape : (ny, nx)

    Returns
    -------
    tensor [B, ny, nx]
        ``out[y, x] = sum_{r, c} stamp[r, c] K[y - r - row0, x - c + ws - 1]`` [e-/s].
    """
    ny, nx = cutout_shape
    batch, hs, ws = stamps.shape
    rows = kernel.shape[1]
    if rows == 0:
        return stamps.new_zeros((batch, ny, nx))
    # Stamp row feeding cutout row y through kernel row j: r = y - row0 - j (zero outside the stamp).
    r = torch.arange(ny, device=stamps.device)[:, None] - row0 - torch.arange(rows, device=stamps.device)[None, :]
    inside = (r >= 0) & (r < hs)
    gathered = stamps.flip(-1)[:, r.clamp(0, hs - 1)] * inside[None, :, :, None]  # [B, ny, rows, ws]
    toeplitz = kernel.unfold(-1, nx, 1)  # [B, rows, ws, nx]: K[j, x + c'] with c' = ws - 1 - c
    return torch.bmm(gathered.reshape(batch, ny, rows * ws), toeplitz.reshape(batch, rows * ws, nx))


def _convolve_straight(stamps, profile, row0, fy, cutout_shape):
    """Convolution with a straight trace: rows row0 and row0 + 1 get (1 - fy, fy) of `profile` [B, nx + ws - 1]."""
    ny, nx = cutout_shape
    hs = stamps.shape[1]
    r = torch.arange(ny, device=stamps.device) - row0  # stamp row landing on cutout row y through kernel row 0
    padded = torch.nn.functional.pad(stamps.flip(-1), (0, 0, 1, 1))  # stamp rows -1 .. hs, zero outside
    mixed = (1.0 - fy) * padded[:, (r + 1).clamp(0, hs + 1)] + fy * padded[:, r.clamp(0, hs + 1)]
    return torch.bmm(mixed, profile.unfold(-1, nx, 1))


def disperse_batch(
    stamps: torch.Tensor,
    x_direct_pix: float | np.ndarray,
    y_direct_pix: float,
    order: Order,
    wave_aa: np.ndarray,
    rate_density: torch.Tensor,
    shape: tuple[int, int],
    *,
    oversample: int = 5,
) -> torch.Tensor:
    """Disperse a batch of direct stamps, each with its own spectrum, into cutouts.

    The batched, convolutional twin of `slitcli.sim.disperse.disperse` (same inputs,
    same sampling, same result to round-off).

    Parameters
    ----------
    stamps : tensor [B, hs, ws]
        Direct stamps, each pixel the fraction of its source's flux, at the detector's
        pixel scale; float32 or float64, on any device. The output has their dtype.
    x_direct_pix : float or array [B]
        Cutout column [pixel, 0-based] of each stamp's centre; per source to shift
        spectra by different amounts.
    y_direct_pix : float
        Cutout row [pixel, 0-based] of the stamps' centre.
    order : Order
    wave_aa : array [nw]
        Increasing wavelength grid shared by the batch [Angstrom].
    rate_density : tensor [B, nw]
        Count-rate densities f_lambda x S(lambda) [e-/s/Angstrom].
    shape : (ny, nx)
        Cutout shape.
    oversample : int
        Spectral samples per pixel.

    Returns
    -------
    tensor [B, ny, nx]
        Expected count rate [e-/s] per cutout pixel.
    """
    batch, hs, ws = stamps.shape
    ny, nx = shape
    dev = stamps.device
    if batch == 0:
        return stamps.new_zeros((0, ny, nx))
    x0 = np.array(np.broadcast_to(np.asarray(x_direct_pix, dtype=np.float64) - 0.5 * (ws - 1), (batch,)))
    y0 = float(y_direct_pix) - 0.5 * (hs - 1)
    wave_aa = np.asarray(wave_aa, dtype=np.float64)
    # Only offsets that can land on the cutout, and wavelengths the grid covers: as `disperse`.
    dx_lo = np.maximum(-x0 - ws - 1.0, float(order.offset_of_wavelength(wave_aa[0])))
    dx_hi = np.minimum(nx - x0 + 1.0, float(order.offset_of_wavelength(wave_aa[-1])))
    empty = dx_hi <= dx_lo
    density = torch.as_tensor(rate_density, dtype=torch.float64, device=dev)
    if empty.any():  # no sample lands: zero light, one dummy sample
        density = density * torch.as_tensor(~empty, device=dev)[:, None]
        dx_hi = np.where(empty, dx_lo + 1.0, dx_hi)
    shared = bool(np.all(x0 == x0[0]))  # one sample geometry for the batch
    if shared:
        dx_lo, dx_hi = dx_lo[:1], dx_hi[:1]
    dx, dy, rate = spectral_samples_batch(order, wave_aa, density, dx_lo, dx_hi, oversample)
    x_pix = torch.as_tensor(x0[: dx.shape[0]], device=dev)[:, None] + dx
    if is_straight(order):
        y = y0 + float(order.trace(0.0))
        profile, _ = trace_kernel(x_pix, None, rate, (hs, ws), shape)
        return _convolve_straight(stamps, profile[:, 0].to(stamps.dtype), int(np.floor(y)), y - np.floor(y), shape)
    kernel, row0 = trace_kernel(x_pix, y0 + dy, rate, (hs, ws), shape)
    return convolve_trace(stamps, kernel.to(stamps.dtype), row0, shape)
