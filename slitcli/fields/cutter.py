"""A field's inputs opened, checked and placed, and its sources' cutouts cut chunk by chunk.

`FieldCutter` is what `slitcli cutout` (`slitcli.fields.cutout_file`: band by band into
a sample file) and ``slitcli predict EXPOSURES --catalog`` (`slitcli.fields.field_sample`:
source by source, streamed to the routes) share: the exposures and catalogue read and
checked (`slitcli.fields.exposure`), every source placed on every exposure of each band
(`slitcli.fields.cutout.place_sources`), the sources on no exposure left out and counted,
and, with a direct image, its segments read for the contamination model
(`slitcli.fields.contamination`) and the DIRECT stamps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from slitcli.errors import InputError
from slitcli.fields.contamination import FieldModel, direct_zeropoint, photflam, read_segments
from slitcli.fields.cutout import CutoutConfig, cut_source, place_sources
from slitcli.fields.exposure import DirectImage, close_all, open_exposures, read_source_catalog
from slitcli.io.layout import DQ_DO_NOT_USE, band_layout
from slitcli.sim.wcs import world_to_pixel

__all__ = ["FieldCutter", "BandCut"]


@dataclasses.dataclass
class BandCut:
    """One band's cutouts of a chunk of sources: SCI, ERR [e-/s], DQ, NEXP, and CONTAM [e-/s] or None; each [n, ny, nx]."""

    sci: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    nexp: np.ndarray
    contam: np.ndarray | None


class FieldCutter:
    """Exposures, catalogue and (optionally) a direct image, ready to cut.

    Parameters
    ----------
    exposure_paths : list of path
        Slitless exposures of one instrument, any bands.
    catalog_path : path
        Catalogue with SOURCE_ID, RA, DEC (`read_source_catalog`).
    direct_path : path, optional
        Direct image with SEGMENTATION: DIRECT stamps and the CONTAM model.
    instrument_path : path, optional
        Instrument file instead of the exposures' INSTFILE.
    config : CutoutConfig, optional
        Cutout geometry; its ``bands`` become the exposures' bands.
    refine_mag : float, optional
        With a direct image: refit the spectra of the segments brighter than this AB
        magnitude in the direct image (the second pass, `FieldModel.refine`).

    Attributes
    ----------
    n : int
        Sources kept (on some exposure); ``index`` their catalogue rows.
    n_skipped : int
        Catalogue sources on no exposure, left out.
    bands : tuple of str
        The exposures' bands, in the instrument's order.

    Raises
    ------
    InputError
        No source on any exposure; a direct image that overlaps none of them; and the
        checks of `open_exposures`, `read_source_catalog` and `DirectImage`.
    """

    def __init__(self, exposure_paths, catalog_path, *, direct_path=None, instrument_path=None, config: CutoutConfig | None = None, refine_mag: float | None = None):
        config = config or CutoutConfig()
        self.refine_mag = refine_mag
        self.catalog_path, self.direct_path = Path(catalog_path), (Path(direct_path) if direct_path is not None else None)
        self.catalog = read_source_catalog(catalog_path)
        self.instrument, self.instfile, self.exposures = open_exposures(exposure_paths, instrument_path)
        self.direct = None
        try:
            self._setup(config)
        except BaseException:
            self.close()
            raise

    def _setup(self, config: CutoutConfig) -> None:
        have = {e.band for e in self.exposures}
        self.bands = tuple(b.name for b in self.instrument.bands if b.name in have)
        noiseless = all(bool(e.fits[0].read_header().get("NOISELES", False)) for e in self.exposures)
        self.config = dataclasses.replace(config, bands=self.bands, noiseless=noiseless)
        self.shape = (self.config.cutout_height, self.config.cutout_width)
        self.layouts = [band_layout(self.instrument.band(b), self.shape) for b in self.bands]
        self.band_exposures = {b: [e for e in self.exposures if e.band == b] for b in self.bands}
        catalog = self.catalog
        ra, dec = np.asarray(catalog["RA"], float), np.asarray(catalog["DEC"], float)
        self.placements = {lay.band.name: place_sources(ra, dec, lay, self.band_exposures[lay.band.name]) for lay in self.layouts}
        keep = np.zeros(len(catalog), bool)
        for p in self.placements.values():
            keep |= p.used.any(axis=1)
        if not keep.any():
            msg = f"{self.catalog_path}: none of its {len(catalog)} sources has a cutout on any exposure (RA/DEC through the exposures' WCS fall off every detector)"
            raise InputError(msg)
        self.index = np.nonzero(keep)[0]
        self.n = int(self.index.size)
        self.n_skipped = int(len(catalog) - self.n)
        self.source_ids = np.asarray(catalog["SOURCE_ID"], np.int64)[self.index]
        # Per band and source: exposures used, fraction of the cutout covered (filled as cut).
        self.nexp = {b: np.array([int(self.placements[b].used[i].sum()) for i in self.index], np.int16) for b in self.bands}
        self.cover = {b: np.zeros(self.n, np.float32) for b in self.bands}
        if self.direct_path is not None:
            self.direct = DirectImage(self.direct_path)
            xd, yd = world_to_pixel(self.direct.wcs, ra[self.index], dec[self.index])
            ny, nx = self.direct.shape
            self.in_direct = (xd > -0.5) & (xd < nx - 0.5) & (yd > -0.5) & (yd < ny - 0.5)
            if not self.in_direct.any():
                msg = f"{self.direct_path}: its WCS does not overlap the exposures: none of the {self.n} sources on them lies in the direct image"
                raise InputError(msg)
            self.xy_direct = (xd, yd)
            self.segment_flux = self.direct.segment_flux(self.source_ids)
            self.flam_per_rate = photflam(self.direct)
            self.segments = read_segments(self.direct)
            self.zeropoint = direct_zeropoint(self.direct) if self.refine_mag is not None else None

    #: Degree of the second pass's Legendre polynomial in wavelength.
    REFINE_DEGREE = 2

    @property
    def contamination_model(self) -> str:
        """``FLAT_FLAMBDA`` (the first pass, with a direct image), ``REFINED_POLY2`` (with the second pass) or ``NONE``."""
        if self.direct is None:
            return "NONE"
        return f"REFINED_POLY{self.REFINE_DEGREE}" if self.refine_mag is not None else "FLAT_FLAMBDA"

    def model_frames(self, band: str) -> tuple[FieldModel, list[np.ndarray]] | None:
        """The contamination model of `band` and its frames (one float32 frame per exposure), or None without a direct image."""
        if self.direct is None:
            return None
        model = FieldModel(self.segments, self.direct.wcs, self.direct.shape, self.flam_per_rate, self.instrument, self.instrument.band(band), self.band_exposures[band], self.direct_path)
        frames = [model.frame(j) for j in range(len(self.band_exposures[band]))]
        if self.refine_mag is not None:
            model.refine(frames, self.refine_mag, self.zeropoint, self.REFINE_DEGREE)
        return model, frames

    def cut(self, band: str, start: int, stop: int, frames=None) -> BandCut:
        """Cutouts of kept sources `start:stop` in `band`; CONTAM from `frames` (`model_frames`) if given.

        A source on no exposure of the band gets SCI = ERR = 0 and DQ = ``DO_NOT_USE``.
        """
        n = stop - start
        p, exps = self.placements[band], self.band_exposures[band]
        out = BandCut(*(np.zeros((n, *self.shape), t) for t in (np.float32, np.float32, np.int32, np.int16)), None)
        if frames is not None:
            out.contam = np.zeros((n, *self.shape), np.float32)
        for i in range(start, stop):
            row = int(self.index[i])
            got = cut_source(exps, p, row, self.shape)
            if got is None:
                out.dq[i - start] = DQ_DO_NOT_USE  # on no exposure of this band
                continue
            sci, err, dq, nexp, weights, used = got
            out.sci[i - start], out.err[i - start], out.dq[i - start], out.nexp[i - start] = sci, err, dq, nexp
            self.cover[band][i] = float(np.count_nonzero(nexp)) / nexp.size
            if frames is not None:
                model, model_frames = frames
                out.contam[i - start] = model.contamination(model_frames, int(self.source_ids[i]), p, row, used, weights, self.shape)
        return out

    def stamps(self, start: int, stop: int) -> np.ndarray:
        """DIRECT stamps [n, s, s] of kept sources `start:stop` (zero outside the direct image); needs a direct image."""
        size = self.config.stamp_size
        out = np.zeros((stop - start, size, size), np.float32)
        xd, yd = self.xy_direct
        for i in range(start, stop):
            if self.in_direct[i]:
                out[i - start] = self.direct.stamp(xd[i], yd[i], int(self.source_ids[i]), self.segment_flux[i], size)
        return out

    def sources(self):
        """The kept catalogue rows (astropy Table) with, per band, DX, DY, SPREAD [pixel], NEXP and COVER (as cut so far), and IN_DIRECT."""
        table = self.catalog[self.index]
        extra = {}
        for b in self.bands:
            p = self.placements[b]
            for name, values in (("DX", p.dx), ("DY", p.dy), ("SPREAD", p.spread)):
                extra[f"{name}_{b}"] = np.where(np.isfinite(values[self.index]), values[self.index], 0.0)
            extra[f"NEXP_{b}"] = self.nexp[b]
            extra[f"COVER_{b}"] = self.cover[b]
        if self.direct is not None:
            extra["IN_DIRECT"] = self.in_direct
        for k, v in extra.items():
            if k in table.colnames:
                table.remove_column(k)
            table[k] = v
        return table

    def close(self) -> None:
        close_all(self.exposures)
        if self.direct is not None:
            self.direct.close()
            self.direct = None
