"""What a field is: its configuration, its geometry on the sky and the detector, and its file names.

`FieldConfig` holds what `slitcli simulate --field` is asked for (size, density, bands,
dithers, orders); `field_geometry` turns it into the direct image's and each exposure's
WCS and the margins that every source whose light reaches the detector needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slitcli.instrument import Band, Instrument
from slitcli.sim.population import PopulationConfig
from slitcli.sim.wcs import card_value, dither_offsets, dithered_cards, tan_cards

__all__ = ["number_counts_density", "FieldConfig", "Extent", "band_extent", "FieldGeometry", "n_exposures", "field_geometry", "field_file_names", "random_streams", "BLOCK_ROWS"]


#: Rows of a frame given noise and written at once (fixed: it orders the random draws).
BLOCK_ROWS = 256
#: Galaxy number counts N(< i) = 46 x 10^(0.31 (i - 25)) per arcmin2, valid 21 < i < 27:
#: LSST Science Book v2.0 (LSST Science Collaboration 2009, arXiv:0912.0201), eq. 3.7.
_COUNTS_N25, _COUNTS_SLOPE = 46.0, 0.31


def number_counts_density(mag_i_max: float) -> float:
    """Galaxies per arcmin2 brighter than `mag_i_max` (AB, i band): the LSST Science Book counts (eq. 3.7)."""
    return _COUNTS_N25 * 10.0 ** (_COUNTS_SLOPE * (mag_i_max - 25.0))


@dataclass(frozen=True)
class FieldConfig:
    """What field to simulate; units in the names, sizes in pixels.

    ``density_per_arcmin2`` < 0 (the default, -1) means the galaxy number counts to the
    population's faint limit (`number_counts_density`); ``n_exposures`` 0 means the
    instrument's; ``imaging`` "" means the instrument's first imaging filter.
    """

    bands: tuple[str, ...] = ("GV", "GI")
    nx: int = 2048
    ny: int = 2048
    density_per_arcmin2: float = -1.0
    dither_pix: float = 5.0
    ra_deg: float = 150.1
    dec_deg: float = 2.2
    position_angle_deg: float = 0.0
    n_exposures: int = 0
    stamp_size: int = 64
    oversample: int = 5
    orders: tuple[str, ...] = ("+1", "0")
    imaging: str = ""
    noiseless: bool = False
    cosmic_rays: bool = True
    cosmic_ray_rate_per_cm2_s: float = 1.2
    pixel_size_um: float = 10.0
    segmentation_nsigma: float = 1.0
    population: PopulationConfig = field(default_factory=PopulationConfig)

    def __post_init__(self):
        if not self.bands or not self.orders:
            msg = "bands and orders must name at least one each"
            raise ValueError(msg)
        for key in ("nx", "ny", "stamp_size", "oversample"):
            if getattr(self, key) < 1:
                msg = f"{key} must be >= 1, got {getattr(self, key)}"
                raise ValueError(msg)
        if self.density_per_arcmin2 < 0 and self.density_per_arcmin2 != -1.0:
            msg = f"density_per_arcmin2 must be >= 0 (or -1 for the number counts), got {self.density_per_arcmin2}"
            raise ValueError(msg)
        for key in ("dither_pix", "cosmic_ray_rate_per_cm2_s", "n_exposures"):
            if getattr(self, key) < 0:
                msg = f"{key} must be >= 0, got {getattr(self, key)}"
                raise ValueError(msg)
        for key in ("pixel_size_um", "segmentation_nsigma"):
            if getattr(self, key) <= 0:
                msg = f"{key} must be > 0, got {getattr(self, key)}"
                raise ValueError(msg)
        if not abs(self.dec_deg) < 90.0:
            msg = f"dec_deg must lie strictly between -90 and 90, got {self.dec_deg}"
            raise ValueError(msg)

    @property
    def density(self) -> float:
        """Sources per arcmin2 placed in the field."""
        if self.density_per_arcmin2 >= 0:
            return self.density_per_arcmin2
        return number_counts_density(self.population.mag_i_max)


# ---------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Extent:
    """Where a source's light can land relative to its position [pixel], stamp included."""

    dx_lo: float
    dx_hi: float
    dy_lo: float
    dy_hi: float


def band_extent(band: Band, orders: tuple[str, ...], stamp_size: int) -> Extent:
    half = 0.5 * stamp_size + 1.0
    lo, hi, ylo, yhi = np.inf, -np.inf, np.inf, -np.inf
    wave = (band.throughput.wave_aa[0], band.throughput.wave_aa[-1])
    for name in orders:
        order = band.order(name)
        dx = np.linspace(*np.asarray(order.offset_of_wavelength(np.asarray(wave)), float), 257)
        dy = order.trace(dx)
        lo, hi = min(lo, dx[0]), max(hi, dx[-1])
        ylo, yhi = min(ylo, float(dy.min())), max(yhi, float(dy.max()))
    return Extent(lo - half, hi + half, ylo - half, yhi + half)


@dataclass(frozen=True)
class FieldGeometry:
    """The detector, its exposures' pointings and the direct image, as WCS header records.

    Attributes
    ----------
    shape : (ny, nx)
        Detector region of every exposure.
    reference : list of dict
        WCS of the undithered pointing (detector pixels).
    direct : list of dict
        WCS of the direct image: the reference projection, with the reference pixel moved by the margin.
    direct_shape : (ny, nx)
        Direct image shape: the detector plus the margins.
    margin : (left, right, bottom, top)
        Margins [pixel] of the direct image around the detector: a source outside them
        cannot reach any exposure.
    exposures : dict of (band, index) -> (records, (dx, dy))
        Each exposure's WCS and its dither [pixel].
    """

    shape: tuple[int, int]
    reference: list
    direct: list
    direct_shape: tuple[int, int]
    margin: tuple[int, int, int, int]
    exposures: dict

    @property
    def area_arcmin2(self) -> float:
        """Sky area of the direct image [arcmin2]."""
        scale = float(np.hypot(card_value(self.reference, "CD1_1"), card_value(self.reference, "CD2_1"))) * 60.0
        return self.direct_shape[0] * self.direct_shape[1] * scale**2


def n_exposures(instrument: Instrument, config: FieldConfig) -> int:
    return config.n_exposures or instrument.n_exposures


def field_geometry(instrument: Instrument, config: FieldConfig, seed: int) -> FieldGeometry:
    """The detector, direct image and dithered exposure WCSs of a field (dithers drawn from `seed`)."""
    ny, nx = config.ny, config.nx
    crpix = (0.5 * (nx + 1), 0.5 * (ny + 1))
    reference = tan_cards(config.ra_deg, config.dec_deg, crpix, instrument.pixel_scale_arcsec, config.position_angle_deg)
    extents = [band_extent(instrument.band(b), config.orders, config.stamp_size) for b in config.bands]
    d = config.dither_pix
    left = int(np.ceil(max(0.0, max(e.dx_hi for e in extents)) + d))
    right = int(np.ceil(max(0.0, -min(e.dx_lo for e in extents)) + d))
    bottom = int(np.ceil(max(0.0, max(e.dy_hi for e in extents)) + d))
    top = int(np.ceil(max(0.0, -min(e.dy_lo for e in extents)) + d))
    direct = tan_cards(config.ra_deg, config.dec_deg, (crpix[0] + left, crpix[1] + bottom), instrument.pixel_scale_arcsec, config.position_angle_deg)
    streams = random_streams(seed)
    exposures = {}
    for b, seq in zip(config.bands, streams["dither"].spawn(len(config.bands))):
        offsets = dither_offsets(n_exposures(instrument, config), d, np.random.default_rng(seq))
        for k, off in enumerate(offsets):
            exposures[(b, k)] = (dithered_cards(reference, tuple(off)), (float(off[0]), float(off[1])))
    return FieldGeometry((ny, nx), reference, direct, (ny + bottom + top, nx + left + right), (left, right, bottom, top), exposures)


def field_file_names(instrument: Instrument, config: FieldConfig) -> list[str]:
    """Names of the files a field directory receives."""
    n = n_exposures(instrument, config)
    return ["direct.fits", "catalog.fits"] + [f"exposure_{b}_{k + 1:02d}.fits" for b in config.bands for k in range(n)]


def random_streams(seed: int) -> dict:
    names = ("positions", "population", "snr", "dither", "direct", "exposures")
    return dict(zip(names, np.random.SeedSequence(seed).spawn(len(names))))


