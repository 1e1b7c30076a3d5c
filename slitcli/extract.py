"""1D extraction of slitless cutouts and the paper's SNR.

`extract_optimal` is Horne's (1986, PASP 98, 609) optimal extraction with a given
spatial profile; `direct_profile` gives that profile, and the kernel that the source's
extent along the dispersion smears the extracted spectrum with, from the source's
direct stamp; `snr_mean` is the paper's SNR: the mean over the spectrum's columns of
flux/err, with masked columns, negative fluxes and unusable errors counting as zero;
`data_snr` measures it from the data alone, as `predict` does for both routes.

The simulator and both redshift routes use this module, so it sits below them.
"""

from __future__ import annotations

import numpy as np

from slitcli.errors import ConfigError
from slitcli.instrument import load_instrument

__all__ = ["extract_optimal", "direct_profile", "snr_mean", "data_snr", "band_columns", "sample_band_columns"]


def extract_optimal(
    sci: np.ndarray, err: np.ndarray, dq: np.ndarray, profile: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal extraction along the cross-dispersion axis.

    Parameters
    ----------
    sci, err : array [ny, nx]
        Background-subtracted image and its 1-sigma error (same unit, e.g. e-/s).
    dq : array [ny, nx]
        Data-quality flags; pixels with any bit set are ignored.
    profile : array [ny, nx]
        Spatial profile, non-negative; normalised here to unit sum in each column.

    Returns
    -------
    flux, flux_err : array [nx]
        Extracted flux per column and its 1-sigma error (unit of `sci` summed over
        rows); `flux_err` is inf where a column has no usable pixel.
    """
    p = np.clip(profile, 0.0, None)
    colsum = p.sum(axis=0)
    p = np.divide(p, colsum, out=np.zeros_like(p), where=colsum > 0)
    good = (dq == 0) & (err > 0) & np.isfinite(sci) & np.isfinite(err)
    inv_var = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)
    denom = (p**2 * inv_var).sum(axis=0)
    flux = np.divide((p * np.where(good, sci, 0.0) * inv_var).sum(axis=0), denom, out=np.zeros(sci.shape[1]), where=denom > 0)
    flux_err = np.divide(1.0, np.sqrt(denom), out=np.full(sci.shape[1], np.inf), where=denom > 0)
    return flux, flux_err


def direct_profile(stamp: np.ndarray, ny: int, y_trace_pix: float) -> tuple[np.ndarray, np.ndarray]:
    """Cross-dispersion profile and along-dispersion kernel of a source from its direct stamp.

    The stamp's centre row is put on the trace row `y_trace_pix` of a cutout with `ny`
    rows (a fractional position shares each row between two, as the dispersion does);
    the trace is taken parallel to the rows.

    Parameters
    ----------
    stamp : array [hs, ws]
        Direct stamp, each pixel the fraction of the source flux it holds.
    ny : int
        Rows of the cutout.
    y_trace_pix : float
        Cutout row (0-based) of the trace.

    Returns
    -------
    profile_y : array [ny]
        Flux fraction in each cutout row (the extraction profile, before normalisation).
    kernel_x : array [ws]
        Weight of each stamp column in the optimally extracted spectrum: with uniform
        errors, extracting `profile_y` from a source whose point-source spectrum is s(x)
        gives sum_j kernel_x[j] s(x - (j - (ws - 1)/2)). It sums to the extracted
        fraction of the light (1 for a point source).
    """
    hs, ws = stamp.shape
    y0 = y_trace_pix - 0.5 * (hs - 1)
    base = int(np.floor(y0))
    frac = y0 - base
    on_cutout = np.zeros((ny, ws))
    for shift, weight in ((base, 1.0 - frac), (base + 1, frac)):
        rows = np.arange(hs) + shift
        keep = (rows >= 0) & (rows < ny)
        np.add.at(on_cutout, rows[keep], weight * stamp[keep])
    profile_y = on_cutout.sum(axis=1)
    norm = float((profile_y**2).sum())
    if norm <= 0:
        return profile_y, np.zeros(ws)
    return profile_y, profile_y.sum() * (profile_y @ on_cutout) / norm


def snr_mean(flux: np.ndarray, flux_err: np.ndarray) -> float:
    """Mean of flux/err over the columns given, bad or negative columns counting as zero."""
    ok = np.isfinite(flux) & np.isfinite(flux_err) & (flux_err > 0) & (flux > 0)
    ratio = np.divide(flux, flux_err, out=np.zeros_like(flux, dtype=float), where=ok)
    return float(ratio.mean()) if ratio.size else 0.0


def data_snr(sci: np.ndarray, err: np.ndarray, dq: np.ndarray, band_index: int, columns: np.ndarray | None = None) -> np.ndarray:
    """SNR of each cutout's band from the data alone [n]: optimal extraction with the
    cutout's own cross-dispersion profile (SCI summed along x, clipped at zero), then the
    paper's mean of flux/err over `columns` (all columns if None)."""
    out = np.zeros(len(sci))
    for i in range(len(sci)):
        s, e, d = sci[i, band_index], err[i, band_index], dq[i, band_index]
        prof_y = np.clip(np.where(d == 0, s, 0).sum(axis=1), 0, None)
        if prof_y.sum() <= 0:
            continue
        flux, ferr = extract_optimal(s, e, d, np.repeat(prof_y[:, None], s.shape[1], axis=1))
        if columns is not None:
            flux, ferr = flux[columns], ferr[columns]
        out[i] = snr_mean(flux, ferr)
    return out


def band_columns(header, nx: int, band) -> np.ndarray | None:
    """Columns (0-based) whose WCS wavelength lies inside `band`'s limits, or None without a WCS.

    Parameters
    ----------
    header : mapping
        The band's SCI header, with CRVAL1, CDELT1 [Angstrom] and CRPIX1 (1-based).
    nx : int
        Cutout width [pixels].
    band : slitcli.instrument.Band
        The band whose `wave_min_aa`..`wave_max_aa` range is wanted.
    """
    if not all(k in header for k in ("CRVAL1", "CDELT1", "CRPIX1")):
        return None
    wave = header["CRVAL1"] + header["CDELT1"] * (np.arange(nx) + 1.0 - header["CRPIX1"])
    return np.nonzero((wave >= band.wave_min_aa) & (wave <= band.wave_max_aa))[0]


def sample_band_columns(reader, band: str) -> np.ndarray | None:
    """Columns of an open sample's `band` cutouts inside that band of the shipped instrument.

    `reader` is a `slitcli.io.samplefile.SampleReader` or anything with its ``shape`` and
    ``band_header`` (``slitcli.fields.field_sample.FieldSample``).

    None if the shipped instrument has no such band or the file's band has no WCS.
    """
    try:
        limits = load_instrument().band(band)
    except ConfigError:
        return None
    return band_columns(reader.band_header(band), reader.shape[1], limits)
