"""Write a small, valid pair of input files for ``slitcli simulate --hsc ... --desi ...``.

The files are made from real data that ship with slitcli's dependencies, so the
script needs no download:

``example_hsc.fits``
    HSC-like galaxy images. The first binary-table HDU (EXTNAME ``IMAGES``) has
    one row per galaxy with ``object_id`` (int64), ``ra``, ``dec`` (float64, deg)
    and ``image`` (float32, 48 x 48 pixels, TDIM set); its header keyword
    ``PIXSCALE`` = 0.168 arcsec/pixel. Each image is a real galaxy morphology from
    the Hubble eXtreme Deep Field (`slitcli.sim.shapes.load_shape_library`, 0.138
    arcsec/pixel) resampled to 0.168 arcsec/pixel with flux conservation,
    convolved with a Gaussian PSF of FWHM 0.6 arcsec (HSC-like seeing), scaled to
    the galaxy's SDSS i magnitude at an AB zero point of 27 (as HSC coadds) and
    given Gaussian noise of 0.05 per pixel.
``example_desi.fits``
    DESI-like spectra: image HDUs ``WAVELENGTH`` (3000-11000 Angstrom in 1
    Angstrom steps, observed frame) and ``FLUX`` (N x 8001, float32, 1e-17
    erg/s/cm2/Angstrom) and table ``METADATA`` (``TARGETID``, ``TARGET_RA``,
    ``TARGET_DEC``, ``Z``, ``SPECTYPE``, ``CLASS``). Each spectrum is a real SDSS
    galaxy SED (kcorrect templates fitted to SDSS photometry,
    `slitcli.sim.seds.load_sed_library`) moved to a redshift drawn uniformly in
    0.05-1.5 and scaled to an SDSS i AB magnitude drawn uniformly in 19-22.5.

Rows of the two files describe the same galaxies in the same order;
``TARGETID`` equals ``object_id`` and each spectrum's position lies within 0.3
arcsec of its image's, in a small field around RA 150.1, Dec 2.2 deg (galaxies
at least 5 arcsec apart), so both ``--match sky`` (default radius 1.5 arcsec) and
``--match id`` pair every row.

Usage
-----
::

    python examples/make_example_inputs.py --out-dir /tmp/ex -n 20 --seed 0
    slitcli simulate --hsc /tmp/ex/example_hsc.fits --desi /tmp/ex/example_desi.fits -o sample.fits

The images already carry a 0.6 arcsec PSF; add ``--hsc-psf-fwhm 0.6`` to have
slitcli deconvolve it. The script prints one line to stderr naming the two files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from slitcli.io.fitsmeta import CHECKSUM_COMMENT, DATASUM_COMMENT, write_checksums
from slitcli.sim.imaging import convolve_psf, gaussian_psf, resample_flux
from slitcli.sim.seds import ab_magnitude, load_sed_library, observed_sed
from slitcli.sim.shapes import load_shape_library

HSC_PIXEL_SCALE_ARCSEC = 0.168
HSC_PSF_FWHM_ARCSEC = 0.6
HSC_MAG_ZERO = 27.0  # AB magnitude of a total flux of 1 in the images
IMAGE_NOISE = 0.05  # 1-sigma Gaussian noise per pixel, image units
IMAGE_SIZE = 48  # pixels
WAVE_AA = np.arange(3000.0, 11001.0, 1.0)  # observed frame [Angstrom]
FLUX_UNIT = 1e-17  # erg/s/cm2/Angstrom
FIELD_RA_DEG, FIELD_DEC_DEG = 150.1, 2.2
GRID_STEP_ARCSEC = 15.0  # sources sit on a jittered grid: >= 5 arcsec apart
GRID_JITTER_ARCSEC = 5.0
MAX_OFFSET_ARCSEC = 0.3  # spectrum position vs image position
FIRST_OBJECT_ID = 43158176442351000  # HSC-like 64-bit identifiers


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("."), help="directory to write the two files in, created if missing (default: .)")
    parser.add_argument("-n", type=int, default=20, help="number of galaxies (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be >= 1")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        parser.error(f"--out-dir {args.out_dir} exists and is not a directory")
    return args


def make_positions(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image positions [deg]: random cells of a jittered grid centred on the field."""
    side = int(np.ceil(np.sqrt(n)))
    cells = rng.choice(side * side, size=n, replace=False)
    x = (cells % side - 0.5 * (side - 1)) * GRID_STEP_ARCSEC + rng.uniform(-GRID_JITTER_ARCSEC, GRID_JITTER_ARCSEC, n)
    y = (cells // side - 0.5 * (side - 1)) * GRID_STEP_ARCSEC + rng.uniform(-GRID_JITTER_ARCSEC, GRID_JITTER_ARCSEC, n)
    dec = FIELD_DEC_DEG + y / 3600.0
    ra = FIELD_RA_DEG + x / 3600.0 / np.cos(np.radians(dec))
    return ra, dec


def offset_positions(ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions moved by less than `MAX_OFFSET_ARCSEC` in a random direction [deg]."""
    r = rng.uniform(0.0, MAX_OFFSET_ARCSEC, ra.size) / 3600.0
    angle = rng.uniform(0.0, 2.0 * np.pi, ra.size)
    return ra + r * np.cos(angle) / np.cos(np.radians(dec)), dec + r * np.sin(angle)


def make_spectra(n: int, rng: np.random.Generator):
    """Observed f_lambda [erg/s/cm2/Angstrom] on `WAVE_AA`, redshifts, classes, i magnitudes."""
    library = load_sed_library()
    index = rng.choice(len(library), size=n, replace=n > len(library))
    z = rng.uniform(0.05, 1.5, n)
    mag_i = rng.uniform(19.0, 22.5, n)
    flam = np.empty((n, WAVE_AA.size))
    for k in range(n):
        sed = observed_sed(library, int(index[k]), float(z[k]), wave_aa=WAVE_AA)
        flam[k] = sed * 10.0 ** (-0.4 * (mag_i[k] - ab_magnitude(WAVE_AA, sed)))
    return flam, z, library.sed_class[index], mag_i


def make_images(mag_i: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HSC-like float32 images [n, H, W] of HXDF galaxies with total flux set by `mag_i`."""
    shapes = load_shape_library()
    index = rng.choice(len(shapes), size=mag_i.size, replace=mag_i.size > len(shapes))
    psf = gaussian_psf(HSC_PSF_FWHM_ARCSEC / HSC_PIXEL_SCALE_ARCSEC)
    images = np.empty((mag_i.size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for k, (i, mag) in enumerate(zip(index, mag_i)):
        image = resample_flux(shapes.stamps[i], shapes.pixel_scale_arcsec, HSC_PIXEL_SCALE_ARCSEC, (IMAGE_SIZE, IMAGE_SIZE))
        image = convolve_psf(image, psf)
        image *= 10.0 ** (-0.4 * (mag - HSC_MAG_ZERO)) / image.sum()
        images[k] = image + rng.normal(0.0, IMAGE_NOISE, image.shape)
    if not (np.all(np.isfinite(images)) and np.all(images.sum(axis=(1, 2)) > 0)):
        raise RuntimeError("an example image has non-finite pixels or no positive total flux")
    return images


def _comment_columns(hdu: fits.BinTableHDU, descriptions: dict[str, str]) -> None:
    """Give every column card of a table HDU a comment."""
    for i, column in enumerate(hdu.columns, start=1):
        hdu.header.comments[f"TTYPE{i}"] = descriptions[column.name]
        hdu.header.comments[f"TFORM{i}"] = "Data format of the column"
        for key, comment in ((f"TUNIT{i}", "Unit of the column"), (f"TDIM{i}", "Dimensions of each cell (W, H)")):
            if key in hdu.header:
                hdu.header.comments[key] = comment


def _write(hdus: list, path: Path) -> None:
    """Write HDUs to a temporary name beside `path`, then rename into place."""
    hdul = fits.HDUList(hdus)
    for hdu in hdul:
        for i in range(1, hdu.header.get("NAXIS", 0) + 1):
            hdu.header.comments[f"NAXIS{i}"] = hdu.header.comments[f"NAXIS{i}"] or f"Length of data axis {i}"
        missing = [card.keyword for card in hdu.header.cards if card.keyword and not card.comment]
        if missing:
            raise RuntimeError(f"{path.name}: header cards without comment: {missing}")
    # CHECKSUM/DATASUM with fixed comments (astropy's own carry the time of writing), so
    # the same seed gives the same bytes.
    for hdu in hdul:
        hdu.header["CHECKSUM"] = ("0" * 16, CHECKSUM_COMMENT)
        hdu.header["DATASUM"] = ("0", DATASUM_COMMENT)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        hdul.writeto(tmp, overwrite=True)
        write_checksums(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


ORIGIN = "slitcli make_example_inputs.py"


def _primary(what: str, origin: str = ORIGIN) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU()
    hdu.header.comments["EXTEND"] = "FITS extensions may follow"
    hdu.header["ORIGIN"] = (origin, "Software that wrote this file")
    hdu.header["CONTENT"] = (what, "What the file holds")
    return hdu


def write_hsc(path: Path, object_id, ra, dec, images, *, origin: str = ORIGIN) -> None:
    """The HSC-like image file (see module docstring); `origin` goes into the ORIGIN card."""
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="object_id", format="K", array=object_id),
            fits.Column(name="ra", format="D", unit="deg", array=ra),
            fits.Column(name="dec", format="D", unit="deg", array=dec),
            fits.Column(name="image", format=f"{IMAGE_SIZE * IMAGE_SIZE}E", dim=f"({IMAGE_SIZE},{IMAGE_SIZE})", array=images),
        ],
        name="IMAGES",
    )
    _comment_columns(
        table,
        {
            "object_id": "Object identifier",
            "ra": "Right ascension (ICRS)",
            "dec": "Declination (ICRS)",
            "image": "Galaxy image, linear flux, centred",
        },
    )
    table.header.comments["EXTNAME"] = "Galaxy images, one row per galaxy"
    table.header["PIXSCALE"] = (HSC_PIXEL_SCALE_ARCSEC, "[arcsec/pixel] Pixel scale of the images (HSC)")
    table.header["PSFFWHM"] = (HSC_PSF_FWHM_ARCSEC, "[arcsec] FWHM of the images' Gaussian PSF")
    table.header["MAGZERO"] = (HSC_MAG_ZERO, "[mag] AB magnitude of an image total flux of 1")
    table.header["NOISE"] = (IMAGE_NOISE, "1-sigma Gaussian noise per pixel, image units")
    _write([_primary("HSC-like galaxy images", origin), table], path)


def write_desi(path: Path, target_id, ra, dec, z, sed_class, flam, *, origin: str = ORIGIN) -> None:
    """The DESI-like spectra file (see module docstring); `origin` goes into the ORIGIN card."""
    wave = fits.ImageHDU(WAVE_AA, name="WAVELENGTH")
    wave.header.comments["EXTNAME"] = "Observed-frame wavelength grid of FLUX"
    wave.header["BUNIT"] = ("Angstrom", "Unit of the wavelengths")
    flux = fits.ImageHDU((flam / FLUX_UNIT).astype(np.float32), name="FLUX")
    flux.header.comments["EXTNAME"] = "Total flux density, one spectrum per row"
    flux.header["BUNIT"] = ("1e-17 erg/(s cm2 Angstrom)", "Unit of the flux densities")
    meta = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="TARGETID", format="K", array=target_id),
            fits.Column(name="TARGET_RA", format="D", unit="deg", array=ra),
            fits.Column(name="TARGET_DEC", format="D", unit="deg", array=dec),
            fits.Column(name="Z", format="D", array=z),
            fits.Column(name="SPECTYPE", format="6A", array=np.full(z.size, "GALAXY")),
            fits.Column(name="CLASS", format="4A", array=np.asarray(sed_class, dtype="U4")),
        ],
        name="METADATA",
    )
    _comment_columns(
        meta,
        {
            "TARGETID": "Target identifier (equals the image object_id)",
            "TARGET_RA": "Right ascension (ICRS)",
            "TARGET_DEC": "Declination (ICRS)",
            "Z": "Redshift",
            "SPECTYPE": "Spectral type",
            "CLASS": "RED/BLUE by rest-frame u-r (Strateva cut)",
        },
    )
    meta.header.comments["EXTNAME"] = "One row per FLUX row"
    _write([_primary("DESI-like galaxy spectra", origin), wave, flux, meta], path)


def main(argv=None) -> None:
    args = _parse_args(argv)
    rng = np.random.default_rng(args.seed)
    object_id = FIRST_OBJECT_ID + np.arange(args.n, dtype=np.int64)
    ra, dec = make_positions(args.n, rng)
    flam, z, sed_class, mag_i = make_spectra(args.n, rng)
    images = make_images(mag_i, rng)
    target_ra, target_dec = offset_positions(ra, dec, rng)
    hsc, desi = args.out_dir / "example_hsc.fits", args.out_dir / "example_desi.fits"
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        sys.exit(f"make_example_inputs.py: error: --out-dir {args.out_dir}: {err.strerror}")
    write_hsc(hsc, object_id, ra, dec, images)
    write_desi(desi, object_id, target_ra, target_dec, z, sed_class, flam)
    print(f"wrote {hsc} and {desi}", file=sys.stderr)


if __name__ == "__main__":
    main()
