"""Real galaxy shapes cut from the Hubble eXtreme Deep Field (HXDF).

The embedded default morphology library. scikit-image bundles the HXDF colour
release image (STScI-2012-37a, public domain), 1000 x 872 pixels over about
2.3 x 2.0 arcmin, hence `HXDF_PIXEL_SCALE_ARCSEC` = 0.138 arcsec/pixel. It is a
display JPEG: we average the three colours, undo the sRGB display gamma
(approximately: 2.2) to get back a roughly linear flux, then detect sources
(5 sigma above the background after a 1-pixel Gaussian smoothing) and keep each
source's own segment, grown by two pixels, as an isolated stamp: the same
"central source isolated by segmentation" step the paper applies to HSC cutouts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["ShapeLibrary", "load_shape_library", "HXDF_PIXEL_SCALE_ARCSEC"]

HXDF_PIXEL_SCALE_ARCSEC = 0.138
_DISPLAY_GAMMA = 2.2


@dataclass(frozen=True)
class ShapeLibrary:
    """Isolated galaxy images, each non-negative with unit sum.

    Attributes
    ----------
    stamps : list of array
        One image per galaxy, at `pixel_scale_arcsec`, source at the centre.
    pixel_scale_arcsec : float
        Pixel scale of the stamps [arcsec/pixel].
    name : str
        Prefix of the shape identifiers.
    """

    stamps: list
    pixel_scale_arcsec: float
    name: str

    def __len__(self) -> int:
        return len(self.stamps)


@functools.lru_cache(maxsize=4)
def load_shape_library(max_size_pix: int = 40, min_area_pix: int = 12) -> ShapeLibrary:
    """Cut isolated galaxy stamps from the HXDF image bundled in scikit-image.

    Parameters
    ----------
    max_size_pix : int
        Largest stamp side kept [HXDF pixels]; bigger sources are skipped.
    min_area_pix : int
        Smallest detection segment kept [HXDF pixels].
    """
    from skimage import data, measure

    rgb = data.hubble_deep_field().astype(np.float64) / 255.0
    linear = rgb.mean(axis=2) ** _DISPLAY_GAMMA
    background = np.median(linear)
    noise = 1.4826 * np.median(np.abs(linear - background))
    flux = linear - background
    labels = measure.label(ndimage.gaussian_filter(flux, 1.0) > 5.0 * noise)
    stamps = []
    for region in measure.regionprops(labels, intensity_image=np.clip(flux, 0, None)):
        y0, x0, y1, x1 = region.bbox
        if region.area < min_area_pix or y0 < 2 or x0 < 2 or y1 > flux.shape[0] - 2 or x1 > flux.shape[1] - 2:
            continue
        cy, cx = region.centroid_weighted
        half = int(np.ceil(max(cy - y0, y1 - cy, cx - x0, x1 - cx))) + 3
        if 2 * half + 1 > max_size_pix:
            continue
        iy, ix = int(round(cy)), int(round(cx))
        sl = np.s_[max(iy - half, 0) : iy + half + 1, max(ix - half, 0) : ix + half + 1]
        if labels[sl].shape != (2 * half + 1, 2 * half + 1):
            continue
        mask = ndimage.binary_dilation(labels[sl] == region.label, iterations=2)
        stamp = np.where(mask, np.clip(flux[sl], 0.0, None), 0.0)
        if stamp.sum() > 0:
            stamps.append(stamp / stamp.sum())
    return ShapeLibrary(stamps, HXDF_PIXEL_SCALE_ARCSEC, "HXDF")
