"""Where each band's spectrum sits in a cutout: the band layout that sample files carry.

A cutout is centred on the first-order position of its band's central wavelength; its
linear wavelength WCS (axis 1) holds for a point source at the direct position. The
simulator writes cutouts in this layout, the readers and both redshift routes use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slitcli.instrument import Band

__all__ = ["BandLayout", "band_layout", "DQ_DO_NOT_USE", "DQ_SATURATED", "DQ_JUMP_DET"]

#: Data-quality bits of the DQ images, with the JWST meanings (stdatamodels dqflags).
DQ_DO_NOT_USE = 1
DQ_SATURATED = 2
DQ_JUMP_DET = 4  # a cosmic ray


@dataclass(frozen=True)
class BandLayout:
    """Where a band's first-order spectrum sits in its cutout.

    The cutout is centred on the first-order position of the band's central
    wavelength. The linear wavelength solution (FITS WCS on axis 1) holds for a
    point source at the direct position (`x_direct_pix`, `y_direct_pix`), 0-based.
    """

    band: Band
    shape: tuple[int, int]
    x_direct_pix: float
    y_direct_pix: float
    crpix1: float
    crval1_aa: float
    cdelt1_aa: float

    def wavelength(self, columns: np.ndarray) -> np.ndarray:
        """Wavelength [Angstrom] of 0-based `columns` by the linear WCS."""
        return self.crval1_aa + self.cdelt1_aa * (np.asarray(columns) + 1.0 - self.crpix1)


def band_layout(band: Band, shape: tuple[int, int]) -> BandLayout:
    """The cutout layout of `band` for cutouts of `shape` (ny, nx)."""
    order = band.first_order
    xc, yc = 0.5 * (shape[1] - 1), 0.5 * (shape[0] - 1)
    dx_center = float(order.offset_of_wavelength(band.wave_center_aa))
    x_direct = xc - dx_center
    y_direct = yc - float(order.trace(dx_center))
    return BandLayout(
        band=band,
        shape=shape,
        x_direct_pix=x_direct,
        y_direct_pix=y_direct,
        crpix1=xc + 1.0,
        crval1_aa=float(order.wavelength(dx_center)),
        cdelt1_aa=float(order.dispersion(dx_center)),
    )
