"""The sample file: simulated slitless cutouts of many sources in one FITS file.

Layout (N sources, cutouts ny x nx, direct stamps s x s):

- ``PRIMARY``: provenance (software, version, instrument, seed, configuration hash,
  input files) and the resolved simulation configuration as COMMENT cards.
- per band B: ``B_SCI`` (float32 N x ny x nx, e-/s, background subtracted),
  ``B_ERR`` (float32, 1-sigma, e-/s), ``B_DQ`` (int32, JWST bits), each with a
  linear wavelength WCS on axis 1 valid for a point source at ``SRCXPOS, SRCYPOS``;
  ``B_SENS``: table of ``WAVELENGTH`` and ``SENSITIVITY``.
- ``DIRECT``: float32 N x s x s, PSF-convolved direct stamps (flux fraction per pixel).
- ``SOURCES``: one row per source, in the cube order.

The file is written under a temporary name in the target directory, cube slices as
chunks arrive (memory stays bounded), and renamed into place when complete. Every HDU
carries ``CHECKSUM``/``DATASUM``; ``DATE`` honours ``SOURCE_DATE_EPOCH``, so one seed
gives the same bytes (`slitcli.io.fitsmeta`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import fitsio
import numpy as np
import yaml

from slitcli.config import config_hash, to_dict
from slitcli.errors import ConfigError, InputError, SlitcliError
from slitcli.instrument import Instrument, sensitivity
from slitcli.io.columns import column_description, column_unit
from slitcli.io.files import check_output_path, output_error, publish, temporary_path
from slitcli.io.fitsmeta import add_checksum_cards, add_longstrn_card, data_unit_bytes, short_description, software_cards, write_checksums
from slitcli.io.layout import DQ_DO_NOT_USE, BandLayout

__all__ = ["SampleWriter", "SampleReader", "SampleChain", "write_table", "band_cards", "mask_bad_pixels", "subtract_contamination", "check_contamination", "FCONTAM", "CONTAMINATION"]


def _card(name, value, comment):
    return {"name": name, "value": value, "comment": comment}


def write_table(fits: fitsio.FITS, table: np.ndarray, extname: str, what: str) -> None:
    """Append a binary table; known columns get ``TUNITn``, ``TCOMMn`` (the full description) and a TTYPE comment.

    TOPCAT/STILTS show ``TCOMMn`` as the column's description; long ones use the
    CONTINUE long-string convention. The HDU gets placeholder checksum cards
    (`slitcli.io.fitsmeta.write_checksums` fills them once the file is complete).
    """
    names = list(table.dtype.names)
    known = {c: (column_unit(c), column_description(c)) for c in names if _known_column(c)}
    fits.write(table, extname=extname, units=[known.get(c, ("", ""))[0] for c in names])
    hdu = fits[extname]
    # A comment too long for the card would make cfitsio continue the *value* ('SOURCES&'),
    # and readers would no longer find the HDU by name: keep it within the card.
    hdu.write_key("EXTNAME", extname, short_description(what, width=max(8, 80 - 33 - len(extname))))
    add_longstrn_card(hdu, [(d, _tcomm_comment(c)) for c, (_, d) in known.items()])
    for i, c in enumerate(names):
        if c in known:
            hdu.write_key(f"TTYPE{i + 1}", c, short_description(known[c][1]))
            hdu.write_key(f"TCOMM{i + 1}", known[c][1], _tcomm_comment(c))
    add_checksum_cards(hdu)


def band_cards(lay: BandLayout) -> list[dict]:
    """The header cards of a band's cubes: the linear wavelength WCS on axis 1, valid for a
    source at (SRCXPOS, SRCYPOS), and the band (FILTER)."""
    return [
        _card("CTYPE1", "WAVE", "Axis 1 is wavelength (linear)"),
        _card("CUNIT1", "Angstrom", "Wavelength unit"),
        _card("CRPIX1", lay.crpix1, "Reference pixel on axis 1 (1-based)"),
        _card("CRVAL1", lay.crval1_aa, "[Angstrom] Wavelength at CRPIX1"),
        _card("CDELT1", lay.cdelt1_aa, "[Angstrom/pixel] Dispersion"),
        _card("SRCXPOS", lay.x_direct_pix + 1.0, "Direct x position of the source (1-based) for the WCS"),
        _card("SRCYPOS", lay.y_direct_pix + 1.0, "Direct y position of the source (1-based)"),
        _card("FILTER", lay.band.name, "Slitless band"),
    ]


def _tcomm_comment(name: str) -> str:
    return f"Description of column {name}"


def _known_column(name: str) -> bool:
    try:
        column_unit(name)
    except KeyError:
        return False
    return True


class SampleWriter:
    """Write a sample file chunk by chunk; use as a context manager.

    Parameters
    ----------
    path : path
        Output FITS file.
    n : int
        Number of sources the file will hold.
    instrument : Instrument
    config : SimulateConfig
    layouts : list of BandLayout
    provenance : dict
        Extra PRIMARY cards: keyword -> (value, comment).
    overwrite : bool
        Replace an existing `path`.
    """

    def __init__(self, path, n, instrument: Instrument, config, layouts: list[BandLayout], provenance: dict, *, overwrite: bool = False):
        self.path = check_output_path(path, overwrite)
        self.tmp = temporary_path(self.path)
        self.overwrite = overwrite
        self.n = n
        self.layouts = layouts
        self.rows = []
        self.fits = None
        try:
            self.fits = fitsio.FITS(str(self.tmp), "rw", clobber=True)
            self._write_headers(instrument, config, provenance)
        except BaseException as err:
            error = self._fail(err)
            if error is None:
                raise
            raise error from None

    def _write_headers(self, instrument, config, provenance):
        f = self.fits
        cards = [
            *software_cards(),
            _card("INSTRUME", instrument.name, "Instrument simulated"),
            _card("BANDS", ",".join(config.bands), "Bands, in HDU order"),
            _card("NSOURCE", self.n, "Number of sources"),
            _card("DISPAXIS", 1, "Dispersion along axis 1 (x)"),
            _card("NOISELES", bool(config.noiseless), "True if SCI holds the expected (noiseless) image"),
            _card("WAVSHIFT", config.wavelength_shift_pix, "[pixel] Spectrum shift from the nominal WCS"),
            _card("CFGHASH", config_hash(config), "SHA-256 (16 hex) of the simulation config"),
            _card("INSTHASH", config_hash(instrument), "SHA-256 (16 hex) of the instrument config"),
        ]
        cards += [_card(k, v, c) for k, (v, c) in provenance.items()]
        f.write(None, header=cards)
        add_longstrn_card(f[0], [(c["value"], c["comment"]) for c in cards])
        for line in yaml.safe_dump({"simulate": to_dict(config)}, sort_keys=False).splitlines():
            f[0].write_comment(line)
        add_checksum_cards(f[0])
        shape = (self.n, config.cutout_height, config.cutout_width)
        for lay in self.layouts:
            name = lay.band.name
            wcs = [
                *band_cards(lay),
                                _card("EXPTIME", instrument.total_exposure_s, "[s] Total exposure time"),
                _card("NEXP", instrument.n_exposures, "Number of exposures"),
                _card("SKYLEVEL", lay.band.sky_e_per_s, "[electron/s] Sky per pixel, subtracted"),
            ]
            for ext, dtype, unit, what in (
                ("SCI", "f4", "electron/s", "Background-subtracted count rate"),
                ("ERR", "f4", "electron/s", "1-sigma error of SCI"),
                ("DQ", "i4", "", "Data quality flags, JWST bit meanings"),
            ):
                extname = f"{name}_{ext}"
                f.create_image_hdu(dims=list(shape), dtype=dtype, extname=extname)
                f[extname].write_key("EXTNAME", extname, what)
                f[extname].write_keys([_card("BUNIT", unit, "Unit of the pixel values"), *wcs])
                add_checksum_cards(f[extname])
            self._write_sensitivity(instrument, lay)
        f.create_image_hdu(dims=[self.n, config.stamp_size, config.stamp_size], dtype="f4", extname="DIRECT")
        f["DIRECT"].write_key("EXTNAME", "DIRECT", "PSF-convolved direct stamps")
        f["DIRECT"].write_keys(
            [
                _card("BUNIT", "", "Fraction of the source's total flux per pixel"),
                _card("PIXSCALE", instrument.pixel_scale_arcsec, "[arcsec/pixel] Pixel scale"),
            ]
        )
        add_checksum_cards(f["DIRECT"])

    def _write_sensitivity(self, instrument, lay):
        band = lay.band
        wave = np.asarray(band.throughput.wave_aa, dtype=np.float64)
        table = np.zeros(wave.size, dtype=[("WAVELENGTH", "f8"), ("SENSITIVITY", "f8")])
        table["WAVELENGTH"] = wave
        table["SENSITIVITY"] = sensitivity(instrument, band, band.first_order, wave)
        write_table(self.fits, table, f"{band.name}_SENS", "First-order sensitivity of the band")

    def write(self, chunk) -> None:
        """Write the cutouts and collect the catalogue rows of one chunk."""
        start = [chunk.start, 0, 0]
        for lay in self.layouts:
            name = lay.band.name
            self.fits[f"{name}_SCI"].write(chunk.sci[name], start=start)
            self.fits[f"{name}_ERR"].write(chunk.err[name], start=start)
            self.fits[f"{name}_DQ"].write(chunk.dq[name], start=start)
        self.fits["DIRECT"].write(chunk.direct, start=start)
        for i, s in enumerate(chunk.sources):
            snr = tuple(chunk.snr[lay.band.name][i] for lay in self.layouts)
            self.rows.append((s.source_id, s.ra_deg, s.dec_deg, s.z, s.mag_i, *snr, s.sed_id, s.shape_id, s.sed_class))

    def close(self) -> Path:
        """Write the SOURCES table, fill the checksums and move the file into place."""
        snr_cols = [(f"SNR_{lay.band.name}", "f4") for lay in self.layouts]
        dtype = [("SOURCE_ID", "i8"), ("RA", "f8"), ("DEC", "f8"), ("Z_TRUE", "f8"), ("MAG_I", "f4"), *snr_cols]
        # String columns as wide as their longest value: nothing is cut.
        width = {k: max([len(r[-3 + i]) for r in self.rows] + [1]) for i, k in enumerate(("SED_ID", "SHAPE_ID", "CLASS"))}
        dtype += [(k, f"S{w}") for k, w in width.items()]
        table = np.array(self.rows, dtype=dtype)
        write_table(self.fits, table, "SOURCES", "Simulated sources, in cube order")
        self.fits.close()
        write_checksums(self.tmp)
        publish(self.tmp, self.path, self.overwrite)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        try:
            if self.fits is not None:
                self.fits.close()
        except Exception:  # cfitsio cannot flush after a failed write; the file goes anyway
            pass
        finally:
            with contextlib.suppress(OSError):  # a read-only file system refuses even to unlink a missing file
                self.tmp.unlink()

    def _fail(self, err: BaseException) -> Exception | None:
        """Delete the temporary file; return the one-line error naming the output for an OS error, else None."""
        error = output_error(self.path, err, self.tmp) if isinstance(err, OSError) and not isinstance(err, SlitcliError) else None
        self.abort()
        return error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            error = self._fail(exc)
            if error is not None:
                raise error from None
        return False


# ---------------------------------------------------------------- reading



def mask_bad_pixels(sci: np.ndarray, err: np.ndarray, dq: np.ndarray) -> int:
    """Flag and neutralise bad pixels of cutouts [n, bands, ny, nx] in place; return how many.

    A pixel is bad when its SCI is NaN or infinite, or its ERR is NaN, infinite or
    <= 0 (JWST products, for one, set flagged pixels to NaN). Its DQ gets
    ``DO_NOT_USE``, its SCI becomes 0 (the background-subtracted sky) and its ERR the
    median ERR of the good pixels of the same cutout and band (0 if there is none), so
    that the arrays are finite for the network and extraction ignores the pixel.
    """
    bad = ~(np.isfinite(sci) & np.isfinite(err) & (err > 0))
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        flat_bad = bad.reshape(*err.shape[:2], -1)
        # Only the cutout bands that hold a bad pixel and at least one good one need a median.
        need = flat_bad.any(axis=-1) & ~flat_bad.all(axis=-1)
        fill = np.zeros(err.shape[:2], err.dtype)
        fill[need] = np.nanmedian(np.where(flat_bad[need], np.nan, err.reshape(flat_bad.shape)[need]), axis=-1)
        sci[bad] = 0
        err[bad] = np.broadcast_to(fill[:, :, None, None], err.shape)[bad]
        dq[bad] |= DQ_DO_NOT_USE
    return n_bad


#: Weight of the contamination model's own error (grizli's ``fcontam``, 0.2 in its
#: ``fitting.run_all``): subtracting CONTAM adds (FCONTAM x CONTAM)^2 to each pixel's variance.
FCONTAM = 0.2

#: What a reader does with ``<BAND>_CONTAM`` cubes: leave them, or subtract them from SCI.
CONTAMINATION = ("ignore", "subtract")


def check_contamination(mode: str) -> str:
    """`mode` if it is one of `CONTAMINATION`, else a `ConfigError`."""
    if mode not in CONTAMINATION:
        msg = f"contamination must be one of {', '.join(CONTAMINATION)}, got {mode!r}"
        raise ConfigError(msg)
    return mode


def subtract_contamination(sci: np.ndarray, err: np.ndarray, dq: np.ndarray, contam: np.ndarray, fcontam: float = FCONTAM) -> None:
    """Subtract the contamination model from cutouts [n, bands, ny, nx] in place, as grizli does.

    SCI becomes SCI - CONTAM [e-/s] and ERR^2 gains (fcontam x CONTAM)^2: the first-pass
    model is uncertain (a flat spectrum for every neighbour), so the more light a pixel
    owes to neighbours, the less it weighs in a fit. Pixels flagged ``DO_NOT_USE`` keep
    their neutral values.
    """
    good = (dq & DQ_DO_NOT_USE) == 0
    sci -= np.where(good, contam, 0).astype(sci.dtype, copy=False)
    err[...] = np.where(good, np.sqrt(err.astype(np.float64) ** 2 + (fcontam * contam.astype(np.float64)) ** 2), err)


class SampleReader:
    """Read a sample file's cutouts in chunks, checking its layout.

    Parameters
    ----------
    path : path
        A sample file written by `slitcli.sim.simulate.write_sample` (or with the same layout).
    bands : tuple of str, optional
        Bands the caller needs, in the order wanted; None: those of the file's
        ``BANDS`` keyword (PRIMARY), in its order.
    shape : (ny, nx), optional
        Cutout shape the caller needs; a different shape is an `InputError`.
    contamination : {"ignore", "subtract"}
        With "subtract", `read` returns SCI less each band's ``<BAND>_CONTAM`` and ERR
        widened for it (`subtract_contamination`), in files that have them.

    Attributes
    ----------
    bad_pixels : int
        Pixels that `read` has flagged as bad so far (`mask_bad_pixels`).
    contamination_model : str
        The file's ``CONTMODL`` where it has a ``<BAND>_CONTAM`` for every band read
        (``FLAT_FLAMBDA`` from ``slitcli cutout --direct``), else ``NONE``.
    """

    def __init__(self, path: str | Path, bands: tuple[str, ...] | None = None, shape: tuple[int, int] | None = None, contamination: str = "ignore"):
        self.contamination = check_contamination(contamination)
        self.path = Path(path)
        self.bad_pixels = 0
        if not self.path.is_file():
            msg = f"{self.path}: {'is a directory, not a sample file' if self.path.is_dir() else 'file not found'}"
            raise InputError(msg)
        try:
            self.fits = fitsio.FITS(str(self.path))
        except OSError:
            if "[" in self.path.name or "[" in str(self.path.parent):
                msg = f"{self.path}: cfitsio reads '[' in a file name as its extended syntax; rename the file or directory"
            else:
                msg = f"{self.path}: cannot read as FITS (empty, truncated or not a FITS file)"
            raise InputError(msg) from None
        last = self.fits[len(self.fits) - 1]
        end, size = last.get_offsets()["data_start"] + data_unit_bytes(last.read_header()), self.path.stat().st_size
        if end > size:  # cfitsio stops listing HDUs at the cut, and would fail later, mid-read
            self.close()
            msg = f"{self.path}: truncated: HDU {last.get_extname() or len(self.fits) - 1} ends at byte {end}, the file has {size}"
            raise InputError(msg)
        have = [b for b in str(self.fits[0].read_header().get("BANDS", "")).split(",") if b]
        if bands is None and not have:
            self.close()
            msg = f"{self.path}: HDU PRIMARY has no BANDS keyword; not a sample file (from slitcli simulate) with <BAND>_SCI/_ERR/_DQ cubes"
            raise InputError(msg)
        why = f"the model needs bands {','.join(bands)}, the file has {','.join(have) or 'none'}" if bands is not None else f"its PRIMARY BANDS keyword lists bands {','.join(have)}"
        bands = tuple(have) if bands is None else tuple(bands)
        missing = [f"{b}_{e}" for b in bands for e in ("SCI", "ERR", "DQ") if f"{b}_{e}" not in self.fits]
        if missing:
            self.close()
            msg = f"{self.path}: missing HDU(s) {', '.join(missing)}; {why}"
            raise InputError(msg)
        dims = {tuple(self.fits[f"{b}_{e}"].get_dims()) for b in bands for e in ("SCI", "ERR", "DQ")}
        if len(dims) != 1 or len(next(iter(dims))) != 3:
            self.close()
            msg = f"{self.path}: SCI/ERR/DQ HDUs of bands {','.join(bands)} must be N x ny x nx cubes of one shape, got {sorted(dims)}"
            raise InputError(msg)
        self.n, ny, nx = next(iter(dims))
        self.shape = (ny, nx)
        self.bands = tuple(bands)
        if shape is not None and tuple(shape) != self.shape:
            self.close()
            msg = f"{self.path}: cutouts are {ny} x {nx} pixels; the model needs {shape[0]} x {shape[1]}"
            raise InputError(msg)
        if self.n == 0:
            self.close()
            msg = f"{self.path}: the sample holds no sources"
            raise InputError(msg)
        has_contam = all(f"{b}_CONTAM" in self.fits for b in self.bands)
        self.contamination_model = (str(self.fits[0].read_header().get("CONTMODL", "")).strip() or "UNKNOWN") if has_contam else "NONE"

    def sources(self):
        """The SOURCES table (astropy Table), or None if the file has none."""
        from astropy.table import Table

        if "SOURCES" not in self.fits:
            return None
        table = Table(self.fits["SOURCES"].read())
        for name in table.colnames:
            if table[name].dtype.kind == "S":
                table[name] = np.char.decode(np.char.strip(table[name]), "ascii")
        return table

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cutouts `start:stop` as float32 SCI, ERR [e-/s] and int32 DQ, each [n, bands, ny, nx].

        Bad pixels (non-finite SCI, non-finite or non-positive ERR) come back flagged and
        neutralised (`mask_bad_pixels`) and are added to `bad_pixels`. With
        ``contamination="subtract"`` the CONTAM cubes are subtracted (`subtract_contamination`).
        """
        out = []
        for ext, dtype in (("SCI", np.float32), ("ERR", np.float32), ("DQ", np.int32)):
            cubes = [self.fits[f"{b}_{ext}"][start:stop, :, :] for b in self.bands]
            out.append(np.stack(cubes, axis=1).astype(dtype, copy=False))
        sci, err, dq = out
        self.bad_pixels += mask_bad_pixels(sci, err, dq)
        if self.contamination == "subtract" and self.contamination_model != "NONE":
            contam = np.stack([self.fits[f"{b}_CONTAM"][start:stop, :, :] for b in self.bands], axis=1)
            if not np.isfinite(contam).all():
                msg = f"{self.path}: NaN or infinite values in the CONTAM cubes {start}:{stop}"
                raise InputError(msg)
            subtract_contamination(sci, err, dq, contam)
        return sci, err, dq

    def direct(self, start: int, stop: int) -> np.ndarray:
        """Direct stamps `start:stop` [n, s, s] (flux fraction per pixel); `InputError` if the file has none."""
        if "DIRECT" not in self.fits:
            msg = f"{self.path}: no DIRECT HDU; the template route needs the sources' direct stamps"
            raise InputError(msg)
        stamps = self.fits["DIRECT"][start:stop, :, :].astype(np.float64)
        if not np.isfinite(stamps).all():
            msg = f"{self.path}: NaN or infinite values in the DIRECT stamps {start}:{stop}"
            raise InputError(msg)
        return stamps

    def band_header(self, band: str):
        """The header of `band`'s SCI cube (a mapping of its cards)."""
        return self.fits[f"{band}_SCI"].read_header()

    def header(self, band: str) -> dict:
        """WCS keywords of `band` (CRVAL1, CDELT1, CRPIX1 [Angstrom, Angstrom/pixel, 1-based pixel]); `InputError` if any is missing."""
        header = self.band_header(band)
        missing = [k for k in ("CRVAL1", "CDELT1", "CRPIX1") if k not in header]
        if missing:
            msg = f"{self.path}: HDU {band}_SCI lacks the wavelength keyword(s) {', '.join(missing)}"
            raise InputError(msg)
        return {k: float(header[k]) for k in ("CRVAL1", "CDELT1", "CRPIX1")}

    def sensitivity(self, band: str) -> tuple[np.ndarray, np.ndarray]:
        """The `band`_SENS table: wavelength [Angstrom] and sensitivity [e-/s per erg/s/cm2/Angstrom]."""
        ext = f"{band}_SENS"
        if ext not in self.fits:
            msg = f"{self.path}: no {ext} HDU; the template route needs each band's sensitivity"
            raise InputError(msg)
        table = self.fits[ext].read()
        names = table.dtype.names or ()
        if "WAVELENGTH" not in names or "SENSITIVITY" not in names:
            msg = f"{self.path}: HDU {ext} must have columns WAVELENGTH and SENSITIVITY, got {', '.join(names)}"
            raise InputError(msg)
        return np.asarray(table["WAVELENGTH"], np.float64), np.asarray(table["SENSITIVITY"], np.float64)

    def iter_chunks(self, chunk: int = 256):
        """Yield (start, sci, err, dq) over the whole sample."""
        for start in range(0, self.n, chunk):
            yield (start, *self.read(start, min(start + chunk, self.n)))

    def close(self) -> None:
        self.fits.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class SampleChain:
    """Several sample files read as one: `SampleReader`'s interface over their sources in file order.

    `calibrate --template` and `--hybrid` on the cutouts of several fields: one field's few
    hundred sources per SNR_GI bin fit noise (docs/template.md, "Field cutouts"). Every file
    must have the same bands, cutout shape, contamination model, wavelength solution and
    sensitivities (cutouts of one instrument); a file that differs is an `InputError` naming it.
    ``path`` is the first file's; chunks never straddle two files.
    """

    def __init__(self, paths, bands: tuple[str, ...] | None = None, shape: tuple[int, int] | None = None, contamination: str = "ignore"):
        self.readers: list[SampleReader] = []
        try:
            for path in paths:
                self.readers.append(SampleReader(path, bands, shape, contamination))
        except SlitcliError:
            self.close()
            raise
        first = self.readers[0]
        for reader in self.readers[1:]:
            for what, mine, theirs in (("bands", reader.bands, first.bands), ("cutout shape", reader.shape, first.shape), ("contamination model (CONTMODL)", reader.contamination_model, first.contamination_model)):
                if mine != theirs:
                    self.close()
                    msg = f"{reader.path}: its {what} {mine} differs from {first.path.name}'s {theirs}; give sample files of one kind"
                    raise InputError(msg)
        self.path, self.bands, self.shape, self.contamination = first.path, first.bands, first.shape, first.contamination
        self.contamination_model = first.contamination_model
        self.offsets = np.concatenate([[0], np.cumsum([r.n for r in self.readers])])
        self.n = int(self.offsets[-1])

    @property
    def bad_pixels(self) -> int:
        return sum(r.bad_pixels for r in self.readers)

    def sources(self):
        """The files' SOURCES tables stacked (None if any file has none)."""
        from astropy.table import vstack

        tables = [r.sources() for r in self.readers]
        return None if any(t is None for t in tables) else vstack(tables, metadata_conflicts="silent")

    def _pieces(self, start: int, stop: int):
        """(reader, local start, local stop) of the sources `start:stop`."""
        for k, reader in enumerate(self.readers):
            lo, hi = max(start, self.offsets[k]), min(stop, self.offsets[k + 1])
            if lo < hi:
                yield reader, int(lo - self.offsets[k]), int(hi - self.offsets[k])

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cutouts `start:stop` over the files (`SampleReader.read`)."""
        parts = [r.read(lo, hi) for r, lo, hi in self._pieces(start, stop)]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def direct(self, start: int, stop: int) -> np.ndarray:
        """Direct stamps `start:stop` over the files (`SampleReader.direct`)."""
        return np.concatenate([r.direct(lo, hi) for r, lo, hi in self._pieces(start, stop)])

    def _same(self, band: str, what: str, values):
        first = values[0]
        for reader, value in zip(self.readers[1:], values[1:], strict=True):
            same = value == first if isinstance(value, dict) else all(np.array_equal(a, b) for a, b in zip(value, first, strict=True))
            if not same:
                msg = f"{reader.path}: band {band}'s {what} differs from {self.path.name}'s; give sample files of one instrument"
                raise InputError(msg)
        return first

    def band_header(self, band: str):
        return self.readers[0].band_header(band)

    def header(self, band: str) -> dict:
        """The files' common WCS keywords of `band` (`SampleReader.header`)."""
        return self._same(band, "wavelength solution", [r.header(band) for r in self.readers])

    def sensitivity(self, band: str) -> tuple[np.ndarray, np.ndarray]:
        """The files' common `band`_SENS table (`SampleReader.sensitivity`)."""
        return self._same(band, "sensitivity", [r.sensitivity(band) for r in self.readers])

    def iter_chunks(self, chunk: int = 256):
        """Yield (start, sci, err, dq) over every file, `start` counted over all of them."""
        for k, reader in enumerate(self.readers):
            for start, sci, err, dq in reader.iter_chunks(chunk):
                yield int(self.offsets[k]) + start, sci, err, dq

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
