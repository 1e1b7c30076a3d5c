"""Direct-image operations: flux-conserving resampling, PSF, deconvolution, isolation.

All images are [y, x] arrays of linear flux (any unit); pixel scales are in arcsec/pixel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal
from scipy.special import erf

__all__ = [
    "resample_flux",
    "resample_convolve",
    "gaussian_profile",
    "gaussian_psf",
    "convolve_psf",
    "deconvolve_richardson_lucy",
    "isolate_central_source",
]

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _overlap_matrix(n_in: int, scale_in: float, n_out: int, scale_out: float) -> np.ndarray:
    """Fraction of each input pixel falling in each output pixel, along one axis.

    Both grids share their centre. Returns an [n_out, n_in] matrix whose columns sum
    to 1 where the input pixel lies wholly inside the output grid.
    """
    edges_in = (np.arange(n_in + 1) - 0.5 * n_in) * scale_in
    edges_out = (np.arange(n_out + 1) - 0.5 * n_out) * scale_out
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(hi - lo, 0.0, None) / scale_in


def resample_flux(image: np.ndarray, scale_in: float, scale_out: float, shape_out: tuple[int, int]) -> np.ndarray:
    """Resample an image to another pixel scale, conserving flux exactly.

    Each output pixel receives every input pixel's flux in proportion to the area
    they share (pixels as uniform squares). Centres of the two grids coincide.

    Parameters
    ----------
    image : array [ny, nx]
        Linear flux per pixel.
    scale_in, scale_out : float
        Pixel scales [arcsec/pixel].
    shape_out : (ny, nx)
        Output shape. Flux falling outside it is lost.
    """
    ry = _overlap_matrix(image.shape[0], scale_in, shape_out[0], scale_out)
    rx = _overlap_matrix(image.shape[1], scale_in, shape_out[1], scale_out)
    return ry @ image @ rx.T


def gaussian_profile(fwhm_pix: float, size: int | None = None) -> np.ndarray:
    """The unit-sum 1D Gaussian integrated over pixels: `gaussian_psf` is its outer product with itself.

    Parameters
    ----------
    fwhm_pix : float
        Full width at half maximum [pixel].
    size : int, optional
        Odd length; by default wide enough for +-5 sigma.
    """
    sigma = fwhm_pix / FWHM_PER_SIGMA
    if size is None:
        size = 2 * int(np.ceil(5 * sigma)) + 1
    edges = np.arange(size + 1) - 0.5 * size
    profile = np.diff(erf(edges / (np.sqrt(2) * sigma)))
    return profile / profile.sum()


def gaussian_psf(fwhm_pix: float, size: int | None = None) -> np.ndarray:
    """A unit-sum circular Gaussian PSF, integrated over pixels.

    Parameters
    ----------
    fwhm_pix : float
        Full width at half maximum [pixel].
    size : int, optional
        Odd side length; by default wide enough for +-5 sigma.
    """
    profile = gaussian_profile(fwhm_pix, size)
    psf = np.outer(profile, profile)
    return psf / psf.sum()


def _convolution_matrix(profile: np.ndarray, n: int) -> np.ndarray:
    """[n, n] matrix of the 'same'-size convolution of a length-n axis with an odd-length `profile`."""
    half = (profile.size - 1) // 2
    lag = np.arange(n)[:, None] - np.arange(n)[None, :] + half
    inside = (lag >= 0) & (lag < profile.size)
    return np.where(inside, profile[np.clip(lag, 0, profile.size - 1)], 0.0)


def resample_convolve(image: np.ndarray, scale_in: float, scale_out: float, shape_out: tuple[int, int], fwhm_pix: float) -> np.ndarray:
    """`resample_flux`, then `convolve_psf` with ``gaussian_psf(fwhm_pix)``, as two matrix products.

    The Gaussian PSF is separable, so both steps are linear maps along each axis: the
    result equals the two-step one to round-off (without the FFT's 1e-17 floor), for a
    fraction of the cost. `fwhm_pix` <= 0: no PSF.
    """
    ry = _overlap_matrix(image.shape[0], scale_in, shape_out[0], scale_out)
    rx = _overlap_matrix(image.shape[1], scale_in, shape_out[1], scale_out)
    if fwhm_pix > 0:
        profile = gaussian_profile(fwhm_pix)
        ry = _convolution_matrix(profile, shape_out[0]) @ ry
        rx = _convolution_matrix(profile, shape_out[1]) @ rx
    return ry @ image @ rx.T


def convolve_psf(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Convolve with a PSF, keeping the image shape (light beyond the edge is lost)."""
    return signal.fftconvolve(image, psf, mode="same")


def deconvolve_richardson_lucy(image: np.ndarray, psf: np.ndarray, n_iter: int = 30) -> np.ndarray:
    """Richardson-Lucy deconvolution, flux preserving, as the paper's HSC preprocessing.

    Negative input pixels are set to zero first (RL needs a non-negative image).
    """
    from skimage.restoration import richardson_lucy

    data = np.clip(image, 0.0, None)
    total = data.sum()
    if total <= 0:
        return data
    result = richardson_lucy(data / total, psf, num_iter=n_iter, clip=False)
    return result * total / result.sum()


def isolate_central_source(image: np.ndarray, nsigma: float = 2.0, grow_pix: int = 2) -> np.ndarray:
    """Keep only the segment of the source nearest the stamp centre.

    The background level and noise are estimated from the median and the median
    absolute deviation; pixels above `nsigma` noise (after a light smoothing) form
    segments; the one containing (or nearest) the centre is grown by `grow_pix`
    pixels and everything else is set to zero. The result is background subtracted
    and non-negative.
    """
    from skimage import measure

    background = np.median(image)
    noise = 1.4826 * np.median(np.abs(image - background))
    data = image - background
    if noise <= 0:
        noise = max(np.std(data), np.finfo(float).tiny)
    labels = measure.label(ndimage.gaussian_filter(data, 1.0) > nsigma * noise)
    if labels.max() == 0:
        return np.clip(data, 0.0, None)
    cy, cx = (np.array(image.shape) - 1) / 2.0
    central = labels[int(round(cy)), int(round(cx))]
    if central == 0:
        idx = np.argwhere(labels > 0)
        nearest = idx[np.argmin(np.hypot(idx[:, 0] - cy, idx[:, 1] - cx))]
        central = labels[tuple(nearest)]
    mask = ndimage.binary_dilation(labels == central, iterations=grow_pix)
    return np.where(mask, np.clip(data, 0.0, None), 0.0)
