"""`slitcli train`: pre-train and fine-tune the Bayesian CNN on simulated samples."""

from __future__ import annotations

from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, log_bad_pixels, progress_bar


def train(
    train_files: list[Path] = typer.Argument(None, help="Training sample file(s) (from slitcli simulate); none with --stream.", metavar="SAMPLE", show_default=False),
    val: Path = typer.Option(..., "--val", help="Validation sample file: picks the best epoch and stops early. Never the test sample.", metavar="SAMPLE", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Model directory to write (model.safetensors, model.json, checkpoint.pt).", metavar="DIR", show_default=False),
    name: str = typer.Option(None, "--name", help="Model name in the card. [default: the directory name]", metavar="NAME", show_default=False),
    config: Path = typer.Option(None, "--config", help="YAML with keys 'train' (slitcli.nn.train.TrainConfig), 'model' (architecture options) and, with --stream, 'stream' (slitcli.nn.stream.StreamConfig).", metavar="YAML", show_default=False),
    architecture: str = typer.Option(None, "--arch", help="Architecture: slitnet (compact, CPU), resnet34 (the paper's), or from the zoo resnet18, efficientnet, vit, mixer, slitnet2 (docs/bayes.md, Architectures). Its head is set in --config: model: {head: pdf} for p(z) on a grid. [default: slitnet]", metavar="NAME", show_default=False),
    pretrain_epochs: int = typer.Option(None, "--pretrain-epochs", help="Maximum deterministic pre-training epochs. [default: 20]", metavar="N", min=0, show_default=False),
    finetune_epochs: int = typer.Option(None, "--finetune-epochs", help="Maximum Bayesian fine-tuning epochs; 0 gives a deterministic model. [default: 10]", metavar="N", min=0, show_default=False),
    batch_size: int = typer.Option(None, "--batch-size", help="Batch size (>= 2: batch-norm needs two sources). [default: 128]", metavar="N", min=2, show_default=False),
    max_shift_x: int = typer.Option(None, "--max-shift-x", help="Largest augmentation shift along the dispersion [pixel] (the paper: 48). [default: 3]", metavar="PIX", min=0, show_default=False),
    init_from: Path = typer.Option(None, "--init-from", help="Start from this model directory's weights and normalisation (e.g. to continue training on more data).", metavar="DIR", show_default=False),
    seed: int = typer.Option(None, "--seed", help="Seed of initialisation, batches, augmentation and dropout. [default: 0]", metavar="N", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto (GPU if available), cpu or cuda.", metavar="DEVICE"),
    stream: bool = typer.Option(False, "--stream", help="Train from the training stream (freshly simulated batches, no files) instead of sample files."),
    steps: int = typer.Option(None, "--steps", help="With --stream: optimiser steps (stream items) in all, split between pre-training and fine-tuning as train.pretrain_steps : train.finetune_steps. [default: 20000 + 10000]", metavar="N", min=1, show_default=False),
    val_every: int = typer.Option(None, "--val-every", help="With --stream: validate, keep the best weights and checkpoint every N steps. [default: 500]", metavar="N", min=1, show_default=False),
    workers: int = typer.Option(None, "--workers", help="With --stream: DataLoader processes rendering the stream while the training process trains (0: render in it, several times slower on a CPU). [default: 1]", metavar="N", min=0, show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT/checkpoint.pt after an interruption; gives the same weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model in OUTPUT."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Train the Bayesian CNN: deterministic pre-training (MSE), then Bayesian fine-tuning (Gaussian NLL).

    Example:

      slitcli train train.fits --val val.fits -o models/my-model

      slitcli train --stream --steps 30000 --val val.fits -o models/stream-model

      torchrun --standalone --nproc-per-node 2 -m slitcli train train.fits --val val.fits -o models/my-model
    """
    if stream and train_files:
        raise typer.BadParameter("give training sample files or --stream, not both", param_hint="'--stream'")
    for value, flag in ((steps, "--steps"), (val_every, "--val-every"), (workers, "--workers")):
        if value is not None and not stream:
            raise typer.BadParameter("needs --stream", param_hint=f"'{flag}'")
    if not stream and not train_files:
        raise typer.BadParameter("give training sample file(s), or --stream to train from the training stream", param_hint="'SAMPLE...'")
    for value, flag in ((pretrain_epochs, "--pretrain-epochs"), (finetune_epochs, "--finetune-epochs")):
        if value is not None and stream:
            raise typer.BadParameter("--stream trains by steps: use --steps, or pretrain_steps and finetune_steps under train: in --config", param_hint=f"'{flag}'")
    if pretrain_epochs == 0 and finetune_epochs == 0:
        raise typer.BadParameter("pre-training and fine-tuning cannot both have 0 epochs", param_hint="'--pretrain-epochs'")
    from slitcli.nn import distributed

    # Under torchrun only rank 0 reports progress; the others show warnings and errors.
    quiet = quiet or not distributed.is_main()
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
        cfg, model_opts, stream_data = TrainConfig(), {}, {}
        if config:
            data = load_yaml(config)
            valid = ("train", "model", "stream") if stream else ("train", "model")
            unknown = set(data) - set(valid)
            if unknown:
                raise ConfigError(f"{config}: unknown key(s) {', '.join(sorted(unknown))}; valid keys are {', '.join(valid)}")
            cfg = from_mapping(TrainConfig, data.get("train", {}), f"{config}:train")
            for key in ("model", "stream"):
                if not isinstance(data.get(key) or {}, dict):
                    raise ConfigError(f"{config}:{key}: expected a mapping of options, got {type(data[key]).__name__}")
            model_opts = dict(data.get("model") or {})
            stream_data = data.get("stream") or {}
        cfg = with_overrides(cfg, architecture=architecture, pretrain_epochs=pretrain_epochs, finetune_epochs=finetune_epochs, batch_size=batch_size, seed=seed, val_every=val_every)
        if steps is not None:
            pre = round(steps * cfg.pretrain_steps / max(cfg.pretrain_steps + cfg.finetune_steps, 1))
            cfg = with_overrides(cfg, pretrain_steps=pre, finetune_steps=steps - pre)
        if max_shift_x is not None:
            cfg = with_changes(cfg, "command-line options", augment=with_changes(cfg.augment, "--max-shift-x", max_shift_x=max_shift_x))
        check_output_path(output, overwrite or resume, inputs=(*(train_files or ()), val, config, init_from), directory=True, files=("model.safetensors", "model.json"))
        stream_cfg = _stream_config(stream_data, cfg, config) if stream else None
        # What can be checked without the data is checked before reading it (minutes, for a large sample).
        model_config(cfg.architecture, **model_opts)
        with distributed.process_group(torch_device) as torch_device:
            init = load_model(init_from) if init_from else None
            if stream:
                bundle = _train_from_stream(stream_cfg, cfg, model_opts, val, output, resume, torch_device, init, 1 if workers is None else workers, quiet)
            else:
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
            distributed.on_main(save_model, bundle, output, overwrite=overwrite or resume)  # the other ranks wait
            log.info(f"wrote {output} (best validation sigma_NMAD {bundle.card['metrics']['val_sigma_nmad']:.4f}, {bundle.card['training']['wall_s']:.0f} s)")


def _stream_config(data: dict, cfg, where):
    """The `stream:` section of --config as a StreamConfig, its batch size and bands the training's."""
    from slitcli.config import from_mapping, with_changes
    from slitcli.errors import ConfigError
    from slitcli.nn.stream import StreamConfig

    for key in ("batch_size", "bands"):
        if key in data:
            raise ConfigError(f"{where}:stream: {key} is the training's: set it under train: (or --batch-size)")
    stream_cfg = from_mapping(StreamConfig, data, f"{where}:stream")
    # The stream's seed follows --seed unless the section sets its own.
    return with_changes(stream_cfg, "command-line options", batch_size=cfg.batch_size, bands=tuple(cfg.bands), seed=None if "seed" in data else cfg.seed)


def _train_from_stream(stream_cfg, cfg, model_opts, val, output, resume, device, init, workers, quiet):
    """`slitcli train --stream`: validation sample read, then `slitcli.nn.train.train_stream`."""
    from slitcli.nn.train import load_train_data, train_stream

    with progress_bar(quiet) as bar:
        task = bar.add_task("reading", total=None)
        va = load_train_data(val, cfg.bands, cfg.min_snr, (stream_cfg.cutout_height, stream_cfg.cutout_width))
        log.info("training from the stream: %d + %d steps of %d sources (SNR_GI >= %g), validating on %d every %d steps", cfg.pretrain_steps, cfg.finetune_steps, cfg.batch_size, cfg.min_snr, len(va.z), cfg.val_every)
        log_bad_pixels(va.bad_pixels)
        last = {"val": float("nan")}

        def show(info):
            if info.get("done_epoch"):
                last["val"] = info["val_sigma_nmad"]
                log.info("%s step %d (validation %d/%d): loss %.4f, validation sigma_NMAD %.4f%s", info["phase"], info["step"], info["epoch"] + 1, info["epochs"], info["loss"], info["val_sigma_nmad"], " (best)" if info["best"] else "")
                return
            bar.update(task, description=f"{info['phase']} step {info['step']} loss {info['loss']:.4f} val sNMAD {last['val']:.4f}", completed=info["batch"], total=info["batches"])

        return train_stream(stream_cfg, va, cfg, model_opts, checkpoint=output / "checkpoint.pt", resume=resume, progress=show, device=device, init=init, workers=workers)
