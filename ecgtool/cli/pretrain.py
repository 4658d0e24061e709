"""``ecgtool pretrain``: a self-supervised method on one or more stores → an encoder checkpoint."""

from __future__ import annotations

import click

from ecgtool.cli.completion import complete_model
from ecgtool.cli.options import (LibraryCommand, device_option, json_option, key_values, log_dir_option_for, option,
                                 overwrite_option, seed_option)
from ecgtool.data.choices import LOADER_MODES
from ecgtool.train.choices import PRECISIONS, PRETRAIN_METHODS, SCHEDULES


def _list_methods(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    from ecgtool.train.pretrain.methods import METHODS

    for m in METHODS.values():
        click.echo(f"{m.name}\t{m.backbone}\t{m.fs:g} Hz, {m.seconds:g} s\tepochs {m.epochs}, batch {m.batch_size}, "
                   f"lr {m.lr:g}, weight decay {m.weight_decay:g}, {m.schedule}\t{m.summary}")
    ctx.exit(0)


@click.command(cls=LibraryCommand)
@click.argument("method", type=click.Choice(PRETRAIN_METHODS))
@click.argument("stores", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Encoder checkpoint to write.")
@click.option("--backbone", default=None, metavar="MODEL", shell_complete=complete_model, help="Registered model to pretrain (default: the method's; see --list). "
              "cpc and clocs-* take any model; st-mem and jepa a size of their ViT.")
@click.option("--model-arg", "model_kwargs", multiple=True, callback=key_values, metavar="KEY=VALUE",
              help="Backbone constructor argument (JSON value); repeatable. train --init needs the same ones.")
@click.option("--method-arg", "method_kwargs", multiple=True, callback=key_values, metavar="KEY=VALUE",
              help="Method hyperparameter (JSON value), e.g. negatives=64, mask_ratio=0.6; repeatable. docs/pretrain.md lists them.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Default: the method's.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Global batch. Default: the method's.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help="Peak learning rate (AdamW). Default: the method's.")
@click.option("--weight-decay", type=click.FloatRange(0), default=None, help="Default: the method's.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None, help="Learning-rate schedule, stepped per batch. Default: the method's.")
@click.option("--warmup-epochs", type=click.FloatRange(0), default=None, help="Linear warm-up length in epochs (at most 100,000). Default: the method's.")
@click.option("--crop", type=click.IntRange(0), default=0,
              help="Samples per input, a random window of each record per step (0: the method's window at the stores' rate, or whole records when shorter).")
@click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for torch (0: torch's default; at most 4 per CPU).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Loader threads decoding store chunks (at most 4 per CPU).")
@click.option("--loader", "loader_mode", type=click.Choice(LOADER_MODES), default="auto", show_default=True,
              help="Hold the stores in memory, or stream them chunk by chunk (auto: memory when they fit in half the available RAM).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="Mixed precision: autocast to bf16, or fp16 with a grad scaler (for CUDA).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the objective for training (for CUDA).")
@click.option("--sync-bn", is_flag=True, help="Synchronise BatchNorm statistics across DDP ranks (CUDA).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run that wrote OUTPUT.resume.")
@log_dir_option_for("losses (pretraining has no validation)")
@option("--list", "list_methods", aliases=("--list-methods",), is_flag=True, expose_value=False, is_eager=True, callback=_list_methods,
              help="List the methods with their default backbone, input and optimisation, and exit.")
@seed_option
@device_option
@overwrite_option
@json_option
def pretrain(method, stores, output, backbone, model_kwargs, method_kwargs, epochs, batch_size, lr, weight_decay, schedule,
             warmup_epochs, crop, threads, workers, loader_mode, precision, compile_, sync_bn, resume, log_dir, seed,
             device, overwrite, as_json):
    """Pretrain an encoder on STORES with METHOD (self-supervised: labels are never read) and write it to OUTPUT.

    Several stores are pooled (one sampling rate and record length; unlabelled
    stores welcome). The encoder checkpoint records the method, its
    hyperparameters and every record it saw; `train MODEL --init OUTPUT`
    fine-tunes it (`--freeze-encoder`: linear probe) and `eval` warns when a
    test store shares records with it. Prints the checkpoint path (JSON with
    --json); progress on stderr. Runs under torchrun or srun like train; SIGTERM
    or SIGUSR1 writes OUTPUT.resume and exits with status 75.
    """
    from ecgtool.cli.options import emit_json, resolve_device
    from ecgtool.cli.running import run_loop
    from ecgtool.train import distributed
    from ecgtool.train.pretrain.loop import PretrainArgs, Pretrainer

    args = PretrainArgs(
        method=method, backbone=backbone or "", epochs=epochs or 0, batch_size=batch_size or 0, lr=lr,
        weight_decay=weight_decay, schedule=schedule or "", warmup_epochs=warmup_epochs, seed=seed,
        device=str(resolve_device(device)), threads=threads, workers=workers, loader=loader_mode, crop=crop,
        precision=precision, compile=compile_, sync_bn=sync_bn, model_kwargs=model_kwargs, method_kwargs=method_kwargs,
    )
    env = distributed.detect()
    ckpt = run_loop(lambda on_step, on_epoch: Pretrainer(args, stores, output, overwrite=overwrite, on_step=on_step,
                                                         on_epoch=on_epoch, env=env),
                    output=output, epochs=args.with_defaults().epochs, resume=resume, overwrite=overwrite, env=env,
                    log_dir=log_dir)
    if not env.is_main:
        return
    if as_json:
        emit_json({"checkpoint": output, "method": method, "backbone": ckpt.model.name, "metrics": ckpt.metrics,
                   "hyperparameters": ckpt.pretraining["hyperparameters"]})
    else:
        click.echo(output)
