"""Inputs of ``slitcli cutout``: slitless exposures, the source catalogue and the direct image, checked.

An exposure (docs/simulate.md, "Fields") is a FITS file with ``SCI``, ``ERR`` [e-/s] and
``DQ`` image HDUs of one detector read, a celestial WCS on ``SCI``, the band in
``FILTER`` and the instrument in ``INSTFILE``/``INSTHASH`` (primary or ``SCI`` header).
Pixels are read on demand (`Exposure.region`), never a whole frame, so memory does not
grow with the detector size.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import fitsio
import numpy as np

from slitcli.config import config_hash
from slitcli.errors import ConfigError, InputError
from slitcli.instrument import Instrument, load_instrument
from slitcli.io.layout import DQ_DO_NOT_USE

__all__ = ["Exposure", "open_exposures", "read_source_catalog", "DirectImage", "RATE_UNITS"]

#: BUNIT values accepted as a count rate in electrons per second.
RATE_UNITS = ("electron/s", "electrons/s", "e-/s", "ct/s", "electron / s")


def _open(path: Path) -> fitsio.FITS:
    if not path.is_file():
        msg = f"{path}: {'is a directory, not a FITS file' if path.is_dir() else 'file not found'}"
        raise InputError(msg)
    try:
        return fitsio.FITS(str(path))
    except OSError:
        msg = f"{path}: cannot read as FITS (empty, truncated or not a FITS file)"
        raise InputError(msg) from None


def _celestial_wcs(header, where: str):
    """The celestial astropy WCS of a header; `InputError` naming `where` if it has none."""
    from astropy.io import fits
    from astropy.wcs import WCS

    cards = fits.Header()
    for record in header.records():
        name = record.get("name")
        if name and name not in ("COMMENT", "HISTORY", "") and record.get("value") is not None:
            try:
                cards[name] = record["value"]
            except (ValueError, KeyError):
                continue
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(cards, naxis=2)
    except Exception as err:  # astropy raises several types for malformed WCS keywords
        msg = f"{where}: unreadable WCS ({err})"
        raise InputError(msg) from None
    if not wcs.has_celestial or wcs.naxis != 2:
        msg = f"{where}: no celestial WCS (CTYPE1/2 RA---TAN/DEC--TAN, CRVAL, CRPIX, CD); cannot map RA/DEC to pixels"
        raise InputError(msg)
    return wcs.celestial


@dataclass
class Exposure:
    """One slitless exposure: its band, WCS, exposure time and open HDUs (read on demand).

    Attributes
    ----------
    path : Path
    band : str
        The ``FILTER`` keyword.
    wcs : astropy.wcs.WCS
        Celestial WCS of ``SCI`` (0-based pixels through `world_to_pixel`).
    shape : (ny, nx)
    exptime_s : float
    insthash, instfile : str
    """

    path: Path
    band: str
    wcs: object
    shape: tuple[int, int]
    exptime_s: float
    insthash: str
    instfile: str
    fits: fitsio.FITS

    def region(self, r0: int, c0: int, shape: tuple[int, int]):
        """SCI, ERR [e-/s, float64] and a good-pixel mask of the `shape` box at (r0, c0), 0-based.

        Pixels off the detector, flagged ``DO_NOT_USE``, or with non-finite SCI or ERR or
        ERR <= 0 are not good (their SCI and ERR are 0); also returned: the DQ of the box
        (``DO_NOT_USE`` off the detector).
        """
        from slitcli.fields.cutout import cut_box

        sci = cut_box(self.fits["SCI"], r0, c0, shape, 0.0)
        err = cut_box(self.fits["ERR"], r0, c0, shape, 0.0)
        dq = cut_box(self.fits["DQ"], r0, c0, shape, DQ_DO_NOT_USE).astype(np.int32)
        good = ((dq & DQ_DO_NOT_USE) == 0) & np.isfinite(sci) & np.isfinite(err) & (err > 0)
        sci[~good], err[~good] = 0.0, 0.0
        return sci, err, good, dq


def _keyword(headers, name: str):
    for h in headers:
        if name in h and h[name] is not None and str(h[name]).strip() != "":
            return h[name]
    return None


def _read_exposure(path: Path) -> Exposure:
    f = _open(path)
    try:
        missing = [e for e in ("SCI", "ERR", "DQ") if e not in f]
        if missing:
            msg = f"{path}: missing HDU(s) {', '.join(missing)}; an exposure needs SCI, ERR and DQ images"
            raise InputError(msg)
        dims = {e: tuple(f[e].get_dims()) for e in ("SCI", "ERR", "DQ")}
        if len(set(dims.values())) != 1 or len(dims["SCI"]) != 2:
            msg = f"{path}: SCI, ERR and DQ must be 2D images of one shape, got {', '.join(f'{k} {v}' for k, v in dims.items())}"
            raise InputError(msg)
        primary, sci = f[0].read_header(), f["SCI"].read_header()
        headers = (sci, primary)
        band = _keyword(headers, "FILTER")
        if band is None:
            msg = f"{path}: no FILTER keyword (the slitless band) in HDU SCI or PRIMARY"
            raise InputError(msg)
        unit = str(sci.get("BUNIT", "")).strip()
        if unit.lower() not in RATE_UNITS:
            msg = f"{path}: HDU SCI has BUNIT {unit!r}; cutout needs count rates in electron/s"
            raise InputError(msg)
        exptime = _keyword(headers, "EXPTIME")
        if exptime is None or not float(exptime) > 0:
            msg = f"{path}: EXPTIME missing or not > 0 in HDU SCI and PRIMARY"
            raise InputError(msg)
        insthash = _keyword(headers, "INSTHASH")
        if insthash is None:
            msg = f"{path}: no INSTHASH keyword: cannot tell which instrument file (trace, sensitivity) it needs"
            raise InputError(msg)
        wcs = _celestial_wcs(sci, f"{path}: HDU SCI")
        instfile = _keyword(headers, "INSTFILE")
        return Exposure(path, str(band).strip(), wcs, dims["SCI"], float(exptime), str(insthash).strip(), "default" if instfile is None else str(instfile).strip(), f)
    except BaseException:
        f.close()
        raise


def _instrument_for(exposure: Exposure, instrument_path) -> tuple[Instrument, str]:
    """The instrument file an exposure names (or `instrument_path`), checked against its INSTHASH."""
    if instrument_path is not None:
        candidates = [Path(instrument_path)]
    elif exposure.instfile == "default":
        candidates = [None]
    else:
        candidates = [Path(exposure.instfile), exposure.path.parent / exposure.instfile]
        candidates = [c for c in candidates if c.is_file()][:1]
        if not candidates:
            msg = f"{exposure.path}: its instrument file INSTFILE = {exposure.instfile!r} is not found (nor next to the exposure); give it with --instrument"
            raise InputError(msg)
    instrument = load_instrument(candidates[0])
    name = "the shipped instrument file" if candidates[0] is None else str(candidates[0])
    if config_hash(instrument) != exposure.insthash:
        msg = f"{exposure.path}: INSTHASH {exposure.insthash} is not that of {name} ({config_hash(instrument)}); give the exposure's instrument file with --instrument"
        raise InputError(msg)
    return instrument, "default" if candidates[0] is None else str(candidates[0])


def open_exposures(paths, instrument_path=None) -> tuple[Instrument, str, list[Exposure]]:
    """Open and check slitless exposures; all must name one instrument (INSTHASH).

    Parameters
    ----------
    paths : list of path
    instrument_path : path, optional
        Instrument file to use instead of the one the exposures name (its hash must match).

    Returns
    -------
    instrument : Instrument
    instfile : str
        The instrument file used ("default" for the shipped one).
    exposures : list of Exposure
        Open: close each one's ``fits`` when done (`close_all`).

    Raises
    ------
    InputError
        A missing or unreadable file, no SCI/ERR/DQ, no FILTER, INSTHASH or celestial
        WCS, a non-rate BUNIT, exposures of different instruments, a band the
        instrument lacks.
    """
    if not paths:
        msg = "no exposures given"
        raise InputError(msg)
    exposures: list[Exposure] = []
    seen = {}
    try:
        for p in paths:
            key = Path(p).resolve()
            if key in seen:
                # Combined with itself, an exposure would claim sqrt(2) too small an ERR.
                msg = f"{p}: given twice (also as {seen[key]}); each exposure can be combined once"
                raise InputError(msg)
            seen[key] = p
            exposures.append(_read_exposure(Path(p)))
        first = exposures[0]
        for e in exposures[1:]:
            if e.insthash != first.insthash:
                msg = f"{e.path}: INSTHASH {e.insthash} differs from {first.path}'s {first.insthash}: exposures of different instruments cannot be combined"
                raise InputError(msg)
        instrument, instfile = _instrument_for(first, instrument_path)
        for e in exposures:
            try:
                instrument.band(e.band)
            except ConfigError as err:
                raise InputError(f"{e.path}: FILTER {e.band!r}: {err}") from None
    except BaseException:
        close_all(exposures)
        raise
    return instrument, instfile, exposures


def close_all(exposures) -> None:
    """Close every exposure's file."""
    for e in exposures:
        e.fits.close()


def read_source_catalog(path):
    """The source catalogue: HDU SOURCES (or the first table) of a FITS file, as an astropy Table.

    It needs ``SOURCE_ID``, ``RA`` and ``DEC`` [deg], finite, with unique IDs; every
    other column passes through to the cutouts' SOURCES table.
    """
    from astropy.table import Table

    path = Path(path)
    f = _open(path)
    with f:
        hdus = [h for h in f if h.get_exttype() in ("BINARY_TBL", "ASCII_TBL")]
        hdu = f["SOURCES"] if "SOURCES" in f else (hdus[0] if hdus else None)
        if hdu is None:
            msg = f"{path}: no table HDU (SOURCES); the catalogue needs SOURCE_ID, RA and DEC"
            raise InputError(msg)
        name = hdu.get_extname() or str(hdu.get_extnum())
        data = hdu.read()
    table = Table(data)
    missing = [c for c in ("SOURCE_ID", "RA", "DEC") if c not in table.colnames]
    if missing:
        msg = f"{path}: HDU {name} lacks column(s) {', '.join(missing)}; cutouts need each source's SOURCE_ID and sky position RA, DEC [deg]"
        raise InputError(msg)
    if len(table) == 0:
        msg = f"{path}: HDU {name} has no rows"
        raise InputError(msg)
    for c in ("RA", "DEC"):
        bad = ~np.isfinite(np.asarray(table[c], float))
        if bad.any():
            msg = f"{path}: HDU {name} column {c}: {int(bad.sum())} NaN or infinite value(s)"
            raise InputError(msg)
    ids, counts = np.unique(np.asarray(table["SOURCE_ID"]), return_counts=True)
    if np.any(counts > 1):
        msg = f"{path}: HDU {name}: SOURCE_ID {ids[counts > 1][0]} appears {int(counts.max())} times"
        raise InputError(msg)
    return table


class DirectImage:
    """The direct image (SCI in e-/s, SEGMENTATION) and its WCS, read for stamps.

    `segment_flux` sums each catalogue source's segment over the whole image, in blocks
    of rows (memory: one block).
    """

    BLOCK_ROWS = 512

    def __init__(self, path):
        self.path = Path(path)
        self.fits = _open(self.path)
        try:
            missing = [e for e in ("SCI", "SEGMENTATION") if e not in self.fits]
            if missing:
                msg = f"{self.path}: missing HDU(s) {', '.join(missing)}; a direct image needs SCI and SEGMENTATION"
                raise InputError(msg)
            dims = {tuple(self.fits[e].get_dims()) for e in ("SCI", "SEGMENTATION")}
            if len(dims) != 1:
                msg = f"{self.path}: SCI and SEGMENTATION differ in shape ({sorted(dims)})"
                raise InputError(msg)
            self.shape = tuple(next(iter(dims)))
            self.wcs = _celestial_wcs(self.fits["SCI"].read_header(), f"{self.path}: HDU SCI")
        except BaseException:
            self.fits.close()
            raise

    def segment_flux(self, ids: np.ndarray) -> np.ndarray:
        """Sum of SCI [e-/s] over the pixels whose segmentation value is each of `ids` (0 where none)."""
        ids = np.asarray(ids, np.int64)
        order = np.argsort(ids)
        sorted_ids = ids[order]
        total = np.zeros(ids.size)
        for y0 in range(0, self.shape[0], self.BLOCK_ROWS):
            y1 = min(y0 + self.BLOCK_ROWS, self.shape[0])
            seg = self.fits["SEGMENTATION"][y0:y1, :].astype(np.int64).ravel()
            sci = self.fits["SCI"][y0:y1, :].astype(np.float64).ravel()
            keep = seg != 0
            seg, sci = seg[keep], sci[keep]
            k = np.clip(np.searchsorted(sorted_ids, seg), 0, max(ids.size - 1, 0))
            hit = sorted_ids[k] == seg if ids.size else np.zeros(seg.size, bool)
            np.add.at(total, order[k[hit]], np.where(np.isfinite(sci[hit]), sci[hit], 0.0))
        return total

    def stamp(self, x: float, y: float, source_id: int, flux: float, size: int) -> np.ndarray:
        """The `size` x `size` stamp of the source's segment around 0-based (x, y), as a fraction of `flux` per pixel.

        Cut at the nearest integer offset (the source within half a pixel of the stamp
        centre (size - 1)/2); pixels of other segments, sky and off-image pixels are 0.
        """
        r0 = int(np.floor(y - 0.5 * (size - 1) + 0.5))
        c0 = int(np.floor(x - 0.5 * (size - 1) + 0.5))
        out = np.zeros((size, size))
        ra0, ra1 = max(r0, 0), min(r0 + size, self.shape[0])
        ca0, ca1 = max(c0, 0), min(c0 + size, self.shape[1])
        if ra1 <= ra0 or ca1 <= ca0 or not flux > 0:
            return out
        sci = self.fits["SCI"][ra0:ra1, ca0:ca1].astype(np.float64)
        seg = self.fits["SEGMENTATION"][ra0:ra1, ca0:ca1]
        out[ra0 - r0 : ra1 - r0, ca0 - c0 : ca1 - c0] = np.where((seg == source_id) & np.isfinite(sci), sci, 0.0) / flux
        return out

    def close(self) -> None:
        self.fits.close()
