"""``slitcli cutout``: a sample file of every catalogue source's cutouts from full-frame exposures.

`write_cutouts` opens and checks the inputs (`slitcli.fields.exposure`), places every
source's cutouts (`slitcli.fields.cutout.place_sources`), then cuts and combines them in
chunks of sources and writes them in the sample-file layout that ``predict``, ``train``,
``calibrate`` and ``evaluate`` read (`slitcli.io.samplefile`), adding ``<BAND>_NEXP`` and,
with a direct image, ``<BAND>_CONTAM`` (`slitcli.fields.contamination`: per band, one
model frame per exposure, then each source's cutout of it less its own part).
The file is written under a temporary name and renamed into place when complete: an
error leaves nothing at the output path.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import fitsio
import numpy as np
import yaml

from slitcli.config import config_hash, to_dict
from slitcli.errors import InputError, SlitcliError
from slitcli.fields.contamination import FieldModel, photflam, read_segments
from slitcli.fields.cutout import CutoutConfig, cut_source, place_sources
from slitcli.fields.exposure import DirectImage, close_all, open_exposures, read_source_catalog
from slitcli.instrument import sensitivity
from slitcli.io.files import check_output_path, output_error, publish, temporary_path
from slitcli.io.fitsmeta import add_checksum_cards, add_longstrn_card, software_cards, write_checksums
from slitcli.io.layout import DQ_DO_NOT_USE, band_layout
from slitcli.io.samplefile import band_cards, write_table
from slitcli.sim.wcs import world_to_pixel

__all__ = ["CutoutSummary", "write_cutouts"]


def _card(name, value, comment):
    return {"name": name, "value": value, "comment": comment}


@dataclass(frozen=True)
class CutoutSummary:
    """What `write_cutouts` wrote: the file, sources written and skipped, sources partly covered per band, the bands."""

    path: Path
    n: int
    n_skipped: int
    partial: dict
    bands: tuple


def _write_headers(f, n, instrument, instfile, config, layouts, band_exposures, provenance, with_direct):
    cards = [
        *software_cards(),
        _card("INSTRUME", instrument.name, "Instrument of the exposures"),
        _card("INSTFILE", instfile, "Instrument file (trace, sensitivity)"),
        _card("BANDS", ",".join(config.bands), "Bands, in HDU order"),
        _card("NSOURCE", n, "Number of sources"),
        _card("DISPAXIS", 1, "Dispersion along axis 1 (x)"),
        _card("NOISELES", bool(config.noiseless), "True if every exposure is noiseless"),
        _card("WAVSHIFT", 0.0, "[pixel] Spectrum shift from the nominal WCS"),
        _card("CFGHASH", config_hash(config), "SHA-256 (16 hex) of the cutout config"),
        _card("INSTHASH", config_hash(instrument), "SHA-256 (16 hex) of the instrument config"),
        _card("ORIGCMD", "cutout", "Cut from full-frame exposures (slitcli cutout)"),
    ]
    cards += [_card(k, v, c) for k, (v, c) in provenance.items()]
    f.write(None, header=cards)
    add_longstrn_card(f[0], [(c["value"], c["comment"]) for c in cards])
    for line in yaml.safe_dump({"cutout": to_dict(config)}, sort_keys=False).splitlines():
        f[0].write_comment(line)
    add_checksum_cards(f[0])
    shape = (n, config.cutout_height, config.cutout_width)
    for lay in layouts:
        name = lay.band.name
        exps = band_exposures[name]
        wcs = [
            *band_cards(lay),
                        _card("EXPTIME", float(sum(e.exptime_s for e in exps)), "[s] Summed exposure time of the band's exposures"),
            _card("NEXP", len(exps), "Number of exposures of the band"),
            _card("SKYLEVEL", lay.band.sky_e_per_s, "[electron/s] Sky per pixel, subtracted"),
        ]
        for ext, dtype, unit, what in (
            ("SCI", "f4", "electron/s", "Background-subtracted count rate"),
            ("ERR", "f4", "electron/s", "1-sigma error of SCI"),
            ("DQ", "i4", "", "Data quality flags, JWST bit meanings"),
            ("NEXP", "i2", "", "Exposures with a good value at each pixel"),
        ):
            extname = f"{name}_{ext}"
            f.create_image_hdu(dims=list(shape), dtype=dtype, extname=extname)
            f[extname].write_key("EXTNAME", extname, what)
            f[extname].write_keys([_card("BUNIT", unit, "Unit of the pixel values"), *wcs])
            add_checksum_cards(f[extname])
        if with_direct:
            extname = f"{name}_CONTAM"
            f.create_image_hdu(dims=list(shape), dtype="f4", extname=extname)
            f[extname].write_key("EXTNAME", extname, "Model of the other sources' light (first pass)")
            f[extname].write_keys([_card("BUNIT", "electron/s", "Unit of the pixel values"), *wcs, _card("CONTMODL", "FLAT_FLAMBDA", "Neighbour spectra: flat f_lambda, direct flux")])
            f[extname].write_comment("Every other segmented source dispersed with a flat f_lambda scaled to its direct-image flux (PHOTFLAM), cut and combined like SCI (docs/fields.md).")
            add_checksum_cards(f[extname])
        wave = np.asarray(lay.band.throughput.wave_aa, dtype=np.float64)
        table = np.zeros(wave.size, dtype=[("WAVELENGTH", "f8"), ("SENSITIVITY", "f8")])
        table["WAVELENGTH"] = wave
        table["SENSITIVITY"] = sensitivity(instrument, lay.band, lay.band.first_order, wave)
        write_table(f, table, f"{name}_SENS", "First-order sensitivity of the band")
    if with_direct:
        f.create_image_hdu(dims=[n, config.stamp_size, config.stamp_size], dtype="f4", extname="DIRECT")
        f["DIRECT"].write_key("EXTNAME", "DIRECT", "Direct-image stamps of the sources' segments")
        f["DIRECT"].write_keys([
            _card("BUNIT", "", "Fraction of the source's segment flux per pixel"),
            _card("PIXSCALE", instrument.pixel_scale_arcsec, "[arcsec/pixel] Pixel scale"),
        ])
        f["DIRECT"].write_comment("SCI of the direct image within the source's segment, divided by the segment's total; other pixels 0.")
        add_checksum_cards(f["DIRECT"])


def _band_order(instrument, exposures) -> tuple[str, ...]:
    have = {e.band for e in exposures}
    return tuple(b.name for b in instrument.bands if b.name in have)


def write_cutouts(exposure_paths, catalog_path, output, *, direct_path=None, instrument_path=None, config: CutoutConfig | None = None, overwrite: bool = False, progress=None) -> CutoutSummary:
    """Cut every catalogue source's band cutouts from the exposures, combine them and write a sample file.

    Parameters
    ----------
    exposure_paths : list of path
        Slitless exposures (docs/simulate.md, "Fields"); one instrument, any bands.
    catalog_path : path
        Catalogue with SOURCE_ID, RA, DEC (`read_source_catalog`); its columns pass through.
    output : path
        The sample file.
    direct_path : path, optional
        Direct image with SEGMENTATION: the DIRECT stamps. Without it, no DIRECT HDU.
    instrument_path : path, optional
        Instrument file instead of the exposures' INSTFILE (its hash must match INSTHASH).
    config : CutoutConfig, optional
        Cutout geometry; its ``bands`` are replaced by the exposures' bands.
    progress : callable(done, total), optional

    Returns
    -------
    CutoutSummary
        Sources whose cutouts overlap no exposure in any band are skipped and counted.
    """
    config = config or CutoutConfig()
    inputs = [*exposure_paths, catalog_path, direct_path, instrument_path]
    output = check_output_path(output, overwrite, inputs=inputs)
    catalog = read_source_catalog(catalog_path)
    instrument, instfile, exposures = open_exposures(exposure_paths, instrument_path)
    direct = None
    try:
        bands = _band_order(instrument, exposures)
        noiseless = all(bool(e.fits[0].read_header().get("NOISELES", False)) for e in exposures)
        config = dataclasses.replace(config, bands=bands, noiseless=noiseless)
        shape = (config.cutout_height, config.cutout_width)
        layouts = [band_layout(instrument.band(b), shape) for b in bands]
        band_exposures = {b: [e for e in exposures if e.band == b] for b in bands}
        ra, dec = np.asarray(catalog["RA"], float), np.asarray(catalog["DEC"], float)
        placements = {lay.band.name: place_sources(ra, dec, lay, band_exposures[lay.band.name]) for lay in layouts}
        keep = np.zeros(len(catalog), bool)
        for p in placements.values():
            keep |= p.used.any(axis=1)
        if not keep.any():
            msg = f"{catalog_path}: none of its {len(catalog)} sources has a cutout on any exposure (RA/DEC through the exposures' WCS fall off every detector)"
            raise InputError(msg)
        idx = np.nonzero(keep)[0]
        source_ids = np.asarray(catalog["SOURCE_ID"], np.int64)
        n = idx.size
        if direct_path is not None:
            direct = DirectImage(direct_path)
            xd, yd = world_to_pixel(direct.wcs, ra[idx], dec[idx])
            inside = (xd > -0.5) & (xd < direct.shape[1] - 0.5) & (yd > -0.5) & (yd < direct.shape[0] - 0.5)
            if not inside.any():
                msg = f"{direct_path}: its WCS does not overlap the exposures: none of the {n} sources on them lies in the direct image"
                raise InputError(msg)
            seg_flux = direct.segment_flux(source_ids[idx])
            flam_per_rate = photflam(direct)
            segments = read_segments(direct)
        nexp_total = {b: np.zeros(n, np.int16) for b in bands}
        cover = {b: np.zeros(n, np.float32) for b in bands}
        provenance = {
            "CATALOG": (Path(catalog_path).name, "Source catalogue"),
            "DIRECTIM": (Path(direct_path).name if direct_path else "", "Direct image of the DIRECT stamps"),
            "NEXPOSUR": (len(exposures), "Exposure files cut"),
            "NSKIPPED": (int(len(catalog) - n), "Catalogue sources on no exposure, left out"),
            "CONTMODL": ("FLAT_FLAMBDA" if direct_path else "NONE", "Contamination model of <BAND>_CONTAM"),
        }
        tmp = temporary_path(output)
        f = None
        try:
            f = fitsio.FITS(str(tmp), "rw", clobber=True)
            _write_headers(f, n, instrument, instfile, config, layouts, band_exposures, provenance, direct is not None)
            for m, lay in enumerate(layouts):
                b = lay.band.name
                p, exps = placements[b], band_exposures[b]
                model = frames = None
                if direct is not None:
                    # One full-frame model per exposure of the band (float32), then every source's CONTAM from them.
                    model = FieldModel(segments, direct.wcs, direct.shape, flam_per_rate, instrument, lay.band, exps, direct_path)
                    frames = [model.frame(j) for j in range(len(exps))]
                for start in range(0, n, config.chunk_size):
                    stop = min(start + config.chunk_size, n)
                    out = [np.zeros((stop - start, *shape), t) for t in (np.float32, np.float32, np.int32, np.int16)]
                    contam = np.zeros((stop - start, *shape), np.float32) if model is not None else None
                    for i in range(start, stop):
                        got = cut_source(exps, p, idx[i], shape)
                        if got is None:
                            out[2][i - start] = DQ_DO_NOT_USE  # on no exposure of this band
                            continue
                        sci, err, dq, nexp, weights, used = got
                        for arr, val in zip(out, (sci, err, dq, nexp)):
                            arr[i - start] = val
                        nexp_total[b][i] = used.size
                        cover[b][i] = float(np.count_nonzero(nexp)) / nexp.size
                        if model is not None:
                            contam[i - start] = model.contamination(frames, int(source_ids[idx[i]]), p, idx[i], used, weights, shape)
                    for ext, arr in zip(("SCI", "ERR", "DQ", "NEXP"), out):
                        f[f"{b}_{ext}"].write(arr, start=[start, 0, 0])
                    if contam is not None:
                        f[f"{b}_CONTAM"].write(contam, start=[start, 0, 0])
                    if progress is not None:
                        progress(m * n + stop, n * len(layouts))
                del frames, model
            if direct is not None:
                for start in range(0, n, config.chunk_size):
                    stop = min(start + config.chunk_size, n)
                    stamps = np.zeros((stop - start, config.stamp_size, config.stamp_size), np.float32)
                    for i in range(start, stop):
                        if inside[i]:
                            stamps[i - start] = direct.stamp(xd[i], yd[i], int(source_ids[idx[i]]), seg_flux[i], config.stamp_size)
                    f["DIRECT"].write(stamps, start=[start, 0, 0])
            table = catalog[idx]
            extra = {}
            for b in bands:
                p = placements[b]
                extra[f"DX_{b}"] = np.where(np.isfinite(p.dx[idx]), p.dx[idx], 0.0)
                extra[f"DY_{b}"] = np.where(np.isfinite(p.dy[idx]), p.dy[idx], 0.0)
                extra[f"SPREAD_{b}"] = np.where(np.isfinite(p.spread[idx]), p.spread[idx], 0.0)
                extra[f"NEXP_{b}"] = nexp_total[b]
                extra[f"COVER_{b}"] = cover[b]
            if direct is not None:
                extra["IN_DIRECT"] = inside
            for k, v in extra.items():
                if k in table.colnames:
                    table.remove_column(k)
                table[k] = v
            write_table(f, np.asarray(table.as_array()), "SOURCES", "Catalogue sources, in cube order")
            f.close()
            f = None
            write_checksums(tmp)
            publish(tmp, output, overwrite)
        except BaseException as err:
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(err, OSError) and not isinstance(err, SlitcliError):
                raise output_error(output, err, tmp) from None
            raise
        partial = {b: int(np.count_nonzero(cover[b] < 1)) for b in bands}
        return CutoutSummary(output, n, int(len(catalog) - n), partial, bands)
    finally:
        close_all(exposures)
        if direct is not None:
            direct.close()
