"""The slitless instrument as data: bands, orders, dispersion, trace, throughput, noise.

An instrument is a YAML file with the schema of `Instrument`; the CSST one ships in
``slitcli/data/csst.yaml``. Dispersion and trace are polynomials in the column offset
``dx`` [pixel] from the source's direct-image position, in the spirit of aXe
configuration files:

    lambda(dx) = sum_k dldp[k] * dx**k        [Angstrom]
    dy(dx)     = sum_k dydx[k] * dx**k        [pixel]

so a real instrument file (with offsets, tilt and curvature) replaces the defaults
without code changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import astropy.constants as const
import astropy.units as u
import numpy as np

from slitcli.config import from_mapping, load_yaml
from slitcli.errors import ConfigError

__all__ = [
    "Throughput",
    "Order",
    "Band",
    "ImagingBand",
    "Instrument",
    "load_instrument",
    "default_instrument_path",
    "sensitivity",
    "HC_ERG_AA",
]

#: Planck constant times speed of light [erg Angstrom].
HC_ERG_AA = (const.h * const.c).to_value(u.erg * u.AA)

# The range of column offsets [pixel] over which a dispersion polynomial must be
# monotonic: wide enough for any cutout slitcli makes.
_DX_CHECK_PIX = np.linspace(-1500.0, 1500.0, 3001)


@dataclass(frozen=True)
class Throughput:
    """Total throughput curve (telescope x grating x detector QE), dimensionless."""

    wave_aa: tuple[float, ...]
    value: tuple[float, ...]

    def __post_init__(self):
        w, t = np.asarray(self.wave_aa), np.asarray(self.value)
        if w.size < 2 or w.size != t.size:
            msg = f"wave_aa and value must have the same length >= 2, got {w.size} and {t.size}"
            raise ValueError(msg)
        if np.any(np.diff(w) <= 0):
            msg = "wave_aa must increase strictly"
            raise ValueError(msg)
        if np.any(t < 0) or np.any(t > 1):
            msg = "throughput values must lie in [0, 1]"
            raise ValueError(msg)

    def __call__(self, wave_aa: np.ndarray) -> np.ndarray:
        """Throughput at `wave_aa` [Angstrom], linear interpolation, zero outside the table."""
        return np.interp(wave_aa, self.wave_aa, self.value, left=0.0, right=0.0)


@dataclass(frozen=True)
class Order:
    """One spectral order of a band.

    Attributes
    ----------
    name : str
        Order label, e.g. ``"+1"`` or ``"0"``.
    enabled : bool
        Whether the simulator disperses light into this order by default.
    dldp : tuple of float
        Wavelength [Angstrom] as a polynomial in the column offset dx [pixel].
    dydx : tuple of float
        Trace row offset [pixel] as a polynomial in dx [pixel].
    throughput_scale : float
        This order's throughput as a multiple of the band's first-order throughput.
    """

    name: str
    enabled: bool
    dldp: tuple[float, ...]
    dydx: tuple[float, ...]
    throughput_scale: float

    def __post_init__(self):
        if len(self.dldp) < 2 or len(self.dydx) < 1:
            msg = f"order {self.name}: dldp needs >= 2 coefficients and dydx >= 1"
            raise ValueError(msg)
        if np.any(np.diff(self.wavelength(_DX_CHECK_PIX)) <= 0):
            msg = f"order {self.name}: dldp must give a wavelength increasing with dx over |dx| <= 1500 pixels"
            raise ValueError(msg)
        if self.throughput_scale < 0:
            msg = f"order {self.name}: throughput_scale must be >= 0"
            raise ValueError(msg)

    def wavelength(self, dx_pix: np.ndarray | float) -> np.ndarray:
        """Wavelength [Angstrom] landing at column offset `dx_pix` [pixel]."""
        return np.polynomial.polynomial.polyval(dx_pix, self.dldp)

    def trace(self, dx_pix: np.ndarray | float) -> np.ndarray:
        """Row offset [pixel] of the trace at column offset `dx_pix` [pixel]."""
        return np.polynomial.polynomial.polyval(dx_pix, self.dydx)

    def offset_of_wavelength(self, wave_aa: np.ndarray | float) -> np.ndarray:
        """Column offset dx [pixel] where `wave_aa` [Angstrom] lands (inverse of `wavelength`)."""
        return np.interp(wave_aa, self.wavelength(_DX_CHECK_PIX), _DX_CHECK_PIX)

    def dispersion(self, dx_pix: np.ndarray | float) -> np.ndarray:
        """Local dispersion d(lambda)/d(dx) [Angstrom/pixel] at `dx_pix`."""
        deriv = np.polynomial.polynomial.polyder(self.dldp)
        return np.polynomial.polynomial.polyval(dx_pix, deriv)


@dataclass(frozen=True)
class Band:
    """A slitless band: its wavelength range, sky, throughput and orders.

    Attributes
    ----------
    name : str
        Band name, e.g. ``"GV"``; used in HDU names (``GV_SCI``).
    wave_min_aa, wave_max_aa : float
        Nominal band limits [Angstrom]; the cutout is centred on their mean and the
        SNR is measured between them.
    sky_e_per_s : float
        Dispersed sky background [e-/s/pixel].
    throughput : Throughput
        First-order total throughput.
    orders : tuple of Order
        The orders; the first-order one is named ``"+1"``.
    """

    name: str
    wave_min_aa: float
    wave_max_aa: float
    sky_e_per_s: float
    throughput: Throughput
    orders: tuple[Order, ...]

    def __post_init__(self):
        if not 0 < self.wave_min_aa < self.wave_max_aa:
            msg = f"band {self.name}: need 0 < wave_min_aa < wave_max_aa"
            raise ValueError(msg)
        if self.sky_e_per_s < 0:
            msg = f"band {self.name}: sky_e_per_s must be >= 0"
            raise ValueError(msg)
        names = [o.name for o in self.orders]
        if "+1" not in names or len(set(names)) != len(names):
            msg = f"band {self.name}: orders need unique names including '+1', got {names}"
            raise ValueError(msg)

    def order(self, name: str) -> Order:
        """The order called `name`."""
        for o in self.orders:
            if o.name == name:
                return o
        msg = f"band {self.name} has no order '{name}'; it has {', '.join(o.name for o in self.orders)}"
        raise ConfigError(msg)

    @property
    def first_order(self) -> Order:
        return self.order("+1")

    @property
    def wave_center_aa(self) -> float:
        return 0.5 * (self.wave_min_aa + self.wave_max_aa)


@dataclass(frozen=True)
class ImagingBand:
    """A direct-imaging filter of the instrument's camera: what a field's direct image is taken in.

    The direct image shares the slitless detector's pixel scale (`Instrument.pixel_scale_arcsec`)
    and collecting area; everything else is the filter's own.

    Attributes
    ----------
    name : str
        Filter name, e.g. ``"i"``; written as ``FILTER`` in the direct image.
    throughput : Throughput
        Total throughput (telescope x filter x detector QE).
    exposure_time_s : float
        Time of one exposure [s].
    n_exposures : int
        Exposures combined into the direct image.
    sky_e_per_s : float
        Sky background [e-/s/pixel].
    psf_fwhm_arcsec : float
        FWHM of the Gaussian PSF [arcsec].
    read_noise_e, dark_e_per_s, saturation_e : float
        Read noise [e- per pixel per exposure], dark current [e-/s/pixel], full well [e- per exposure].
    """

    name: str
    throughput: Throughput
    exposure_time_s: float
    n_exposures: int
    sky_e_per_s: float
    psf_fwhm_arcsec: float
    read_noise_e: float
    dark_e_per_s: float
    saturation_e: float

    def __post_init__(self):
        for key in ("exposure_time_s", "saturation_e"):
            if getattr(self, key) <= 0:
                msg = f"imaging {self.name}: {key} must be > 0"
                raise ValueError(msg)
        for key in ("sky_e_per_s", "psf_fwhm_arcsec", "read_noise_e", "dark_e_per_s"):
            if getattr(self, key) < 0:
                msg = f"imaging {self.name}: {key} must be >= 0"
                raise ValueError(msg)
        if self.n_exposures < 1:
            msg = f"imaging {self.name}: n_exposures must be >= 1"
            raise ValueError(msg)

    @property
    def total_exposure_s(self) -> float:
        """Summed exposure time of the direct image [s]."""
        return self.exposure_time_s * self.n_exposures


@dataclass(frozen=True)
class Instrument:
    """A slitless spectrograph and its detector. Units are in the field names.

    ``imaging`` lists the camera's direct-imaging filters (optional: empty for an
    instrument without one); `slitcli simulate --field` takes its direct image in one.
    """

    name: str
    collecting_area_cm2: float
    pixel_scale_arcsec: float
    psf_fwhm_arcsec: float
    exposure_time_s: float
    n_exposures: int
    read_noise_e: float
    dark_e_per_s: float
    gain_e_per_adu: float
    saturation_e: float
    bands: tuple[Band, ...]
    imaging: tuple[ImagingBand, ...] = ()

    def __post_init__(self):
        for key in ("collecting_area_cm2", "pixel_scale_arcsec", "exposure_time_s", "gain_e_per_adu", "saturation_e"):
            if getattr(self, key) <= 0:
                msg = f"{key} must be > 0"
                raise ValueError(msg)
        for key in ("psf_fwhm_arcsec", "read_noise_e", "dark_e_per_s"):
            if getattr(self, key) < 0:
                msg = f"{key} must be >= 0"
                raise ValueError(msg)
        if self.n_exposures < 1:
            msg = "n_exposures must be >= 1"
            raise ValueError(msg)
        names = [b.name for b in self.bands]
        if not names or len(set(names)) != len(names):
            msg = f"bands need unique names, got {names}"
            raise ValueError(msg)
        filters = [f.name for f in self.imaging]
        if len(set(filters)) != len(filters):
            msg = f"imaging filters need unique names, got {filters}"
            raise ValueError(msg)

    @property
    def total_exposure_s(self) -> float:
        """Summed exposure time of all exposures [s]."""
        return self.exposure_time_s * self.n_exposures

    def band(self, name: str) -> Band:
        """The band called `name`."""
        for b in self.bands:
            if b.name == name:
                return b
        msg = f"instrument {self.name} has no band '{name}'; it has {', '.join(b.name for b in self.bands)}"
        raise ConfigError(msg)

    def imaging_band(self, name: str = "") -> ImagingBand:
        """The imaging filter called `name` (the first one listed when `name` is empty)."""
        if not self.imaging:
            msg = f"instrument {self.name} has no imaging entry; a field's direct image needs one (see docs/simulate.md)"
            raise ConfigError(msg)
        for f in self.imaging:
            if f.name == name or not name:
                return f
        msg = f"instrument {self.name} has no imaging filter '{name}'; it has {', '.join(f.name for f in self.imaging)}"
        raise ConfigError(msg)

    def replace(self, **changes) -> Instrument:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def default_instrument_path() -> Path:
    """Path of the CSST instrument file shipped with slitcli."""
    return Path(str(resources.files("slitcli") / "data" / "csst.yaml"))


def load_instrument(path: str | Path | None = None) -> Instrument:
    """Load an instrument YAML file (the shipped CSST one when `path` is None).

    Raises
    ------
    ConfigError
        If the file is missing or malformed, or has unknown, missing or invalid keys.
    """
    path = default_instrument_path() if path is None else Path(path)
    return from_mapping(Instrument, load_yaml(path), str(path))


def sensitivity(instrument: Instrument, band: Band, order: Order, wave_aa: np.ndarray) -> np.ndarray:
    """Sensitivity S(lambda) = A T(lambda) lambda / (h c) of one order.

    Parameters
    ----------
    wave_aa : array
        Wavelengths [Angstrom].

    Returns
    -------
    array
        Sensitivity [e- cm2 / erg]: multiplied by a flux density f_lambda
        [erg/s/cm2/Angstrom] it gives the count rate per Angstrom [e-/s/Angstrom];
        numerically the (e-/s)/(erg/s/cm2/Angstrom) of aXe sensitivity files.
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    tput = band.throughput(wave_aa) * order.throughput_scale
    return instrument.collecting_area_cm2 * tput * wave_aa / HC_ERG_AA
