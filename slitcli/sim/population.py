"""The embedded default mock population: real SEDs and shapes, CSST-like n(z).

Each source takes
- a redshift from n(z) proportional to z^alpha exp(-(z/z0)^beta) (Smail et al. 1994
  form; defaults peak at z = 0.40 with a tail past z = 1.2, as a stand-in for the
  unpublished CSST target n(z));
- an SED from the kcorrect fits to 10,000 real SDSS galaxies (`slitcli.sim.seds`);
- an absolute magnitude from a Schechter luminosity function in the SDSS i band
  (Blanton et al. 2003: M* = -21.26 + 5 log10 h at z = 0.1, h = 0.7, so -22.03;
  alpha = -1.1; brightening by Q = 1 mag per unit redshift), kept only if the
  apparent magnitude lies within the survey's flux limits (the redshift is kept and
  the galaxy redrawn, so the sample follows n(z) exactly);
- a shape from the HXDF stamps (`slitcli.sim.shapes`), turned by a random multiple of
  90 degrees and flipped at random (exact pixel operations);
- a sky position uniform in a square field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slitcli.errors import ConfigError
from slitcli.sim.seds import OBS_WAVE_AA, ab_magnitude, distance_modulus, library_magnitudes, load_sed_library, observed_sed
from slitcli.sim.shapes import load_shape_library
from slitcli.sim.sources import Source

__all__ = ["PopulationConfig", "PopulationProvider", "draw_sources", "draw_redshifts"]


@dataclass(frozen=True)
class PopulationConfig:
    """Parameters of the default mock population.

    `nz_flat_fraction` mixes a flat n(z) over [z_min, z_max] into the Smail et al. n(z):
    the default 0 is the survey-like population; a training stream uses more (e.g. 0.5)
    so that a network sees enough galaxies at high redshift and learns a likelihood
    there, not only the survey's prior (docs/bayes.md, "The training stream").
    `mag_free_fraction` is the fraction of sources whose spectrum is then rescaled to an i
    magnitude uniform within the flux limits, whatever their redshift and luminosity: a
    network trained only on the luminosity function learns "bright means near", which
    fails on any population whose luminosities differ. Both default to 0, and then a seed
    draws exactly what it drew before they existed.
    """

    nz_z0: float = 0.33
    nz_alpha: float = 2.0
    nz_beta: float = 1.5
    nz_flat_fraction: float = 0.0
    mag_free_fraction: float = 0.0
    z_min: float = 0.02
    z_max: float = 2.0
    mag_i_min: float = 17.0
    mag_i_max: float = 23.5
    lf_mstar_i: float = -22.03
    lf_alpha: float = -1.1
    lf_evolution_q: float = 1.0
    field_ra_deg: float = 150.1
    field_dec_deg: float = 2.2
    field_size_deg: float = 1.0

    def __post_init__(self):
        if not 0 < self.z_min < self.z_max:
            msg = "need 0 < z_min < z_max"
            raise ValueError(msg)
        if not self.mag_i_min < self.mag_i_max:
            msg = "need mag_i_min < mag_i_max"
            raise ValueError(msg)
        if self.nz_z0 <= 0 or self.nz_beta <= 0:
            msg = "nz_z0 and nz_beta must be > 0"
            raise ValueError(msg)
        for key in ("nz_flat_fraction", "mag_free_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                msg = f"{key} must lie in [0, 1], got {getattr(self, key)}"
                raise ValueError(msg)


def draw_redshifts(config: PopulationConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `n` redshifts from the n(z) of `config` (inverse CDF on a fine grid)."""
    z = np.linspace(config.z_min, config.z_max, 4001)
    pdf = z**config.nz_alpha * np.exp(-((z / config.nz_z0) ** config.nz_beta))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(z))])
    if config.nz_flat_fraction > 0:
        # One uniform variate per source, as without the mixture.
        cdf = (1.0 - config.nz_flat_fraction) * cdf / cdf[-1] + config.nz_flat_fraction * (z - z[0]) / (z[-1] - z[0])
    return np.interp(rng.uniform(0.0, cdf[-1], n), cdf, z)


def _abs_mag_cdf(config: PopulationConfig, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Absolute magnitudes [mag] and the luminosity function's cumulative sum on them, at `z`."""
    mstar = config.lf_mstar_i - config.lf_evolution_q * (z - 0.1)
    # Fainter than this cannot reach mag_i_max even with a generous K-correction.
    faint = config.mag_i_max - float(distance_modulus(z)) + 2.5
    m = np.linspace(mstar - 4.0, max(faint, mstar - 3.0), 2001)
    x = 10.0 ** (0.4 * (mstar - m))
    pdf = x ** (config.lf_alpha + 1.0) * np.exp(-x)
    return m, np.cumsum(pdf)


#: Apparent magnitudes within this of a flux limit are decided by the exact `ab_magnitude`.
_MAG_GUARD = 1e-6


def draw_sources(config: PopulationConfig, n: int, first_id: int, rng: np.random.Generator) -> list[Source]:
    """Draw `n` mock sources with ids `first_id`, `first_id` + 1, ...

    Raises
    ------
    ConfigError
        If no galaxy of the library passes the flux limits at a drawn redshift
        within 1000 tries (flux limits that n(z) cannot meet).
    """
    seds = load_sed_library()
    shapes = load_shape_library()
    redshifts = draw_redshifts(config, n, rng)
    out = []
    for k, z in enumerate(redshifts):
        # Per redshift, once: the luminosity function's CDF and the templates' band fluxes, so a try costs two random numbers and a look-up (the same draws as
        # computing each try's spectrum, and the same decisions: those within
        # _MAG_GUARD of a limit are taken on the exact magnitude).
        m_grid, cdf = _abs_mag_cdf(config, z)
        magnitude = library_magnitudes(seds, z)
        for _try in range(1000):
            g = int(rng.integers(len(seds)))
            abs_mag = float(np.interp(rng.uniform(0.0, cdf[-1]), cdf, m_grid))
            mag = float(magnitude(g) + abs_mag - seds.abs_mag_i[g])
            if min(abs(mag - config.mag_i_min), abs(mag - config.mag_i_max)) < _MAG_GUARD:
                mag = float(ab_magnitude(OBS_WAVE_AA, observed_sed(seds, g, z) * 10.0 ** (-0.4 * (abs_mag - seds.abs_mag_i[g]))))
            if config.mag_i_min <= mag <= config.mag_i_max:
                flam = observed_sed(seds, g, z) * 10.0 ** (-0.4 * (abs_mag - seds.abs_mag_i[g]))
                mag = float(ab_magnitude(OBS_WAVE_AA, flam))
                break
        else:
            msg = f"no galaxy passes {config.mag_i_min} <= i <= {config.mag_i_max} at z = {z:.3f}"
            raise ConfigError(msg)
        if config.mag_free_fraction > 0 and rng.uniform() < config.mag_free_fraction:
            # Brightness that says nothing about redshift: the spectrum scaled to a magnitude
            # uniform within the flux limits.
            target = rng.uniform(config.mag_i_min, config.mag_i_max)
            flam = flam * 10.0 ** (-0.4 * (target - mag))
            mag = float(ab_magnitude(OBS_WAVE_AA, flam))
        s = int(rng.integers(len(shapes)))
        image = np.rot90(shapes.stamps[s], k=int(rng.integers(4)))
        if rng.integers(2):
            image = image[:, ::-1]
        half = 0.5 * config.field_size_deg
        dec = config.field_dec_deg + rng.uniform(-half, half)
        ra = config.field_ra_deg + rng.uniform(-half, half) / np.cos(np.radians(dec))
        out.append(
            Source(
                source_id=first_id + k,
                ra_deg=float(ra),
                dec_deg=float(dec),
                z=float(z),
                wave_aa=OBS_WAVE_AA,
                flam=flam,
                image=np.ascontiguousarray(image),
                pixel_scale_arcsec=shapes.pixel_scale_arcsec,
                sed_id=seds.sed_id(g),
                shape_id=f"{shapes.name}:{s}",
                sed_class=str(seds.sed_class[g]),
                mag_i=mag,
            )
        )
    return out


@dataclass(frozen=True)
class PopulationProvider:
    """Sources `start` .. `start + count - 1` of the default population, SOURCE_IDs `first_id` + index.

    Give each file of a survey its own range of `first_id` (``slitcli simulate
    --first-id``) so that SOURCE_ID stays unique across files.
    """

    config: PopulationConfig
    first_id: int = 1

    def __post_init__(self):
        if self.first_id < 0:
            msg = f"first_id must be >= 0, got {self.first_id}"
            raise ValueError(msg)

    def __call__(self, start: int, count: int, rng: np.random.Generator) -> list[Source]:
        return draw_sources(self.config, count, self.first_id + start, rng)
