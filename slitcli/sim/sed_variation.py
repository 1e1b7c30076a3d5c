"""Physical variations of the kcorrect SEDs for the training stream: dust and emission lines;
and parametric galaxy images with clumps (`clumpy_sersic_image`).

- Dust attenuation, applied in the rest frame, f -> f 10^(-0.4 k(lambda) E(B-V)), with
  either Calzetti et al. (2000, ApJ 533, 682, eq. 4; R_V = 4.05), extrapolated by its own
  polynomial below 0.12 um, or an SMC-like curve: a power law k = R_V (lambda / 5500
  Angstrom)^-a with the SMC bar's R_V = 2.74 (Gordon et al. 2003, ApJ 594, 279) and a =
  1.40 so that k(4400) - k(5500) = 1 as E(B-V) requires; it rises steeply into the UV with
  no 2175 Angstrom bump, as the SMC's curve, without following it in detail.
- Extra nebular emission lines on top of the template's own: H-alpha with a rest-frame
  equivalent width drawn log-uniform (`add_lines`), H-beta from Case B (H-alpha/H-beta =
  2.86, Osterbrock & Ferland 2006), and the metal lines relative to them over the ranges
  star-forming galaxies and AGN cover in the BPT diagrams (Baldwin, Phillips & Terlevich
  1981; Kewley et al. 2006) and in [OII] surveys (Kewley, Geller & Jansen 2004):
  log([OIII]5007/H-beta) in [-1, 1], log([NII]6584/H-alpha) in [-1.3, -0.2],
  log([SII]6717+6731/H-alpha) in [-1.0, -0.3], log([OII]3727/H-beta) in [-0.5, 0.7];
  doublet ratios fixed by atomic physics ([OIII] 4959/5007 = 1/2.98, [NII] 6548/6584 =
  1/3.05) or set to the low-density limit ([SII] 6717/6731 = 1.4). Lines are Gaussians of
  `LINE_SIGMA_KMS` on the observed grid, each normalised on that grid so that it carries
  its flux exactly; the dust (applied after) dims them as the continuum.

The template route's CWW+Kinney basis (`slitcli/data/templates`) is not used here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["calzetti_k", "smc_k", "attenuation", "LINES", "LINE_RATIO_RANGES", "add_lines", "CURVES", "clumpy_sersic_image", "sersic_b"]

SMC_RV = 2.74
SMC_SLOPE = 1.40
CALZETTI_RV = 4.05
LINE_SIGMA_KMS = 150.0
_C_KMS = 299792.458

#: Rest-frame vacuum wavelengths of the lines added [Angstrom] (Morton 1991, ApJS 77, 119, as
#: the SDSS and DESI line lists): the frame of the kcorrect templates' own lines and of the
#: template route's (`slitcli.classic.templates.LINE_GROUPS`); air wavelengths would put
#: every added line 2.8e-4 in ln(1 + z) blueward of the template's lines of the same galaxy.
#: [OII] 3726, 3729 is unresolved at CSST's resolution: one line at the doublet's mean.
LINES = {
    "OII3727": 3728.48,
    "HBETA": 4862.68,
    "OIII4959": 4960.30,
    "OIII5007": 5008.24,
    "NII6548": 6549.86,
    "HALPHA": 6564.61,
    "NII6584": 6585.27,
    "SII6717": 6718.29,
    "SII6731": 6732.67,
}

#: log10 ranges of the drawn line ratios (module docstring).
LINE_RATIO_RANGES = {
    "OIII5007/HBETA": (-1.0, 1.0),
    "NII6584/HALPHA": (-1.3, -0.2),
    "SII/HALPHA": (-1.0, -0.3),
    "OII3727/HBETA": (-0.5, 0.7),
}


def calzetti_k(wave_rest_aa: np.ndarray) -> np.ndarray:
    """Calzetti et al. (2000) k(lambda) = A(lambda)/E(B-V) of starbursts (R_V = 4.05)."""
    x = np.asarray(wave_rest_aa, dtype=np.float64) / 1e4  # um
    blue = 2.659 * (-2.156 + 1.509 / x - 0.198 / x**2 + 0.011 / x**3) + CALZETTI_RV
    red = 2.659 * (-1.857 + 1.040 / x) + CALZETTI_RV
    return np.clip(np.where(x < 0.63, blue, red), 0.0, None)


def smc_k(wave_rest_aa: np.ndarray) -> np.ndarray:
    """SMC-like k(lambda) = 2.74 (lambda / 5500 Angstrom)^-1.40 (module docstring)."""
    return SMC_RV * (np.asarray(wave_rest_aa, dtype=np.float64) / 5500.0) ** -SMC_SLOPE


CURVES = {"calzetti": calzetti_k, "smc": smc_k}


def attenuation(wave_obs_aa: np.ndarray, z: float, ebv: float, curve: str) -> np.ndarray:
    """Transmission 10^(-0.4 k(lambda_rest) E(B-V)) on an observed-frame grid."""
    return 10.0 ** (-0.4 * ebv * CURVES[curve](np.asarray(wave_obs_aa) / (1.0 + z)))


def line_fluxes(halpha_flux: float, log_ratios: dict) -> dict:
    """Fluxes of every line in `LINES` from H-alpha's and the drawn log10 ratios (`LINE_RATIO_RANGES` keys)."""
    hbeta = halpha_flux / 2.86
    o3 = hbeta * 10.0 ** log_ratios["OIII5007/HBETA"]
    n2 = halpha_flux * 10.0 ** log_ratios["NII6584/HALPHA"]
    s2 = halpha_flux * 10.0 ** log_ratios["SII/HALPHA"]
    return {
        "OII3727": hbeta * 10.0 ** log_ratios["OII3727/HBETA"],
        "HBETA": hbeta,
        "OIII4959": o3 / 2.98,
        "OIII5007": o3,
        "NII6548": n2 / 3.05,
        "HALPHA": halpha_flux,
        "NII6584": n2,
        "SII6717": s2 * 1.4 / 2.4,
        "SII6731": s2 / 2.4,
    }


def add_lines(wave_obs_aa: np.ndarray, flam: np.ndarray, z: float, continuum_halpha: float, ew_halpha_rest_aa: float, log_ratios: dict) -> np.ndarray:
    """`flam` plus Gaussian emission lines at redshift `z`.

    Parameters
    ----------
    wave_obs_aa : array [nw]
        Observed-frame grid [Angstrom], uniform steps.
    flam : array [nw]
        Observed f_lambda [erg/s/cm2/Angstrom].
    continuum_halpha : float
        Observed-frame continuum f_lambda under H-alpha [erg/s/cm2/Angstrom] (it may lie off
        the grid).
    ew_halpha_rest_aa : float
        Rest-frame equivalent width of the added H-alpha [Angstrom]; its observed flux is
        (1 + z) EW x `continuum_halpha`.
    log_ratios : dict
        log10 line ratios (`LINE_RATIO_RANGES` keys).
    """
    out = np.array(flam, dtype=np.float64)
    fluxes = line_fluxes((1.0 + z) * ew_halpha_rest_aa * continuum_halpha, log_ratios)
    step = float(wave_obs_aa[1] - wave_obs_aa[0])
    for name, rest in LINES.items():
        centre = rest * (1.0 + z)
        sigma = centre * LINE_SIGMA_KMS / _C_KMS
        if not wave_obs_aa[0] + 5 * sigma < centre < wave_obs_aa[-1] - 5 * sigma:
            continue
        lo, hi = np.searchsorted(wave_obs_aa, [centre - 6 * sigma, centre + 6 * sigma])
        profile = np.exp(-0.5 * ((wave_obs_aa[lo:hi] - centre) / sigma) ** 2)
        out[lo:hi] += fluxes[name] * profile / (profile.sum() * step)
    return out


# -- shapes --------------------------------------------------------------------------

#: Pixel scale of the parametric images [arcsec/pixel] and their side [pixels].
PARAMETRIC_PIXEL_SCALE_ARCSEC = 0.05
PARAMETRIC_SIZE_PIX = 95


def sersic_b(n: float) -> float:
    """b_n of the Sersic profile, so that R_e holds half the light (Ciotti & Bertin 1999, to O(1/n^2))."""
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n**2)


def clumpy_sersic_image(
    n: float,
    r_e_arcsec: float,
    axis_ratio: float,
    angle_rad: float,
    clumps: list[tuple[float, float, float, float]] = (),
    *,
    pixel_scale_arcsec: float = PARAMETRIC_PIXEL_SCALE_ARCSEC,
    size: int = PARAMETRIC_SIZE_PIX,
) -> np.ndarray:
    """A Sersic galaxy with Gaussian clumps, unit sum, sampled at pixel centres.

    Parameters
    ----------
    n, r_e_arcsec, axis_ratio, angle_rad : float
        Sersic index, half-light radius along the major axis [arcsec], b/a and position
        angle [rad].
    clumps : list of (dx_arcsec, dy_arcsec, sigma_arcsec, fraction)
        Each clump's offset from the centre, Gaussian sigma and share of the total flux;
        the Sersic part keeps 1 - sum(fraction).
    """
    c = 0.5 * (size - 1)
    y, x = (np.mgrid[0:size, 0:size] - c) * pixel_scale_arcsec
    xr = x * np.cos(angle_rad) + y * np.sin(angle_rad)
    yr = -x * np.sin(angle_rad) + y * np.cos(angle_rad)
    r = np.hypot(xr, yr / axis_ratio)
    disc = np.exp(-sersic_b(n) * ((r / r_e_arcsec) ** (1.0 / n) - 1.0))
    image = disc / disc.sum() * (1.0 - sum(f for *_, f in clumps))
    for dx, dy, sigma, fraction in clumps:
        blob = np.exp(-0.5 * ((x - dx) ** 2 + (y - dy) ** 2) / sigma**2)
        image += fraction * blob / blob.sum()
    return image
