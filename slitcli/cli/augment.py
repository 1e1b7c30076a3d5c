"""`slitcli augment`: write augmented copies of a sample file."""

from __future__ import annotations

from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, progress_bar


def augment(
    input: Path = typer.Argument(..., help="Sample file to augment (from slitcli simulate).", metavar="SAMPLE", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Augmented sample file to write.", metavar="FILE", show_default=False),
    copies: int = typer.Option(8, "--copies", help="Copies per source: the original, a flip, then shifts along x and y in turn (the paper: 8).", metavar="N", min=1),
    max_shift_x: int = typer.Option(48, "--max-shift-x", help="Largest integer shift along the dispersion [pixel] (the paper: 48).", metavar="PIX", min=0),
    max_shift_y: int = typer.Option(4, "--max-shift-y", help="Largest integer shift across the dispersion [pixel] (the paper: 4).", metavar="PIX", min=0),
    subpixel_x: float = typer.Option(0.5, "--subpixel-x", help="Largest sub-pixel shift along the dispersion [pixel], on x-shifted copies.", metavar="PIX", min=0.0),
    noise_scale: float = typer.Option(0.0, "--noise", help="Add Gaussian noise of this many ERR to shifted copies (ERR grows to match).", metavar="K", min=0.0),
    wrap: bool = typer.Option(True, "--wrap/--no-wrap", help="Shifted-out pixels re-enter on the other side (the reference code), or zeros."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random shifts and noise.", metavar="N"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Augment a sample file with flips and shifts, for robustness to wavelength-calibration and centring errors.

    Writes an AUGMENT table recording each copy's flip and shifts. `slitcli train` draws
    the same augmentations on the fly; this command is for inspection and external training.

    Example:

      slitcli augment train.fits -o train_aug.fits --copies 8
    """
    with command(quiet, verbose):
        from slitcli.errors import ConfigError
        from slitcli.nn.augment import AugmentConfig, augment_sample

        try:
            cfg = AugmentConfig(max_shift_x=max_shift_x, max_shift_y=max_shift_y, subpixel_x=subpixel_x, noise_scale=noise_scale, wrap=wrap, copies=copies)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        with progress_bar(quiet) as bar:
            task = bar.add_task("augmenting", total=None)
            path = augment_sample(input, output, cfg, seed, overwrite=overwrite, progress=lambda d, n: bar.update(task, completed=d, total=n))
        log.info("wrote %d copies of each source to %s", copies, path)
