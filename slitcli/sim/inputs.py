"""Reading user galaxy images (HSC-like) and spectra (DESI-like), and matching them.

Formats (see docs/formats.md):

- images: the first binary-table HDU has one row per galaxy with ``object_id``
  (int64), ``ra``, ``dec`` [deg] and ``image`` (float32 H x W array column, linear
  flux); the HDU header has ``PIXSCALE`` [arcsec/pixel].
- spectra: image HDU ``WAVELENGTH`` (1D, Angstrom, observed frame, increasing),
  image HDU ``FLUX`` (N x Nwave, 1e-17 erg/s/cm2/Angstrom, total flux), binary
  table ``METADATA`` with ``TARGETID``, ``TARGET_RA``, ``TARGET_DEC``, ``Z`` and
  optionally ``SPECTYPE`` and ``CLASS``, rows aligned with FLUX.

Every check runs before any simulation (in chunks, so memory stays bounded), and
each failure is an `InputError` naming the file, HDU or column, and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import fitsio
import numpy as np

from slitcli.errors import InputError
from slitcli.sim.imaging import (
    deconvolve_richardson_lucy,
    gaussian_psf,
    isolate_central_source,
)
from slitcli.sim.seds import ab_magnitude
from slitcli.sim.sources import Source

__all__ = ["open_file_sources", "ImageCatalog", "SpectraCatalog", "read_image_catalog", "read_spectra_catalog", "match_catalogs", "FileSourceProvider"]

DESI_FLUX_UNIT = 1e-17  # erg/s/cm2/Angstrom
_CHECK_ROWS = 256


def _open_fits(path: Path) -> fitsio.FITS:
    if not path.exists():
        msg = f"{path}: file not found"
        raise InputError(msg)
    if not path.is_file():
        msg = f"{path}: not a regular file"
        raise InputError(msg)
    try:
        with open(path, "rb") as fh:
            head = fh.read(30)
        if not head.startswith(b"SIMPLE  =                    T"):
            msg = f"{path}: not a FITS file (no SIMPLE = T card at the start)"
            raise InputError(msg)
        return fitsio.FITS(str(path))
    except OSError as err:
        msg = f"{path}: cannot read as FITS ({str(err).splitlines()[0][:120] if str(err) else 'truncated or corrupt'})"
        raise InputError(msg) from None


def _read(path: Path, what: str, reader):
    """Run a fitsio read, turning its low-level errors into an InputError."""
    try:
        return reader()
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:120] if str(err).strip() else "truncated or corrupt data"
        msg = f"{path}: cannot read {what} ({first})"
        raise InputError(msg) from None


@dataclass(frozen=True)
class ImageCatalog:
    """An HSC-like image file, checked. Rows are read on demand."""

    path: Path
    hdu: int
    object_id: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    pixel_scale_arcsec: float
    image_shape: tuple[int, int]

    def read_images(self, rows: np.ndarray) -> np.ndarray:
        """Images of `rows` as float64 [len(rows), H, W]."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        with fitsio.FITS(str(self.path)) as f:
            data = _read(self.path, f"HDU {self.hdu} column image", lambda: f[self.hdu].read(columns=["image"], rows=rows))
        return np.asarray(data["image"], dtype=np.float64).reshape(len(rows), *self.image_shape)


@dataclass(frozen=True)
class SpectraCatalog:
    """A DESI-like spectra file, checked. FLUX rows are read on demand."""

    path: Path
    wave_aa: np.ndarray
    target_id: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    z: np.ndarray
    sed_class: np.ndarray

    def read_flam(self, rows: np.ndarray) -> np.ndarray:
        """f_lambda of `rows` [erg/s/cm2/Angstrom], float64 [len(rows), Nwave]."""
        with fitsio.FITS(str(self.path)) as f:
            hdu = f["FLUX"]
            out = np.empty((len(rows), self.wave_aa.size))
            for i, r in enumerate(rows):
                out[i] = _read(self.path, "HDU FLUX", lambda r=r: hdu[int(r) : int(r) + 1, :])[0]
        return out * DESI_FLUX_UNIT


def _require_columns(path, hdu_name, names, required):
    missing = [c for c in required if c not in names]
    if missing:
        msg = f"{path}: HDU {hdu_name} lacks column(s) {', '.join(missing)}; expected {', '.join(required)}"
        raise InputError(msg)


def read_image_catalog(path: str | Path) -> ImageCatalog:
    """Open and check an HSC-like image file (see module docstring)."""
    path = Path(path)
    with _open_fits(path) as f:
        tables = [i for i, h in enumerate(f) if h.get_exttype() == "BINARY_TBL"]
        if not tables:
            msg = f"{path}: no binary-table HDU; expected one with columns object_id, ra, dec, image"
            raise InputError(msg)
        hdu = f[tables[0]]
        label = f"{tables[0]} ({hdu.get_extname() or 'unnamed'})"
        _require_columns(path, label, hdu.get_colnames(), ["object_id", "ra", "dec", "image"])
        header = _read(path, f"HDU {label} header", hdu.read_header)
        if "PIXSCALE" not in header:
            msg = f"{path}: HDU {label} header lacks keyword PIXSCALE (arcsec/pixel)"
            raise InputError(msg)
        try:
            scale = float(header["PIXSCALE"])
        except (TypeError, ValueError):
            scale = float("nan")
        if not (np.isfinite(scale) and scale > 0):
            msg = f"{path}: HDU {label} keyword PIXSCALE must be a positive number of arcsec/pixel, got {header['PIXSCALE']!r}"
            raise InputError(msg)
        nrows = hdu.get_nrows()
        if nrows == 0:
            msg = f"{path}: HDU {label} has no rows"
            raise InputError(msg)
        meta = _read(path, f"HDU {label}", lambda: hdu.read(columns=["object_id", "ra", "dec"]))
        shape = _image_column_shape(path, label, hdu)
    ra, dec = np.asarray(meta["ra"], float), np.asarray(meta["dec"], float)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec)) and np.all(np.abs(dec) <= 90)):
        msg = f"{path}: HDU {label} columns ra, dec must be finite degrees with |dec| <= 90"
        raise InputError(msg)
    cat = ImageCatalog(path, tables[0], np.asarray(meta["object_id"], np.int64), ra, dec, scale, shape)
    for start in range(0, nrows, _CHECK_ROWS):
        rows = np.arange(start, min(start + _CHECK_ROWS, nrows))
        images = cat.read_images(rows)
        bad = ~np.all(np.isfinite(images), axis=(1, 2))
        if bad.any():
            msg = f"{path}: HDU {label} column image has NaN or infinite pixels in row {rows[bad][0]} (object_id {cat.object_id[rows[bad][0]]})"
            raise InputError(msg)
        empty = ~(np.clip(images, 0, None).sum(axis=(1, 2)) > 0)
        if empty.any():
            msg = f"{path}: HDU {label} column image has no positive flux in row {rows[empty][0]}"
            raise InputError(msg)
    return cat


def _image_column_shape(path, label, hdu) -> tuple[int, int]:
    row = _read(path, f"HDU {label} column image", lambda: hdu.read(columns=["image"], rows=[0]))
    shape = np.asarray(row["image"]).shape[1:]
    if len(shape) != 2 or min(shape) < 2:
        msg = f"{path}: HDU {label} column image must hold a 2D H x W array per row (set TDIM), got shape {shape}"
        raise InputError(msg)
    return (int(shape[0]), int(shape[1]))


def read_spectra_catalog(path: str | Path) -> SpectraCatalog:
    """Open and check a DESI-like spectra file (see module docstring)."""
    path = Path(path)
    with _open_fits(path) as f:
        for name in ("WAVELENGTH", "FLUX", "METADATA"):
            if name not in f:
                msg = f"{path}: missing HDU {name}; expected image HDUs WAVELENGTH, FLUX and table METADATA"
                raise InputError(msg)
        wave = np.asarray(_read(path, "HDU WAVELENGTH", f["WAVELENGTH"].read), dtype=np.float64)
        if wave.ndim != 1 or wave.size < 2:
            msg = f"{path}: HDU WAVELENGTH must be a 1D array of >= 2 wavelengths (Angstrom), got shape {wave.shape}"
            raise InputError(msg)
        if not np.all(np.isfinite(wave)) or np.any(np.diff(wave) <= 0):
            msg = f"{path}: HDU WAVELENGTH must increase strictly (non-monotonic or non-finite values found)"
            raise InputError(msg)
        dims = f["FLUX"].get_dims() if f["FLUX"].get_exttype() == "IMAGE_HDU" else []
        if len(dims) != 2 or dims[1] != wave.size:
            msg = f"{path}: HDU FLUX must be an image of N x {wave.size} (one spectrum per row on WAVELENGTH), got {list(dims)}"
            raise InputError(msg)
        meta_hdu = f["METADATA"]
        if meta_hdu.get_exttype() != "BINARY_TBL":
            msg = f"{path}: HDU METADATA must be a binary table"
            raise InputError(msg)
        names = meta_hdu.get_colnames()
        _require_columns(path, "METADATA", names, ["TARGETID", "TARGET_RA", "TARGET_DEC", "Z"])
        n = meta_hdu.get_nrows()
        if n == 0:
            msg = f"{path}: HDU METADATA has no rows"
            raise InputError(msg)
        if dims[0] != n:
            msg = f"{path}: HDU FLUX has {dims[0]} rows but METADATA has {n}; rows must be aligned"
            raise InputError(msg)
        cols = ["TARGETID", "TARGET_RA", "TARGET_DEC", "Z"] + [c for c in ("SPECTYPE", "CLASS") if c in names]
        meta = _read(path, "HDU METADATA", lambda: meta_hdu.read(columns=cols))
        z = np.asarray(meta["Z"], dtype=np.float64)
        bad = ~(np.isfinite(z) & (z >= 0))
        if bad.any():
            msg = f"{path}: HDU METADATA column Z must be a finite redshift >= 0; row {np.nonzero(bad)[0][0]} has {z[bad][0]}"
            raise InputError(msg)
        for start in range(0, n, _CHECK_ROWS):
            block = _read(path, "HDU FLUX", lambda s=start: f["FLUX"][s : min(s + _CHECK_ROWS, n), :])
            finite = np.all(np.isfinite(block), axis=1)
            if not finite.all():
                msg = f"{path}: HDU FLUX has NaN or infinite values in row {start + np.nonzero(~finite)[0][0]}"
                raise InputError(msg)
    cls_col = "CLASS" if "CLASS" in cols else ("SPECTYPE" if "SPECTYPE" in cols else None)
    sed_class = np.char.strip(np.asarray(meta[cls_col]).astype(str)) if cls_col else np.full(n, "")
    return SpectraCatalog(
        path, wave, np.asarray(meta["TARGETID"], np.int64), np.asarray(meta["TARGET_RA"], float),
        np.asarray(meta["TARGET_DEC"], float), z, sed_class,
    )


@dataclass(frozen=True)
class Match:
    """Rows of the image and spectra catalogues that describe the same galaxy."""

    image_rows: np.ndarray
    spectra_rows: np.ndarray
    n_images: int
    n_spectra: int

    @property
    def n_unmatched_images(self) -> int:
        return self.n_images - self.image_rows.size


def match_catalogs(images: ImageCatalog, spectra: SpectraCatalog, *, by: str = "sky", radius_arcsec: float = 1.5) -> Match:
    """Pair images with spectra, on the sky (nearest within `radius_arcsec`) or by id.

    On the sky, a spectrum matched by several images goes to the nearest one only.
    By id, ``object_id`` must equal ``TARGETID``.
    """
    if by == "id":
        common, i_img, i_spec = np.intersect1d(images.object_id, spectra.target_id, return_indices=True)
        order = np.argsort(i_img)
        return Match(i_img[order], i_spec[order], images.object_id.size, spectra.target_id.size)
    if by != "sky":
        msg = f"match must be 'sky' or 'id', got {by!r}"
        raise InputError(msg)
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    img = SkyCoord(images.ra_deg * u.deg, images.dec_deg * u.deg)
    spec = SkyCoord(spectra.ra_deg * u.deg, spectra.dec_deg * u.deg)
    idx, sep, _ = img.match_to_catalog_sky(spec)
    sep = sep.to_value(u.arcsec)
    ok = sep <= radius_arcsec
    best = {}
    for i in np.nonzero(ok)[0]:
        j = int(idx[i])
        if j not in best or sep[i] < sep[best[j]]:
            best[j] = i
    pairs = sorted((i, j) for j, i in best.items())
    rows = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return Match(rows[:, 0].copy(), rows[:, 1].copy(), images.object_id.size, spectra.target_id.size)


@dataclass(frozen=True)
class FileSourceProvider:
    """Sources from matched image and spectra files, for `slitcli.sim.simulate.iter_chunks`.

    Attributes
    ----------
    psf_fwhm_arcsec : float
        FWHM of the images' own (ground-based) PSF; when > 0 the images are
        Richardson-Lucy deconvolved (30 iterations) before resampling.
    isolate : bool
        Keep only the central source's segment of each image.
    """

    images: ImageCatalog
    spectra: SpectraCatalog
    match: Match
    psf_fwhm_arcsec: float = 0.0
    isolate: bool = False

    def __call__(self, start: int, count: int, rng: np.random.Generator) -> list[Source]:
        img_rows = self.match.image_rows[start : start + count]
        spec_rows = self.match.spectra_rows[start : start + count]
        images = self.images.read_images(img_rows)
        flams = self.spectra.read_flam(spec_rows)
        psf = None
        if self.psf_fwhm_arcsec > 0:
            psf = gaussian_psf(self.psf_fwhm_arcsec / self.images.pixel_scale_arcsec)
        out = []
        for image, flam, ri, rs in zip(images, flams, img_rows, spec_rows):
            if self.isolate:
                image = isolate_central_source(image)
            if psf is not None:
                image = deconvolve_richardson_lucy(image, psf, n_iter=30)
            out.append(
                Source(
                    source_id=int(self.images.object_id[ri]),
                    ra_deg=float(self.images.ra_deg[ri]),
                    dec_deg=float(self.images.dec_deg[ri]),
                    z=float(self.spectra.z[rs]),
                    wave_aa=self.spectra.wave_aa,
                    flam=flam,
                    image=image,
                    pixel_scale_arcsec=self.images.pixel_scale_arcsec,
                    sed_id=f"{self.spectra.path.name}:{self.spectra.target_id[rs]}",
                    shape_id=f"{self.images.path.name}:{self.images.object_id[ri]}",
                    sed_class=str(self.spectra.sed_class[rs]),
                    mag_i=float(ab_magnitude(self.spectra.wave_aa, flam)),
                )
            )
        return out


def open_file_sources(
    images_path: str | Path,
    spectra_path: str | Path,
    *,
    match: str = "sky",
    radius_arcsec: float = 1.5,
    psf_fwhm_arcsec: float = 0.0,
    isolate: bool = False,
) -> FileSourceProvider:
    """Check both files, match them, and return the provider of the matched sources.

    Raises
    ------
    InputError
        If a file is bad or no image matches a spectrum.
    """
    images = read_image_catalog(images_path)
    spectra = read_spectra_catalog(spectra_path)
    pairs = match_catalogs(images, spectra, by=match, radius_arcsec=radius_arcsec)
    if pairs.image_rows.size == 0:
        how = f"within {radius_arcsec} arcsec" if match == "sky" else "by object_id == TARGETID"
        msg = f"{images_path}: none of {pairs.n_images} images matches a spectrum of {spectra_path} {how}"
        raise InputError(msg)
    return FileSourceProvider(images, spectra, pairs, psf_fwhm_arcsec, isolate)
