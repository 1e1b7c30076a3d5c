"""`slitcli train`: pre-train and fine-tune the Bayesian CNN on simulated samples."""

from __future__ import annotations

from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, log_bad_pixels, progress_bar


def train(
    train_files: list[Path] = typer.Argument(..., help="Training sample file(s) (from slitcli simulate).", metavar="SAMPLE", show_default=False),
    val: Path = typer.Option(..., "--val", help="Validation sample file: picks the best epoch and stops early. Never the test sample.", metavar="SAMPLE", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Model directory to write (model.safetensors, model.json, checkpoint.pt).", metavar="DIR", show_default=False),
    name: str = typer.Option(None, "--name", help="Model name in the card. [default: the directory name]", metavar="NAME", show_default=False),
    config: Path = typer.Option(None, "--config", help="YAML with keys 'train' (slitcli.nn.train.TrainConfig) and 'model' (architecture options).", metavar="YAML", show_default=False),
    architecture: str = typer.Option(None, "--arch", help="Architecture: slitnet (compact, CPU) or resnet34 (the paper's). [default: slitnet]", metavar="NAME", show_default=False),
    pretrain_epochs: int = typer.Option(None, "--pretrain-epochs", help="Maximum deterministic pre-training epochs. [default: 20]", metavar="N", min=0, show_default=False),
    finetune_epochs: int = typer.Option(None, "--finetune-epochs", help="Maximum Bayesian fine-tuning epochs; 0 gives a deterministic model. [default: 10]", metavar="N", min=0, show_default=False),
    batch_size: int = typer.Option(None, "--batch-size", help="Batch size (>= 2: batch-norm needs two sources). [default: 128]", metavar="N", min=2, show_default=False),
    max_shift_x: int = typer.Option(None, "--max-shift-x", help="Largest augmentation shift along the dispersion [pixel] (the paper: 48). [default: 3]", metavar="PIX", min=0, show_default=False),
    init_from: Path = typer.Option(None, "--init-from", help="Start from this model directory's weights and normalisation (e.g. to continue training on more data).", metavar="DIR", show_default=False),
    seed: int = typer.Option(None, "--seed", help="Seed of initialisation, batches, augmentation and dropout. [default: 0]", metavar="N", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto (GPU if available), cpu or cuda.", metavar="DEVICE"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT/checkpoint.pt after an interruption; gives the same weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model in OUTPUT."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Train the Bayesian CNN: deterministic pre-training (MSE), then Bayesian fine-tuning (Gaussian NLL).

    Example:

      slitcli train train.fits --val val.fits -o models/my-model
    """
    if pretrain_epochs == 0 and finetune_epochs == 0:
        raise typer.BadParameter("pre-training and fine-tuning cannot both have 0 epochs", param_hint="'--pretrain-epochs'")
    with command(quiet, verbose):
        from slitcli.config import from_mapping, load_yaml, with_changes
        from slitcli.errors import ConfigError
        from slitcli.io.files import check_output_path
        from slitcli.nn.modelfile import load_model, save_model
        from slitcli.nn.predict import resolve_device
        from slitcli.nn.registry import model_config
        from slitcli.nn.train import TrainConfig, concat_train_data, load_train_data, with_overrides
        from slitcli.nn.train import train as run_train

        torch_device = resolve_device(device)
        cfg, model_opts = TrainConfig(), {}
        if config:
            data = load_yaml(config)
            unknown = set(data) - {"train", "model"}
            if unknown:
                raise ConfigError(f"{config}: unknown key(s) {', '.join(sorted(unknown))}; valid keys are train, model")
            cfg = from_mapping(TrainConfig, data.get("train", {}), f"{config}:train")
            model_opts = dict(data.get("model", {}))
        cfg = with_overrides(cfg, architecture=architecture, pretrain_epochs=pretrain_epochs, finetune_epochs=finetune_epochs, batch_size=batch_size, seed=seed)
        if max_shift_x is not None:
            cfg = with_changes(cfg, "command-line options", augment=with_changes(cfg.augment, "--max-shift-x", max_shift_x=max_shift_x))
        check_output_path(output, overwrite or resume, inputs=(*train_files, val, config, init_from), directory=True, files=("model.safetensors", "model.json"))
        # What can be checked without the data is checked before reading it (minutes, for a large sample).
        model_config(cfg.architecture, **model_opts)
        init = load_model(init_from) if init_from else None
        with progress_bar(quiet) as bar:
            task = bar.add_task("reading", total=None)
            tr = concat_train_data([load_train_data(f, cfg.bands, cfg.min_snr, progress=lambda d, n: bar.update(task, completed=d, total=n), keep_err=cfg.augment.noise_scale > 0) for f in train_files])
            va = load_train_data(val, cfg.bands, cfg.min_snr, tr.sci.shape[2:])
            log.info("training on %d sources, validating on %d (SNR_GI >= %g)", len(tr.z), len(va.z), cfg.min_snr)
            log_bad_pixels(tr.bad_pixels + va.bad_pixels)
            last = {"val": float("nan")}

            def show(info):
                if info.get("done_epoch"):
                    last["val"] = info["val_sigma_nmad"]
                    log.info("%s epoch %d/%d: loss %.4f, validation sigma_NMAD %.4f%s", info["phase"], info["epoch"] + 1, info["epochs"], info["loss"], info["val_sigma_nmad"], " (best)" if info["best"] else "")
                    return
                bar.update(task, description=f"{info['phase']} {info['epoch'] + 1}/{info['epochs']} loss {info['loss']:.4f} val sNMAD {last['val']:.4f}", completed=info["batch"], total=info["batches"])

            bundle = run_train(tr, va, cfg, model_opts, checkpoint=output / "checkpoint.pt", resume=resume, progress=show, device=torch_device, init=init)
        bundle.card["name"] = name or output.name
        save_model(bundle, output, overwrite=overwrite or resume)
        log.info(f"wrote {output} (best validation sigma_NMAD {bundle.card['metrics']['val_sigma_nmad']:.4f}, {bundle.card['training']['wall_s']:.0f} s)")
