"""Fields: full-frame slitless exposures with overlapping spectra, a direct image and a catalogue.

`write_field` writes one simulated field into a directory (layout in docs/simulate.md,
"Fields"):

- ``direct.fits``: the direct image in the instrument's imaging filter (SCI, ERR, DQ and
  SEGMENTATION), covering the detector plus a margin wide enough that every source whose
  light reaches a detector is in it;
- ``catalog.fits``: a ``SOURCES`` table of every source, with its sky and direct-image
  position and the truth (``Z_TRUE``, ``SNR_<BAND>``, ``CLASS``, ``SED_ID``);
- ``exposure_<BAND>_<NN>.fits``: one file per band and exposure (SCI, ERR, DQ, SENS),
  each a single read of the detector with the celestial WCS of its dithered pointing and
  the trace polynomials of the instrument file.

Physics is the cutout simulator's (`slitcli.sim.simulate`): the same direct stamps,
sensitivities and Numba dispersion kernel; here every enabled order (first and zeroth by
default) lands on the detector at the position the exposure's WCS gives the source. Each
source is rendered into a small tile (its dispersed footprint) that is added into the
frame, so memory is one frame plus a tile, whatever the number of sources; exposures are
made one at a time and their noise in blocks of rows.

Randomness: the run's seed spawns independent streams for the positions, the population
(one child per source), the isolated-cutout SNR (one per source), the dithers, the
direct image and each exposure's noise and cosmic rays, so one seed gives the same bytes
(with ``SOURCE_DATE_EPOCH`` set) whatever the number of worker threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slitcli.errors import ConfigError, InputError
from slitcli.instrument import Instrument
from slitcli.io.files import atomic_output, check_output_path, output_directory
from slitcli.io.layout import DQ_JUMP_DET
from slitcli.sim.field_files import (
    write_catalog_file,
    write_direct_file,
    write_exposure_file,
)
from slitcli.sim.field_layout import (
    FieldConfig,
    FieldGeometry,
    field_file_names,
    field_geometry,
    n_exposures,
    number_counts_density,
    random_streams,
)
from slitcli.sim.field_render import (
    PreparedSource,
    imaging_zeropoint,
    prepare_source,
    render_exposure,
    render_tiles,
)
from slitcli.sim.population import draw_sources
from slitcli.sim.sources import Source
from slitcli.sim.wcs import pixel_to_world, wcs_from_cards, world_to_pixel

__all__ = [
    "FieldConfig",
    "FieldGeometry",
    "FieldSummary",
    "DQ_JUMP_DET",
    "number_counts_density",
    "field_geometry",
    "field_file_names",
    "default_field_sources",
    "file_field_sources",
    "PreparedSource",
    "prepare_source",
    "render_exposure",
    "write_field",
    "imaging_zeropoint",
]


# ---------------------------------------------------------------- sources


def default_field_sources(instrument: Instrument, config: FieldConfig, seed: int, *, first_id: int = 1, progress=None) -> list[Source]:
    """Sources of the embedded population placed uniformly over the direct image.

    The number is round(density x area); positions come from the run's position stream
    and each source's galaxy from its own child of the population stream, so a source's
    galaxy does not depend on how many others there are. SOURCE_IDs run from `first_id`.
    """
    if first_id < 1:
        msg = f"first_id must be >= 1 in a field (SOURCE_ID 0 is the segmentation map's sky), got {first_id}"
        raise ConfigError(msg)
    geometry = field_geometry(instrument, config, seed)
    streams = random_streams(seed)
    n = int(round(config.density * geometry.area_arcmin2))
    rng = np.random.default_rng(streams["positions"])
    left, _, bottom, _ = geometry.margin
    x = rng.uniform(-0.5, geometry.direct_shape[1] - 0.5, n) - left
    y = rng.uniform(-0.5, geometry.direct_shape[0] - 0.5, n) - bottom
    ra, dec = pixel_to_world(wcs_from_cards(geometry.reference), x, y)
    out = []
    for k, seq in enumerate(streams["population"].spawn(n)):
        source = draw_sources(config.population, 1, first_id + k, np.random.default_rng(seq))[0]
        source.ra_deg, source.dec_deg = float(ra[k]), float(dec[k])
        out.append(source)
        if progress is not None:
            progress(k + 1, n)
    return out


def file_field_sources(provider, instrument: Instrument, config: FieldConfig) -> tuple[FieldConfig, list[Source], int]:
    """Your galaxies (an `slitcli.sim.inputs.FileSourceProvider`) at their own sky positions.

    The field is centred on the median position of the matched galaxies; those outside
    the direct image are left out.

    Returns
    -------
    config : FieldConfig
        `config` with the field centre moved to the galaxies.
    sources : list of Source
        The galaxies inside the direct image.
    n_outside : int
        Matched galaxies left out.
    """
    rows = provider.match.image_rows
    ra_all, dec_all = provider.images.ra_deg[rows], provider.images.dec_deg[rows]
    # Median RA on the circle: around the first galaxy, so that 359.9 and 0.1 average to 0.
    ra0 = float(ra_all[0] + np.median((ra_all - ra_all[0] + 180.0) % 360.0 - 180.0)) % 360.0
    config = dataclasses.replace(config, ra_deg=ra0, dec_deg=float(np.median(dec_all)))
    geometry = field_geometry(instrument, config, 0)
    x, y = world_to_pixel(wcs_from_cards(geometry.direct), ra_all, dec_all)
    inside = np.nonzero((x > -0.5) & (x < geometry.direct_shape[1] - 0.5) & (y > -0.5) & (y < geometry.direct_shape[0] - 0.5))[0]
    sources = []
    for start in range(0, inside.size, 64):
        for k in inside[start : start + 64]:
            sources.extend(provider(int(k), 1, np.random.default_rng(0)))
    return config, sources, int(rows.size - inside.size)


# ---------------------------------------------------------------- the field


@dataclass(frozen=True)
class FieldSummary:
    """What `write_field` wrote: the directory, its files, the sources and the geometry."""

    path: Path
    files: tuple[str, ...]
    n_sources: int
    n_outside: int
    geometry: FieldGeometry


def write_field(
    path: str | Path,
    sources: list[Source],
    instrument: Instrument,
    config: FieldConfig,
    seed: int,
    *,
    instrument_file: str = "default",
    n_outside: int = 0,
    overwrite: bool = False,
    inputs=(),
    workers: int = 1,
    progress=None,
    cards: dict | None = None,
) -> FieldSummary:
    """Simulate a field of `sources` (sky positions set) and write it into directory `path`.

    Parameters
    ----------
    sources : list of Source
        The galaxies, with ``ra_deg``/``dec_deg`` and unique SOURCE_IDs >= 1. Those outside
        the direct image are left out (and counted in the catalogue's NOUTSIDE).
    instrument_file : str
        Name of the instrument file, written as INSTFILE (with INSTHASH, its config hash).
    n_outside : int
        Sources already left out by the caller, added to the count.
    inputs : iterable of path
        Input files: the output directory must not be one of them.
    workers : int
        Worker threads rendering sources.
    progress : callable(done, total), optional
        Called as sources are prepared and rendered.
    cards : dict, optional
        More primary-header cards of catalog.fits, ``{name: (value, comment)}`` (a shard's
        provenance, `slitcli.sim.shards`).

    Returns
    -------
    FieldSummary
        The files are published together at the end; on any error none is left (a
        directory this call created is removed).
    """
    path = Path(path)
    bands = [instrument.band(b) for b in config.bands]
    for band in bands:
        for name in config.orders:
            band.order(name)
    imaging = instrument.imaging_band(config.imaging)
    names = field_file_names(instrument, config)
    check_output_path(path, overwrite, inputs, directory=True, files=names)
    ids = np.array([s.source_id for s in sources], dtype=np.int64)
    if ids.size and ids.min() < 1:
        msg = f"SOURCE_ID {int(ids.min())} in a field: IDs must be >= 1 (0 is the segmentation map's sky)"
        raise InputError(msg)
    unique, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        msg = f"SOURCE_ID {int(unique[counts > 1][0])} appears {int(counts.max())} times; a field needs unique IDs"
        raise InputError(msg)
    geometry = field_geometry(instrument, config, seed)
    x, y = world_to_pixel(wcs_from_cards(geometry.direct), [s.ra_deg for s in sources], [s.dec_deg for s in sources])
    ny, nx = geometry.direct_shape
    keep = (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    n_outside += int(np.count_nonzero(~keep))
    sources = [s for s, k in zip(sources, keep) if k]
    streams = random_streams(seed)
    n_frames = len(geometry.exposures)
    total = len(sources) * (2 + n_frames)
    done = [0]

    def tick(step: int = 1):
        done[0] += step
        if progress is not None:
            progress(done[0], total)

    snr_seeds = streams["snr"].spawn(len(sources))
    prepared = []
    for p in render_tiles(lambda s, seq: prepare_source(s, instrument, imaging, config, seq), list(zip(sources, snr_seeds)), workers):
        prepared.append(p)
        tick()
    exposure_seeds = streams["exposures"].spawn(n_frames)
    with output_directory(path), contextlib.ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_output(path / name, overwrite)) for name in names}
        write_direct_file(tmp["direct.fits"], prepared, geometry, instrument, imaging, instrument_file, config, seed, workers, tick)
        write_catalog_file(tmp["catalog.fits"], prepared, geometry, instrument, imaging, instrument_file, config, seed, n_outside, cards)
        n_exp = n_exposures(instrument, config)
        for j, ((band_name, k), (cards, offset)) in enumerate(geometry.exposures.items()):
            band = instrument.band(band_name)
            frame = render_exposure(prepared, wcs_from_cards(cards), instrument, band, config, workers=workers, progress=tick)
            noise_seq, cr_seq = exposure_seeds[j].spawn(2)
            name = f"exposure_{band_name}_{k + 1:02d}.fits"
            write_exposure_file(tmp[name], frame, band, k, n_exp, cards, offset, instrument, instrument_file, config, seed, np.random.default_rng(noise_seq), np.random.default_rng(cr_seq))
            del frame
    return FieldSummary(path, tuple(names), len(prepared), n_outside, geometry)
