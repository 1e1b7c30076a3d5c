"""Figures of the fields guide (docs/fields.md): a slitless exposure with its traces, and one source's contamination.

As in `slitcli.evaluation.plots`, each plot has a ``*_figure`` function returning a
`matplotlib.figure.Figure` drawn with the Agg canvas (no pyplot global state) and a
``plot_*`` function that writes it as PNG under a temporary name, renames it into place
and returns the path; the figure's title is the PNG's ``Title`` text chunk.

Pixel positions are 0-based (astropy's, `slitcli.sim.wcs.world_to_pixel`): pixel (0, 0)
covers -0.5 .. 0.5 on both axes.
"""

from __future__ import annotations

from pathlib import Path

import fitsio
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from slitcli.errors import InputError
from slitcli.fields.cutout import CutoutConfig
from slitcli.fields.exposure import close_all, open_exposures, read_source_catalog
from slitcli.io.png import save_png
from slitcli.io.layout import band_layout
from slitcli.sim.wcs import world_to_pixel

__all__ = ["LABEL_GID", "PANELS", "cutout_contam_figure", "exposure_figure", "plot_cutout_contam", "plot_exposure"]

#: gid of the SOURCE_ID labels of `exposure_figure` (tests and callers find them by it).
LABEL_GID = "source_id"
#: Panels of `cutout_contam_figure`, left to right (each axes' gid is ``"<BAND> <panel>"``).
PANELS = ("SCI", "CONTAM", "SCI - CONTAM")
_BOX_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:cyan", "tab:olive", "tab:pink")
_TEXT_BOX = {"boxstyle": "round", "facecolor": "white", "alpha": 0.85}


def _region(region, shape: tuple[int, int], where: Path) -> tuple[int, int, int, int]:
    """`region` (x0, y0, x1, y1; x1, y1 exclusive) clipped to a detector of `shape` (ny, nx)."""
    if region is None:
        return 0, 0, shape[1], shape[0]
    x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in region)
    x0, x1 = max(x0, 0), min(x1, shape[1])
    y0, y1 = max(y0, 0), min(y1, shape[0])
    if x1 <= x0 or y1 <= y0:
        msg = f"{where}: region {tuple(region)} (x0, y0, x1, y1) holds no pixel of the {shape[1]} x {shape[0]} detector"
        raise InputError(msg)
    return x0, y0, x1, y1


def _asinh_stretch(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """asinh of `image` in units of twice its robust noise about the median, with display limits.

    The sky (at and below the median) is white and its noise light grey, bright spectra
    are compressed: faint traces and bright cores stay visible together.
    """
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image), -1.0, 1.0
    med = float(np.median(finite))
    sigma = 1.4826 * float(np.median(np.abs(finite - med)))
    if not sigma > 0:
        sigma = float(np.std(finite)) or 1.0
    out = np.arcsinh((image - med) / (2.0 * sigma))
    hi = max(float(np.percentile(out[np.isfinite(out)], 99.8)), float(np.arcsinh(5.0)))
    return out, 0.0, hi


def exposure_figure(exposure_path, catalog_path, *, region=None, max_labels: int = 60, instrument=None, cutout_shape=None) -> Figure:
    """One slitless exposure's SCI with each catalogue source's first-order cutout box and SOURCE_ID.

    Every catalogue source (RA, DEC through the exposure's WCS) whose band cutout box
    (`slitcli.io.layout.band_layout`: where ``slitcli cutout`` cuts) overlaps the shown
    pixels gets the box as a thin outline (the band's wavelength range runs along its
    middle) and a dot at its direct position; those whose direct position is shown
    get their SOURCE_ID there (the `max_labels` brightest by ``MAG_DIRECT`` or
    ``MAG_I`` when there are more; texts with gid `LABEL_GID`).

    Parameters
    ----------
    exposure_path, catalog_path : path
        An exposure of ``slitcli simulate --field`` (or any `slitcli cutout` input) and
        the source catalogue (HDU SOURCES with SOURCE_ID, RA, DEC [deg]).
    region : (x0, y0, x1, y1), optional
        Detector pixels to show, 0-based, x1 and y1 exclusive (clipped to the
        detector); default the whole frame. Only this box of SCI is read.
    max_labels : int
        Most SOURCE_IDs written.
    instrument : path, optional
        Instrument file (as ``--instrument``); default the one the exposure names.
    cutout_shape : (ny, nx), optional
        Cutout size [pixel]; default ``slitcli cutout``'s (`CutoutConfig`).

    Raises
    ------
    InputError
        An unreadable exposure or catalogue (`open_exposures`, `read_source_catalog`),
        or a region off the detector.
    """
    exposure_path = Path(exposure_path)
    config = CutoutConfig()
    shape = tuple(cutout_shape) if cutout_shape is not None else (config.cutout_height, config.cutout_width)
    catalog = read_source_catalog(catalog_path)
    inst, _, (exposure,) = open_exposures([exposure_path], instrument)
    try:
        x0, y0, x1, y1 = _region(region, exposure.shape, exposure_path)
        sci = exposure.fits["SCI"][y0:y1, x0:x1].astype(np.float64)
        band = inst.band(exposure.band)
        x, y = world_to_pixel(exposure.wcs, np.asarray(catalog["RA"], float), np.asarray(catalog["DEC"], float))
    finally:
        close_all([exposure])
    layout = band_layout(band, shape)
    order = band.first_order
    # Pixel (0, 0) of each source's cutout box, as `place_sources` puts it (nearest integer).
    c0 = np.rint(x - layout.x_direct_pix)
    r0 = np.rint(y - layout.y_direct_pix)
    finite = np.isfinite(x) & np.isfinite(y)
    drawn = finite & (c0 < x1) & (c0 + shape[1] > x0) & (r0 < y1) & (r0 + shape[0] > y0)
    inside = drawn & (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)
    mag_column = next((c for c in ("MAG_DIRECT", "MAG_I") if c in catalog.colnames), None)
    candidates = np.nonzero(inside)[0]
    if mag_column is not None:
        mags = np.asarray(catalog[mag_column], float)[candidates]
        candidates = candidates[np.argsort(np.where(np.isfinite(mags), mags, np.inf), kind="stable")]
    labelled = np.zeros(len(catalog), bool)
    labelled[candidates[: max(int(max_labels), 0)]] = True

    width, height = x1 - x0, y1 - y0
    fig_w = 10.0
    fig_h = float(np.clip((fig_w - 1.0) * height / width, 2.5, 11.0)) + 1.2
    fig = Figure(figsize=(fig_w, fig_h), layout="constrained")
    where = "whole frame" if region is None else f"x {x0}..{x1 - 1}, y {y0}..{y1 - 1}"
    fig.suptitle(f"{exposure.band} exposure {exposure_path.name} ({where})", fontsize=10)
    ax = fig.subplots()
    shown, lo, hi = _asinh_stretch(sci)
    ax.imshow(shown, origin="lower", cmap="gray_r", vmin=lo, vmax=hi, extent=(x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5), interpolation="antialiased")
    fontsize = 7 if labelled.sum() <= 30 else 6
    for k, i in enumerate(np.nonzero(drawn)[0]):
        colour = _BOX_COLOURS[k % len(_BOX_COLOURS)]
        ax.add_patch(Rectangle((c0[i] - 0.5, r0[i] - 0.5), shape[1], shape[0], fill=False, lw=0.6, ec=colour, alpha=0.8))
        ax.plot(x[i], y[i], "o", ms=2.0, color=colour)
        if labelled[i]:
            ax.text(x[i], y[i] + 3, str(catalog["SOURCE_ID"][i]), color=colour, fontsize=fontsize, ha="center", va="bottom", gid=LABEL_GID, clip_on=True,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "alpha": 0.6, "lw": 0})
    ax.set(xlim=(x0 - 0.5, x1 - 0.5), ylim=(y0 - 0.5, y1 - 0.5), aspect="equal" if 0.1 < height / width < 10 else "auto")
    ax.set_xlabel("x [detector pixel, 0-based]; dispersion towards +x")
    ax.set_ylabel("y [detector pixel, 0-based]")
    note = (f"{int(drawn.sum())} sources' {order.name} order cutout boxes ({shape[1]} x {shape[0]} pixels, "
            f"{band.wave_min_aa:.0f}-{band.wave_max_aa:.0f} Å along the trace); dots: direct positions, "
            f"{int(labelled.sum())} of {int(inside.sum())} labelled with SOURCE_ID; SCI in asinh stretch")
    ax.set_title(note, fontsize=7.5)
    return fig


def _sample_row(f: fitsio.FITS, path: Path, source_id) -> tuple[int, np.ndarray]:
    if "SOURCES" not in f:
        msg = f"{path}: no SOURCES table; is it a sample file (slitcli cutout or simulate)?"
        raise InputError(msg)
    sources = f["SOURCES"].read()
    ids = np.asarray(sources["SOURCE_ID"])
    rows = np.nonzero(ids == source_id)[0]
    if rows.size == 0:
        msg = f"{path}: SOURCE_ID {source_id} is not in its SOURCES table ({ids.size} sources)"
        raise InputError(msg)
    return int(rows[0]), sources[rows[0]]


def _wavelength_aa(header, n: int) -> np.ndarray:
    """Wavelength [Angstrom] of the n columns of a cube by its linear axis-1 WCS."""
    return float(header["CRVAL1"]) + float(header["CDELT1"]) * (np.arange(n) + 1.0 - float(header["CRPIX1"]))


def cutout_contam_figure(sample_path, source_id: int, *, bands=None) -> Figure:
    """One source's cutouts per band (rows): SCI, the contamination model CONTAM and SCI - CONTAM [e-/s].

    The three panels of a band share one linear colour scale (from SCI and SCI - CONTAM:
    1st to 99.7th percentile) and a colour bar; pixels no exposure covers (``NEXP`` 0)
    are masked (light grey); x is wavelength [Angstrom] by the
    cubes' WCS (exact for the source at its direct position), y the cutout row.
    Each panel's axes has gid ``"<BAND> <panel>"`` (`PANELS`).

    Parameters
    ----------
    sample_path : path
        A sample file with ``<BAND>_SCI`` and ``<BAND>_CONTAM`` cubes and a SOURCES table.
    source_id : int
    bands : list of str, optional
        Default: the file's ``BANDS`` (those with a CONTAM cube).

    Raises
    ------
    InputError
        The file is not a sample file, `source_id` is not in it, or a band lacks SCI or CONTAM.
    """
    sample_path = Path(sample_path)
    if not sample_path.is_file():
        msg = f"{sample_path}: file not found"
        raise InputError(msg)
    with fitsio.FITS(str(sample_path)) as f:
        i, row = _sample_row(f, sample_path, source_id)
        if bands is None:
            listed = [b.strip() for b in str(f[0].read_header().get("BANDS", "")).split(",") if b.strip()]
            bands = [b for b in listed if f"{b}_CONTAM" in f]
            if not bands:
                msg = f"{sample_path}: no <BAND>_CONTAM cube; cut the sample with slitcli cutout (it models the contamination)"
                raise InputError(msg)
        data = {}
        for b in bands:
            missing = [e for e in (f"{b}_SCI", f"{b}_CONTAM") if e not in f]
            if missing:
                msg = f"{sample_path}: band {b}: no HDU {', '.join(missing)}"
                raise InputError(msg)
            sci = f[f"{b}_SCI"][i : i + 1, :, :][0].astype(np.float64)
            contam = f[f"{b}_CONTAM"][i : i + 1, :, :][0].astype(np.float64)
            nodata = f[f"{b}_NEXP"][i : i + 1, :, :][0] == 0 if f"{b}_NEXP" in f else ~np.isfinite(sci)
            data[b] = (sci, contam, nodata, _wavelength_aa(f[f"{b}_SCI"].read_header(), sci.shape[1]))
    names = row.dtype.names
    z = f", z_true = {float(row['Z_TRUE']):.3f}" if "Z_TRUE" in names else ""
    fig = Figure(figsize=(13.0, 1.9 * len(bands) + 0.8), layout="constrained")
    fig.suptitle(f"source {source_id} in {sample_path.name}{z}: data, contamination model, data - model", fontsize=10)
    axes = fig.subplots(len(bands), len(PANELS), squeeze=False)
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    for row_axes, b in zip(axes, bands):
        sci, contam, nodata, wave = data[b]
        images = [np.ma.masked_array(a, mask=nodata) for a in (sci, contam, sci - contam)]
        values = np.concatenate([sci[~nodata], (sci - contam)[~nodata]])
        values = values[np.isfinite(values)]
        lo, hi = np.percentile(values, [1.0, 99.7]) if values.size else (0.0, 1.0)
        hi = max(hi, lo + 1e-6)
        dw = wave[1] - wave[0] if wave.size > 1 else 1.0
        extent = (wave[0] - 0.5 * dw, wave[-1] + 0.5 * dw, -0.5, sci.shape[0] - 0.5)
        for ax, image, panel in zip(row_axes, images, PANELS):
            im = ax.imshow(image, origin="lower", cmap=cmap, vmin=lo, vmax=hi, extent=extent, aspect="auto", interpolation="nearest")
            ax.set_gid(f"{b} {panel}")
            ax.set_title(f"{b} {panel}", fontsize=9)
            ax.set_xlabel("wavelength [Å]", fontsize=8)
            ax.tick_params(labelsize=7)
        row_axes[0].set_ylabel("cutout row [pixel]", fontsize=8)
        fig.colorbar(im, ax=row_axes.tolist(), label="e-/s", shrink=0.95, pad=0.01)
    return fig


def plot_exposure(path_png, exposure_path, catalog_path, **options) -> Path:
    """Write `exposure_figure` (same keyword options) to `path_png`."""
    return save_png(exposure_figure(exposure_path, catalog_path, **options), path_png)


def plot_cutout_contam(path_png, sample_path, source_id: int, **options) -> Path:
    """Write `cutout_contam_figure` (same keyword options) to `path_png`."""
    return save_png(cutout_contam_figure(sample_path, source_id, **options), path_png)
