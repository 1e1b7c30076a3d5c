"""Shared fixtures: tiny seeded sources, instruments and input files."""

from __future__ import annotations

import astropy.constants as const
import astropy.units as u
import numpy as np
import pytest

from slitcli.instrument import load_instrument
from slitcli.sim.sources import Source


@pytest.fixture(scope="session")
def csst():
    return load_instrument()


#: Simulation settings of the tiny samples the command-line tests make (16 x 96 cutouts).
TINY_SIM_YAML = "cutout_height: 16\ncutout_width: 96\nstamp_size: 32\n"


def tiny_train_yaml(pretrain_epochs: int = 1, finetune_epochs: int = 1, batch_size: int = 8) -> str:
    """`slitcli train --config` text for a tiny slitnet on TINY_SIM_YAML cutouts."""
    return (
        f"train:\n  pretrain_epochs: {pretrain_epochs}\n  finetune_epochs: {finetune_epochs}\n  batch_size: {batch_size}\n  min_snr: 0.0\n"
        "model:\n  rows: 8\n  channels: [8, 8]\n  kernels: [3, 3]\n  head_hidden: [16]\n"
    )


def invoke(*args):
    """Run `slitcli ARGS...` in-process (typer's CliRunner); arguments may be paths or numbers."""
    from typer.testing import CliRunner

    from slitcli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles):
    """A user error: exit 1, one line on stderr starting 'slitcli: error: ', no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("slitcli: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_usage_error(result, *needles):
    """A usage error: exit 2, the usage line and the offending option on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Usage: slitcli "), result.output
    for needle in needles:
        assert needle in result.output, result.output


def expected_rate_e_s(csst, band, wave, flam, lo, hi):
    """Integral of f_lambda x S(lambda) over [lo, hi] [e-/s], with astropy units, independent of slitcli."""
    sel = (wave >= lo) & (wave <= hi)
    w = wave[sel] * u.AA
    tput = np.interp(wave[sel], band.throughput.wave_aa, band.throughput.value)
    s = csst.collecting_area_cm2 * u.cm**2 * tput * w / (const.h * const.c)
    return np.trapezoid((flam[sel] * u.erg / u.s / u.cm**2 / u.AA * s).to(1 / u.s / u.AA), w).to_value(1 / u.s)


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


def write_hsc(path, n=3, size=24, pixscale=0.168, nan_row=None, with_pixscale=True, image_shape=None, columns=None):
    """A tiny HSC-like image file: Gaussian galaxies, ids 100.., near RA 150, Dec 2."""
    from astropy.io import fits

    images = np.zeros((n, size, size), dtype=np.float32)
    for k in range(n):
        images[k] = gaussian_blob(size, 1.5 + 0.3 * k) * 1000.0
    if nan_row is not None:
        images[nan_row, 3, 3] = np.nan
    if image_shape is not None:
        images = images.reshape(n, *image_shape)
    fmt = f"{int(np.prod(images.shape[1:]))}E"
    cols = {
        "object_id": fits.Column(name="object_id", format="K", array=np.arange(100, 100 + n)),
        "ra": fits.Column(name="ra", format="D", unit="deg", array=150.0 + 0.001 * np.arange(n)),
        "dec": fits.Column(name="dec", format="D", unit="deg", array=np.full(n, 2.0)),
        "image": fits.Column(
            name="image", format=fmt, array=images,
            dim=str(images.shape[1:][::-1]).replace(" ", "") if images.ndim == 3 else None,
        ),
    }
    hdu = fits.BinTableHDU.from_columns([cols[c] for c in (columns or cols)], name="IMAGES")
    if with_pixscale:
        hdu.header["PIXSCALE"] = (pixscale, "arcsec/pixel")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def write_desi(path, n=3, wave=None, z=None, drop_hdu=None, meta_columns=None, flux_rows=None):
    """A tiny DESI-like spectra file aligned with `write_hsc` (same positions, TARGETID = object_id)."""
    from astropy.io import fits

    wave = np.arange(3000.0, 11000.0, 2.0) if wave is None else np.asarray(wave)
    z = np.linspace(0.3, 0.9, n) if z is None else np.asarray(z)
    rows = n if flux_rows is None else flux_rows
    flux = np.full((rows, wave.size), 5.0, dtype=np.float32)  # 5e-17 erg/s/cm2/A
    for k in range(rows):
        flux[k] += 300.0 * np.exp(-0.5 * ((wave - 3727.0 * (1 + z[min(k, n - 1)])) / 2.0) ** 2)
    meta = {
        "TARGETID": fits.Column(name="TARGETID", format="K", array=np.arange(100, 100 + n)),
        "TARGET_RA": fits.Column(name="TARGET_RA", format="D", array=150.0 + 0.001 * np.arange(n)),
        "TARGET_DEC": fits.Column(name="TARGET_DEC", format="D", array=np.full(n, 2.0)),
        "Z": fits.Column(name="Z", format="D", array=z),
        "SPECTYPE": fits.Column(name="SPECTYPE", format="6A", array=np.full(n, "GALAXY")),
    }
    hdus = {
        "WAVELENGTH": fits.ImageHDU(wave, name="WAVELENGTH"),
        "FLUX": fits.ImageHDU(flux, name="FLUX"),
        "METADATA": fits.BinTableHDU.from_columns([meta[c] for c in (meta_columns or meta)], name="METADATA"),
    }
    fits.HDUList([fits.PrimaryHDU()] + [h for k, h in hdus.items() if k != drop_hdu]).writeto(path)
    return path
