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
from dataclasses import dataclass
from pathlib import Path

import fitsio
import numpy as np
import yaml

from slitcli.config import config_hash, to_dict
from slitcli.errors import InputError, SlitcliError
from slitcli.fields.cutout import CutoutConfig
from slitcli.fields.cutter import FieldCutter
from slitcli.instrument import sensitivity
from slitcli.io.files import check_output_path, output_error, publish, temporary_path
from slitcli.io.fitsmeta import add_checksum_cards, add_longstrn_card, software_cards, write_checksums
from slitcli.io.samplefile import band_cards, write_table

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


def _write_headers(f, n, instrument, instfile, config, layouts, band_exposures, provenance, contamination_model):
    with_direct = contamination_model != "NONE"
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
            refined = contamination_model != "FLAT_FLAMBDA"
            what = "Neighbour spectra: flat f_lambda, bright refitted" if refined else "Neighbour spectra: flat f_lambda, direct flux"
            f[extname].write_keys([_card("BUNIT", "electron/s", "Unit of the pixel values"), *wcs, _card("CONTMODL", contamination_model, what)])
            f[extname].write_comment("Every other segmented source dispersed with a flat f_lambda scaled to its direct-image flux (PHOTFLAM), cut and combined like SCI (docs/fields.md).")
            if refined:
                f[extname].write_comment("Second pass: the spectra of the segments brighter than REFMAG (PRIMARY) fitted to the exposures as Legendre polynomials in wavelength.")
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


def write_cutouts(exposure_paths, catalog_path, output, *, direct_path=None, instrument_path=None, config: CutoutConfig | None = None, refine_mag: float | None = None, overwrite: bool = False, progress=None, cards: dict | None = None) -> CutoutSummary:
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
    refine_mag : float, optional
        With a direct image: the contamination model's second pass for segments brighter
        than this AB magnitude (`slitcli.fields.contamination.FieldModel.refine`).
    progress : callable(done, total), optional
    cards : dict, optional
        More primary-header cards, ``{name: (value, comment)}`` (``TASKID``: `write_field_cutouts`).

    Returns
    -------
    CutoutSummary
        Sources whose cutouts overlap no exposure in any band are skipped and counted.
    """
    inputs = [*exposure_paths, catalog_path, direct_path, instrument_path]
    output = check_output_path(output, overwrite, inputs=inputs)
    cutter = FieldCutter(exposure_paths, catalog_path, direct_path=direct_path, instrument_path=instrument_path, config=config, refine_mag=refine_mag)
    try:
        n, config = cutter.n, cutter.config
        provenance = {
            "CATALOG": (Path(catalog_path).name, "Source catalogue"),
            "DIRECTIM": (Path(direct_path).name if direct_path else "", "Direct image of the DIRECT stamps"),
            "NEXPOSUR": (len(cutter.exposures), "Exposure files cut"),
            "NSKIPPED": (cutter.n_skipped, "Catalogue sources on no exposure, left out"),
            "CONTMODL": (cutter.contamination_model, "Contamination model of <BAND>_CONTAM"),
        }
        if cutter.refine_mag is not None and cutter.direct is not None:
            provenance["REFMAG"] = (float(cutter.refine_mag), "[AB mag] Second pass: segments brighter refitted")
        provenance.update(cards or {})
        tmp = temporary_path(output)
        f = None
        try:
            f = fitsio.FITS(str(tmp), "rw", clobber=True)
            _write_headers(f, n, cutter.instrument, cutter.instfile, config, cutter.layouts, cutter.band_exposures, provenance, cutter.contamination_model)
            for m, b in enumerate(cutter.bands):
                # One full-frame model per exposure of the band (float32), then every source's CONTAM from them.
                frames = cutter.model_frames(b)
                for start in range(0, n, config.chunk_size):
                    stop = min(start + config.chunk_size, n)
                    cut = cutter.cut(b, start, stop, frames)
                    for ext in ("SCI", "ERR", "DQ", "NEXP", "CONTAM"):
                        arr = getattr(cut, ext.lower())
                        if arr is not None:
                            f[f"{b}_{ext}"].write(arr, start=[start, 0, 0])
                    if progress is not None:
                        progress(m * n + stop, n * len(cutter.bands))
                del frames
            if cutter.direct is not None:
                for start in range(0, n, config.chunk_size):
                    stop = min(start + config.chunk_size, n)
                    f["DIRECT"].write(cutter.stamps(start, stop), start=[start, 0, 0])
            write_table(f, np.asarray(cutter.sources().as_array()), "SOURCES", "Catalogue sources, in cube order")
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
        partial = {b: int(np.count_nonzero(cutter.cover[b] < 1)) for b in cutter.bands}
        return CutoutSummary(output, n, cutter.n_skipped, partial, cutter.bands)
    finally:
        cutter.close()


def field_files(directory) -> tuple[list[Path], Path, Path | None]:
    """(exposures, catalogue, direct image or None) of a field directory from ``slitcli simulate --field``."""
    directory = Path(directory)
    exposures = sorted(directory.glob("exposure_*.fits"))
    catalog, direct = directory / "catalog.fits", directory / "direct.fits"
    if not exposures or not catalog.is_file():
        msg = f"{directory}: expected a field directory with exposure_*.fits and catalog.fits (slitcli simulate --field)"
        raise InputError(msg)
    return exposures, catalog, direct if direct.is_file() else None


def write_field_cutouts(directories, output_dir, *, executor, instrument_path=None, refine_mag: float | None = None, overwrite: bool = False, progress=None) -> list[Path]:
    """Cut each field directory into `output_dir`/<field name>.fits, one unit of work per field, on `executor`.

    The units (`write_cutouts` with its direct image when the field has one) are pure: a
    field's file does not depend on the others or on the workers. A file already there
    with the same ``TASKID`` (a digest of the field's files, names and sizes, and the
    options) is skipped, one with another is refused unless `overwrite`.
    `progress(done, total)` counts fields. Returns the files in the order of `directories`.
    """
    from slitcli.io.files import make_directory
    from slitcli.parallel import Task, file_identity, read_task_id, require_task, task_id

    output_dir = Path(output_dir)
    directories = [Path(d) for d in directories]
    outputs = [output_dir / f"{d.resolve().name}.fits" for d in directories]
    if len(set(outputs)) < len(outputs):
        msg = f"two field directories share a name; their cutouts would both be {output_dir}/<name>.fits"
        raise InputError(msg)
    check_output_path(output_dir, True, [*directories, instrument_path], directory=True)
    units = []
    for d, out in zip(directories, outputs):
        exposures, catalog, direct = field_files(d)
        digest = task_id(exposures=[file_identity(p) for p in exposures], catalog=file_identity(catalog), direct=file_identity(direct), instrument=file_identity(instrument_path), refine_mag=refine_mag)
        if out.exists() and not overwrite:
            require_task(out, read_task_id(out), digest, "was made from other inputs or options")
            continue
        cards = {"TASKID": (digest, "Digest of the field's inputs (skip if equal)")}
        kwargs = {"direct_path": direct, "instrument_path": instrument_path, "refine_mag": refine_mag if direct is not None else None, "overwrite": overwrite, "cards": cards}
        units.append(Task(str(d), _cut_field, (exposures, catalog, out), kwargs))
    make_directory(output_dir)
    done = len(directories) - len(units)
    if progress is not None:
        progress(done, len(directories))
    for _ in executor.map(units):
        done += 1
        if progress is not None:
            progress(done, len(directories))
    return outputs


def _cut_field(exposures, catalog, output, **kwargs) -> int:
    return write_cutouts(exposures, catalog, output, **kwargs).n
