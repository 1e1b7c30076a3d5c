"""`slitcli simulate`: mock 2D slitless cutouts from galaxy images and spectra."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, progress_bar


class MatchBy(str, Enum):
    sky = "sky"
    id = "id"


class Engine(str, Enum):
    numba = "numba"
    torch = "torch"


def simulate(
    output: Path = typer.Option(..., "-o", "--output", help="Output sample file (FITS); with --field, the field's directory.", metavar="FILE", show_default=False),
    n: int = typer.Option(None, "-n", "--n-sources", help="Number of sources (>= 1). [default: 1000 for the embedded data, all matched sources for --hsc/--desi]", metavar="N", min=1, show_default=False),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw; the same seed gives the same bytes.", metavar="N"),
    hsc: Path = typer.Option(None, "--hsc", help="Galaxy images: FITS table with object_id, ra, dec, image and PIXSCALE (docs/formats.md).", metavar="FILE", show_default=False),
    desi: Path = typer.Option(None, "--desi", help="Galaxy spectra: FITS with WAVELENGTH, FLUX, METADATA (docs/formats.md).", metavar="FILE", show_default=False),
    match: MatchBy = typer.Option(MatchBy.sky, "--match", help="Pair images and spectra on the sky, or by object_id == TARGETID."),
    match_radius: float = typer.Option(1.5, "--match-radius", help="Sky-match radius [arcsec].", metavar="ARCSEC"),
    hsc_psf_fwhm: float = typer.Option(0.0, "--hsc-psf-fwhm", help="FWHM [arcsec] of the images' own PSF; > 0 deconvolves them (Richardson-Lucy, 30 iterations).", metavar="ARCSEC"),
    isolate: bool = typer.Option(False, "--isolate", help="Keep only the central source's segment of each input image."),
    instrument: Path = typer.Option(None, "--instrument", help="Instrument YAML file. [default: the shipped CSST file]", metavar="YAML", show_default=False),
    config: Path = typer.Option(None, "--config", help="YAML file of simulation settings (keys in docs/simulate.md); command-line options override it.", metavar="YAML", show_default=False),
    bands: str = typer.Option(None, "--bands", help="Comma-separated bands. [default: GV,GI]", metavar="BANDS", show_default=False),
    noiseless: bool = typer.Option(None, "--noiseless", help="Write the expected image (no noise) with the same ERR. [default: noisy]", show_default=False),
    zeroth_order: bool = typer.Option(None, "--zeroth-order", help="Also disperse the zeroth order. [default: off]", show_default=False),
    wavelength_shift: float = typer.Option(None, "--wavelength-shift", help="Shift the spectra along x by this many pixels against the nominal WCS (a wavelength-calibration error). [default: 0]", metavar="PIX", show_default=False),
    mag_max: float = typer.Option(None, "--mag-max", help="Faint limit (SDSS i, AB) of the embedded population. [default: 23.5]", metavar="MAG", show_default=False),
    first_id: int = typer.Option(None, "--first-id", help="SOURCE_ID of the first source (IDs N .. N + n - 1); give each file of a survey its own range. Embedded data only: --hsc sources keep their object_id. [default: 1]", metavar="N", min=0, show_default=False),
    field: bool = typer.Option(False, "--field", help="Simulate a field into directory -o: direct.fits (with SEGMENTATION), catalog.fits and full-frame exposure_<BAND>_<NN>.fits with overlapping spectra (docs/simulate.md, Fields)."),
    size: str = typer.Option(None, "--size", help="Field detector region [pixels]: N for N x N, or NXxNY; at most 9232 per side (9216x9232 is a full CSST chip). [default: 2048]", metavar="PIX", show_default=False),
    density: float = typer.Option(None, "--density", help="Field sources per arcmin2. [default: galaxy number counts to --mag-max, 15.8 for i < 23.5]", metavar="N", min=0.0, show_default=False),
    dither: float = typer.Option(None, "--dither", help="Largest pointing offset between a field's exposures [pixels]. [default: 5]", metavar="PIX", min=0.0, show_default=False),
    workers: int = typer.Option(None, "--workers", "-j", help="Worker processes (worker threads with --field); with --shards, a local Dask cluster of N processes, one shard at a time each. [default: 1]", metavar="N", min=1, show_default=False),
    shards: int = typer.Option(None, "--shards", help="Split the run into N files (or N adjacent fields with --field) in directory -o, each with its own seed (SeedSequence.spawn of --seed) and SOURCE_IDs; a re-run skips the shards already written (docs/scaling.md).", metavar="N", min=1, show_default=False),
    scheduler: str = typer.Option(None, "--scheduler", help="With --shards: run them on this Dask scheduler (tcp://host:port) instead of here. [default: $DASK_SCHEDULER_ADDRESS]", metavar="ADDRESS", show_default=False),
    engine: Engine = typer.Option(Engine.numba, "--engine", help="Renderer: the Numba kernel, or the Torch convolution (same sources and noiseless images, its own noise draws; docs/simulate.md)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Simulate CSST slitless cutouts (SCI, ERR, DQ per band) into one FITS sample file.

    With no --hsc/--desi it draws sources from real data shipped with the install:
    SEDs fitted to 10,000 SDSS galaxies (kcorrect), shapes from the Hubble eXtreme Deep
    Field (scikit-image), redshifts from a CSST-like n(z).

    Examples:

      slitcli simulate -n 500 --seed 1 -o sample.fits

      slitcli simulate --hsc cat.fits --desi seds.fits -o sample.fits

      slitcli simulate --field --size 2048 --seed 1 -o field/

      slitcli simulate -n 100000 --shards 100 --workers 2 -o mock/
    """
    if (hsc is None) != (desi is None):
        raise typer.BadParameter("--hsc and --desi go together: give both, or neither for the embedded data", param_hint="'--hsc' / '--desi'")
    if first_id is not None and hsc is not None:
        raise typer.BadParameter("numbers the embedded population; with --hsc/--desi SOURCE_ID is the images' object_id", param_hint="'--first-id'")
    if workers is not None and scheduler is not None:
        raise typer.BadParameter("give --workers (a local cluster) or --scheduler (an existing one), not both", param_hint="'--workers' / '--scheduler'")
    if scheduler is not None and shards is None:
        raise typer.BadParameter("runs shards on a Dask cluster: give --shards too", param_hint="'--scheduler'")
    if field:
        _check_field_options(size, n, zeroth_order, wavelength_shift, engine, first_id)
        if shards is not None and hsc is not None:
            raise typer.BadParameter("sharded fields draw the embedded population: leave out --hsc/--desi", param_hint="'--shards'")
        with command(quiet, verbose):
            _simulate_field(output, seed, hsc, desi, match, match_radius, hsc_psf_fwhm, isolate, instrument, config, bands, noiseless, mag_max, first_id, size, density, dither, workers, overwrite, quiet, shards, scheduler)
        return
    for value, option in ((size, "--size"), (density, "--density"), (dither, "--dither")):
        if value is not None:
            raise typer.BadParameter("applies to --field only", param_hint=f"'{option}'")
    with command(quiet, verbose):
        from slitcli.config import from_mapping, load_yaml, with_changes
        from slitcli.instrument import load_instrument
        from slitcli.io.files import check_output_path
        from slitcli.sim.population import PopulationProvider
        from slitcli.sim.simulate import SimulateConfig, write_sample

        if shards is None:
            check_output_path(output, overwrite, inputs=(hsc, desi, instrument, config))
        inst = load_instrument(instrument)
        cfg = from_mapping(SimulateConfig, load_yaml(config), str(config)) if config else SimulateConfig()
        cfg = with_changes(
            cfg,
            "command-line options",
            bands=_band_names(bands),
            noiseless=noiseless,
            zeroth_order=zeroth_order,
            wavelength_shift_pix=wavelength_shift,
            population=with_changes(cfg.population, "--mag-max", mag_i_max=mag_max) if mag_max is not None else None,
        )
        for name in cfg.bands:
            inst.band(name)
        provenance = {"INSTFILE": (str(instrument) if instrument else "default", "Instrument file")}
        if hsc is None:
            provider = PopulationProvider(cfg.population, first_id=1 if first_id is None else first_id)
            provenance["FIRSTID"] = (provider.first_id, "SOURCE_ID of the first source")
            total = 1000 if n is None else n
            provenance["INPUT"] = ("embedded", "kcorrect SDSS SEDs + HXDF shapes")
        else:
            from slitcli.sim.inputs import open_file_sources

            provider = open_file_sources(hsc, desi, match=match.value, radius_arcsec=match_radius, psf_fwhm_arcsec=hsc_psf_fwhm, isolate=isolate)
            m = provider.match
            total = m.image_rows.size if n is None else min(n, m.image_rows.size)
            how = f"within {match_radius} arcsec" if match is MatchBy.sky else "by id"
            log.info(f"matched {m.image_rows.size} of {m.n_images} images to {m.n_spectra} spectra {how}; {m.n_unmatched_images} images unmatched")
            provenance["HSCFILE"] = (hsc.name, "Input images file")
            provenance["DESIFILE"] = (desi.name, "Input spectra file")
        if shards is not None:
            from slitcli.parallel import Executor, file_identity, scheduler_address
            from slitcli.sim.shards import run_sample_shards

            provider_id = "embedded" if hsc is None else [file_identity(hsc), file_identity(desi), match.value, match_radius, hsc_psf_fwhm, isolate]
            with progress_bar(quiet) as bar, Executor(workers, scheduler_address(scheduler)) as executor:
                task = bar.add_task("simulating shards", total=shards)
                run = run_sample_shards(
                    output, provider, total, shards, inst, cfg, seed, first_id=getattr(provider, "first_id", None), engine=engine.value, provenance=provenance,
                    provider_id=provider_id, executor=executor, overwrite=overwrite, inputs=(hsc, desi, instrument, config), progress=lambda d, k: bar.update(task, completed=d, total=k),
                )
            log.info(f"wrote {run.written} shards of {total} sources in all to {output} ({run.skipped} done before, skipped)")
            return
        with progress_bar(quiet) as bar:
            task = bar.add_task("simulating", total=total)
            path = write_sample(output, provider, total, inst, cfg, seed, provenance=provenance, overwrite=overwrite, workers=workers or 1, engine=engine.value, progress=lambda done: bar.update(task, completed=done))
        log.info(f"wrote {total} sources to {path} (bands {', '.join(cfg.bands)})")


def _band_names(bands: str | None) -> tuple[str, ...] | None:
    """--bands GV,GI as a tuple (None when not given: the config's bands)."""
    return None if bands is None else tuple(b.strip() for b in bands.split(",") if b.strip())


def _field_size(size: str | None) -> tuple[int, int]:
    """(nx, ny) of --size: N or NXxNY, each 1 to 9232; a usage error otherwise."""
    if size is None:
        return 2048, 2048
    parts = size.lower().split("x")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        raise typer.BadParameter(f"expected N or NXxNY in pixels (e.g. 2048 or 9216x9232), got {size!r}", param_hint="'--size'")
    nx, ny = int(parts[0]), int(parts[-1])
    if not (1 <= nx <= 9232 and 1 <= ny <= 9232):
        raise typer.BadParameter(f"each side must be 1 to 9232 pixels, got {size!r}", param_hint="'--size'")
    return nx, ny


def _check_field_options(size, n, zeroth_order, wavelength_shift, engine, first_id) -> None:
    """Usage errors of --field: a bad --size, and options that only apply to sample files."""
    _field_size(size)
    for value, option, why in (
        (n, "-n", "a field's number of sources follows --density"),
        (zeroth_order, "--zeroth-order", "fields always disperse the orders of FieldConfig.orders (first and zeroth)"),
        (wavelength_shift, "--wavelength-shift", "not simulated in fields"),
        (None if engine is Engine.numba else engine, "--engine", "fields render with the Numba kernel"),
        (first_id if first_id == 0 else None, "--first-id", "SOURCE_ID 0 is the segmentation map's sky: use >= 1"),
    ):
        if value is not None:
            raise typer.BadParameter(f"not with --field: {why}", param_hint=f"'{option}'")


def _simulate_field(output, seed, hsc, desi, match, match_radius, hsc_psf_fwhm, isolate, instrument, config, bands, noiseless, mag_max, first_id, size, density, dither, workers, overwrite, quiet, shards=None, scheduler=None) -> None:
    """`slitcli simulate --field`: draw or read the sources, then write the field directory."""
    from slitcli.config import from_mapping, load_yaml, with_changes
    from slitcli.instrument import load_instrument
    from slitcli.io.files import check_output_path
    from slitcli.sim.field import FieldConfig, default_field_sources, field_file_names, file_field_sources, write_field

    inst = load_instrument(instrument)
    cfg = from_mapping(FieldConfig, load_yaml(config), str(config)) if config else FieldConfig()
    nx, ny = _field_size(size) if size is not None else (None, None)
    cfg = with_changes(
        cfg,
        "command-line options",
        bands=_band_names(bands),
        noiseless=noiseless,
        nx=nx,
        ny=ny,
        density_per_arcmin2=density,
        dither_pix=dither,
        population=with_changes(cfg.population, "--mag-max", mag_i_max=mag_max) if mag_max is not None else None,
    )
    inputs = (hsc, desi, instrument, config)
    inst.imaging_band(cfg.imaging)
    for name in cfg.bands:
        inst.band(name)
    if shards is not None:
        from slitcli.parallel import Executor, scheduler_address
        from slitcli.sim.shards import run_field_shards

        with progress_bar(quiet) as bar, Executor(workers, scheduler_address(scheduler)) as executor:
            task = bar.add_task("simulating fields", total=shards)
            run = run_field_shards(
                output, shards, inst, cfg, seed, first_id=1 if first_id is None else first_id, instrument_file=str(instrument) if instrument else "default",
                executor=executor, overwrite=overwrite, inputs=inputs, progress=lambda d, k: bar.update(task, completed=d, total=k),
            )
        log.info(f"wrote {run.written} fields ({run.n_sources} sources) to {output} ({run.skipped} done before, skipped)")
        return
    check_output_path(output, overwrite, inputs, directory=True, files=field_file_names(inst, cfg))
    with progress_bar(quiet) as bar:
        if hsc is None:
            task = bar.add_task("drawing sources", total=None)
            sources = default_field_sources(inst, cfg, seed, first_id=1 if first_id is None else first_id, progress=lambda done, total: bar.update(task, completed=done, total=total))
            n_outside = 0
        else:
            from slitcli.sim.inputs import open_file_sources

            provider = open_file_sources(hsc, desi, match=match.value, radius_arcsec=match_radius, psf_fwhm_arcsec=hsc_psf_fwhm, isolate=isolate)
            cfg, sources, n_outside = file_field_sources(provider, inst, cfg)
            log.info(f"matched {provider.match.image_rows.size} images to spectra; {len(sources)} lie in the field around RA {cfg.ra_deg:.5f}, Dec {cfg.dec_deg:.5f}, {n_outside} outside it")
        task = bar.add_task("simulating field", total=None)
        summary = write_field(
            output, sources, inst, cfg, seed, instrument_file=str(instrument) if instrument else "default", n_outside=n_outside,
            overwrite=overwrite, inputs=inputs, workers=workers or 1, progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    n_exp = len(summary.files) - 2
    log.info(f"wrote {summary.n_sources} sources ({cfg.density:.1f} per arcmin2 over {summary.geometry.area_arcmin2:.2f} arcmin2), direct.fits, catalog.fits and {n_exp} exposures of {cfg.nx} x {cfg.ny} pixels to {summary.path}")
