"""The files of a field: direct.fits, catalog.fits and exposure_<BAND>_<NN>.fits, with their keywords.

Every file carries the provenance cards, the celestial WCS of its pointing, CHECKSUM and
DATASUM; an exposure's SCI header also carries the trace polynomials of each order, so
that a cutout tool can map RA, DEC to the detector and along the trace.
"""

from __future__ import annotations

import fitsio
import numpy as np
import yaml

from slitcli.config import config_hash, to_dict
from slitcli.instrument import Band, ImagingBand, Instrument, sensitivity
from slitcli.io.fitsmeta import (
    add_checksum_cards,
    add_longstrn_card,
    software_cards,
    write_checksums,
)
from slitcli.io.samplefile import write_table
from slitcli.sim.cosmics import draw_cosmic_rays
from slitcli.sim.field_layout import (
    BLOCK_ROWS,
    FieldConfig,
    FieldGeometry,
    random_streams,
)
from slitcli.sim.field_render import (
    Detector,
    imaging_zeropoint,
    noisy_block,
    render_direct,
    render_tiles,
)
from slitcli.sim.wcs import card_value, wcs_from_cards, world_to_pixel

__all__ = ["write_exposure_file", "write_direct_file", "write_catalog_file"]



# ---------------------------------------------------------------- FITS writing


def _card(name, value, comment):
    return {"name": name, "value": value, "comment": comment}


def _primary(fits, cards, config: FieldConfig) -> None:
    fits.write(None, header=cards)
    add_longstrn_card(fits[0], [(c["value"], c["comment"]) for c in cards])
    for line in yaml.safe_dump({"field": to_dict(config)}, sort_keys=False).splitlines():
        fits[0].write_comment(line)
    add_checksum_cards(fits[0])


def _image_hdus(fits, shape, hdus, keys) -> None:
    for extname, dtype, unit, what in hdus:
        fits.create_image_hdu(dims=list(shape), dtype=dtype, extname=extname)
        fits[extname].write_key("EXTNAME", extname, what)
        fits[extname].write_keys([_card("BUNIT", unit, "Unit of the pixel values"), *keys])
        add_checksum_cards(fits[extname])


_DQ_COMMENT = "DQ bits (JWST dqflags): 1 DO_NOT_USE, 2 SATURATED, 4 JUMP_DET (cosmic ray)"


def _write_blocks(fits, frame: np.ndarray, det: Detector, rng, noiseless: bool, cosmics=None) -> None:
    ny, nx = frame.shape
    for y0 in range(0, ny, BLOCK_ROWS):
        y1 = min(y0 + BLOCK_ROWS, ny)
        hits = cosmics.rows(nx, y0, y1) if cosmics is not None else None
        sci, err, dq = noisy_block(frame[y0:y1], det, rng, noiseless, hits)
        fits["SCI"].write(sci, start=[y0, 0])
        fits["ERR"].write(err, start=[y0, 0])
        fits["DQ"].write(dq, start=[y0, 0])


def _trace_cards(band: Band, orders: tuple[str, ...]) -> list[dict]:
    cards = [_card("NORDERS", len(orders), "Orders dispersed onto this exposure")]
    for i, name in enumerate(orders, start=1):
        order = band.order(name)
        cards.append(_card(f"ORDER{i}", name, f"Name of order {i}"))
        cards.append(_card(f"OSCALE{i}", order.throughput_scale, f"Order {i} throughput / first-order (SENS)"))
        cards += [_card(f"DLDP{i}_{k}", float(c), f"[Angstrom/pixel^{k}] order {i}: lambda(dx) coeff {k}") for k, c in enumerate(order.dldp)]
        cards += [_card(f"DYDX{i}_{k}", float(c), f"[pixel^{1 - k}] order {i}: trace dy(dx) coeff {k}") for k, c in enumerate(order.dydx)]
    return cards


_TRACE_COMMENT = (
    "Trace: a source at pixel (x, y) of this WCS puts wavelength lambda of order i at "
    "column x + dx, row y + sum_k DYDXi_k dx^k, where lambda = sum_k DLDPi_k dx^k [Angstrom]; "
    "its count rate per Angstrom is f_lambda x SENS x OSCALEi."
)


def _common_cards(instrument: Instrument, instrument_file: str, config: FieldConfig, seed: int) -> list[dict]:
    return [
        *software_cards(),
        _card("INSTRUME", instrument.name, "Instrument simulated"),
        _card("INSTFILE", instrument_file, "Instrument file (trace, sensitivity, noise)"),
        _card("INSTHASH", config_hash(instrument), "SHA-256 (16 hex) of the instrument config"),
        _card("CFGHASH", config_hash(config), "SHA-256 (16 hex) of the field config"),
        _card("SEED", seed, "Seed of the run's random numbers"),
        _card("NOISELES", bool(config.noiseless), "T: SCI is the expected (noiseless) image"),
    ]


def write_exposure_file(path, frame, band: Band, index: int, n_exp: int, cards_wcs, offset, instrument, instrument_file, config, seed, rng, cr_rng) -> None:
    det = Detector(instrument.exposure_time_s, 1, band.sky_e_per_s, instrument.dark_e_per_s, instrument.read_noise_e, instrument.saturation_e)
    cosmics = None
    if config.cosmic_rays and not config.noiseless:
        cosmics = draw_cosmic_rays(frame.shape, det.exposure_s, cr_rng, rate_per_cm2_s=config.cosmic_ray_rate_per_cm2_s, pixel_size_um=config.pixel_size_um)
    primary = [
        *_common_cards(instrument, instrument_file, config, seed),
        _card("FILTER", band.name, "Slitless band"),
        _card("EXPNUM", index + 1, "Exposure number in this band"),
        _card("NEXP", n_exp, "Exposures in this band"),
        _card("EXPTIME", det.exposure_s, "[s] Exposure time"),
        _card("DITHX", offset[0], "[pixel] Dither of the sky along x"),
        _card("DITHY", offset[1], "[pixel] Dither of the sky along y"),
        _card("RA_TARG", card_value(cards_wcs, "CRVAL1"), "[deg] RA of the pointing (CRVAL1)"),
        _card("DEC_TARG", card_value(cards_wcs, "CRVAL2"), "[deg] Dec of the pointing (CRVAL2)"),
        _card("ORIENTAT", config.position_angle_deg, "[deg] Detector +y axis, east of north"),
        _card("NCOSMIC", 0 if cosmics is None else cosmics.n_events, "Cosmic rays simulated (flagged JUMP_DET in DQ)"),
    ]
    keys = [
        *cards_wcs,
        _card("DISPAXIS", 1, "Dispersion along axis 1 (x)"),
        _card("FILTER", band.name, "Slitless band"),
        _card("EXPTIME", det.exposure_s, "[s] Exposure time"),
        _card("SKYLEVEL", band.sky_e_per_s, "[electron/s] Sky per pixel, subtracted"),
        _card("DARKCUR", instrument.dark_e_per_s, "[electron/s] Dark current per pixel, subtracted"),
        _card("RDNOISE", instrument.read_noise_e, "[electron] Read noise per pixel"),
        _card("SATURATE", instrument.saturation_e, "[electron] Full well per exposure"),
        _card("GAIN", instrument.gain_e_per_adu, "[electron/adu] Gain (images are in electrons)"),
        *_trace_cards(band, config.orders),
    ]
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        _primary(f, primary, config)
        _image_hdus(f, frame.shape, [
            ("SCI", "f4", "electron/s", "Background-subtracted count rate"),
            ("ERR", "f4", "electron/s", "1-sigma error of SCI"),
            ("DQ", "i4", "", "Data quality flags, JWST bit meanings"),
        ], keys)
        f["SCI"].write_comment(_TRACE_COMMENT)
        f["DQ"].write_comment(_DQ_COMMENT)
        _write_blocks(f, frame, det, rng, config.noiseless, cosmics)
        wave = np.asarray(band.throughput.wave_aa, dtype=np.float64)
        table = np.zeros(wave.size, dtype=[("WAVELENGTH", "f8"), ("SENSITIVITY", "f8")])
        table["WAVELENGTH"] = wave
        table["SENSITIVITY"] = sensitivity(instrument, band, band.first_order, wave)
        write_table(f, table, "SENS", "First-order sensitivity of the band")
    write_checksums(path)


def write_direct_file(path, prepared, geometry: FieldGeometry, instrument, imaging: ImagingBand, instrument_file, config, seed, workers, progress) -> None:
    det = Detector(imaging.exposure_time_s, imaging.n_exposures, imaging.sky_e_per_s, imaging.dark_e_per_s, imaging.read_noise_e, imaging.saturation_e)
    shape = geometry.direct_shape
    wcs = wcs_from_cards(geometry.direct)
    frame = np.zeros(shape)
    ids = np.array([p.source.source_id for p in prepared], dtype=np.int64)
    seg_dtype = np.int32 if ids.size == 0 or ids.max() < 2**31 else np.int64
    seg = np.zeros(shape, seg_dtype)
    best = np.zeros(shape, np.float32)
    threshold = config.segmentation_nsigma * det.blank_err()
    x, y = world_to_pixel(wcs, [p.source.ra_deg for p in prepared], [p.source.dec_deg for p in prepared])
    items = [(p, float(x[i]), float(y[i])) for i, p in enumerate(prepared)]
    for (p, _, _), tile in zip(items, render_tiles(lambda p, xi, yi: render_direct(p, xi, yi, shape), items, workers)):
        if tile is not None:
            r0, c0, t = tile
            view = np.s_[r0 : r0 + t.shape[0], c0 : c0 + t.shape[1]]
            frame[view] += t
            # Segmentation: the pixels where this source is the brightest and at least
            # `segmentation_nsigma` of the sky noise, and always its own peak pixel.
            mine = t >= threshold
            mine.flat[np.argmax(t)] = True
            win = mine & (t > best[view])
            seg[view][win] = p.source.source_id
            best[view][win] = t[win]
        if progress is not None:
            progress()
    del best
    zp, photflam, photplam = imaging_zeropoint(instrument, imaging)
    primary = [
        *_common_cards(instrument, instrument_file, config, seed),
        _card("FILTER", imaging.name, "Imaging filter"),
        _card("EXPTIME", det.total_s, "[s] Total exposure time"),
        _card("NEXP", imaging.n_exposures, "Exposures combined"),
        _card("NSOURCE", len(prepared), "Sources in the image"),
    ]
    keys = [
        *geometry.direct,
        _card("FILTER", imaging.name, "Imaging filter"),
        _card("EXPTIME", det.total_s, "[s] Total exposure time"),
        _card("NEXP", imaging.n_exposures, "Exposures combined"),
        _card("ABZP", round(zp, 6), "[mag] AB magnitude giving 1 electron/s"),
        _card("PHOTFLAM", float(f"{photflam:.8g}"), "[erg/s/cm2/Angstrom] flat f_lambda giving 1 e-/s"),
        _card("PHOTPLAM", round(photplam, 3), "[Angstrom] Pivot wavelength of the filter"),
        _card("PSFFWHM", imaging.psf_fwhm_arcsec, "[arcsec] FWHM of the Gaussian PSF"),
        _card("SKYLEVEL", imaging.sky_e_per_s, "[electron/s] Sky per pixel, subtracted"),
        _card("SATURATE", imaging.saturation_e, "[electron] Full well per exposure"),
    ]
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        _primary(f, primary, config)
        _image_hdus(f, shape, [
            ("SCI", "f4", "electron/s", "Background-subtracted count rate"),
            ("ERR", "f4", "electron/s", "1-sigma error of SCI"),
            ("DQ", "i4", "", "Data quality flags, JWST bit meanings"),
        ], keys)
        f["DQ"].write_comment(_DQ_COMMENT)
        _write_blocks(f, frame, det, np.random.default_rng(random_streams(seed)["direct"]), config.noiseless)
        del frame
        _image_hdus(f, shape, [("SEGMENTATION", "i4" if seg_dtype == np.int32 else "i8", "", "Segmentation map: SOURCE_ID per pixel, 0 = sky")], [
            *geometry.direct,
            _card("SEGTHRSH", float(f"{threshold:.6g}"), "[electron/s] Source model threshold of a segment"),
        ])
        f["SEGMENTATION"].write_comment("A pixel belongs to the source contributing most light there, if that is at least SEGTHRSH (the noiseless models), and each source owns its peak pixel unless a brighter one does.")
        f["SEGMENTATION"].write(seg)
    write_checksums(path)


def write_catalog_file(path, prepared, geometry, instrument, imaging, instrument_file, config, seed, n_outside, cards: dict | None = None) -> None:
    wcs = wcs_from_cards(geometry.direct)
    x, y = world_to_pixel(wcs, [p.source.ra_deg for p in prepared], [p.source.dec_deg for p in prepared])
    zp = imaging_zeropoint(instrument, imaging)[0]
    rows = []
    for i, p in enumerate(prepared):
        s = p.source
        mag = zp - 2.5 * np.log10(p.direct_rate_e_s) if p.direct_rate_e_s > 0 else np.inf
        snr = tuple(p.snr[b] for b in config.bands)
        rows.append((s.source_id, s.ra_deg, s.dec_deg, x[i] + 1.0, y[i] + 1.0, s.mag_i, mag, p.direct_rate_e_s, s.z, *snr, s.sed_id, s.shape_id, s.sed_class))
    dtype = [("SOURCE_ID", "i8"), ("RA", "f8"), ("DEC", "f8"), ("X_DIRECT", "f8"), ("Y_DIRECT", "f8"), ("MAG_I", "f4"), ("MAG_DIRECT", "f4"), ("FLUX_DIRECT", "f8"), ("Z_TRUE", "f8")]
    dtype += [(f"SNR_{b}", "f4") for b in config.bands]
    width = {k: max([len(r[-3 + i]) for r in rows] + [1]) for i, k in enumerate(("SED_ID", "SHAPE_ID", "CLASS"))}
    dtype += [(k, f"S{w}") for k, w in width.items()]
    table = np.array(rows, dtype=dtype)
    primary = [
        *_common_cards(instrument, instrument_file, config, seed),
        _card("NSOURCE", len(prepared), "Sources in the field (rows of SOURCES)"),
        _card("NOUTSIDE", n_outside, "Input sources left out: outside direct.fits"),
        _card("DENSITY", float(f"{config.density:.6g}"), "[1/arcmin2] Sources placed per unit area"),
        _card("AREA", float(f"{geometry.area_arcmin2:.6g}"), "[arcmin2] Sky area of direct.fits"),
        _card("FIELDRA", config.ra_deg, "[deg] RA of the field centre"),
        _card("FIELDDEC", config.dec_deg, "[deg] Dec of the field centre"),
        _card("DIRECT", "direct.fits", "Direct image whose WCS gives X_DIRECT, Y_DIRECT"),
        _card("XYORIGIN", 1, "X_DIRECT, Y_DIRECT are 1-based (FITS pixels)"),
        *(_card(name, value, comment) for name, (value, comment) in (cards or {}).items()),
    ]
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        _primary(f, primary, config)
        write_table(f, table, "SOURCES", "Sources of the field, truth included")
    write_checksums(path)


