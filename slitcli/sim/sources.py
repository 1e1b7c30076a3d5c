"""The source: one galaxy's image, spectrum and truth, as the simulator takes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Source"]


@dataclass
class Source:
    """A galaxy to simulate.

    Attributes
    ----------
    source_id : int
        Identifier, the join key in every output (``SOURCE_ID``).
    ra_deg, dec_deg : float
        Sky position [deg].
    z : float
        True redshift.
    wave_aa : array [nwave]
        Increasing observed-frame wavelengths [Angstrom].
    flam : array [nwave]
        Total observed-frame flux density of the galaxy [erg/s/cm2/Angstrom].
    image : array [ny, nx]
        Direct image, linear flux (any normalisation), source at the centre.
    pixel_scale_arcsec : float
        Pixel scale of `image` [arcsec/pixel].
    sed_id, shape_id : str
        Where the spectrum and the image came from.
    sed_class : str
        Galaxy class (e.g. "RED"/"BLUE", or the input catalogue's class).
    mag_i : float
        SDSS i AB magnitude of `flam` (synthetic photometry).
    """

    source_id: int
    ra_deg: float
    dec_deg: float
    z: float
    wave_aa: np.ndarray
    flam: np.ndarray
    image: np.ndarray
    pixel_scale_arcsec: float
    sed_id: str
    shape_id: str
    sed_class: str
    mag_i: float
