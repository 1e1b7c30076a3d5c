"""Celestial WCS of a field: the TAN projection of a pointing, its dithers, and FITS cards.

Every image of a field (the direct image and each slitless exposure) carries a gnomonic
(TAN) WCS in ICRS with a CD matrix. At position angle 0 north is +y and east is -x (the
sky as seen on the sky), so the dispersion (+x) runs towards the west. With position
angle PA the detector +y axis points PA degrees east of north:

    CD = s [[-cos PA, sin PA], [sin PA, cos PA]]     (s = pixel scale [deg])

A dither moves the telescope, not the detector: the reference pixel (CRPIX, the detector
centre) stays and the pointing (CRVAL) changes so that the sky moves by (dx, dy) pixels
on the detector. Positions in the simulation are computed from the WCS built from the
very values written to the header (rounded to 12 significant digits first), so a reader
using astropy.wcs on the file recovers them exactly.

Pixel positions here are 0-based (astropy's ``world_to_pixel``); FITS (CRPIX, the
catalogue's X_DIRECT and Y_DIRECT) counts from 1.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tan_cards", "card_value", "wcs_from_cards", "dithered_cards", "dither_offsets", "world_to_pixel", "pixel_to_world"]

_DIGITS = 12


def _round(value: float) -> float:
    return float(f"{value:.{_DIGITS}g}")


def tan_cards(ra_deg: float, dec_deg: float, crpix: tuple[float, float], scale_arcsec: float, pa_deg: float = 0.0) -> list[dict]:
    """FITS header records (fitsio style) of a TAN WCS in ICRS.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Sky position [deg] of the reference pixel (CRVAL1, CRVAL2).
    crpix : (float, float)
        Reference pixel (CRPIX1, CRPIX2), 1-based FITS convention.
    scale_arcsec : float
        Pixel scale [arcsec/pixel].
    pa_deg : float
        Position angle of the detector +y axis, east of north [deg].
    """
    s = scale_arcsec / 3600.0
    c, n = np.cos(np.radians(pa_deg)), np.sin(np.radians(pa_deg))
    values = [
        ("WCSAXES", 2, "Number of celestial WCS axes"),
        ("CTYPE1", "RA---TAN", "Right ascension, gnomonic projection"),
        ("CTYPE2", "DEC--TAN", "Declination, gnomonic projection"),
        ("CUNIT1", "deg", "Unit of CRVAL1 and CD1_j"),
        ("CUNIT2", "deg", "Unit of CRVAL2 and CD2_j"),
        ("CRPIX1", _round(crpix[0]), "Reference pixel, axis 1 (1-based)"),
        ("CRPIX2", _round(crpix[1]), "Reference pixel, axis 2 (1-based)"),
        ("CRVAL1", _round(ra_deg % 360.0), "[deg] RA at the reference pixel"),
        ("CRVAL2", _round(dec_deg), "[deg] Dec at the reference pixel"),
        ("CD1_1", _round(-s * c), "[deg/pixel] d(RA axis)/dx"),
        ("CD1_2", _round(s * n), "[deg/pixel] d(RA axis)/dy"),
        ("CD2_1", _round(s * n), "[deg/pixel] d(Dec axis)/dx"),
        ("CD2_2", _round(s * c), "[deg/pixel] d(Dec axis)/dy"),
        ("RADESYS", "ICRS", "Celestial reference frame"),
        ("EQUINOX", 2000.0, "[yr] Equinox (ICRS: for readers that want one)"),
    ]
    return [{"name": k, "value": v, "comment": c_} for k, v, c_ in values]


def wcs_from_cards(cards: list[dict]):
    """The astropy `~astropy.wcs.WCS` of header records from `tan_cards` or `dithered_cards`."""
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.Header()
    for card in cards:
        header[card["name"]] = card["value"]
    return WCS(header)


def card_value(cards: list[dict], name: str):
    """The value of keyword `name` in header records `cards`."""
    return next(c["value"] for c in cards if c["name"] == name)


def dithered_cards(cards: list[dict], offset_pix: tuple[float, float]) -> list[dict]:
    """The WCS of the same detector after moving the pointing so the sky shifts by `offset_pix` (dx, dy) pixels.

    CRPIX stays; CRVAL becomes the sky position that the undithered WCS has at
    CRPIX - offset. A source at pixel p of `cards` lands near p + offset (exactly so
    only at the reference pixel: the projection changes with the tangent point).
    """
    wcs = wcs_from_cards(cards)
    crpix = np.array([card_value(cards, "CRPIX1"), card_value(cards, "CRPIX2")])
    ra, dec = wcs.all_pix2world([crpix - np.asarray(offset_pix, float)], 1)[0]
    out = [dict(c) for c in cards]
    for c in out:
        if c["name"] == "CRVAL1":
            c["value"] = _round(float(ra) % 360.0)
        elif c["name"] == "CRVAL2":
            c["value"] = _round(float(dec))
    return out


def dither_offsets(n: int, dither_pix: float, rng: np.random.Generator) -> np.ndarray:
    """Pointing offsets [pixel] of `n` exposures, shape (n, 2) as (dx, dy).

    The first exposure is undithered; the others are drawn uniformly in
    [-`dither_pix`, +`dither_pix`] on each axis (integer and sub-pixel parts alike).
    """
    offsets = rng.uniform(-dither_pix, dither_pix, size=(n, 2)) if dither_pix > 0 else np.zeros((n, 2))
    offsets[0] = 0.0
    return offsets


def world_to_pixel(wcs, ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions (x, y) of sky positions [deg] (vectorised)."""
    if np.size(ra_deg) == 0:
        return np.zeros(0), np.zeros(0)
    x, y = wcs.all_world2pix(np.asarray(ra_deg, float), np.asarray(dec_deg, float), 0)
    return np.asarray(x, float), np.asarray(y, float)


def pixel_to_world(wcs, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions (RA, Dec) [deg] of 0-based pixel positions (vectorised)."""
    if np.size(x) == 0:
        return np.zeros(0), np.zeros(0)
    ra, dec = wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
    return np.asarray(ra, float) % 360.0, np.asarray(dec, float)
