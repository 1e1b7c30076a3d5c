"""A field's cutouts streamed straight from its exposures, read like a sample file.

`FieldSample` gives the routes (``slitcli.nn.predict``, ``slitcli.classic.template_fit``)
what `slitcli.io.samplefile.SampleReader` gives them (`sources`, `read`, `iter_chunks`,
`direct`, `band_header`, `header`, `sensitivity`), cut on demand from the exposures
(`slitcli.fields.cutter.FieldCutter`), so that ``slitcli predict EXPOSURES --catalog``
needs no sample file on disk. The cubes are those ``slitcli cutout`` writes, chunk for
chunk (tested): the same SCI, ERR, DQ, CONTAM and DIRECT stamps.

Memory: the contamination model's frames of every band are held for the whole run
(one float32 frame per exposure: 8 x 16 MB for a 2048 x 2048 field in two bands of four
exposures, 8 x 340 MB for a full CSST chip), since each chunk of sources needs every
band; ``slitcli cutout`` holds one band's at a time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from slitcli.errors import InputError
from slitcli.fields.cutout import CutoutConfig
from slitcli.fields.cutter import FieldCutter
from slitcli.instrument import sensitivity
from slitcli.io.samplefile import band_cards, check_contamination, mask_bad_pixels, subtract_contamination

__all__ = ["FieldSample"]


class FieldSample:
    """Exposures and a catalogue, read as a sample file of every catalogue source on them.

    Parameters
    ----------
    exposure_paths, catalog_path, direct_path, instrument_path, config, refine_mag
        As `FieldCutter`.
    bands : tuple of str, optional
        Bands the caller needs, in its order; `InputError` if the exposures lack one.
    shape : (ny, nx), optional
        Cutout shape the caller needs (the cutouts are cut at it).
    contamination : {"ignore", "subtract"}
        As `SampleReader`: with "subtract" and a direct image, SCI less CONTAM.

    Attributes
    ----------
    n, shape, bands, bad_pixels, contamination_model
        As `SampleReader`'s; ``path`` is the catalogue's, for messages.
    n_skipped : int
        Catalogue sources on no exposure, left out.
    """

    def __init__(self, exposure_paths, catalog_path, *, direct_path=None, instrument_path=None, config: CutoutConfig | None = None, refine_mag: float | None = None, bands=None, shape=None, contamination: str = "ignore"):
        check_contamination(contamination)
        config = config or CutoutConfig()
        if shape is not None:
            config = dataclasses.replace(config, cutout_height=int(shape[0]), cutout_width=int(shape[1]))
        self.cutter = FieldCutter(exposure_paths, catalog_path, direct_path=direct_path, instrument_path=instrument_path, config=config, refine_mag=refine_mag)
        self.path = Path(catalog_path)
        self.contamination = contamination
        self.bad_pixels = 0
        try:
            have = self.cutter.bands
            self.bands = tuple(have) if bands is None else tuple(bands)
            missing = [b for b in self.bands if b not in have]
            if missing:
                msg = f"{Path(exposure_paths[0]).parent}: no exposure of band(s) {', '.join(missing)} (FILTER); the exposures given are of {', '.join(have)}"
                raise InputError(msg)
            self.n, self.shape, self.n_skipped = self.cutter.n, self.cutter.shape, self.cutter.n_skipped
            self.contamination_model = self.cutter.contamination_model
            self._layouts = {lay.band.name: lay for lay in self.cutter.layouts}
            self._frames = {b: self.cutter.model_frames(b) for b in self.bands} if self.cutter.direct is not None else {}
        except BaseException:
            self.cutter.close()
            raise

    def sources(self):
        """The catalogue rows of the sources on the exposures, in cube order (astropy Table)."""
        return self.cutter.sources()

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cutouts `start:stop` as float32 SCI, ERR [e-/s] and int32 DQ, each [n, bands, ny, nx] (as `SampleReader.read`)."""
        cuts = [self.cutter.cut(b, start, stop, self._frames.get(b)) for b in self.bands]
        sci = np.stack([c.sci for c in cuts], axis=1)
        err = np.stack([c.err for c in cuts], axis=1)
        dq = np.stack([c.dq for c in cuts], axis=1)
        self.bad_pixels += mask_bad_pixels(sci, err, dq)
        if self.contamination == "subtract" and self._frames:
            subtract_contamination(sci, err, dq, np.stack([c.contam for c in cuts], axis=1))
        return sci, err, dq

    def iter_chunks(self, chunk: int = 256):
        """Yield (start, sci, err, dq) over all the sources."""
        for start in range(0, self.n, chunk):
            yield (start, *self.read(start, min(start + chunk, self.n)))

    def direct(self, start: int, stop: int) -> np.ndarray:
        """DIRECT stamps `start:stop` [n, s, s] (flux fraction per pixel); `InputError` without a direct image."""
        if self.cutter.direct is None:
            msg = f"{self.path}: no direct image given (--direct); the template route needs the sources' direct stamps"
            raise InputError(msg)
        return self.cutter.stamps(start, stop).astype(np.float64)

    def band_header(self, band: str) -> dict:
        """The cards a sample file's `band` cubes carry (wavelength WCS, SRCXPOS/SRCYPOS, FILTER)."""
        return {c["name"]: c["value"] for c in band_cards(self._layouts[band])}

    def header(self, band: str) -> dict:
        """Wavelength WCS of `band`: CRVAL1, CDELT1 [Angstrom], CRPIX1 (1-based)."""
        cards = self.band_header(band)
        return {k: float(cards[k]) for k in ("CRVAL1", "CDELT1", "CRPIX1")}

    def sensitivity(self, band: str) -> tuple[np.ndarray, np.ndarray]:
        """Wavelength [Angstrom] and first-order sensitivity [e-/s per erg/s/cm2/Angstrom] of `band`."""
        b = self._layouts[band].band
        wave = np.asarray(b.throughput.wave_aa, np.float64)
        return wave, sensitivity(self.cutter.instrument, b, b.first_order, wave)

    def close(self) -> None:
        self._frames = {}
        self.cutter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
