"""`slitcli simulate`: mock 2D slitless cutouts from galaxy images and spectra."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, progress_bar


class MatchBy(str, Enum):
    sky = "sky"
    id = "id"


def simulate(
    output: Path = typer.Option(..., "-o", "--output", help="Output sample file (FITS).", metavar="FILE", show_default=False),
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
    workers: int = typer.Option(1, "--workers", "-j", help="Worker processes.", metavar="N", min=1),
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
    """
    if (hsc is None) != (desi is None):
        raise typer.BadParameter("--hsc and --desi go together: give both, or neither for the embedded data", param_hint="'--hsc' / '--desi'")
    if first_id is not None and hsc is not None:
        raise typer.BadParameter("numbers the embedded population; with --hsc/--desi SOURCE_ID is the images' object_id", param_hint="'--first-id'")
    with command(quiet, verbose):
        from slitcli.config import from_mapping, load_yaml, with_changes
        from slitcli.instrument import load_instrument
        from slitcli.io.files import check_output_path
        from slitcli.sim.population import PopulationProvider
        from slitcli.sim.simulate import SimulateConfig, write_sample

        check_output_path(output, overwrite, inputs=(hsc, desi, instrument, config))
        inst = load_instrument(instrument)
        cfg = from_mapping(SimulateConfig, load_yaml(config), str(config)) if config else SimulateConfig()
        cfg = with_changes(
            cfg,
            "command-line options",
            bands=tuple(b.strip() for b in bands.split(",") if b.strip()) if bands is not None else None,
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
        with progress_bar(quiet) as bar:
            task = bar.add_task("simulating", total=total)
            path = write_sample(output, provider, total, inst, cfg, seed, provenance=provenance, overwrite=overwrite, workers=workers, progress=lambda done: bar.update(task, completed=done))
        log.info(f"wrote {total} sources to {path} (bands {', '.join(cfg.bands)})")
