"""Shared fixtures: tiny seeded sources, instruments and input files."""

from __future__ import annotations

import numpy as np
import pytest

from slitcli.instrument import load_instrument
from slitcli.sources import Source


@pytest.fixture(scope="session")
def csst():
    return load_instrument()


def gaussian_blob(size: int, sigma_pix: float, x_off: float = 0.0, y_off: float = 0.0) -> np.ndarray:
    """A unit-sum round Gaussian image centred (x_off, y_off) pixels from the stamp centre."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    img = np.exp(-0.5 * ((x - x_off) ** 2 + (y - y_off) ** 2) / sigma_pix**2)
    return img / img.sum()


def make_source(flam, wave_aa, image, pixel_scale_arcsec=0.074, z=0.5, source_id=1) -> Source:
    return Source(
        source_id=source_id, ra_deg=150.0, dec_deg=2.0, z=z, wave_aa=wave_aa, flam=flam, image=image,
        pixel_scale_arcsec=pixel_scale_arcsec, sed_id="test", shape_id="test", sed_class="", mag_i=20.0,
    )


@pytest.fixture
def point_image():
    """A point source: one lit pixel at the centre of an odd stamp, at the CSST scale."""
    img = np.zeros((9, 9))
    img[4, 4] = 1.0
    return img
